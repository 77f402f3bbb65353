package authz

import (
	"fmt"
	"math/bits"
	"slices"
)

// Set is a set of permissions, one bit each, as a Policy assigns them. A
// caller's set is a plain value so that it can key caches, such as the
// pre-encoded tools/list answers.
type Set uint64

// MaxPermissions is how many permissions one Policy can tell apart.
const MaxPermissions = 64

// Allows reports whether s holds every permission in need. An empty need
// is never allowed: default deny.
func (s Set) Allows(need Set) bool { return need != 0 && s&need == need }

// Policy turns a caller's App Roles into the permissions they hold. It is
// built once, at start, and read-only afterwards.
type Policy struct {
	bits  map[string]Set // permission -> its bit
	names []string       // bit index -> permission
	user  map[string]Set // role -> what it grants a user
	app   map[string]Set // role -> what it grants an app-only caller
}

// NewPolicy assigns a bit to every permission the table grants and every
// one in declared (what tools and other components need, which a table
// replaced by ROLE_MAP may no longer grant), and maps each role to its set.
func NewPolicy(t Table, declared ...string) (*Policy, error) {
	names := append(t.Permissions(), declared...)
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > MaxPermissions {
		return nil, fmt.Errorf("authz: %d permissions, at most %d", len(names), MaxPermissions)
	}
	p := &Policy{bits: make(map[string]Set, len(names)), names: names,
		user: map[string]Set{}, app: map[string]Set{}}
	for i, n := range names {
		if !permissionName.MatchString(n) {
			return nil, fmt.Errorf("authz: permission %q: want lower-case words joined by '.', '-' or '_', such as tasks.read", n)
		}
		p.bits[n] = 1 << i
	}
	for _, r := range t.Roles {
		if r.Retired {
			continue
		}
		s, err := p.Need(r.Permissions)
		if err != nil {
			return nil, err
		}
		if r.AllowsMember(MemberUser) {
			p.user[r.Value] = s
		}
		if r.AllowsMember(MemberApplication) {
			p.app[r.Value] = s
		}
	}
	return p, nil
}

// Need is the set of the named permissions; a name the policy does not
// know is an error.
func (p *Policy) Need(names []string) (Set, error) {
	var s Set
	for _, n := range names {
		b, ok := p.bits[n]
		if !ok {
			return 0, fmt.Errorf("authz: unknown permission %q", n)
		}
		s |= b
	}
	return s, nil
}

// Grants is what a caller with these roles holds: SignedIn and what each
// role grants to its kind of caller (app-only callers count only roles the
// table marks for applications, people only those marked for users).
// Unknown role values add nothing.
func (p *Policy) Grants(roles []string, app bool) Set {
	s := p.bits[SignedIn]
	m := p.user
	if app {
		m = p.app
	}
	for _, r := range roles {
		s |= m[r]
	}
	return s
}

// Granted reports whether people or apps can hold every permission in
// need: signed-in, which every caller holds, and what their roles grant.
func (p *Policy) Granted(need Set) bool {
	for _, m := range []map[string]Set{p.user, p.app} {
		all := p.bits[SignedIn]
		for _, s := range m {
			all |= s
		}
		if all.Allows(need) {
			return true
		}
	}
	return false
}

// Names lists the permissions in s, sorted.
func (p *Policy) Names(s Set) []string {
	out := []string{}
	for s != 0 {
		i := bits.TrailingZeros64(uint64(s))
		out = append(out, p.names[i])
		s &^= 1 << i
	}
	return out
}
