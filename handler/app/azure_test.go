package app

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/entra-mcp/functions-mcp/handler/azuretest"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/telemetry"
)

// TestRuntimeFromKeyVaultWithManagedIdentity starts the runtime as in
// Azure: the managed identity (App Service identity endpoint stand-in)
// reads the client secret and the sealing keys from Key Vault (TLS
// stand-in with its challenge), and sign-in then works with them.
func TestRuntimeFromKeyVaultWithManagedIdentity(t *testing.T) {
	ident := azuretest.NewIdentity()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{UserAssigned: []azuretest.Identity{ident}})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	kv, err := azuretest.StartKeyVault(azuretest.KeyVaultOptions{Name: "kv-app-test", Accept: msi.Accepts(azuretest.KeyVaultResource)})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	oldKey, _ := seal.GenerateKey()
	newKey, _ := seal.GenerateKey()
	kv.SetSecret(config.DefaultSealingKeyName, oldKey)
	kv.SetSecret(config.DefaultSealingKeyName, newKey)
	kv.SetSecret(config.DefaultClientSecretName, devidp.DefaultClientSecret)

	for k, v := range msi.Env() {
		t.Setenv(k, v) // azidentity reads these from the process itself
	}
	cfg := &config.Config{
		Identity: config.Identity{Managed: true, ClientID: ident.ClientID},
		Secrets: config.Secrets{
			ClientAuth: config.ClientAuthSecret,
			KeyVault:   config.KeyVault{URI: kv.URL(), ClientSecretName: config.DefaultClientSecretName, SealingKeyName: config.DefaultSealingKeyName},
		},
	}
	rt, err := StartRuntime(context.Background(), RuntimeOptions{
		Config:         cfg,
		Version:        "test",
		KeyVaultClient: azcore.ClientOptions{Transport: kv.HTTPClient()},
	})
	if err != nil {
		t.Fatalf("start from Key Vault: %v", err)
	}
	if rt.Secrets == nil || len(rt.Secrets.Ring().KeyIDs()) != 2 || rt.Secrets.ClientSecret() != devidp.DefaultClientSecret {
		t.Fatalf("secrets from Key Vault: %v", rt.Secrets.Current())
	}

	st := newStackFull(t, storetest.Redis(t), nil, func(o *Options, _ *devidp.Server) {
		o.Config.Secrets.SealingKeys, o.Config.Secrets.ClientSecret = nil, "" // nothing from the environment
		o.Sealer, o.MSALCredential = rt.Sealer, &rt.MSALCredential
	})
	r, tk := st.exchange(t, st.signIn(t, "reader"), "")
	if r.status != 200 || tk.AccessToken == "" {
		t.Fatalf("sign-in with Key Vault secrets: %d %s", r.status, r.body)
	}
	if n := len(msi.Requests()); n == 0 {
		t.Fatal("the managed identity was never asked for a token")
	}

	t.Run("an upstream's header secret comes from Key Vault", func(t *testing.T) {
		kv.SetSecret("vendor-api-key", "key-one")
		var up atomic.Pointer[devupstream.Server] // replaced when the upstream's key rotates
		up.Store(devupstream.New(devupstream.Options{Header: "X-Api-Key", Value: "key-one"}))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { up.Load().ServeHTTP(w, r) }))
		defer srv.Close()
		st := newStackFull(t, storetest.Redis(t), nil, func(o *Options, _ *devidp.Server) {
			o.Secrets = rt.Secrets
			u, err := config.CheckUpstream(config.Upstream{Name: "vendor", URL: srv.URL + "/mcp", Tools: upstreamRules,
				Auth: config.UpstreamAuth{Mode: config.UpstreamHeader, Header: "X-Api-Key", Secret: "vendor-api-key"}}, o.Config.Roles)
			if err != nil {
				t.Fatal(err)
			}
			o.Config.Upstreams = []config.Upstream{u}
		})
		tok := st.token(t, "reader")
		if text, isErr := callText(t, st.rpc(t, tok, callBody("vendor.whoami", nil))); isErr {
			t.Fatalf("with the vault's key: %s", text)
		}
		// Rotated: the upstream wants the new key, the vault has it; the
		// refused call drops the kept value, and the next one reads it.
		kv.SetSecret("vendor-api-key", "key-two")
		up.Store(devupstream.New(devupstream.Options{Header: "X-Api-Key", Value: "key-two"}))
		text, isErr := callText(t, st.rpc(t, tok, callBody("vendor.whoami", nil)))
		if !isErr || !strings.Contains(text, "HTTP 401") || strings.Contains(text, "key-") {
			t.Fatalf("with the old key: %v %s", isErr, text)
		}
		if text, isErr := callText(t, st.rpc(t, tok, callBody("vendor.whoami", nil))); isErr {
			t.Fatalf("after the rotation: %s", text)
		}
	})
}

// ingestion records what the Application Insights SDK posts.
type ingestion struct {
	mu        sync.Mutex
	envelopes []map[string]any
	raw       strings.Builder
	paths     []string
}

func (in *ingestion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, "want gzip", 400)
		return
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.paths = append(in.paths, r.URL.Path)
	n := 0
	for sc.Scan() {
		var env map[string]any
		if json.Unmarshal(sc.Bytes(), &env) == nil {
			in.envelopes = append(in.envelopes, env)
			in.raw.Write(sc.Bytes())
			n++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"itemsReceived": n, "itemsAccepted": n, "errors": []any{}})
}

// startIngestion runs an ingestion stand-in for the test and a telemetry
// client that sends to it in small, quick batches.
func startIngestion(t *testing.T) (*ingestion, *telemetry.Client) {
	t.Helper()
	in := &ingestion{}
	srv := httptest.NewServer(in)
	t.Cleanup(srv.Close)
	tel, err := telemetry.New(telemetry.Options{
		ConnectionString: "InstrumentationKey=00000000-0000-4000-8000-000000000001;IngestionEndpoint=" + srv.URL,
		Version:          "test",
		MaxBatchInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return in, tel
}

// names lists "<baseType> <name>" of every item.
func (in *ingestion) names() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, e := range in.envelopes {
		data, _ := e["data"].(map[string]any)
		base, _ := data["baseData"].(map[string]any)
		out = append(out, data["baseType"].(string)+" "+base["name"].(string))
	}
	return out
}

// TestTelemetryLands: requests, Redis dependencies and tool events reach
// an ingestion stand-in, correlated, with no token in any envelope.
func TestTelemetryLands(t *testing.T) {
	t.Parallel()
	in, tel := startIngestion(t)
	st := newStackFull(t, storetest.Redis(t), nil, func(o *Options, _ *devidp.Server) { o.Telemetry = tel })
	tok := st.token(t, "writer")
	st.rpc(t, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_task","arguments":{"title":"observed"}}}`)
	st.rpc(t, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"server_stats","arguments":{}}}`)
	// The OAuth front's events: registration, consent, token.
	id := st.register(t, "Observed", clientRedirect)
	a := st.newAuthRequest(t, id)
	code := st.authorize(t, browser(t), a, "reader").Get("code")
	if r, _ := st.redeem(t, a, code); r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tel.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(in.names(), "\n")
	for _, want := range []string{"RequestData POST /mcp", "EventData tool.allowed", "EventData tool.denied", "RemoteDependencyData ",
		"EventData oauth.register", "EventData oauth.consent", "EventData oauth.token", "EventData signin"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q among:\n%s", want, got)
		}
	}
	for _, p := range in.paths {
		if p != "/v2/track" {
			t.Errorf("posted to %s", p)
		}
	}
	if strings.Contains(in.raw.String(), tok) || strings.Contains(in.raw.String(), "Bearer") || strings.Contains(in.raw.String(), code) {
		t.Error("a token reached telemetry")
	}
}

// TestSecretlessSignIn: with ENTRA_CLIENT_AUTH=managed-identity, MSAL
// authenticates the app with the managed identity's token for
// api://AzureADTokenExchange, which the stand-in accepts through a
// federated credential naming the identity. No secret exists anywhere.
func TestSecretlessSignIn(t *testing.T) {
	ident := azuretest.NewIdentity()
	var idp *devidp.Server // set once the stack has started it
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{
		UserAssigned: []azuretest.Identity{ident},
		Mint: func(id azuretest.Identity, resource string, exp time.Time) (string, error) {
			// The identity's token as Entra would issue it: signed by the
			// tenant's keys, sub = the identity's object id.
			return idp.Mint(devidp.User{Key: "mi", ObjectID: id.ObjectID}, devidp.WithClaims(map[string]any{
				"aud": resource, "sub": id.ObjectID, "roles": nil, "scp": nil,
			}))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	for k, v := range msi.Env() {
		t.Setenv(k, v)
	}

	st := newStackFull(t, storetest.Redis(t), func(_ *config.Config, o *devidp.Options) {
		o.ClientSecret = "a secret nobody is given"
		o.FederatedCredentials = []devidp.FederatedCredential{{Subject: ident.ObjectID}}
	}, func(o *Options, s *devidp.Server) {
		idp = s
		o.Config.Secrets.ClientAuth = config.ClientAuthManagedIdentity
		o.Config.Identity = config.Identity{Managed: true, ClientID: ident.ClientID}
		rt, err := StartRuntime(context.Background(), RuntimeOptions{Config: o.Config})
		if err != nil {
			t.Fatalf("runtime: %v", err)
		}
		o.MSALCredential = &rt.MSALCredential
	})
	r, tk := st.exchange(t, st.signIn(t, "writer"), "")
	if r.status != 200 || tk.AccessToken == "" {
		t.Fatalf("secretless sign-in: %d %s", r.status, r.body)
	}
	asked := false
	for _, req := range msi.Requests() {
		asked = asked || strings.HasPrefix(req.Resource, "api://AzureADTokenExchange")
	}
	if !asked {
		t.Fatalf("the identity was not asked for an exchange token: %+v", msi.Requests())
	}
}
