//go:build !conformance

package tools_test

import (
	"slices"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

const goldenAbout = "Generated from the tool catalog (handler/tools), the role table (handler/authz/roles.json) and the " +
	"demo users (handler/devidp), with dev mode's demo upstream (handler/devupstream), by `go test ./handler/tools -run TestToolsPerRole -update` (the conformance " +
	"part with -tags conformance). Do not edit; Go tests and .ci scripts read their expectations from it."

// withDemoUpstream is names with the demo upstream's tools a caller with
// grants lists in dev mode, sorted as tools/list sorts them.
func withDemoUpstream(t *testing.T, policy *authz.Policy, grants authz.Set, names []string) []string {
	t.Helper()
	demo := devupstream.Entry(devupstream.Name, "http://127.0.0.1/mcp", config.UpstreamAuth{Mode: config.UpstreamNone})
	out := slices.Clone(names)
	for _, tool := range devupstream.ToolNames() {
		perm, ok := config.Permission(demo.Tools, tool)
		if !ok {
			continue // no rule: never listed
		}
		need, err := policy.Need([]string{perm})
		if err != nil {
			t.Fatal(err)
		}
		if grants.Allows(need) {
			out = append(out, demo.Name+"."+tool)
		}
	}
	slices.Sort(out)
	return out
}

// TestToolsPerRole holds the golden tools-per-role file against the real
// catalog: every tool with its need and hints, and what each demo user's
// roles (through the default role map) let it list, with Graph configured
// as in dev mode.
func TestToolsPerRole(t *testing.T) {
	without := map[string]bool{}
	for _, tool := range tools.All(tools.Deps{}) {
		without[tool.Def.Name] = true
	}
	catalog := tools.All(tools.Deps{Graph: &tools.Graph{Tokens: &fakeTokens{}}})
	want := toolstest.File{About: goldenAbout, Conformance: readGolden(t).Conformance}
	for _, tool := range catalog {
		want.Tools = append(want.Tools, goldenTool(tool, !without[tool.Def.Name]))
	}
	byName(want.Tools)
	policy, err := authz.NewPolicy(authz.DefaultTable())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range devidp.DemoUsers() {
		grants := policy.Grants(u.Roles, false)
		var names []string
		for _, tool := range catalog {
			need, err := policy.Need(tool.Permissions)
			if err != nil {
				t.Fatalf("%s: %v: every permission a tool needs is in authz's roles.json", tool.Def.Name, err)
			}
			if grants.Allows(need) {
				names = append(names, tool.Def.Name)
			}
		}
		slices.Sort(names)
		want.Users = append(want.Users, toolstest.User{Key: u.Key, Name: u.Name, Roles: u.Roles, Tools: names,
			DevMode: withDemoUpstream(t, policy, grants, names)})
	}
	checkGolden(t, want, "")
}
