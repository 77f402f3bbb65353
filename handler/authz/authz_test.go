package authz

import (
	"testing"
)

func TestParseRoleMap(t *testing.T) {
	t.Parallel()
	want := RoleMap{"Task.Read": Read, "Task.All": Read | Write, "Ops": Admin | SignedIn}
	accepted := map[string]string{
		"json":                  `{"Task.Read":["read"],"Task.All":["read","write"],"Ops":["admin","signed-in"]}`,
		"quote-free":            `Task.Read=read;Task.All=read+write;Ops=admin+signed-in`,
		"quote-free with space": ` Task.Read = read ; Task.All=read + write;Ops=admin+signed-in; `,
	}
	for name, text := range accepted {
		t.Run("accepts "+name, func(t *testing.T) {
			got, err := ParseRoleMap(text)
			if err != nil {
				t.Fatalf("ParseRoleMap(%q): %v", text, err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			for role, need := range want {
				if got[role] != need {
					t.Errorf("role %s: got %v, want %v", role, got[role], need)
				}
			}
		})
	}

	refused := map[string]string{
		"empty":                   ``,
		"empty json":              `{}`,
		"unknown need":            `Task.Read=reed`,
		"unknown need in json":    `{"Task.Read":["reed"]}`,
		"no equals":               `Task.Read`,
		"empty role":              `=read`,
		"empty need":              `Task.Read=`,
		"dangling plus":           `Task.Read=read+`,
		"role twice":              `Task.Read=read;Task.Read=write`,
		"json trailing data":      `{"Task.Read":["read"]} {}`,
		"json of the wrong shape": `{"Task.Read":"read"}`,
		"only separators":         `;;`,
	}
	for name, text := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if m, err := ParseRoleMap(text); err == nil {
				t.Fatalf("ParseRoleMap(%q) = %v, want an error", text, m)
			}
		})
	}
}

func TestGrantsAreDefaultDeny(t *testing.T) {
	t.Parallel()
	m := DefaultRoleMap()
	t.Run("unknown roles add nothing", func(t *testing.T) {
		if g := m.Grants([]string{"Task.Admin", "task.read"}); g != SignedIn {
			t.Fatalf("grants = %v, want signed-in only", g)
		}
	})
	t.Run("a zero need is never allowed", func(t *testing.T) {
		if All.Allows(0) {
			t.Fatal("All allows the zero need")
		}
	})
	t.Run("every bit of a need is required", func(t *testing.T) {
		if m.Grants([]string{"Task.Read"}).Allows(Read | Write) {
			t.Fatal("Task.Read allows read+write")
		}
		if !m.Grants([]string{"Task.All"}).Allows(Read | Write) {
			t.Fatal("Task.All does not allow read+write")
		}
	})
}
