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

// StartRuntime builds the runtime for production mode: the managed
// identity, then telemetry (which may need it), then the secrets (whose
// reads telemetry reports), then the credential MSAL signs in with.
// Reading Key Vault retries for a bounded time; its error is one line
// naming the setting.
func StartRuntime(ctx context.Context, o RuntimeOptions) (*Runtime, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{}
	var err error
	if rt.Credential, err = azureCredential(o.Config); err != nil {
		return nil, err
	}
	if rt.Telemetry, err = startTelemetry(o, rt.Credential); err != nil {
		return nil, err
	}
	if err := rt.loadSecrets(ctx, o); err != nil {
		return nil, err
	}
	if rt.MSALCredential, err = msalCredential(o.Config.Secrets, rt); err != nil {
		return nil, err
	}
	return rt, nil
}

// azureCredential is the managed identity when something needs it: Key
// Vault, secretless sign-in, Redis with Entra or telemetry with Entra.
func azureCredential(cfg *config.Config) (azcore.TokenCredential, error) {
	needed := cfg.Secrets.KeyVault.URI != "" || cfg.Secrets.ClientAuth == config.ClientAuthManagedIdentity ||
		cfg.Redis.Auth == config.RedisAuthEntra || cfg.Telemetry.AADAuthentication()
	if !needed {
		return nil, nil
	}
	return azcred.New(azcred.Options{ManagedIdentity: cfg.Identity.Managed, ClientID: cfg.Identity.ClientID})
}

// startTelemetry is the Application Insights client; disabled without a
// connection string.
func startTelemetry(o RuntimeOptions, cred azcore.TokenCredential) (*telemetry.Client, error) {
	t := o.Config.Telemetry
	return telemetry.New(telemetry.Options{
		ConnectionString:     t.ConnectionString,
		AuthenticationString: t.Authentication,
		Credential:           cred,
		RoleName:             t.RoleName,
		Version:              o.Version,
		BaseURL:              o.Config.Server.PublicBaseURL,
		Logger:               o.Logger,
	})
}

// loadSecrets reads the secrets from Key Vault when there is one; else
// the sealing keys are the environment's, as config read them.
func (rt *Runtime) loadSecrets(ctx context.Context, o RuntimeOptions) error {
	s := o.Config.Secrets
	rt.Sealer = s.SealingKeys
	if s.KeyVault.URI == "" {
		return nil
	}
	client := o.KeyVaultClient
	if rt.Telemetry.Enabled() && client.Transport == nil {
		// Key Vault reads are dependencies in telemetry.
		client.Transport = &http.Client{Timeout: 30 * time.Second,
			Transport: rt.Telemetry.Transport(http.DefaultTransport, map[string]string{hostOf(s.KeyVault.URI): telemetry.TypeKeyVault})}
	}
	st, err := secrets.New(ctx, secrets.Options{
		Settings: secrets.Settings{
			VaultURI:         s.KeyVault.URI,
			ClientSecretName: s.KeyVault.ClientSecretName,
			SealingKeyName:   s.KeyVault.SealingKeyName,
		},
		Secretless:    s.ClientAuth == config.ClientAuthManagedIdentity,
		Credential:    rt.Credential,
		ClientOptions: client,
		Logger:        o.Logger,
	})
	if err != nil {
		return err
	}
	rt.Secrets, rt.Sealer = st, st
	return nil
}

// msalCredential is the managed identity's assertion in secretless mode,
// else the client secret: Key Vault's when there is one, the
// environment's otherwise.
func msalCredential(s config.Secrets, rt *Runtime) (confidential.Credential, error) {
	if s.ClientAuth == config.ClientAuthManagedIdentity {
		return azcred.AssertionCredential(rt.Credential, ""), nil
	}
	secret := s.ClientSecret
	if rt.Secrets != nil {
		secret = rt.Secrets.ClientSecret()
	}
	cred, err := confidential.NewCredFromSecret(secret)
	if err != nil {
		return cred, fmt.Errorf("ENTRA_CLIENT_SECRET: %w", err)
	}
	return cred, nil
}
