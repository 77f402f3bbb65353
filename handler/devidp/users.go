package devidp

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/entra-mcp/functions-mcp/handler/authz"
)

// User is a person the stand-in can issue tokens for.
type User struct {
	Key      string   // short name for flags and tests: "reader", "writer", ...
	Name     string   // display name (name claim)
	Username string   // sign-in name (preferred_username; upn in v1 tokens)
	ObjectID string   // oid claim; with the tenant, the user's identity
	Roles    []string // App Roles assigned to the user (roles claim)
}

// UsersFor makes one demo user per role of t that people may hold, named
// by the role's demoUser entry or, without one, after the role value
// ("Deploy.Read": key "deploy-read"). Object ids follow the table's order,
// so a user keeps its data across restarts while rows are only appended.
func UsersFor(t authz.Table) []User {
	var out []User
	taken := map[string]bool{}
	for _, r := range t.Roles {
		if r.DemoUser != nil {
			taken[r.DemoUser.Key] = true
		}
	}
	for i, r := range t.Roles {
		if r.Retired || !r.AllowsMember(authz.MemberUser) {
			continue
		}
		key, name := userKey(r.Value), "Demo "+r.Value
		if r.DemoUser != nil {
			key, name = r.DemoUser.Key, r.DemoUser.Name
		} else {
			// A made-up key must not be another role's ("Reader" and
			// Task.Read's "reader"): tokens and sign-in go by key.
			for base, n := key, 2; taken[key]; n++ {
				key = fmt.Sprintf("%s-%d", base, n)
			}
			taken[key] = true
		}
		out = append(out, User{
			Key:      key,
			Name:     name,
			Username: key + "@devidp.example",
			ObjectID: fmt.Sprintf("0a1b2c3d-%04x-4000-8000-%012x", i+1, i+1),
			Roles:    []string{r.Value},
		})
	}
	return out
}

// userKey turns a role value into a key a flag or form can carry.
func userKey(role string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			return c
		case c >= 'A' && c <= 'Z':
			return c + 'a' - 'A'
		}
		return '-'
	}, role)
}

// DemoUsers are the demo users of the default role table (authz's
// roles.json): reader, writer, all and admin.
func DemoUsers() []User { return UsersFor(authz.DefaultTable()) }

// DemoUser returns the default demo user whose Key is key.
func DemoUser(key string) (User, bool) {
	u, ok := findUser(demoUsers(), key)
	u.Roles = slices.Clone(u.Roles) // the caller's own
	return u, ok
}

// demoUsers is DemoUsers made once: tests and dev mode look a demo user up
// for every token they mint, and making the list parses the default table.
var demoUsers = sync.OnceValue(DemoUsers)

func findUser(users []User, key string) (User, bool) {
	for _, u := range users {
		if u.Key == key {
			return u, true
		}
	}
	return User{}, false
}

// AppsFor makes one demo application per role of t that applications may
// hold, with secret as its client secret: an agent that calls the API as
// itself (client credentials). Ids follow the table's order, as UsersFor's.
func AppsFor(t authz.Table, secret string) []App {
	var out []App
	for i, r := range t.Roles {
		if r.Retired || !r.AllowsMember(authz.MemberApplication) {
			continue
		}
		out = append(out, App{
			ClientID:    fmt.Sprintf("0a1b2c3d-a%03x-4000-8000-%012x", i+1, i+1),
			ObjectID:    fmt.Sprintf("0a1b2c3d-b%03x-4000-8000-%012x", i+1, i+1),
			DisplayName: "Demo agent " + r.Value,
			Secret:      secret,
			Roles:       []string{r.Value},
		})
	}
	return out
}
