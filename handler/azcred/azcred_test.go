package azcred_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/entra-mcp/functions-mcp/handler/azcred"
	"github.com/entra-mcp/functions-mcp/handler/azuretest"
)

// startMSI starts the managed-identity stand-in with one user-assigned
// identity and puts its endpoint in the process environment, where
// azidentity (through MSAL) reads it.
func startMSI(t *testing.T) (*azuretest.ManagedIdentity, azuretest.Identity) {
	t.Helper()
	ident := azuretest.NewIdentity()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{UserAssigned: []azuretest.Identity{ident}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { msi.Close() })
	for k, v := range msi.Env() {
		t.Setenv(k, v)
	}
	return msi, ident
}

func TestManagedIdentityUserAssigned(t *testing.T) {
	msi, ident := startMSI(t)
	cred, err := azcred.New(azcred.Options{ManagedIdentity: true, ClientID: ident.ClientID, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cred.(*azidentity.ManagedIdentityCredential); !ok {
		t.Fatalf("credential is %T, want the managed identity", cred)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://redis.azure.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := msi.Verify(tok.Token, "https://redis.azure.com")
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if claims.ObjectID != ident.ObjectID || claims.AppID != ident.ClientID {
		t.Errorf("token is for oid %s appid %s, want the user-assigned identity %+v", claims.ObjectID, claims.AppID, ident)
	}
	if tok.ExpiresOn.IsZero() {
		t.Error("no expiry parsed from expires_on")
	}
	reqs := msi.Requests()
	if len(reqs) != 1 || reqs[0].Resource != "https://redis.azure.com" || reqs[0].ClientID != ident.ClientID {
		t.Errorf("MSI requests = %+v", reqs)
	}

	// A second call is served from azidentity's cache.
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://redis.azure.com/.default"}}); err != nil {
		t.Fatal(err)
	}
	if n := len(msi.Requests()); n != 1 {
		t.Errorf("MSI got %d requests, want the token cached", n)
	}
}

func TestManagedIdentitySystemAssigned(t *testing.T) {
	msi, _ := startMSI(t)
	cred, err := azcred.New(azcred.Options{ManagedIdentity: true})
	if err != nil {
		t.Fatal(err)
	}
	// A resource no other test (or rerun) asks for: MSAL caches
	// managed-identity tokens process-wide, by identity and resource.
	resource := "https://" + azuretest.NewIdentity().ObjectID + ".example"
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := msi.Verify(tok.Token, resource)
	if err != nil || claims.ObjectID != msi.SystemAssigned().ObjectID {
		t.Errorf("claims %+v, %v; want the system-assigned identity", claims, err)
	}
	if reqs := msi.Requests(); len(reqs) != 1 || reqs[0].ClientID != "" {
		t.Errorf("MSI requests = %+v, want one without client_id", reqs)
	}
}

func TestLocalFallback(t *testing.T) {
	cred, err := azcred.New(azcred.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cred.(*azidentity.DefaultAzureCredential); !ok {
		t.Errorf("credential is %T, want DefaultAzureCredential", cred)
	}
}

// tokenEndpoint is a minimal Entra stand-in for MSAL's client-credentials
// grant that accepts only a client assertion the MSI stand-in issued for
// the token-exchange audience to the expected identity.
type tokenEndpoint struct {
	srv      *httptest.Server
	msi      *azuretest.ManagedIdentity
	audience string
	objectID string

	mu       sync.Mutex
	accepted int
	rejected []string
}

func startTokenEndpoint(t *testing.T, msi *azuretest.ManagedIdentity, audience, objectID string) *tokenEndpoint {
	te := &tokenEndpoint{msi: msi, audience: audience, objectID: objectID}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tenant/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		host := "https://" + r.Host
		json.NewEncoder(w).Encode(map[string]string{
			"issuer":                 host + "/tenant/v2.0",
			"authorization_endpoint": host + "/tenant/oauth2/v2.0/authorize",
			"token_endpoint":         host + "/tenant/oauth2/v2.0/token",
		})
	})
	mux.HandleFunc("POST /tenant/oauth2/v2.0/token", te.token)
	te.srv = httptest.NewTLSServer(mux)
	t.Cleanup(te.srv.Close)
	return te
}

func (te *tokenEndpoint) counts() (accepted, rejected int) {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.accepted, len(te.rejected)
}

func (te *tokenEndpoint) token(w http.ResponseWriter, r *http.Request) {
	reject := func(why string) {
		te.mu.Lock()
		te.rejected = append(te.rejected, why)
		te.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]any{"error": "invalid_client", "error_description": why})
	}
	if r.FormValue("grant_type") != "client_credentials" || r.FormValue("client_secret") != "" {
		reject("want client_credentials without a secret")
		return
	}
	if r.FormValue("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		reject("wrong client_assertion_type")
		return
	}
	claims, err := te.msi.Verify(r.FormValue("client_assertion"), te.audience)
	if err != nil {
		reject("assertion: " + err.Error())
		return
	}
	if claims.ObjectID != te.objectID {
		reject("assertion from the wrong identity")
		return
	}
	te.mu.Lock()
	te.accepted++
	te.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3600, "access_token": "app-token"})
}

func TestAssertionCredential(t *testing.T) {
	for _, audience := range []string{"", azcred.TokenExchangeAudienceUSGov} {
		msi, ident := startMSI(t)
		cred, err := azcred.New(azcred.Options{ManagedIdentity: true, ClientID: ident.ClientID})
		if err != nil {
			t.Fatal(err)
		}
		want := audience
		if want == "" {
			want = azcred.TokenExchangeAudience
		}
		te := startTokenEndpoint(t, msi, want, ident.ObjectID)

		app, err := confidential.New(te.srv.URL+"/tenant", "11111111-2222-3333-4444-555555555555",
			azcred.AssertionCredential(cred, audience),
			confidential.WithHTTPClient(te.srv.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			t.Fatal(err)
		}
		res, err := app.AcquireTokenByCredential(context.Background(), []string{"https://graph.microsoft.com/.default"})
		if err != nil {
			_, rejected := te.counts()
			t.Fatalf("audience %q: %v (%d rejected)", audience, err, rejected)
		}
		if accepted, _ := te.counts(); res.AccessToken != "app-token" || accepted != 1 {
			t.Errorf("audience %q: got %q, accepted %d", audience, res.AccessToken, accepted)
		}
		reqs := msi.Requests()
		if len(reqs) != 1 || reqs[0].Resource != want || reqs[0].ClientID != ident.ClientID {
			t.Errorf("audience %q: MSI requests = %+v, want one for %s", audience, reqs, want)
		}
	}
}

func TestAssertionCredentialError(t *testing.T) {
	msi, ident := startMSI(t)
	msi.SetFailing(http.StatusBadRequest)
	cred, err := azcred.New(azcred.Options{ManagedIdentity: true, ClientID: ident.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	te := startTokenEndpoint(t, msi, azcred.TokenExchangeAudience, ident.ObjectID)
	app, err := confidential.New(te.srv.URL+"/tenant", "11111111-2222-3333-4444-555555555555",
		azcred.AssertionCredential(cred, ""),
		confidential.WithHTTPClient(te.srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.AcquireTokenByCredential(context.Background(), []string{"https://graph.microsoft.com/.default"})
	if err == nil || !strings.Contains(err.Error(), "api://AzureADTokenExchange (client assertion)") {
		t.Errorf("err = %v", err)
	}
	if accepted, rejected := te.counts(); accepted != 0 || rejected != 0 {
		t.Error("the token endpoint was called without an assertion")
	}
}
