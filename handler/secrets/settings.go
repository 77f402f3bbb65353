package secrets

import "time"

// Settings the caller reads from the environment. Package config is their
// one reader (it checks them and applies the defaults); the names are here
// for the errors this package writes.
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
	// ReloadInterval is how often Key Vault is read again
	// (DefaultReloadInterval when zero; not a setting).
	ReloadInterval time.Duration
}
