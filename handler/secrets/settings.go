package secrets

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Settings the caller reads from the environment (see ReadSettings).
const (
	// EnvVaultURI is the Key Vault to read secrets from, such as
	// https://<name>.vault.azure.net. Without it secrets come from
	// EnvClientSecret and EnvSealingKeys.
	EnvVaultURI = "KEY_VAULT_URI"
	// EnvClientSecretName names the Key Vault secret holding the app
	// registration's client secret; DefaultClientSecretName when unset.
	EnvClientSecretName = "KEY_VAULT_CLIENT_SECRET_NAME"
	// EnvSealingKeyName names the Key Vault secret whose versions are the
	// token-sealing keys; DefaultSealingKeyName when unset.
	EnvSealingKeyName = "KEY_VAULT_SEALING_KEY_NAME"
	// EnvReloadInterval is how often Key Vault is read again, as a Go
	// duration ("10m"); DefaultReloadInterval when unset.
	EnvReloadInterval = "KEY_VAULT_RELOAD_INTERVAL"

	// EnvClientSecret is the app registration's client secret when there
	// is no Key Vault.
	EnvClientSecret = "ENTRA_CLIENT_SECRET"
	// EnvSealingKeys are the sealing keys when there is no Key Vault:
	// comma-separated base64 32-byte keys, newest first.
	EnvSealingKeys = "TOKEN_SEALING_KEYS"
)

// Defaults.
const (
	DefaultClientSecretName = "entra-client-secret"
	DefaultSealingKeyName   = "token-sealing-key"
	DefaultReloadInterval   = 10 * time.Minute
	// MinReloadInterval keeps a mistyped setting from hammering Key Vault,
	// which throttles per vault.
	MinReloadInterval = 30 * time.Second
)

// Settings say where the secrets come from.
type Settings struct {
	// VaultURI is the Key Vault's URI without a trailing slash; empty
	// means the environment.
	VaultURI string
	// ClientSecretName is the Key Vault secret holding the client secret.
	ClientSecretName string
	// SealingKeyName is the Key Vault secret whose enabled versions are
	// the sealing keys.
	SealingKeyName string
	// ReloadInterval is how often Key Vault is read again.
	ReloadInterval time.Duration
}

// Key Vault object names: 1-127 letters, digits and dashes.
var secretNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// ReadSettings reads the KEY_VAULT_* settings through getenv (os.Getenv in
// main, a map in tests) and applies the defaults. Its errors name the
// setting at fault.
func ReadSettings(getenv func(string) string) (Settings, error) {
	s := Settings{
		ClientSecretName: DefaultClientSecretName,
		SealingKeyName:   DefaultSealingKeyName,
		ReloadInterval:   DefaultReloadInterval,
	}
	if v := strings.TrimSpace(getenv(EnvVaultURI)); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return s, fmt.Errorf("%s: %q must look like https://<name>.vault.azure.net", EnvVaultURI, v)
		}
		s.VaultURI = "https://" + strings.ToLower(u.Host)
	}
	for _, n := range []struct {
		env string
		dst *string
	}{{EnvClientSecretName, &s.ClientSecretName}, {EnvSealingKeyName, &s.SealingKeyName}} {
		if v := strings.TrimSpace(getenv(n.env)); v != "" {
			if !secretNameRE.MatchString(v) {
				return s, fmt.Errorf("%s: %q is not a Key Vault secret name (1-127 letters, digits and dashes)", n.env, v)
			}
			*n.dst = v
		}
	}
	if v := strings.TrimSpace(getenv(EnvReloadInterval)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinReloadInterval {
			return s, fmt.Errorf("%s: %q must be a duration of at least %s, such as 10m", EnvReloadInterval, v, MinReloadInterval)
		}
		s.ReloadInterval = d
	}
	return s, nil
}
