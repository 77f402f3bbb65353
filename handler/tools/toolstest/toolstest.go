// Package toolstest holds the tools-per-role golden file
// (tools-per-role.json) for tests: each tool's permissions and hints, and the exact
// tools/list of each dev-mode demo user. Go tests and the .ci scripts read
// their expectations from it, so adding a tool changes one file, and that
// file is generated from the real catalog: handler/tools's TestToolsPerRole
// fails when it is stale and rewrites it with -update. It also holds what
// tests of tool results share: a result's text.
package toolstest

import (
	_ "embed"
	"encoding/json"
	"slices"
	"testing"
)

// FileName is the golden file's name in this package's folder.
const FileName = "tools-per-role.json"

//go:embed tools-per-role.json
var golden []byte

// File is the golden file.
type File struct {
	About string `json:"about"`
	// Tools is the production catalog, sorted by name.
	Tools []Tool `json:"tools"`
	// Users are the demo users, in devidp.DemoUsers order.
	Users []User `json:"users"`
	// Conformance is what a build with the conformance tag adds.
	Conformance Conformance `json:"conformance"`
}

// Tool is one tool's name, the permissions it needs and its hints.
type Tool struct {
	Name        string   `json:"name"`
	Permissions []string `json:"permissions"`
	ReadOnly    bool     `json:"readOnly"`
	Destructive bool     `json:"destructive"`
	Idempotent  bool     `json:"idempotent"`
	OpenWorld   bool     `json:"openWorld"`
	// Graph marks a tool that is there only when Microsoft Graph is
	// configured (dev mode configures the stand-in's).
	Graph bool `json:"graph,omitempty"`
}

// User is a demo user and the tools its token lists, in tools/list order,
// with Graph configured.
type User struct {
	Key   string   `json:"key"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	Tools []string `json:"tools"`
	// DevMode is what its token lists in dev mode, where the demo upstream
	// MCP server's tools its roles allow join Tools (handler/devmode).
	DevMode []string `json:"devMode"`
}

// Conformance lists the fixture tools of the conformance build; every
// signed-in caller lists them too (permission signed-in), after its own.
type Conformance struct {
	Added []Tool `json:"added"`
}

// Load returns the golden file as this test binary embedded it.
func Load(t testing.TB) File {
	t.Helper()
	var f File
	if err := json.Unmarshal(golden, &f); err != nil {
		t.Fatalf("read the golden %s: %v", FileName, err)
	}
	return f
}

// User returns the demo user whose key is key.
func (f File) User(t testing.TB, key string) User {
	t.Helper()
	for _, u := range f.Users {
		if u.Key == key {
			return u
		}
	}
	t.Fatalf("the golden %s has no demo user %q", FileName, key)
	return User{}
}

// Names lists the tools' names, in order; withGraph false leaves out those
// that need Graph.
func Names(tools []Tool, withGraph bool) []string {
	var out []string
	for _, t := range tools {
		if withGraph || !t.Graph {
			out = append(out, t.Name)
		}
	}
	return out
}

// Lists returns the tools/list names the demo user whose key is key gets
// from a server built like this test binary: the golden list, with the
// conformance fixtures merged in (tools/list is sorted by name) when the
// binary was built with the conformance tag.
func (f File) Lists(t testing.TB, key string) []string {
	t.Helper()
	names := slices.Clone(f.User(t, key).Tools)
	if fixturesBuilt {
		names = append(names, Names(f.Conformance.Added, true)...)
		slices.Sort(names)
	}
	return names
}

// IsFixture reports whether name is a conformance fixture, not a tool of
// the product.
func (f File) IsFixture(name string) bool {
	return slices.ContainsFunc(f.Conformance.Added, func(t Tool) bool { return t.Name == name })
}
