package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/seal"
)

// Names of the Key Vault secrets, unless KEY_VAULT_CLIENT_SECRET_NAME and
// KEY_VAULT_SEALING_KEY_NAME say otherwise. infra/'s postprovision hook
// creates the sealing key under its default name.
const (
	DefaultClientSecretName = "entra-client-secret"
	DefaultSealingKeyName   = "token-sealing-key"
)

// loadSecrets reads how the app authenticates to Entra and where its
// secrets come from: Key Vault when KEY_VAULT_URI is set, else the
// environment.
func loadSecrets(getenv func(string) string) (Secrets, error) {
	var s Secrets
	var err error
	if s.ClientAuth, err = parseClientAuth(getenv("ENTRA_CLIENT_AUTH")); err != nil {
		return s, err
	}
	if s.KeyVault, err = loadKeyVault(getenv); err != nil || s.KeyVault.URI != "" {
		return s, err // with a vault, the values come from it at start-up
	}
	s.ClientSecret = getenv("ENTRA_CLIENT_SECRET")
	if s.ClientAuth == ClientAuthSecret && strings.TrimSpace(s.ClientSecret) == "" {
		return s, fmt.Errorf("ENTRA_CLIENT_SECRET: required (a client secret of the app registration, for sign-in), or set KEY_VAULT_URI or ENTRA_CLIENT_AUTH=managed-identity")
	}
	s.SealingKeys, err = parseSealingKeys(getenv("TOKEN_SEALING_KEYS"))
	return s, err
}

// parseSealingKeys reads TOKEN_SEALING_KEYS. Its errors never hold key
// material.
func parseSealingKeys(v string) (*seal.Ring, error) {
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("TOKEN_SEALING_KEYS: required (comma-separated base64 32-byte keys, newest first), or set KEY_VAULT_URI")
	}
	ring, err := seal.ParseKeys(v)
	if err != nil {
		return nil, fmt.Errorf("TOKEN_SEALING_KEYS: %w", err)
	}
	return ring, nil
}

// loadKeyVault reads KEY_VAULT_URI and the names of its secrets, which are
// checked only when there is a vault.
func loadKeyVault(getenv func(string) string) (KeyVault, error) {
	kv := KeyVault{
		URI:              strings.TrimSpace(getenv("KEY_VAULT_URI")),
		ClientSecretName: orDefault(getenv("KEY_VAULT_CLIENT_SECRET_NAME"), DefaultClientSecretName),
		SealingKeyName:   orDefault(getenv("KEY_VAULT_SEALING_KEY_NAME"), DefaultSealingKeyName),
	}
	if kv.URI == "" {
		return kv, nil
	}
	u, err := url.Parse(kv.URI)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return kv, fmt.Errorf("KEY_VAULT_URI: %q must look like https://<name>.vault.azure.net/", kv.URI)
	}
	for _, n := range []struct{ setting, value string }{
		{"KEY_VAULT_CLIENT_SECRET_NAME", kv.ClientSecretName},
		{"KEY_VAULT_SEALING_KEY_NAME", kv.SealingKeyName},
	} {
		if !secretNameRE.MatchString(n.value) {
			return kv, fmt.Errorf("%s: %q is not a Key Vault secret name (1-127 letters, digits and dashes)", n.setting, n.value)
		}
	}
	return kv, nil
}

var secretNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
