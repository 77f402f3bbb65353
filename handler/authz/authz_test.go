package authz

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestDefaultTable: roles.json parses, and each role has a demo user.
func TestDefaultTable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("roles.json")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ParseTable(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tb.Roles {
		if r.DemoUser == nil {
			t.Errorf("role %s has no demo user", r.Value)
		}
	}
	if got := DefaultTable().Permissions(); !slices.Equal(got, []string{"server.admin", SignedIn, "tasks.read", "tasks.write"}) {
		t.Errorf("permissions %v", got)
	}
}

func TestParseTableRefuses(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"no roles":           `{"roles":[]}`,
		"unknown field":      `{"roles":[{"value":"A","permissions":["a"],"members":["User"],"colour":"red"}]}`,
		"role twice":         `{"roles":[{"value":"A","permissions":["a"],"members":["User"]},{"value":"A","permissions":["b"],"members":["User"]}]}`,
		"no permission":      `{"roles":[{"value":"A","permissions":[],"members":["User"]}]}`,
		"bad permission":     `{"roles":[{"value":"A","permissions":["Tasks Read"],"members":["User"]}]}`,
		"no members":         `{"roles":[{"value":"A","permissions":["a"]}]}`,
		"bad member":         `{"roles":[{"value":"A","permissions":["a"],"members":["Group"]}]}`,
		"bad value":          `{"roles":[{"value":"A B","permissions":["a"],"members":["User"]}]}`,
		"demo user twice":    `{"roles":[{"value":"A","permissions":["a"],"members":["User"],"demoUser":{"key":"x","name":"X"}},{"value":"B","permissions":["a"],"members":["User"],"demoUser":{"key":"x","name":"Y"}}]}`,
		"trailing data":      `{"roles":[{"value":"A","permissions":["a"],"members":["User"]}]} {}`,
		"not a table at all": `[]`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTable([]byte(text)); err == nil {
				t.Fatalf("ParseTable(%s) passed", text)
			}
		})
	}
}

func TestWithRoleMap(t *testing.T) {
	t.Parallel()
	base := DefaultTable()
	want := map[string][]string{"Task.Read": {"tasks.read"}, "Task.All": {"tasks.read", "tasks.write"}, "Ops": {"server.admin", SignedIn}}
	for name, text := range map[string]string{
		"json":                  `{"Task.Read":["tasks.read"],"Task.All":["tasks.read","tasks.write"],"Ops":["server.admin","signed-in"]}`,
		"quote-free":            `Task.Read=tasks.read;Task.All=tasks.read+tasks.write;Ops=server.admin+signed-in`,
		"quote-free with space": ` Task.Read = tasks.read ; Task.All=tasks.read + tasks.write;Ops=server.admin+signed-in; `,
	} {
		t.Run("accepts "+name, func(t *testing.T) {
			got, err := base.WithRoleMap(text)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Roles) != len(want) {
				t.Fatalf("roles %+v", got.Roles)
			}
			for value, perms := range want {
				r, ok := got.Role(value)
				if !ok || !slices.Equal(r.Permissions, perms) {
					t.Errorf("role %s: %+v, want %v", value, r, perms)
				}
			}
			if r, _ := got.Role("Task.Read"); r.Description == "" || r.DemoUser == nil {
				t.Errorf("Task.Read lost what the file says of it: %+v", r)
			}
			if r, _ := got.Role("Ops"); !slices.Equal(r.Members, []string{MemberUser}) {
				t.Errorf("a role the file lacks: members %v, want users only", r.Members)
			}
		})
	}
	for name, text := range map[string]string{
		"empty":                         ``,
		"empty json":                    `{}`,
		"unknown permission":            `Task.Read=tasks.reed`,
		"unknown permission in json":    `{"Task.Read":["tasks.reed"]}`,
		"the old need names":            `Task.Read=read`,
		"no equals":                     `Task.Read`,
		"empty role":                    `=tasks.read`,
		"empty permission":              `Task.Read=`,
		"dangling plus":                 `Task.Read=tasks.read+`,
		"role twice":                    `Task.Read=tasks.read;Task.Read=tasks.write`,
		"role twice in json":            `{"Task.Read":["tasks.read"],"Task.Read":["server.admin"]}`,
		"json trailing data":            `{"Task.Read":["tasks.read"]} {}`,
		"json of the wrong shape":       `{"Task.Read":"tasks.read"}`,
		"only separators":               `;;`,
		"a role value with a space":     `Task Read=tasks.read`,
		"a role with no permission":     `{"Task.Read":[]}`,
		"a permission named in capital": `Task.Read=Tasks.Read`,
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			if got, err := base.WithRoleMap(text); err == nil {
				t.Fatalf("WithRoleMap(%q) = %+v, want an error", text, got)
			}
		})
	}
	t.Run("the error names the known permissions", func(t *testing.T) {
		_, err := base.WithRoleMap("Task.Read=read")
		if err == nil || !strings.Contains(err.Error(), "tasks.read") {
			t.Fatalf("%v", err)
		}
	})
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	tb, err := ParseTable([]byte(`{"roles":[
		{"value":"Task.Read","permissions":["tasks.read"],"members":["User","Application"]},
		{"value":"Task.All","permissions":["tasks.read","tasks.write"],"members":["User"]},
		{"value":"Agent.Run","permissions":["agent.run"],"members":["Application"]},
		{"value":"Old.Role","permissions":["tasks.write"],"members":["User","Application"],"retired":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPolicy(tb, "deploy.read")
	if err != nil {
		t.Fatal(err)
	}
	need := func(names ...string) Set {
		s, err := p.Need(names)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("unknown and retired roles add nothing", func(t *testing.T) {
		if g := p.Grants([]string{"Task.Admin", "task.read", "Old.Role"}, false); g != need(SignedIn) {
			t.Fatalf("grants %v", p.Names(g))
		}
	})
	t.Run("an empty need is never allowed", func(t *testing.T) {
		if Set(^uint64(0)).Allows(0) {
			t.Fatal("every permission allows the empty need")
		}
	})
	t.Run("every permission of a need is required", func(t *testing.T) {
		if p.Grants([]string{"Task.Read"}, false).Allows(need("tasks.read", "tasks.write")) {
			t.Fatal("Task.Read allows read and write")
		}
		if !p.Grants([]string{"Task.All"}, false).Allows(need("tasks.read", "tasks.write")) {
			t.Fatal("Task.All does not allow read and write")
		}
	})
	t.Run("apps count only roles for applications", func(t *testing.T) {
		if got := p.Names(p.Grants([]string{"Task.Read", "Task.All", "Agent.Run"}, true)); !slices.Equal(got, []string{"agent.run", SignedIn, "tasks.read"}) {
			t.Errorf("app grants %v", got)
		}
		if got := p.Names(p.Grants([]string{"Agent.Run"}, false)); !slices.Equal(got, []string{SignedIn}) {
			t.Errorf("a user holding an application-only role: %v", got)
		}
	})
	t.Run("declared but granted by no role", func(t *testing.T) {
		if p.Granted(need("deploy.read")) {
			t.Error("deploy.read counted as granted")
		}
		if !p.Granted(need("tasks.write")) || !p.Granted(need("agent.run")) {
			t.Error("a granted permission counted as not granted")
		}
	})
	t.Run("signed-in is held by every caller, whatever the roles", func(t *testing.T) {
		// mcpserver warns at start-up about tools nobody can see; whoami
		// needs only signed-in and must not be among them.
		if !p.Granted(need(SignedIn)) {
			t.Error("signed-in counted as granted by no role")
		}
		if p.Granted(need(SignedIn, "deploy.read")) {
			t.Error("signed-in with a permission no role grants counted as granted")
		}
	})
	t.Run("unknown permission", func(t *testing.T) {
		if _, err := p.Need([]string{"tasks.reed"}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("too many permissions", func(t *testing.T) {
		var many []string
		for i := range MaxPermissions {
			many = append(many, "p"+strings.Repeat("x", i))
		}
		if _, err := NewPolicy(tb, many...); err == nil {
			t.Fatal("no error")
		}
	})
}
