// Package authz decides what a caller may see and run: tools (and other
// MCP components) declare the permissions they need by name, and the role
// table maps App Role values, as Entra puts them in a token's roles claim,
// to permission names.
//
// The role table is one file, roles.json in this package, which also drives
// the App Roles the Bicep templates create, dev mode's demo users and the
// README's role table; ROLE_MAP can replace its role-to-permission mapping
// at run time. A component that declares no permission is visible to
// nobody (default deny).
package authz

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// SignedIn is the permission every verified caller holds.
const SignedIn = "signed-in"

// Member types a role may be assigned to, as Entra's allowedMemberTypes
// names them.
const (
	MemberUser        = "User"
	MemberApplication = "Application"
)

// Role is one row of the role table.
type Role struct {
	// Value is the App Role value, as it appears in tokens (compared
	// exactly, as Entra emits it).
	Value string `json:"value"`
	// Description is what Entra shows when the role is assigned.
	Description string `json:"description"`
	// Permissions are the permission names the role grants.
	Permissions []string `json:"permissions"`
	// Members says who may hold the role: MemberUser, MemberApplication or
	// both. Only a role with MemberApplication counts for an app-only caller.
	Members []string `json:"members"`
	// DemoUser names dev mode's demo user for the role; one is made up from
	// the value when it is nil.
	DemoUser *DemoUser `json:"demoUser,omitempty"`
	// Retired grants nothing and is disabled in Entra: Entra refuses to
	// delete an enabled role, so a role goes in two deployments, first
	// retired, then removed from the table.
	Retired bool `json:"retired,omitempty"`
}

// DemoUser is the dev-mode person who holds a role.
type DemoUser struct {
	Key  string `json:"key"`  // short name for tokens and the sign-in page: "reader"
	Name string `json:"name"` // display name
}

// AllowsMember reports whether the role may be assigned to kind
// (MemberUser or MemberApplication).
func (r Role) AllowsMember(kind string) bool { return slices.Contains(r.Members, kind) }

// Table is the role table.
type Table struct {
	Roles []Role `json:"roles"`
}

//go:embed roles.json
var defaultTable []byte

// DefaultTable is the role table shipped in roles.json.
func DefaultTable() Table {
	t, err := ParseTable(defaultTable)
	if err != nil {
		panic(fmt.Sprintf("authz: roles.json: %v", err)) // TestDefaultTable keeps it valid
	}
	return t
}

var (
	// A permission is lower-case words joined by '.', '-' or '_', such as
	// tasks.read: easy to read in a table and never confused with a role.
	permissionName = regexp.MustCompile(`^[a-z][a-z0-9]*([._-][a-z0-9]+)*$`)
	// App Role values: Entra allows printable ASCII without spaces; these
	// are also the characters ROLE_MAP's quote-free form can carry.
	roleValue = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)
)

// ParseTable reads a role table file strictly: unknown fields, duplicate
// roles, bad names and roles without permissions or members are errors.
func ParseTable(b []byte) (Table, error) {
	var t Table
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Table{}, fmt.Errorf("parse role table: %w", err)
	}
	if dec.More() {
		return Table{}, errors.New("parse role table: trailing data")
	}
	if err := t.check(); err != nil {
		return Table{}, fmt.Errorf("role table: %w", err)
	}
	return t, nil
}

func (t Table) check() error {
	if len(t.Roles) == 0 {
		return errors.New("no roles")
	}
	seen := map[string]bool{}
	keys := map[string]bool{}
	for _, r := range t.Roles {
		if seen[r.Value] {
			return fmt.Errorf("role %q given twice", r.Value)
		}
		seen[r.Value] = true
		if err := r.check(); err != nil {
			return err
		}
		if r.DemoUser != nil {
			if keys[r.DemoUser.Key] {
				return fmt.Errorf("role %q: demo user key %q is another role's", r.Value, r.DemoUser.Key)
			}
			keys[r.DemoUser.Key] = true
		}
	}
	return nil
}

// check is one row's rules: a value Entra and ROLE_MAP can carry,
// permissions and members named, a demo user with a key and a name.
func (r Role) check() error {
	if !roleValue.MatchString(r.Value) || len(r.Value) > 120 {
		return fmt.Errorf("role %q: a role value is 1-120 of A-Z, a-z, 0-9 and . _ : / -, starting with a letter or digit", r.Value)
	}
	if len(r.Permissions) == 0 {
		return fmt.Errorf("role %q grants no permission", r.Value)
	}
	for _, p := range r.Permissions {
		if !permissionName.MatchString(p) {
			return fmt.Errorf("role %q: permission %q: want lower-case words joined by '.', '-' or '_', such as tasks.read", r.Value, p)
		}
	}
	if len(r.Members) == 0 {
		return fmt.Errorf("role %q: members must name %q, %q or both", r.Value, MemberUser, MemberApplication)
	}
	for _, m := range r.Members {
		if m != MemberUser && m != MemberApplication {
			return fmt.Errorf("role %q: member type %q: want %q or %q", r.Value, m, MemberUser, MemberApplication)
		}
	}
	if r.DemoUser != nil && (r.DemoUser.Key == "" || r.DemoUser.Name == "") {
		return fmt.Errorf("role %q: a demo user needs a key and a name", r.Value)
	}
	return nil
}

// Role returns the row for value.
func (t Table) Role(value string) (Role, bool) {
	for _, r := range t.Roles {
		if r.Value == value {
			return r, true
		}
	}
	return Role{}, false
}

// AcceptsApps reports whether some live role may be held by applications:
// only then are app-only (client-credentials) tokens accepted at all.
func (t Table) AcceptsApps() bool {
	for _, r := range t.Roles {
		if !r.Retired && r.AllowsMember(MemberApplication) {
			return true
		}
	}
	return false
}

// Permissions lists every permission the table grants, and SignedIn,
// sorted.
func (t Table) Permissions() []string {
	out := []string{SignedIn}
	for _, r := range t.Roles {
		out = append(out, r.Permissions...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WithRoleMap replaces the table's role-to-permission mapping with ROLE_MAP's
// text: JSON, {"Task.Read":["tasks.read"],"Task.All":["tasks.read","tasks.write"]},
// or the same without quotes, Task.Read=tasks.read;Task.All=tasks.read+tasks.write,
// which an azd environment value can carry (azd puts values into a JSON
// parameters file as they are). Only the permissions t knows are allowed,
// so a misspelt one is an error rather than a role that grants nothing.
// Roles keep their description and members from t; a role t lacks is for
// users only. Roles not in the text are gone.
func (t Table) WithRoleMap(text string) (Table, error) {
	raw, order, err := parseRoleMap(text)
	if err != nil {
		return Table{}, fmt.Errorf("parse role map: %w", err)
	}
	if len(raw) == 0 {
		return Table{}, errors.New("parse role map: no roles")
	}
	known := t.Permissions()
	out := Table{}
	for _, value := range order {
		r, ok := t.Role(value)
		if !ok {
			r = Role{Value: value, Members: []string{MemberUser}}
		}
		r.Permissions = nil
		for _, p := range raw[value] {
			if !slices.Contains(known, p) {
				return Table{}, fmt.Errorf("parse role map: role %q: unknown permission %q (the role table has %s)", value, p, strings.Join(known, ", "))
			}
			if !slices.Contains(r.Permissions, p) {
				r.Permissions = append(r.Permissions, p)
			}
		}
		out.Roles = append(out.Roles, r)
	}
	if err := out.check(); err != nil {
		return Table{}, fmt.Errorf("parse role map: %w", err)
	}
	return out, nil
}

// noDuplicateKeys refuses a JSON object with a key given twice at its top
// level (its values are arrays of strings, so no deeper object exists).
func noDuplicateKeys(text string) error {
	dec := json.NewDecoder(strings.NewReader(text))
	seen := map[string]bool{}
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the decode above already passed: this is the end
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 1 && dec.More() { // a key: its value follows
				if seen[v] {
					return fmt.Errorf("role %q given twice", v)
				}
				seen[v] = true
			}
		}
	}
}

// parseRoleMap reads ROLE_MAP's two forms into role -> permissions, with
// the roles in the order given (JSON objects: sorted).
func parseRoleMap(text string) (map[string][]string, []string, error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "{") {
		raw := map[string][]string{}
		var order []string
		for _, entry := range strings.Split(text, ";") {
			if strings.TrimSpace(entry) == "" {
				continue
			}
			role, perms, ok := strings.Cut(entry, "=")
			role = strings.TrimSpace(role)
			if !ok {
				return nil, nil, fmt.Errorf("%q is not Role=permission[+permission]", entry)
			}
			if _, dup := raw[role]; dup {
				return nil, nil, fmt.Errorf("role %q given twice", role)
			}
			raw[role] = []string{}
			order = append(order, role)
			for _, p := range strings.Split(perms, "+") {
				raw[role] = append(raw[role], strings.TrimSpace(p))
			}
		}
		return raw, order, nil
	}
	var raw map[string][]string
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, errors.New("trailing data")
	}
	// encoding/json keeps the last of two equal keys; the quote-free form
	// refuses a role given twice, and so does this one.
	if err := noDuplicateKeys(text); err != nil {
		return nil, nil, err
	}
	order := make([]string, 0, len(raw))
	for role := range raw {
		order = append(order, role)
	}
	slices.Sort(order)
	return raw, order, nil
}
