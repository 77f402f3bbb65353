package secrets

import "time"

// Names of the settings that say where the secrets are, for the errors
// this package writes. Package config is their one reader: it checks them
// and applies their defaults.
const (
	// EnvVaultURI is the Key Vault to read secrets from, such as
	// https://<name>.vault.azure.net.
	EnvVaultURI = "KEY_VAULT_URI"
	// EnvClientSecretName names the Key Vault secret holding the app
	// registration's client secret.
	EnvClientSecretName = "KEY_VAULT_CLIENT_SECRET_NAME"
	// EnvSealingKeyName names the Key Vault secret whose versions are the
	// token-sealing keys.
	EnvSealingKeyName = "KEY_VAULT_SEALING_KEY_NAME"
)

// DefaultReloadInterval is how often Key Vault is read again; not a
// setting.
const DefaultReloadInterval = 10 * time.Minute

// Settings say where the secrets come from.
type Settings struct {
	// VaultURI is the Key Vault's URI.
	VaultURI string
	// ClientSecretName is the Key Vault secret holding the client secret.
	ClientSecretName string
	// SealingKeyName is the Key Vault secret whose enabled versions are
	// the sealing keys.
	SealingKeyName string
	// ReloadInterval is how often Key Vault is read again
	// (DefaultReloadInterval when zero; not a setting).
	ReloadInterval time.Duration
}
