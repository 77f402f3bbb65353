package config

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// TestCheckOperatorSettings: every setting an operator chooses as an azd
// environment value is checked before provisioning as the handler checks it
// at start-up, and so is what azd cannot carry into the parameters file.
func TestCheckOperatorSettings(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"PUBLIC_BASE_URL":              "https://mcp.contoso.com/",
		"ENTRA_ALLOWED_TENANTS":        "72f988bf-86f1-41af-91ab-2d7cd011db47, 11111111-2222-3333-4444-555555555555",
		"AUTH_ALLOWED_RETURN_URLS":     "https://app.contoso.com/signed-in,http://127.0.0.1:8400/cb",
		"MCP_ALLOWED_ORIGINS":          "https://app.contoso.com, http://localhost:6274",
		"MCP_AUTH_MODE":                "entra",
		"OAUTH_EXTRA_REDIRECT_SCHEMES": "cursor",
		"ROLE_MAP":                     "Task.Read=tasks.read;Task.All=tasks.read+tasks.write",
		"MCP_UPSTREAMS":                testUpstreamsBase64,
		"TOOL_CALLS_PER_MINUTE":        "120",
		"TOOL_CALLS_BURST":             "20",
		"TASKS_MAX_BYTES_PER_TENANT":   "1048576",
		"CLIENT_IP_HEADER":             "X-Azure-SocketIP",
		"REFRESH_REUSE_GRACE":          "10s",
		"LOG_LEVEL":                    "debug",
	}
	bad := map[string]string{
		"PUBLIC_BASE_URL":              "http://mcp.contoso.com",
		"ENTRA_ALLOWED_TENANTS":        "contoso.com",
		"AUTH_ALLOWED_RETURN_URLS":     "http://app.contoso.com/cb",
		"MCP_ALLOWED_ORIGINS":          "*",
		"MCP_AUTH_MODE":                "oauth",
		"OAUTH_EXTRA_REDIRECT_SCHEMES": "https",
		"ROLE_MAP":                     "Task.Read=tasks.reed",
		"MCP_UPSTREAMS":                base64.StdEncoding.EncodeToString([]byte(`{"upstreams":[{"name":"devops","url":"https://devops.contoso.com/mcp","auth":{"mode":"none"},"tools":[{"match":"*","permission":"tasks.reed"}]}]}`)),
		"TOOL_CALLS_PER_MINUTE":        "1e3",
		"TOOL_CALLS_BURST":             "0",
		"TASKS_MAX_BYTES_PER_TENANT":   "10",
		"CLIENT_IP_HEADER":             "X Forwarded For",
		"REFRESH_REUSE_GRACE":          "1h",
		"LOG_LEVEL":                    "verbose",
	}
	env := func(m map[string]string) func(string) string {
		return testkit.Env(m)
	}

	for _, s := range Settings() {
		if !s.Operator {
			continue
		}
		if _, ok := good[s.Name]; !ok {
			t.Errorf("%s is an operator setting with no good value in this test", s.Name)
		}
		if _, ok := bad[s.Name]; !ok {
			t.Errorf("%s is an operator setting with no bad value in this test", s.Name)
		}
	}

	t.Run("accepts good values together", func(t *testing.T) {
		if err := CheckOperatorSettings(env(good)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("accepts nothing set", func(t *testing.T) {
		if err := CheckOperatorSettings(env(nil)); err != nil {
			t.Fatal(err)
		}
	})
	for name, v := range bad {
		t.Run("refuses a bad "+name, func(t *testing.T) {
			err := CheckOperatorSettings(env(map[string]string{name: v}))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: got %v, want an error naming it", name, v, err)
			}
		})
	}
	t.Run("names every bad value, not only the first", func(t *testing.T) {
		err := CheckOperatorSettings(env(bad))
		if err == nil {
			t.Fatal("no error")
		}
		for name := range bad {
			if !strings.Contains(err.Error(), name+":") {
				t.Errorf("the error does not name %s:\n%v", name, err)
			}
		}
	})
	for _, v := range []string{`{"Task.Read":["tasks.read"]}`, `Task.Read=tasks.read\`, "Task.Read=tasks.read\n"} {
		t.Run("refuses what azd cannot carry: "+strings.TrimSpace(v), func(t *testing.T) {
			err := CheckOperatorSettings(env(map[string]string{"ROLE_MAP": v}))
			if err == nil || !strings.Contains(err.Error(), "parameters.json") {
				t.Fatalf("ROLE_MAP=%q: got %v, want the parameters-file error", v, err)
			}
		})
	}
}
