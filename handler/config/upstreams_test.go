package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

const testUpstreamsJSON = `{"upstreams":[
  {"name":"devops","url":"https://devops.contoso.com/mcp",
   "auth":{"mode":"on-behalf-of","scopes":["api://11111111-2222-3333-4444-555555555555/Items.Read"]},
   "tools":[{"match":"list_*","permission":"tasks.read"},{"match":"create_item","permission":"tasks.write"}],
   "timeout":"5s","maxConcurrent":4},
  {"name":"search","url":"http://10.0.0.4:8080/mcp","auth":{"mode":"none"},
   "tools":[{"match":"*","permission":"signed-in"}]}
]}`

var testUpstreamsBase64 = base64.StdEncoding.EncodeToString([]byte(testUpstreamsJSON))

func TestParseUpstreams(t *testing.T) {
	t.Parallel()
	roles := authz.DefaultTable()

	t.Run("reads entries and fills defaults", func(t *testing.T) {
		ups, err := ParseUpstreams([]byte(testUpstreamsJSON), roles)
		if err != nil {
			t.Fatal(err)
		}
		if len(ups) != 2 || ups[0].Name != "devops" || ups[1].Name != "search" {
			t.Fatalf("got %+v", ups)
		}
		d := ups[0]
		if time.Duration(d.Timeout) != 5*time.Second || d.MaxConcurrent != 4 {
			t.Errorf("explicit values lost: %+v", d)
		}
		if time.Duration(d.ListTTL) != DefaultUpstreamListTTL || d.MaxResponseBytes != DefaultUpstreamMaxResponse {
			t.Errorf("defaults not filled: %+v", d)
		}
		if time.Duration(ups[1].Timeout) != DefaultUpstreamTimeout || ups[1].MaxConcurrent != DefaultUpstreamMaxConcurrent {
			t.Errorf("defaults not filled: %+v", ups[1])
		}
	})

	t.Run("an empty list is no upstreams", func(t *testing.T) {
		ups, err := ParseUpstreams([]byte(`{"upstreams":[]}`), roles)
		if err != nil || len(ups) != 0 {
			t.Fatalf("got %v, %v", ups, err)
		}
	})

	entry := func(fields string) string {
		return `{"upstreams":[{"name":"x","url":"https://x.contoso.com/mcp","auth":{"mode":"none"},"tools":[{"match":"*","permission":"tasks.read"}]` + fields + `}]}`
	}
	bad := map[string]string{
		"unknown field":                `{"upstreams":[{"name":"x","url":"https://x.contoso.com/mcp","auth":{"mode":"none"},"tools":[{"match":"*","permission":"tasks.read"}],"tool":[]}]}`,
		"trailing text":                `{"upstreams":[]} {}`,
		"upper-case name":              strings.Replace(entry(""), `"name":"x"`, `"name":"DevOps"`, 1),
		"name with a dot":              strings.Replace(entry(""), `"name":"x"`, `"name":"dev.ops"`, 1),
		"same name twice":              `{"upstreams":[` + entry("")[14:len(entry(""))-2] + `,` + entry("")[14:len(entry(""))-2] + `]}`,
		"no tool rules":                `{"upstreams":[{"name":"x","url":"https://x.contoso.com/mcp","auth":{"mode":"none"}}]}`,
		"unknown permission":           strings.Replace(entry(""), "tasks.read", "tasks.reed", 1),
		"tool pattern with a space":    strings.Replace(entry(""), `"match":"*"`, `"match":"list items"`, 1),
		"tool name too long":           strings.Replace(entry(""), `"match":"*"`, `"match":"`+strings.Repeat("a", 127)+`"`, 1),
		"unknown mode":                 strings.Replace(entry(""), `"mode":"none"`, `"mode":"passthrough"`, 1),
		"on-behalf-of without scopes":  strings.Replace(entry(""), `"mode":"none"`, `"mode":"on-behalf-of"`, 1),
		"scopes of two resources":      strings.Replace(entry(""), `"mode":"none"`, `"mode":"on-behalf-of","scopes":["api://a/Read","api://b/Read"]`, 1),
		"managed identity not default": strings.Replace(entry(""), `"mode":"none"`, `"mode":"managed-identity","scopes":["api://a/Read"]`, 1),
		"header without secret":        strings.Replace(entry(""), `"mode":"none"`, `"mode":"header","header":"X-Api-Key"`, 1),
		"header Authorization":         strings.Replace(entry(""), `"mode":"none"`, `"mode":"header","header":"Authorization","secret":"devops-key"`, 1),
		"credential over http":         strings.Replace(strings.Replace(entry(""), `"mode":"none"`, `"mode":"header","header":"X-Api-Key","secret":"k"`, 1), "https://x.contoso.com", "http://x.contoso.com", 1),
		"ftp url":                      strings.Replace(entry(""), "https://", "ftp://", 1),
		"url with user info":           strings.Replace(entry(""), "https://", "https://me:pw@", 1),
		"negative timeout":             entry(`,"timeout":"-1s"`),
		"timeout beyond an execution":  entry(`,"timeout":"10m"`),
		"timeout not a string":         entry(`,"timeout":30`),
		"zero-sized concurrency cap":   entry(`,"maxConcurrent":-1`),
		"huge response cap":            entry(`,"maxResponseBytes":1073741824`),
		"resource rule unknown perm":   entry(`,"resources":[{"match":"x://*","permission":"nope"}]`),
		"api permissions on none":      strings.Replace(entry(""), `"mode":"none"`, `"mode":"none","apiPermissions":{"resourceAppId":"11111111-2222-3333-4444-555555555555","scopeIds":["11111111-2222-3333-4444-555555555556"]}`, 1),
		"api permissions not GUIDs":    strings.Replace(entry(""), `"mode":"none"`, `"mode":"on-behalf-of","scopes":["api://a/Read"],"apiPermissions":{"resourceAppId":"devops","scopeIds":["read"]}`, 1),
		"api permissions without ids":  strings.Replace(entry(""), `"mode":"none"`, `"mode":"on-behalf-of","scopes":["api://a/Read"],"apiPermissions":{"resourceAppId":"11111111-2222-3333-4444-555555555555","scopeIds":[]}`, 1),
	}
	for name, text := range bad {
		t.Run("refuses "+name, func(t *testing.T) {
			_, err := ParseUpstreams([]byte(text), roles)
			if err == nil {
				t.Fatalf("accepted %s", text)
			}
			t.Log(err)
		})
	}

	t.Run("one API's permissions in one entry", func(t *testing.T) {
		perms := `"apiPermissions":{"resourceAppId":"11111111-2222-3333-4444-555555555555","scopeIds":["11111111-2222-3333-4444-555555555556"]}`
		one := func(name string) string {
			return `{"name":"` + name + `","url":"https://x.contoso.com/mcp","auth":{"mode":"on-behalf-of","scopes":["api://a/Read"],` + perms + `},"tools":[{"match":"*","permission":"tasks.read"}]}`
		}
		if _, err := ParseUpstreams([]byte(`{"upstreams":[`+one("a")+`]}`), roles); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseUpstreams([]byte(`{"upstreams":[`+one("a")+`,`+one("b")+`]}`), roles); err == nil {
			t.Fatal("two entries for one API accepted")
		}
	})
	t.Run("allows http on loopback with a credential", func(t *testing.T) {
		text := strings.Replace(strings.Replace(entry(""), `"mode":"none"`, `"mode":"on-behalf-of","scopes":["api://demo/Notes.Read"]`, 1), "https://x.contoso.com", "http://127.0.0.1:9000", 1)
		if _, err := ParseUpstreams([]byte(text), roles); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPermission(t *testing.T) {
	t.Parallel()
	rules := []UpstreamRule{
		{Match: "delete_*", Permission: "server.admin"},
		{Match: "list_items", Permission: "tasks.read"},
		{Match: "*_item*", Permission: "tasks.write"},
	}
	cases := []struct {
		name, want string
		ok         bool
	}{
		{"list_items", "tasks.read", true},
		{"delete_item", "server.admin", true}, // the first rule wins
		{"create_item", "tasks.write", true},
		{"create_items_fast", "tasks.write", true},
		{"list_projects", "", false}, // no rule: never shown
		{"", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Permission(rules, c.name)
			if got != c.want || ok != c.ok {
				t.Fatalf("Permission(%q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
			}
		})
	}
	t.Run("patterns", func(t *testing.T) {
		for _, c := range []struct {
			pattern, name string
			want          bool
		}{
			{"*", "anything", true}, {"a*b", "ab", true}, {"a*b", "aXXb", true}, {"a*b", "aXXbc", false},
			{"*b*", "abc", true}, {"ab*ab", "ab", false}, {"exact", "exact", true}, {"exact", "exactly", false},
		} {
			t.Run(c.pattern+" against "+c.name, func(t *testing.T) {
				if got := matchPattern(c.pattern, c.name); got != c.want {
					t.Errorf("matchPattern(%q, %q) = %v", c.pattern, c.name, got)
				}
			})
		}
	})
}

func TestLoadUpstreams(t *testing.T) {
	roles := authz.DefaultTable()

	t.Run("JSON and base64 say the same", func(t *testing.T) {
		a, err := loadUpstreams(testkit.Env(map[string]string{"MCP_UPSTREAMS": testUpstreamsJSON}), roles)
		if err != nil {
			t.Fatal(err)
		}
		b, err := loadUpstreams(testkit.Env(map[string]string{"MCP_UPSTREAMS": testUpstreamsBase64}), roles)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != 2 || len(b) != 2 || a[0].URL != b[0].URL {
			t.Fatalf("got %v and %v", a, b)
		}
	})
	t.Run("refuses text that is neither", func(t *testing.T) {
		_, err := loadUpstreams(testkit.Env(map[string]string{"MCP_UPSTREAMS": "devops=https://x"}), roles)
		if err == nil || !strings.Contains(err.Error(), "MCP_UPSTREAMS") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unset reads the shipped file from the working directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, UpstreamsFile), []byte(testUpstreamsJSON), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Chdir(dir)
		ups, err := loadUpstreams(testkit.Env(nil), roles)
		if err != nil || len(ups) != 2 {
			t.Fatalf("got %v, %v", ups, err)
		}
	})
	t.Run("unset and no file is none", func(t *testing.T) {
		t.Chdir(t.TempDir())
		ups, err := loadUpstreams(testkit.Env(nil), roles)
		if err != nil || ups != nil {
			t.Fatalf("got %v, %v", ups, err)
		}
	})
}

// TestShippedUpstreams: the file the package ships parses.
func TestShippedUpstreams(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "infra", UpstreamsFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseUpstreams(b, authz.DefaultTable()); err != nil {
		t.Fatal(err)
	}
}
