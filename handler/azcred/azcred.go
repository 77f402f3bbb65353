// Package azcred gives the handler its credential for Azure resources (Key
// Vault, Redis, App Insights ingestion) and the secretless client
// credential MSAL signs users in with.
//
// In Azure the credential is the Function App's managed identity. Outside
// Azure (no managed-identity endpoint, as package config reads it) it falls
// back to DefaultAzureCredential, which on a developer's machine is their
// Azure CLI or Azure Developer CLI login.
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
// Package config therefore refuses to start when AZURE_CLIENT_SECRET is
// set.
package azcred

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
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

// Options configures New. The zero value is the local fallback with the
// Azure SDK's default HTTP transport.
type Options struct {
	// ManagedIdentity is set when the platform offers a managed-identity
	// endpoint (config.Identity.Managed). It decides which credential New
	// builds. Note that the managed-identity credential itself (azidentity,
	// through MSAL) reads IDENTITY_ENDPOINT and IDENTITY_HEADER from the
	// process environment, so a test must put them there (t.Setenv).
	ManagedIdentity bool

	// ClientID selects a user-assigned managed identity by its client id
	// (config.Identity.ClientID, AZURE_CLIENT_ID); empty means the
	// system-assigned identity.
	ClientID string

	// ClientOptions configures the credential's HTTP pipeline (transport,
	// retries, cloud). Its Transport, if set, wins over HTTPClient.
	ClientOptions azcore.ClientOptions

	// HTTPClient, when set and ClientOptions.Transport is nil, sends the
	// credential's requests.
	HTTPClient *http.Client
}

// New returns the credential for Azure resources: the managed identity
// (user-assigned when ClientID is set) when the platform has a
// managed-identity endpoint, else DefaultAzureCredential for local runs.
// Errors name the setting at fault.
func New(opts Options) (azcore.TokenCredential, error) {
	co := opts.ClientOptions
	if co.Transport == nil && opts.HTTPClient != nil {
		co.Transport = opts.HTTPClient
	}

	if opts.ManagedIdentity {
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if opts.ClientID != "" {
			mo.ID = azidentity.ClientID(opts.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(mo)
		if err != nil {
			return nil, fmt.Errorf("IDENTITY_ENDPOINT: managed identity credential: %w", err)
		}
		return cred, nil
	}

	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: co})
	if err != nil {
		// The only configuration error DefaultAzureCredential reports is a
		// bad AZURE_TOKEN_CREDENTIALS.
		return nil, fmt.Errorf("no managed identity (IDENTITY_ENDPOINT unset), and the local fallback DefaultAzureCredential failed: %w", err)
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
