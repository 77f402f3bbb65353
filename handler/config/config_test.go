package config

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
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
	env := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "40123",
		"WEBSITE_HOSTNAME":             "myapp.azurewebsites.net",
		"ENTRA_TENANT_ID":              "aaaaaaaa-1111-4111-8111-111111111111",
		"ENTRA_CLIENT_ID":              "22222222-2222-4222-8222-222222222222",
		"REDIS_URL":                    "rediss://cache.example:10000/0",
		"REDIS_AUTH":                   "entra",
		"KEY_VAULT_URI":                "https://kv-abc.vault.azure.net/",
		"ENTRA_CLIENT_AUTH":            "managed-identity",
	}
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyVault.SealingKeyName != DefaultSealingKeyName || c.KeyVault.ClientSecretName != DefaultClientSecretName ||
		c.SealingKeys != nil || c.ClientSecret != "" || c.ClientAuth != "managed-identity" || c.RedisAuth != "entra" ||
		c.GraphBaseURL != DefaultGraphBaseURL || c.GraphScope != DefaultGraphScope {
		t.Errorf("loaded %+v", c)
	}
}
