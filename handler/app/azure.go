package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/azcred"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/secrets"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/telemetry"
)

// Runtime is what the handler takes from Azure around it: the managed
// identity, telemetry, and the secrets (Key Vault or the environment).
type Runtime struct {
	// Credential is the managed identity (Azure CLI login locally); nil when
	// nothing needs it.
	Credential azcore.TokenCredential
	Telemetry  *telemetry.Client
	// Secrets is the Key Vault backed store; nil when secrets come from the
	// environment. Run its Run method to reload them.
	Secrets *secrets.Store
	// Sealer seals sign-in state with the current keys.
	Sealer store.Sealer
	// MSALCredential authenticates the app registration: its secret, or an
	// assertion made from the managed identity's token.
	MSALCredential confidential.Credential
}

// RuntimeOptions are what StartRuntime reads.
type RuntimeOptions struct {
	Config  *config.Config
	Version string
	Logger  *slog.Logger
	// KeyVaultClient configures the Key Vault client's HTTP pipeline; tests
	// route it to a stand-in. Zero in production.
	KeyVaultClient azcore.ClientOptions
}

// StartRuntime builds the runtime for production mode. Reading Key Vault
// retries for a bounded time; its error is one line naming the setting.
func StartRuntime(ctx context.Context, o RuntimeOptions) (*Runtime, error) {
	cfg, version, log := o.Config, o.Version, o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{}
	if cfg.Secrets.KeyVault.URI != "" || cfg.Secrets.ClientAuth == config.ClientAuthManagedIdentity ||
		cfg.Redis.Auth == config.RedisAuthEntra || cfg.Telemetry.AADAuthentication() {
		cred, err := azcred.New(azcred.Options{ManagedIdentity: cfg.Identity.Managed, ClientID: cfg.Identity.ClientID})
		if err != nil {
			return nil, err
		}
		rt.Credential = cred
	}

	tel, err := telemetry.New(telemetry.Options{
		ConnectionString:     cfg.Telemetry.ConnectionString,
		AuthenticationString: cfg.Telemetry.Authentication,
		Credential:           rt.Credential,
		RoleName:             cfg.Telemetry.RoleName,
		Version:              version,
		BaseURL:              cfg.Server.PublicBaseURL,
		Logger:               log,
	})
	if err != nil {
		return nil, err
	}
	rt.Telemetry = tel

	kv := cfg.Secrets.KeyVault
	if tel.Enabled() && o.KeyVaultClient.Transport == nil && kv.URI != "" {
		// Key Vault reads are dependencies in telemetry.
		o.KeyVaultClient.Transport = &http.Client{Timeout: 30 * time.Second,
			Transport: tel.Transport(http.DefaultTransport, map[string]string{hostOf(kv.URI): telemetry.TypeKeyVault})}
	}

	secretless := cfg.Secrets.ClientAuth == config.ClientAuthManagedIdentity
	clientSecret := cfg.Secrets.ClientSecret
	rt.Sealer = cfg.Secrets.SealingKeys
	if kv.URI != "" {
		st, err := secrets.New(ctx, secrets.Options{
			Settings: secrets.Settings{
				VaultURI:         kv.URI,
				ClientSecretName: kv.ClientSecretName,
				SealingKeyName:   kv.SealingKeyName,
			},
			Secretless:    secretless,
			Credential:    rt.Credential,
			ClientOptions: o.KeyVaultClient,
			Logger:        log,
		})
		if err != nil {
			return nil, err
		}
		rt.Secrets, rt.Sealer = st, st
		clientSecret = st.ClientSecret()
	}

	if secretless {
		rt.MSALCredential = azcred.AssertionCredential(rt.Credential, "")
	} else if rt.MSALCredential, err = confidential.NewCredFromSecret(clientSecret); err != nil {
		return nil, fmt.Errorf("ENTRA_CLIENT_SECRET: %w", err)
	}
	return rt, nil
}
