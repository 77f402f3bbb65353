// Package azcred gives the handler its credential for Azure resources (Key
// Vault, Redis, App Insights ingestion) and the secretless client
// credential MSAL signs users in with.
//
// In Azure the credential is the Function App's managed identity. Outside
// Azure (no managed-identity endpoint in the environment) it falls back to
// DefaultAzureCredential, which on a developer's machine is their Azure CLI
// or Azure Developer CLI login.
//
// # Why never AZURE_CLIENT_SECRET
//
// The handler never authenticates to Azure resources with a client secret,
// and the app registration's secret must never be put in
// AZURE_CLIENT_SECRET (where DefaultAzureCredential's EnvironmentCredential
// would pick it up):
//
//   - The app registration is the identity users sign in to. Granting it
//     Key Vault or Redis access would let anyone holding its secret read
//     every user's sealed tokens and the sealing keys. Data-plane access
//     belongs to the managed identity, which cannot be used off the host.
//   - That secret lives in Key Vault; reading Key Vault needs a credential
//     first, so the credential cannot be a secret kept there.
//   - A managed identity has no secret to leak, store in app settings or
//     rotate; with AssertionCredential the app registration needs no
//     secret either.
//
// New therefore refuses to start when AZURE_CLIENT_SECRET is set.
package azcred

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// Environment variables New reads.
const (
	// EnvIdentityEndpoint is set by App Service and Azure Functions when
	// the app has a managed identity.
	EnvIdentityEndpoint = "IDENTITY_ENDPOINT"
	// EnvMSIEndpoint is the older name of the managed-identity endpoint
	// (Cloud Shell, Azure ML, older App Service).
	EnvMSIEndpoint = "MSI_ENDPOINT"
	// EnvClientID selects a user-assigned managed identity by its client
	// id; empty means the system-assigned identity.
	EnvClientID = "AZURE_CLIENT_ID"
	// EnvClientSecret must stay unset: see the package documentation.
	EnvClientSecret = "AZURE_CLIENT_SECRET"
)

// Token-exchange audiences: the audience of the managed-identity token
// that serves as a federated client assertion. The app registration's
// federated credential names the same audience.
const (
	// TokenExchangeAudience is the audience in the public cloud.
	TokenExchangeAudience = "api://AzureADTokenExchange"
	// TokenExchangeAudienceUSGov is the audience in Azure US Government.
	TokenExchangeAudienceUSGov = "api://AzureADTokenExchangeUSGov"
	// TokenExchangeAudienceChina is the audience in Azure operated by
	// 21Vianet.
	TokenExchangeAudienceChina = "api://AzureADTokenExchangeChina"
)

// Options configures New. The zero value reads the process environment
// and uses the Azure SDK's default HTTP transport.
type Options struct {
	// Getenv reads the environment; os.Getenv when nil. It decides which
	// credential New builds. Note that the managed-identity credential
	// itself (azidentity, through MSAL) reads IDENTITY_ENDPOINT and
	// IDENTITY_HEADER from the process environment, not through Getenv, so
	// a test must put them there too (t.Setenv).
	Getenv func(string) string

	// ClientOptions configures the credential's HTTP pipeline (transport,
	// retries, cloud). Its Transport, if set, wins over HTTPClient.
	ClientOptions azcore.ClientOptions

	// HTTPClient, when set and ClientOptions.Transport is nil, sends the
	// credential's requests.
	HTTPClient *http.Client
}

// HasManagedIdentity reports whether the environment read by getenv
// offers a managed-identity endpoint, as App Service and Functions do.
func HasManagedIdentity(getenv func(string) string) bool {
	return strings.TrimSpace(getenv(EnvIdentityEndpoint)) != "" || strings.TrimSpace(getenv(EnvMSIEndpoint)) != ""
}

// New returns the credential for Azure resources: the managed identity
// (user-assigned when AZURE_CLIENT_ID is set) when the environment has a
// managed-identity endpoint, else DefaultAzureCredential for local runs.
// Errors name the setting at fault.
func New(opts Options) (azcore.TokenCredential, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if getenv(EnvClientSecret) != "" {
		return nil, errors.New(EnvClientSecret + ": must not be set; this handler reaches Azure with its managed identity " +
			"(or, locally, your Azure CLI login) and never with a client secret")
	}
	co := opts.ClientOptions
	if co.Transport == nil && opts.HTTPClient != nil {
		co.Transport = opts.HTTPClient
	}

	if HasManagedIdentity(getenv) {
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if id := strings.TrimSpace(getenv(EnvClientID)); id != "" {
			mo.ID = azidentity.ClientID(id)
		}
		cred, err := azidentity.NewManagedIdentityCredential(mo)
		if err != nil {
			return nil, fmt.Errorf("%s: managed identity credential: %w", EnvIdentityEndpoint, err)
		}
		return cred, nil
	}

	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: co})
	if err != nil {
		// The only configuration error DefaultAzureCredential reports is a
		// bad AZURE_TOKEN_CREDENTIALS.
		return nil, fmt.Errorf("no managed identity (%s unset), and the local fallback DefaultAzureCredential failed: %w",
			EnvIdentityEndpoint, err)
	}
	return cred, nil
}

// AssertionCredential returns the MSAL client credential for secretless
// sign-in: each time MSAL needs to authenticate the app registration it
// gets a token from cred (the managed identity) for audience and presents
// it as the client assertion. The app registration trusts the identity
// through a federated identity credential with that audience, so it needs
// no client secret. audience is TokenExchangeAudience when empty (use the
// sovereign-cloud constants elsewhere).
//
// Tokens are cached and refreshed by cred (azidentity), so the callback
// can be called per sign-in.
func AssertionCredential(cred azcore.TokenCredential, audience string) confidential.Credential {
	if audience == "" {
		audience = TokenExchangeAudience
	}
	audience = strings.TrimSuffix(audience, "/.default")
	scope := audience + "/.default"
	return confidential.NewCredFromAssertionCallback(func(ctx context.Context, _ confidential.AssertionRequestOptions) (string, error) {
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			return "", fmt.Errorf("azcred: get managed identity token for %s (client assertion): %w", audience, err)
		}
		return tok.Token, nil
	})
}
