package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// TestSampleSettingsLoad keeps local.settings.sample.json true: with its
// placeholders filled in (and the port the host adds), it loads.
func TestSampleSettingsLoad(t *testing.T) {
	t.Parallel()
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
	c, err := Load(testkit.Env(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.PublicBaseURL != "http://localhost:7071" || c.Entra.AuthorityHost != DefaultAuthorityHost {
		t.Errorf("loaded %+v", c)
	}
	for k := range s.Values {
		if strings.HasPrefix(k, "AZURE_CLIENT") || k == "AZURE_TENANT_ID" {
			t.Errorf("%s in the sample: azidentity reads it for the managed identity", k)
		}
	}
}

func TestDefaultsAndDerivedValues(t *testing.T) {
	t.Parallel()
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
	c, err := Load(testkit.Env(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.PublicBaseURL != "https://myapp.azurewebsites.net" {
		t.Errorf("base %q", c.Server.PublicBaseURL)
	}
	e := c.Entra
	if e.TenantID != "aaaaaaaa-1111-4111-8111-111111111111" || e.TokenVersion != 2 ||
		e.AppIDURI != "api://22222222-2222-4222-8222-222222222222" || len(e.AllowedTenants) != 2 {
		t.Errorf("entra %+v", e)
	}
	if len(c.SignIn.ReturnURLs) != 2 || c.Secrets.SealingKeys == nil || c.Secrets.ClientAuth != ClientAuthSecret ||
		c.Redis.Auth != RedisAuthURL || c.OAuth.Mode != AuthModeProxy || c.Identity.Managed {
		t.Errorf("loaded %+v", c)
	}
	if e.Issuer() != "https://login.microsoftonline.com/aaaaaaaa-1111-4111-8111-111111111111/v2.0" ||
		e.Scope() != "api://22222222-2222-4222-8222-222222222222/access_as_user" {
		t.Errorf("issuer %q scope %q", e.Issuer(), e.Scope())
	}
	// PUBLIC_BASE_URL wins over the platform's host name.
	env["PUBLIC_BASE_URL"] = "https://mcp.contoso.com/"
	if c, err = Load(testkit.Env(env)); err != nil || c.Server.PublicBaseURL != "https://mcp.contoso.com" {
		t.Errorf("PUBLIC_BASE_URL: %v %v", c, err)
	}
	env["ENTRA_AUTHORITY_HOST"] = "http://127.0.0.1:8443"
	if c, err = Load(testkit.Env(env)); err != nil || c.Entra.AuthorityHost != "http://127.0.0.1:8443" {
		t.Errorf("loopback http authority: %v %v", c, err)
	}
}

// TestKeyVaultModeNeedsNoSecretsInTheEnvironment: with KEY_VAULT_URI the
// secret and the sealing keys come from Key Vault at start-up.
func TestKeyVaultModeNeedsNoSecretsInTheEnvironment(t *testing.T) {
	t.Parallel()
	env := azureEnv()
	env["REDIS_USERNAME"] = "44444444-4444-4444-8444-44444444AAAA"
	env["WEBSITE_SITE_NAME"] = "myapp"
	env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "InstrumentationKey=x"
	env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] = "Authorization=AAD"
	c, err := Load(testkit.Env(env))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Secrets
	if s.KeyVault.SealingKeyName != DefaultSealingKeyName || s.KeyVault.ClientSecretName != DefaultClientSecretName ||
		s.SealingKeys != nil || s.ClientSecret != "" || s.ClientAuth != ClientAuthManagedIdentity {
		t.Errorf("secrets %+v", s)
	}
	if c.Redis.Auth != RedisAuthEntra || c.Redis.Username != "44444444-4444-4444-8444-44444444aaaa" {
		t.Errorf("redis %+v", c.Redis)
	}
	if c.Graph != (Graph{BaseURL: DefaultGraphBaseURL, Scope: DefaultGraphScope}) {
		t.Errorf("graph %+v", c.Graph)
	}
	if c.Identity != (Identity{Managed: true, ClientID: "55555555-5555-4555-8555-555555555555"}) {
		t.Errorf("identity %+v", c.Identity)
	}
	if c.Telemetry.RoleName != "myapp" || !c.Telemetry.AADAuthentication() {
		t.Errorf("telemetry %+v", c.Telemetry)
	}
}

// productionFiles calls f with the path and text of every non-test Go
// file of the production binary (test helpers, dev mode and stand-ins are
// not production).
func productionFiles(t *testing.T, f func(path, text string)) {
	t.Helper()
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "devidp" || d.Name() == "azuretest" || d.Name() == "storetest" || d.Name() == "stage" ||
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
		f(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSettingsListIsComplete keeps Settings true: every getenv("NAME")
// config makes is listed, and every listed setting is read.
func TestSettingsListIsComplete(t *testing.T) {
	t.Parallel()
	listed := map[string]bool{}
	for _, s := range Settings() {
		if listed[s.Name] {
			t.Errorf("%s listed twice", s.Name)
		}
		listed[s.Name] = true
	}
	read := map[string]bool{}
	literal := regexp.MustCompile(`getenv\("([A-Z][A-Z0-9_]+)"\)`)
	productionFiles(t, func(path, text string) {
		if filepath.Dir(path) != filepath.Join("..", "config") {
			return
		}
		for _, m := range literal.FindAllStringSubmatch(text, -1) {
			read[m[1]] = true
		}
	})
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

// TestOnlyConfigReadsTheEnvironment: config is the one reader of the
// settings; every other production package is handed typed values, so a
// setting cannot be read twice, differently. (main passes os.Getenv on
// without calling it.)
func TestOnlyConfigReadsTheEnvironment(t *testing.T) {
	t.Parallel()
	call := regexp.MustCompile(`(?:\b[gG]etenv|os\.LookupEnv|os\.Environ)\(`)
	productionFiles(t, func(path, text string) {
		if filepath.Dir(path) == filepath.Join("..", "config") {
			return
		}
		for _, line := range strings.Split(text, "\n") {
			if call.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				t.Errorf("%s reads the environment outside config: %s", path, strings.TrimSpace(line))
			}
		}
	})
}

// TestSettingKindsDoNotOverlap: a setting the deployment fills in is not
// also the operator's to choose (two sources for one value), and nobody
// configures what the platform sets.
func TestSettingKindsDoNotOverlap(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	for in, want := range map[string]AuthMode{"": AuthModeProxy, "proxy": AuthModeProxy, " entra ": AuthModeEntra} {
		t.Run(in, func(t *testing.T) {
			if got, err := ParseAuthMode(in); err != nil || got != want {
				t.Errorf("ParseAuthMode(%q) = %q, %v; want %q", in, got, err, want)
			}
		})
	}
}

// TestModesRefuseUnknownValues: every typed mode takes exactly its
// constants, and anything else stops start-up with one line naming the
// setting and what it may be.
func TestModesRefuseUnknownValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string
		values  []string
		may     string
	}{
		{"MCP_AUTH_MODE", []string{"Entra", "oauth", "none"}, "must be proxy or entra"},
		{"ENTRA_CLIENT_AUTH", []string{"Secret", "managed_identity", "certificate"}, "must be secret or managed-identity"},
		{"REDIS_AUTH", []string{"Entra", "password", "none"}, "must be empty or entra"},
		{"ENTRA_TOKEN_VERSION", []string{"3", "v2", "2.0"}, "must be 1 or 2"},
	} {
		for _, v := range tc.values {
			t.Run(tc.setting+"="+v, func(t *testing.T) {
				env := azureEnv()
				env[tc.setting] = v
				_, err := Load(testkit.Env(env))
				if err == nil || !strings.HasPrefix(err.Error(), tc.setting+": ") || !strings.Contains(err.Error(), tc.may) ||
					strings.Contains(err.Error(), "\n") {
					t.Errorf("%s=%q: %v, want one line naming the setting and saying it %s", tc.setting, v, err, tc.may)
				}
			})
		}
	}
}

// TestModes: each mode's constants load as themselves, and empty as the
// default.
func TestModes(t *testing.T) {
	t.Parallel()
	load := func(t *testing.T, k, v string) *Config {
		t.Helper()
		env := azureEnv()
		env[k] = v
		c, err := Load(testkit.Env(env))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		setting, value string
		got            func(*Config) string
		want           string
	}{
		{"MCP_AUTH_MODE", "", func(c *Config) string { return string(c.OAuth.Mode) }, string(AuthModeProxy)},
		{"MCP_AUTH_MODE", "entra", func(c *Config) string { return string(c.OAuth.Mode) }, string(AuthModeEntra)},
		{"ENTRA_CLIENT_AUTH", "", func(c *Config) string { return string(c.Secrets.ClientAuth) }, string(ClientAuthSecret)},
		{"ENTRA_CLIENT_AUTH", " managed-identity ", func(c *Config) string { return string(c.Secrets.ClientAuth) }, string(ClientAuthManagedIdentity)},
		{"REDIS_AUTH", "", func(c *Config) string { return string(c.Redis.Auth) }, string(RedisAuthURL)},
		{"REDIS_AUTH", "entra", func(c *Config) string { return string(c.Redis.Auth) }, string(RedisAuthEntra)},
	} {
		t.Run(tc.setting+"="+tc.value, func(t *testing.T) {
			if got := tc.got(load(t, tc.setting, tc.value)); got != tc.want {
				t.Errorf("loaded %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRedisUsernameNeedsEntraAndAGUID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ auth, user string }{{"entra", "default"}, {"entra", "not-a-guid"}, {"", "44444444-4444-4444-8444-444444444444"}} {
		t.Run("REDIS_AUTH="+tc.auth+" REDIS_USERNAME="+tc.user, func(t *testing.T) {
			env := azureEnv()
			env["REDIS_AUTH"], env["REDIS_USERNAME"] = tc.auth, tc.user
			if _, err := Load(testkit.Env(env)); err == nil || !strings.HasPrefix(err.Error(), "REDIS_USERNAME: ") {
				t.Errorf("%v, want an error naming REDIS_USERNAME", err)
			}
		})
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
		"IDENTITY_ENDPOINT":            "http://localhost:8081/msi/token",
		"AZURE_CLIENT_ID":              "55555555-5555-4555-8555-555555555555",
	}
}

// TestKeyVaultSettings: config is the one reader of the KEY_VAULT_*
// settings, and refuses what could not be a vault or a secret name.
func TestKeyVaultSettings(t *testing.T) {
	t.Parallel()
	load := func(k, v string) error {
		env := azureEnv()
		env[k] = v
		_, err := Load(testkit.Env(env))
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
		t.Run(tc.setting+"="+tc.value, func(t *testing.T) {
			if err := load(tc.setting, tc.value); err == nil || !strings.HasPrefix(err.Error(), tc.setting+": ") {
				t.Errorf("%v, want an error naming the setting", err)
			}
		})
	}
	if err := load("KEY_VAULT_SEALING_KEY_NAME", "keys-2"); err != nil {
		t.Errorf("a good secret name: %v", err)
	}
}

func TestRedirectSchemes(t *testing.T) {
	t.Parallel()
	got, err := ParseRedirectSchemes(" cursor, com.example.app ,")
	if err != nil || strings.Join(got, " ") != "cursor com.example.app" {
		t.Errorf("ParseRedirectSchemes = %v, %v", got, err)
	}
	for _, in := range []string{"https", "http", "Cursor", "cursor:", "1app", "a b"} {
		t.Run(in, func(t *testing.T) {
			if _, err := ParseRedirectSchemes(in); err == nil || !strings.HasPrefix(err.Error(), "OAUTH_EXTRA_REDIRECT_SCHEMES: ") {
				t.Errorf("ParseRedirectSchemes(%q) = %v, want an error naming the setting", in, err)
			}
		})
	}
}

func TestClientIPAndReuseGrace(t *testing.T) {
	t.Parallel()
	load := func(extra map[string]string) (*Config, error) {
		env := azureEnv()
		for k, v := range extra {
			env[k] = v
		}
		return Load(testkit.Env(env))
	}
	c, err := load(nil)
	if err != nil || c.Server.ClientIP.Header != "X-Forwarded-For" || c.SignIn.ReuseGrace != 0 {
		t.Fatalf("defaults: %+v %v %v", c.Server.ClientIP, c.SignIn.ReuseGrace, err)
	}
	for in, want := range map[string]string{"none": "", "X-Azure-SocketIP": "X-Azure-Socketip"} {
		t.Run("CLIENT_IP_HEADER="+in, func(t *testing.T) {
			if c, err := load(map[string]string{"CLIENT_IP_HEADER": in}); err != nil || c.Server.ClientIP.Header != want {
				t.Errorf("%+v %v", c, err)
			}
		})
	}
	t.Run("CLIENT_IP_HEADER=x forwarded", func(t *testing.T) {
		if _, err := load(map[string]string{"CLIENT_IP_HEADER": "x forwarded"}); err == nil || !strings.HasPrefix(err.Error(), "CLIENT_IP_HEADER: ") {
			t.Errorf("a bad header name: %v", err)
		}
	})
	for in, want := range map[string]time.Duration{"45s": 45 * time.Second, "0": -1, "0s": -1, "5m": 5 * time.Minute} {
		t.Run("REFRESH_REUSE_GRACE="+in, func(t *testing.T) {
			if c, err := load(map[string]string{"REFRESH_REUSE_GRACE": in}); err != nil || c.SignIn.ReuseGrace != want {
				t.Errorf("%v %v, want %v", c.SignIn.ReuseGrace, err, want)
			}
		})
	}
	for _, bad := range []string{"-1s", "10m", "soon", "30"} {
		t.Run("REFRESH_REUSE_GRACE="+bad, func(t *testing.T) {
			if _, err := load(map[string]string{"REFRESH_REUSE_GRACE": bad}); err == nil || !strings.HasPrefix(err.Error(), "REFRESH_REUSE_GRACE: ") {
				t.Errorf("%v", err)
			}
		})
	}
}

func TestLimitSettings(t *testing.T) {
	t.Parallel()
	t.Run("unset are the defaults", func(t *testing.T) {
		env := azureEnv()
		c, err := Load(testkit.Env(env))
		if err != nil {
			t.Fatal(err)
		}
		if c.Limits != (Limits{}) {
			t.Errorf("unset limits loaded as %+v; want 0 (the defaults)", c.Limits)
		}
	})
	t.Run("set", func(t *testing.T) {
		env := azureEnv()
		env["TOOL_CALLS_PER_MINUTE"], env["TOOL_CALLS_BURST"], env["TASKS_MAX_BYTES_PER_TENANT"] = " 600 ", "20", "33554432"
		c, err := Load(testkit.Env(env))
		if err != nil {
			t.Fatal(err)
		}
		if c.Limits != (Limits{ToolCallsPerMinute: 600, ToolCallsBurst: 20, TaskBytesPerTenant: 32 << 20}) {
			t.Errorf("loaded %+v", c.Limits)
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
				_, err := Load(testkit.Env(env))
				if err == nil || !strings.HasPrefix(err.Error(), name+": ") || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s=%q: %v, want one line naming the setting", name, v, err)
				}
			})
		}
	}
	t.Run("the bounds themselves are accepted", func(t *testing.T) {
		env := azureEnv()
		env["TOOL_CALLS_PER_MINUTE"], env["TOOL_CALLS_BURST"], env["TASKS_MAX_BYTES_PER_TENANT"] = "60000", "1", "65536"
		if _, err := Load(testkit.Env(env)); err != nil {
			t.Errorf("limits at their bounds: %v", err)
		}
	})
}

// TestAzureClientSecretRefusedInEveryMode: the secret mode without Key
// Vault uses no azidentity credential, and still refuses it.
func TestAzureClientSecretRefusedInEveryMode(t *testing.T) {
	t.Parallel()
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
		t.Run(name, func(t *testing.T) {
			if _, err := Load(testkit.Env(env)); err != nil {
				t.Fatalf("without AZURE_CLIENT_SECRET: %v", err)
			}
			env["AZURE_CLIENT_SECRET"] = "s3cret-value"
			if _, err := Load(testkit.Env(env)); err == nil || !strings.HasPrefix(err.Error(), "AZURE_CLIENT_SECRET: ") ||
				strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("with AZURE_CLIENT_SECRET: %v", err)
			}
		})
	}
}

// TestSecretsFromTheEnvironment: without Key Vault, the client secret and
// the sealing keys are required (the secret not in secretless mode), and
// no error holds a secret.
func TestSecretsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	const key1 = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w="
	const secret = "cs~MARKER.never-print-me"
	base := func() map[string]string {
		env := azureEnv()
		delete(env, "KEY_VAULT_URI")
		delete(env, "ENTRA_CLIENT_AUTH")
		return env
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"no client secret", map[string]string{"TOKEN_SEALING_KEYS": key1}, "ENTRA_CLIENT_SECRET: required"},
		{"no sealing keys", map[string]string{"ENTRA_CLIENT_SECRET": secret}, "TOKEN_SEALING_KEYS: required"},
		{"a bad sealing key", map[string]string{"ENTRA_CLIENT_SECRET": secret, "TOKEN_SEALING_KEYS": key1 + ",c2VjcmV0LWtleS1tYXJrZXI"}, "TOKEN_SEALING_KEYS: "},
		{"secretless, no sealing keys", map[string]string{"ENTRA_CLIENT_AUTH": "managed-identity"}, "TOKEN_SEALING_KEYS: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := base()
			for k, v := range tc.set {
				env[k] = v
			}
			_, err := Load(testkit.Env(env))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
			for _, v := range tc.set {
				for _, part := range strings.Split(v, ",") {
					if len(part) > 16 && strings.Contains(err.Error(), part) {
						t.Errorf("error %q holds a secret", err)
					}
				}
			}
		})
	}
	t.Run("secretless needs no client secret", func(t *testing.T) {
		env := base()
		env["ENTRA_CLIENT_AUTH"], env["TOKEN_SEALING_KEYS"] = "managed-identity", key1
		c, err := Load(testkit.Env(env))
		if err != nil || c.Secrets.ClientSecret != "" || len(c.Secrets.SealingKeys.KeyIDs()) != 1 {
			t.Errorf("%+v, %v", c, err)
		}
	})
}

// TestEachSettingIsReadOnce: Load asks for each setting at most once, so
// no two parts of it can read one setting differently.
func TestEachSettingIsReadOnce(t *testing.T) {
	t.Parallel()
	secretMode := azureEnv()
	delete(secretMode, "KEY_VAULT_URI")
	delete(secretMode, "ENTRA_CLIENT_AUTH")
	secretMode["ENTRA_CLIENT_SECRET"] = "secret"
	secretMode["TOKEN_SEALING_KEYS"] = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w="
	for name, env := range map[string]map[string]string{"key vault": azureEnv(), "secrets in the environment": secretMode} {
		t.Run(name, func(t *testing.T) {
			reads := map[string]int{}
			if _, err := Load(func(k string) string { reads[k]++; return env[k] }); err != nil {
				t.Fatal(err)
			}
			for k, n := range reads {
				if n > 1 {
					t.Errorf("%s read %d times", k, n)
				}
			}
			if len(reads) == 0 {
				t.Error("nothing read")
			}
		})
	}
}
