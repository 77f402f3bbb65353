// Package authz maps Entra App Roles to the needs that tools declare.
//
// A tool declares one Need. A caller's App Roles are turned into a set of
// grants by a RoleMap; the caller may see and run the tool when the grants
// hold its need. A tool that declares no need is visible to nobody.
package authz

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Need is what a tool requires of its caller. Needs are bits so that a set
// of grants is a single value that can key caches.
type Need uint8

const (
	// SignedIn is held by every caller whose token verified.
	SignedIn Need = 1 << iota
	// Read allows reading task data.
	Read
	// Write allows changing task data.
	Write
	// Admin allows server administration.
	Admin
)

// All is every grant there is.
const All = SignedIn | Read | Write | Admin

var needNames = []struct {
	name string
	need Need
}{
	{"signed-in", SignedIn},
	{"read", Read},
	{"write", Write},
	{"admin", Admin},
}

// ParseNeed returns the Need for a name used in ROLE_MAP ("read", "write",
// "admin", "signed-in").
func ParseNeed(name string) (Need, error) {
	for _, n := range needNames {
		if n.name == name {
			return n.need, nil
		}
	}
	return 0, fmt.Errorf("unknown need %q (want read, write, admin or signed-in)", name)
}

// String lists the needs in n, comma-separated.
func (n Need) String() string {
	var parts []string
	for _, nn := range needNames {
		if n&nn.need != 0 {
			parts = append(parts, nn.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// Allows reports whether the grants g satisfy need. A zero need is never
// satisfied: default deny.
func (g Need) Allows(need Need) bool {
	return need != 0 && g&need == need
}

// RoleMap maps App Role values, as they appear in a token's roles claim, to
// the grants they carry. Role values are compared exactly, as Entra emits them.
type RoleMap map[string]Need

// DefaultRoleMap is the table used when ROLE_MAP is not set.
func DefaultRoleMap() RoleMap {
	return RoleMap{
		"Task.Read":       Read,
		"Task.Write":      Write,
		"Task.All":        Read | Write,
		"MCPServer.Admin": Admin,
	}
}

// ParseRoleMap reads a role table in JSON, for example
// {"Task.Read":["read"],"Task.All":["read","write"]}, or in the same table
// without quotes, Task.Read=read;Task.All=read+write, which an azd
// environment value can carry (azd puts values into a JSON parameters file
// as they are). It is strict: unknown needs, an empty table and, in the
// quote-free form, a role given twice are errors.
func ParseRoleMap(text string) (RoleMap, error) {
	raw, err := parseRoleTable(text)
	if err != nil {
		return nil, fmt.Errorf("parse role map: %w", err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("parse role map: no roles")
	}
	m := make(RoleMap, len(raw))
	for role, names := range raw {
		if role == "" {
			return nil, fmt.Errorf("parse role map: empty role name")
		}
		var grants Need
		for _, name := range names {
			n, err := ParseNeed(name)
			if err != nil {
				return nil, fmt.Errorf("parse role map: role %q: %w", role, err)
			}
			grants |= n
		}
		m[role] = grants
	}
	return m, nil
}

func parseRoleTable(text string) (map[string][]string, error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "{") {
		raw := map[string][]string{}
		for _, entry := range strings.Split(text, ";") {
			if strings.TrimSpace(entry) == "" {
				continue
			}
			role, needs, ok := strings.Cut(entry, "=")
			role = strings.TrimSpace(role)
			if !ok {
				return nil, fmt.Errorf("%q is not Role=need[+need]", entry)
			}
			if _, dup := raw[role]; dup {
				return nil, fmt.Errorf("role %q given twice", role)
			}
			raw[role] = []string{}
			for _, n := range strings.Split(needs, "+") {
				raw[role] = append(raw[role], strings.TrimSpace(n))
			}
		}
		return raw, nil
	}
	var raw map[string][]string
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return raw, nil
}

// Grants returns what a caller with these roles holds. Every verified caller
// holds SignedIn; unknown role values add nothing.
func (m RoleMap) Grants(roles []string) Need {
	g := SignedIn
	for _, r := range roles {
		g |= m[r]
	}
	return g
}

// Roles lists the role values in the map, sorted, for documentation output.
func (m RoleMap) Roles() []string {
	out := make([]string, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}
