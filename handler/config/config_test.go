package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSampleSettingsLoad keeps local.settings.sample.json true: with its
// placeholders filled in (and the port the host adds), it loads.
func TestSampleSettingsLoad(t *testing.T) {
	b, err := os.ReadFile("../../local.settings.sample.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Values map[string]string
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Values["FUNCTIONS_WORKER_RUNTIME"] != "Custom" {
		t.Errorf("FUNCTIONS_WORKER_RUNTIME = %q, want Custom", s.Values["FUNCTIONS_WORKER_RUNTIME"])
	}
	env := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "40123"}
	for k, v := range s.Values {
		env[k] = v
	}
	env["ENTRA_TENANT_ID"] = "11111111-1111-4111-8111-111111111111"
	env["ENTRA_CLIENT_ID"] = "22222222-2222-4222-8222-222222222222"
	env["ENTRA_CLIENT_SECRET"] = "secret"
	env["TOKEN_SEALING_KEYS"] = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w="
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicBaseURL != "http://localhost:7071" || c.Entra.AuthorityHost != DefaultAuthorityHost {
		t.Errorf("loaded %+v", c)
	}
	for k := range s.Values {
		if strings.HasPrefix(k, "AZURE_CLIENT") || k == "AZURE_TENANT_ID" {
			t.Errorf("%s in the sample: azidentity reads it for the managed identity", k)
		}
	}
}

func TestDefaultsAndDerivedValues(t *testing.T) {
	env := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "40123",
		"WEBSITE_HOSTNAME":             "myapp.azurewebsites.net",
		"ENTRA_TENANT_ID":              "AAAAAAAA-1111-4111-8111-111111111111",
		"ENTRA_CLIENT_ID":              "22222222-2222-4222-8222-222222222222",
		"REDIS_URL":                    "rediss://cache.example:10000/0",
		"ENTRA_ALLOWED_TENANTS":        "aaaaaaaa-1111-4111-8111-111111111111, 33333333-3333-4333-8333-333333333333",
		"ENTRA_CLIENT_SECRET":          "secret",
		"TOKEN_SEALING_KEYS":           "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w=",
		"AUTH_ALLOWED_RETURN_URLS":     "https://app.contoso.com/signed-in, http://127.0.0.1:8400/cb",
	}
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicBaseURL != "https://myapp.azurewebsites.net" {
		t.Errorf("base %q", c.PublicBaseURL)
	}
	e := c.Entra
	if e.TenantID != "aaaaaaaa-1111-4111-8111-111111111111" || e.TokenVersion != 2 ||
		e.AppIDURI != "api://22222222-2222-4222-8222-222222222222" || len(e.AllowedTenants) != 2 {
		t.Errorf("entra %+v", e)
	}
	if len(c.ReturnURLs) != 2 || c.SealingKeys == nil {
		t.Errorf("return URLs %v, keys %v", c.ReturnURLs, c.SealingKeys)
	}
	if e.Issuer() != "https://login.microsoftonline.com/aaaaaaaa-1111-4111-8111-111111111111/v2.0" ||
		e.Scope() != "api://22222222-2222-4222-8222-222222222222/access_as_user" {
		t.Errorf("issuer %q scope %q", e.Issuer(), e.Scope())
	}
	// PUBLIC_BASE_URL wins over the platform's host name.
	env["PUBLIC_BASE_URL"] = "https://mcp.contoso.com/"
	if c, err = Load(func(k string) string { return env[k] }); err != nil || c.PublicBaseURL != "https://mcp.contoso.com" {
		t.Errorf("PUBLIC_BASE_URL: %v %v", c, err)
	}
	env["ENTRA_AUTHORITY_HOST"] = "http://127.0.0.1:8443"
	if c, err = Load(func(k string) string { return env[k] }); err != nil || c.Entra.AuthorityHost != "http://127.0.0.1:8443" {
		t.Errorf("loopback http authority: %v %v", c, err)
	}
}

// TestKeyVaultModeNeedsNoSecretsInTheEnvironment: with KEY_VAULT_URI the
// secret and the sealing keys come from Key Vault at start-up.
func TestKeyVaultModeNeedsNoSecretsInTheEnvironment(t *testing.T) {
	env := azureEnv()
	env["REDIS_USERNAME"] = "44444444-4444-4444-8444-44444444AAAA"
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyVault.SealingKeyName != DefaultSealingKeyName || c.KeyVault.ClientSecretName != DefaultClientSecretName ||
		c.SealingKeys != nil || c.ClientSecret != "" || c.ClientAuth != "managed-identity" || c.RedisAuth != "entra" ||
		c.RedisUsername != "44444444-4444-4444-8444-44444444aaaa" ||
		c.GraphBaseURL != DefaultGraphBaseURL || c.GraphScope != DefaultGraphScope {
		t.Errorf("loaded %+v", c)
	}
}

// TestSettingsListIsComplete keeps Settings true: every getenv("NAME") the
// production code makes is listed, and every listed setting is read.
func TestSettingsListIsComplete(t *testing.T) {
	listed := map[string]bool{}
	for _, s := range Settings() {
		if listed[s.Name] {
			t.Errorf("%s listed twice", s.Name)
		}
		listed[s.Name] = true
	}
	read := map[string]bool{}
	literal := regexp.MustCompile(`(?:getenv|Getenv)\("([A-Z][A-Z0-9_]+)"\)|Env[A-Za-z]* += "([A-Z][A-Z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Test helpers, dev mode and stand-ins are not production.
		if d.IsDir() && (d.Name() == "devmode" || d.Name() == "devidp" || d.Name() == "azuretest" || d.Name() == "storetest" || d.Name() == "stage" ||
			d.Name() == "funchost" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			name := m[1] + m[2]
			// secrets' own names are read through config; its constants
			// name the settings in its errors.
			if strings.Contains(path, "secrets") {
				continue
			}
			read[name] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range read {
		if !listed[name] {
			t.Errorf("%s is read by the handler but not in Settings()", name)
		}
	}
	for name := range listed {
		if !read[name] {
			t.Errorf("%s is in Settings() but nothing reads it", name)
		}
	}
}

// TestSettingKindsDoNotOverlap: a setting the deployment fills in is not
// also the operator's to choose (two sources for one value), and nobody
// configures what the platform sets.
func TestSettingKindsDoNotOverlap(t *testing.T) {
	for _, s := range Settings() {
		if s.Azure && s.Operator {
			t.Errorf("%s is marked both Azure (set from the deployment) and Operator (an azd environment value)", s.Name)
		}
		if s.Platform && (s.Azure || s.Operator || s.Local) {
			t.Errorf("%s is set by the platform and also marked configurable", s.Name)
		}
	}
}

// TestSampleSettingsAreTheLocalOnes: local.settings.sample.json lists the
// settings marked Local, plus the Functions host's own.
func TestSampleSettingsAreTheLocalOnes(t *testing.T) {
	b, err := os.ReadFile("../../local.settings.sample.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ Values map[string]string }
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	for _, st := range Settings() {
		if _, ok := s.Values[st.Name]; ok != st.Local {
			t.Errorf("%s: in the sample %v, marked Local %v", st.Name, ok, st.Local)
		}
	}
	own := map[string]bool{"FUNCTIONS_WORKER_RUNTIME": true, "AzureWebJobsStorage": true}
	known := map[string]bool{}
	for _, st := range Settings() {
		known[st.Name] = true
	}
	for k := range s.Values {
		if !known[k] && !own[k] {
			t.Errorf("the sample sets %s, which the handler does not read", k)
		}
	}
}

func TestAuthMode(t *testing.T) {
	for in, want := range map[string]string{"": AuthModeProxy, "proxy": AuthModeProxy, " entra ": AuthModeEntra} {
		if got, err := ParseAuthMode(in); err != nil || got != want {
			t.Errorf("ParseAuthMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Entra", "oauth", "none"} {
		if _, err := ParseAuthMode(in); err == nil || !strings.HasPrefix(err.Error(), "MCP_AUTH_MODE: ") {
			t.Errorf("ParseAuthMode(%q) = %v, want an error naming MCP_AUTH_MODE", in, err)
		}
	}
}

func TestRedisUsernameNeedsEntraAndAGUID(t *testing.T) {
	for _, tc := range []struct{ auth, user string }{{"entra", "default"}, {"entra", "not-a-guid"}, {"", "44444444-4444-4444-8444-444444444444"}} {
		env := azureEnv()
		env["REDIS_AUTH"], env["REDIS_USERNAME"] = tc.auth, tc.user
		if _, err := Load(func(k string) string { return env[k] }); err == nil || !strings.HasPrefix(err.Error(), "REDIS_USERNAME: ") {
			t.Errorf("REDIS_AUTH=%q REDIS_USERNAME=%q: %v, want an error naming REDIS_USERNAME", tc.auth, tc.user, err)
		}
	}
}

// azureEnv is what infra/ sets on the function app (secrets in Key Vault,
// Redis with the managed identity), as a fresh map.
func azureEnv() map[string]string {
	return map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "40123",
		"WEBSITE_HOSTNAME":             "myapp.azurewebsites.net",
		"ENTRA_TENANT_ID":              "aaaaaaaa-1111-4111-8111-111111111111",
		"ENTRA_CLIENT_ID":              "22222222-2222-4222-8222-222222222222",
		"REDIS_URL":                    "rediss://cache.example:10000/0",
		"REDIS_AUTH":                   "entra",
		"KEY_VAULT_URI":                "https://kv-abc.vault.azure.net/",
		"ENTRA_CLIENT_AUTH":            "managed-identity",
	}
}

// TestKeyVaultSettings: config is the one reader of the KEY_VAULT_*
// settings, and refuses what could not be a vault or a secret name.
func TestKeyVaultSettings(t *testing.T) {
	load := func(k, v string) error {
		env := azureEnv()
		env[k] = v
		_, err := Load(func(k string) string { return env[k] })
		return err
	}
	for _, tc := range []struct{ setting, value string }{
		{"KEY_VAULT_URI", "http://kv.vault.azure.net"},
		{"KEY_VAULT_URI", "https://kv.vault.azure.net/a"},
		{"KEY_VAULT_URI", "https://user@kv.vault.azure.net"},
		{"KEY_VAULT_URI", "https://kv.vault.azure.net/?x=1"},
		{"KEY_VAULT_URI", "https://kv.vault.azure.net/#x"},
		{"KEY_VAULT_CLIENT_SECRET_NAME", "a_b"},
		{"KEY_VAULT_SEALING_KEY_NAME", "a/b"},
	} {
		if err := load(tc.setting, tc.value); err == nil || !strings.HasPrefix(err.Error(), tc.setting+": ") {
			t.Errorf("%s=%s: %v, want an error naming the setting", tc.setting, tc.value, err)
		}
	}
	if err := load("KEY_VAULT_SEALING_KEY_NAME", "keys-2"); err != nil {
		t.Errorf("a good secret name: %v", err)
	}
}

func TestRedirectSchemes(t *testing.T) {
	got, err := ParseRedirectSchemes(" cursor, com.example.app ,")
	if err != nil || strings.Join(got, " ") != "cursor com.example.app" {
		t.Errorf("ParseRedirectSchemes = %v, %v", got, err)
	}
	for _, in := range []string{"https", "http", "Cursor", "cursor:", "1app", "a b"} {
		if _, err := ParseRedirectSchemes(in); err == nil || !strings.HasPrefix(err.Error(), "OAUTH_EXTRA_REDIRECT_SCHEMES: ") {
			t.Errorf("ParseRedirectSchemes(%q) = %v, want an error naming the setting", in, err)
		}
	}
}

func TestClientIPAndReuseGrace(t *testing.T) {
	load := func(extra map[string]string) (*Config, error) {
		env := azureEnv()
		for k, v := range extra {
			env[k] = v
		}
		return Load(func(k string) string { return env[k] })
	}
	c, err := load(nil)
	if err != nil || c.ClientIP.Header != "X-Forwarded-For" || c.ReuseGrace != 0 {
		t.Fatalf("defaults: %+v %v %v", c.ClientIP, c.ReuseGrace, err)
	}
	for in, want := range map[string]string{"none": "", "X-Azure-SocketIP": "X-Azure-Socketip"} {
		if c, err := load(map[string]string{"CLIENT_IP_HEADER": in}); err != nil || c.ClientIP.Header != want {
			t.Errorf("CLIENT_IP_HEADER=%s: %+v %v", in, c, err)
		}
	}
	if _, err := load(map[string]string{"CLIENT_IP_HEADER": "x forwarded"}); err == nil || !strings.HasPrefix(err.Error(), "CLIENT_IP_HEADER: ") {
		t.Errorf("a bad header name: %v", err)
	}
	for in, want := range map[string]time.Duration{"45s": 45 * time.Second, "0": -1, "0s": -1, "5m": 5 * time.Minute} {
		if c, err := load(map[string]string{"REFRESH_REUSE_GRACE": in}); err != nil || c.ReuseGrace != want {
			t.Errorf("REFRESH_REUSE_GRACE=%s: %v %v, want %v", in, c.ReuseGrace, err, want)
		}
	}
	for _, bad := range []string{"-1s", "10m", "soon", "30"} {
		if _, err := load(map[string]string{"REFRESH_REUSE_GRACE": bad}); err == nil || !strings.HasPrefix(err.Error(), "REFRESH_REUSE_GRACE: ") {
			t.Errorf("REFRESH_REUSE_GRACE=%s: %v", bad, err)
		}
	}
}
func TestLimitSettings(t *testing.T) {
	t.Run("unset are the defaults", func(t *testing.T) {
		env := azureEnv()
		c, err := Load(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if c.ToolCallsPerMinute != 0 || c.ToolCallsBurst != 0 || c.TaskBytesPerTenant != 0 {
			t.Errorf("unset limits loaded as %d, %d, %d; want 0 (the defaults)", c.ToolCallsPerMinute, c.ToolCallsBurst, c.TaskBytesPerTenant)
		}
	})
	t.Run("set", func(t *testing.T) {
		env := azureEnv()
		env["TOOL_CALLS_PER_MINUTE"], env["TOOL_CALLS_BURST"], env["TASKS_MAX_BYTES_PER_TENANT"] = " 600 ", "20", "33554432"
		c, err := Load(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if c.ToolCallsPerMinute != 600 || c.ToolCallsBurst != 20 || c.TaskBytesPerTenant != 32<<20 {
			t.Errorf("loaded %d, %d, %d", c.ToolCallsPerMinute, c.ToolCallsBurst, c.TaskBytesPerTenant)
		}
	})
	bad := map[string][]string{
		"TOOL_CALLS_PER_MINUTE":      {"0", "-5", "+5", "1.5", "300/min", "1e3", "60001", "99999999999999999999"},
		"TOOL_CALLS_BURST":           {"0", "ten", "10001", " - "},
		"TASKS_MAX_BYTES_PER_TENANT": {"65535", "16MiB", "1073741825", "0x1000000"},
	}
	for name, values := range bad {
		for _, v := range values {
			t.Run(name+"="+v, func(t *testing.T) {
				env := azureEnv()
				env[name] = v
				_, err := Load(func(k string) string { return env[k] })
				if err == nil || !strings.HasPrefix(err.Error(), name+": ") || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s=%q: %v, want one line naming the setting", name, v, err)
				}
			})
		}
	}
	// The bounds themselves are accepted.
	env := azureEnv()
	env["TOOL_CALLS_PER_MINUTE"], env["TOOL_CALLS_BURST"], env["TASKS_MAX_BYTES_PER_TENANT"] = "60000", "1", "65536"
	if _, err := Load(func(k string) string { return env[k] }); err != nil {
		t.Errorf("limits at their bounds: %v", err)
	}
}

// TestAzureClientSecretRefusedInEveryMode: the secret mode without Key
// Vault uses no azidentity credential, and still refuses it.
func TestAzureClientSecretRefusedInEveryMode(t *testing.T) {
	secretMode := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "40123",
		"PUBLIC_BASE_URL":              "https://mcp.example.com",
		"ENTRA_TENANT_ID":              "aaaaaaaa-1111-4111-8111-111111111111",
		"ENTRA_CLIENT_ID":              "22222222-2222-4222-8222-222222222222",
		"REDIS_URL":                    "redis://127.0.0.1:1/0",
		"ENTRA_CLIENT_SECRET":          "app-secret",
		"TOKEN_SEALING_KEYS":           "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w=",
	}
	for name, env := range map[string]map[string]string{"secret": secretMode, "managed identity": azureEnv()} {
		if _, err := Load(func(k string) string { return env[k] }); err != nil {
			t.Fatalf("%s mode without AZURE_CLIENT_SECRET: %v", name, err)
		}
		env["AZURE_CLIENT_SECRET"] = "x"
		if _, err := Load(func(k string) string { return env[k] }); err == nil || !strings.HasPrefix(err.Error(), "AZURE_CLIENT_SECRET: ") {
			t.Errorf("%s mode with AZURE_CLIENT_SECRET: %v", name, err)
		}
	}
}
