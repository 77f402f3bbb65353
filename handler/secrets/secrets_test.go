package secrets_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/entra-mcp/functions-mcp/handler/azcred"
	"github.com/entra-mcp/functions-mcp/handler/azuretest"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/secrets"
)

const clientSecret = "cs~MARKER.never-print-me-4711"

// The vault's secret names (config's defaults are the same, but this
// package takes whatever it is given).
const (
	clientSecretName = "app-client-secret"
	sealingKeyName   = "app-sealing-key"
)

// vaultEnv is a Key Vault stand-in reached with a managed identity served
// by the MSI stand-in, wired as in Azure.
type vaultEnv struct {
	msi   *azuretest.ManagedIdentity
	kv    *azuretest.KeyVault
	ident azuretest.Identity
	cred  azcore.TokenCredential
	logs  *testkit.SyncBuffer
	// values are every secret value put in the vault, to prove none leaks.
	values []string
}

func newVaultEnv(t *testing.T) *vaultEnv {
	t.Helper()
	// A user-assigned identity of its own per test: MSAL caches
	// managed-identity tokens process-wide, keyed by the identity.
	ident := azuretest.NewIdentity()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{UserAssigned: []azuretest.Identity{ident}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { msi.Close() })
	kv, err := azuretest.StartKeyVault(azuretest.KeyVaultOptions{
		Name:     "kv-secrets-test",
		Accept:   msi.Accepts(azuretest.KeyVaultResource),
		PageSize: 2, // so that listing versions pages
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kv.Close)

	// azidentity reads IDENTITY_ENDPOINT and IDENTITY_HEADER from the
	// process environment itself (through MSAL).
	for k, v := range msi.Env() {
		t.Setenv(k, v)
	}
	cred, err := azcred.New(azcred.Options{ManagedIdentity: true, ClientID: ident.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	return &vaultEnv{msi: msi, kv: kv, ident: ident, cred: cred, logs: &testkit.SyncBuffer{}}
}

func (e *vaultEnv) options() secrets.Options {
	return secrets.Options{
		Settings:      secrets.Settings{VaultURI: e.kv.URL(), ClientSecretName: clientSecretName, SealingKeyName: sealingKeyName},
		Credential:    e.cred,
		ClientOptions: azcore.ClientOptions{Transport: e.kv.HTTPClient()},
		Retry:         fastRetry,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// set adds a secret version and remembers its value.
func (e *vaultEnv) set(name, value string, attrs azuretest.VersionAttributes) string {
	e.values = append(e.values, value)
	return e.kv.SetSecretVersion(name, value, attrs)
}

// addKey adds a new sealing-key version and returns its version and key.
func (e *vaultEnv) addKey(t *testing.T, attrs azuretest.VersionAttributes) (string, []byte) {
	t.Helper()
	k, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return e.set(sealingKeyName, k, attrs), mustDecode(t, k)
}

// noLeak fails when s holds any secret value of the vault.
func (e *vaultEnv) noLeak(t *testing.T, what, s string) {
	t.Helper()
	for _, v := range e.values {
		if strings.Contains(s, strings.TrimSpace(v)) {
			t.Errorf("%s holds a secret value: %s", what, s)
		}
	}
}

var fastRetry = secrets.Retry{Attempts: 4, Delay: time.Millisecond, MaxDelay: 4 * time.Millisecond, AttemptTimeout: 5 * time.Second, Total: 10 * time.Second}

func TestKeyVaultHappyPath(t *testing.T) {
	e := newVaultEnv(t)
	e.set(clientSecretName, "old-"+clientSecret, azuretest.VersionAttributes{})
	e.set(clientSecretName, clientSecret+"\n", azuretest.VersionAttributes{})
	v1, k1 := e.addKey(t, azuretest.VersionAttributes{})
	v2, k2 := e.addKey(t, azuretest.VersionAttributes{})
	v3, k3 := e.addKey(t, azuretest.VersionAttributes{})

	s, err := secrets.New(context.Background(), e.options())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ClientSecret(); got != clientSecret {
		t.Errorf("ClientSecret: got the wrong version or an untrimmed value (len %d)", len(got))
	}
	if got, want := s.Current().KeyVersions, []string{v3, v2, v1}; !slices.Equal(got, want) {
		t.Errorf("KeyVersions = %v, want newest first %v", got, want)
	}
	if s.Current().Source != e.kv.URL() {
		t.Errorf("Source = %q", s.Current().Source)
	}

	// Data sealed under each older key still opens; new seals use the newest.
	for i, k := range [][]byte{k1, k2, k3} {
		old := ring(t, k)
		sealed, err := old.Seal("msal:t.o", []byte("token cache"))
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := s.Open("msal:t.o", sealed); err != nil || string(plain) != "token cache" {
			t.Errorf("key %d: Open = %q, %v", i+1, plain, err)
		}
	}
	sealed, err := s.Seal("msal:t.o", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring(t, k3).Open("msal:t.o", sealed); err != nil {
		t.Errorf("a new seal does not open with the newest key alone: %v", err)
	}
	if _, err := ring(t, k2, k1).Open("msal:t.o", sealed); err == nil {
		t.Error("a new seal opens without the newest key")
	}

	// The identity asked for a Key Vault token, as the user-assigned identity.
	reqs := e.msi.Requests()
	if len(reqs) == 0 || reqs[0].Resource != azuretest.KeyVaultResource || reqs[0].ClientID != e.ident.ClientID {
		t.Errorf("MSI requests = %+v, want resource %s for client %s", reqs, azuretest.KeyVaultResource, e.ident.ClientID)
	}
	// The challenge came first, then every request carried a good token
	// and an api-version; the versions list took two pages.
	kvReqs := e.kv.Requests()
	if kvReqs[0].Authenticated || kvReqs[0].Status != 401 {
		t.Errorf("first Key Vault request = %+v, want the unauthenticated challenge", kvReqs[0])
	}
	lists := 0
	for _, r := range kvReqs[1:] {
		if !r.Authenticated || r.Status != 200 || r.APIVersion == "" {
			t.Errorf("Key Vault request %+v", r)
		}
		if strings.HasSuffix(r.Path, "/versions") {
			lists++
		}
	}
	if lists != 2 {
		t.Errorf("listed versions in %d pages, want 2", lists)
	}
	e.noLeak(t, "log", e.logs.String())
	if !strings.Contains(e.logs.String(), "secrets loaded") {
		t.Errorf("no load logged: %s", e.logs)
	}
	e.noLeak(t, "Values.String", s.Current().String())
}

func TestKeyVaultSkipsDisabledExpiredAndHoldsBackPending(t *testing.T) {
	e := newVaultEnv(t)
	e.set(clientSecretName, clientSecret, azuretest.VersionAttributes{})
	now := time.Now()
	vOld, _ := e.addKey(t, azuretest.VersionAttributes{})
	vExpired, kExpired := e.addKey(t, azuretest.VersionAttributes{Expires: now.Add(-time.Minute)})
	vCurrent, kCurrent := e.addKey(t, azuretest.VersionAttributes{})
	vDisabled, kDisabled := e.addKey(t, azuretest.VersionAttributes{})
	e.kv.SetEnabled(sealingKeyName, vDisabled, false)
	vPending, kPending := e.addKey(t, azuretest.VersionAttributes{NotBefore: now.Add(time.Hour)})

	s, err := secrets.New(context.Background(), e.options())
	if err != nil {
		t.Fatal(err)
	}
	// Newest valid first; the pending version is last: it opens but does not seal.
	if got, want := s.Current().KeyVersions, []string{vCurrent, vOld, vPending}; !slices.Equal(got, want) {
		t.Errorf("KeyVersions = %v, want %v (expired %s, disabled %s skipped)", got, want, vExpired, vDisabled)
	}
	sealed, err := s.Seal("k", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring(t, kCurrent).Open("k", sealed); err != nil {
		t.Errorf("seals with something other than the newest valid key: %v", err)
	}
	pendingSealed, _ := ring(t, kPending).Seal("k", []byte("x"))
	if _, err := s.Open("k", pendingSealed); err != nil {
		t.Errorf("data sealed with the pending key does not open: %v", err)
	}
	for name, k := range map[string][]byte{"disabled": kDisabled, "expired": kExpired} {
		t.Run(name, func(t *testing.T) {
			sealed, _ := ring(t, k).Seal("k", []byte("x"))
			if _, err := s.Open("k", sealed); !errors.Is(err, seal.ErrOpen) {
				t.Errorf("data sealed with the %s key: Open err = %v, want seal.ErrOpen", name, err)
			}
		})
	}
}

func TestKeyVaultDownAtStart(t *testing.T) {
	for _, mode := range []int{azuretest.Unavailable, azuretest.Closed} {
		e := newVaultEnv(t)
		e.set(clientSecretName, clientSecret, azuretest.VersionAttributes{})
		e.addKey(t, azuretest.VersionAttributes{})
		e.kv.SetMode(mode)

		start := time.Now()
		s, err := secrets.New(context.Background(), e.options())
		if err == nil {
			t.Fatalf("mode %d: New succeeded: %v", mode, s.Current())
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("mode %d: New took %s with fast retries", mode, time.Since(start))
		}
		msg := err.Error()
		t.Logf("mode %d: %s", mode, msg)
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "KEY_VAULT_URI "+e.kv.URL()+": ") ||
			!strings.Contains(msg, "after 4 attempts") {
			t.Errorf("mode %d: error is not one clear line naming the setting and the attempts: %q", mode, msg)
		}
		if mode == azuretest.Unavailable && !strings.Contains(msg, "HTTP 503") {
			t.Errorf("error does not say what failed: %q", msg)
		}
		if !errors.Is(err, outage.ErrUnavailable) || outage.Dependency(err) != secrets.Dependency {
			t.Errorf("mode %d: error is not a Key Vault outage (dependency %q): %q", mode, outage.Dependency(err), msg)
		}
		if n := e.kv.RequestCount(); n != fastRetry.Attempts {
			t.Errorf("mode %d: Key Vault got %d requests, want one per attempt (%d)", mode, n, fastRetry.Attempts)
		}
		e.noLeak(t, "error", msg)
		e.noLeak(t, "log", e.logs.String())
	}
}

func TestStartTotalBudget(t *testing.T) {
	e := newVaultEnv(t)
	e.kv.SetMode(azuretest.Unavailable)
	o := e.options()
	// The attempts and delays alone would take over 10 s; the budget ends
	// them after a few, and any budget well under the 2 s bound shows it.
	o.Retry = secrets.Retry{Attempts: 1000, Delay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond, Total: 60 * time.Millisecond}
	start := time.Now()
	_, err := secrets.New(context.Background(), o)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("New = %v after %s, want an error within the total budget", err, time.Since(start))
	}
}

func TestMissingSecretsAreClearErrors(t *testing.T) {
	e := newVaultEnv(t)
	e.addKey(t, azuretest.VersionAttributes{})
	_, err := secrets.New(context.Background(), e.options())
	if err == nil || !strings.Contains(err.Error(), `read secret "app-client-secret" (KEY_VAULT_CLIENT_SECRET_NAME): HTTP 404 SecretNotFound`) {
		t.Errorf("no client secret: err = %v", err)
	}
	if errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("a missing secret is reported as an outage: %v", err)
	}

	// Secretless mode needs no client secret.
	o := e.options()
	o.Secretless = true
	s, err := secrets.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if s.ClientSecret() != "" {
		t.Error("secretless store has a client secret")
	}

	// A bad key value is reported by version, never echoed.
	e.set(sealingKeyName, "this is not a key but could be secret", azuretest.VersionAttributes{})
	_, err = secrets.New(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "not base64") {
		t.Errorf("bad key: err = %v", err)
	}
	e.noLeak(t, "error", err.Error())

	// Only disabled versions: nothing to seal with.
	e2 := newVaultEnv(t)
	v, _ := e2.addKey(t, azuretest.VersionAttributes{})
	e2.kv.SetEnabled(sealingKeyName, v, false)
	o2 := e2.options()
	o2.Secretless = true
	_, err = secrets.New(context.Background(), o2)
	if err == nil || !strings.Contains(err.Error(), "no enabled, unexpired and currently valid version") {
		t.Errorf("only disabled versions: err = %v", err)
	}
}

func TestManagedIdentityRefusedIsClear(t *testing.T) {
	e := newVaultEnv(t)
	e.addKey(t, azuretest.VersionAttributes{})
	t.Setenv("IDENTITY_HEADER", "wrong-header-value")
	cred, err := azcred.New(azcred.Options{ManagedIdentity: true, ClientID: e.ident.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	o := e.options()
	o.Credential = cred
	o.Secretless = true
	o.Retry.Attempts = 2
	_, err = secrets.New(context.Background(), o)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "managed identity") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %q, want one line about the managed identity", err)
	}
	if errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("a refused identity is reported as an outage: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-header-value") || strings.Contains(e.logs.String(), "wrong-header-value") {
		t.Error("the identity header leaked")
	}
	if e.msi.Refused() == 0 {
		t.Error("the MSI stand-in refused nothing")
	}
}

func TestReloadKeepsLastGoodAndPicksUpNewVersion(t *testing.T) {
	e := newVaultEnv(t)
	e.set(clientSecretName, clientSecret, azuretest.VersionAttributes{})
	_, k1 := e.addKey(t, azuretest.VersionAttributes{})
	o := e.options()
	o.ReloadInterval = 20 * time.Millisecond
	s, err := secrets.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Current()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Down later: reloads fail, the last good values stay.
	e.kv.SetMode(azuretest.Unavailable)
	testkit.WaitFor(t, "a failed reload logged", func() bool { return strings.Contains(e.logs.String(), "keeping the last good values") })
	if s.Current() != first || s.ClientSecret() != clientSecret {
		t.Fatal("a failed reload replaced the values")
	}
	if err := s.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("Reload while down = %v", err)
	}

	// Back, with a new key version and a rotated client secret.
	v2, k2 := e.addKey(t, azuretest.VersionAttributes{})
	e.set(clientSecretName, clientSecret+"-rotated", azuretest.VersionAttributes{})
	e.kv.SetMode(azuretest.Healthy)
	testkit.WaitFor(t, "the new version loaded", func() bool { return s.Current().KeyVersions[0] == v2 })
	if s.ClientSecret() != clientSecret+"-rotated" {
		t.Error("the rotated client secret was not loaded")
	}
	sealed, _ := s.Seal("n", []byte("x"))
	if _, err := ring(t, k2).Open("n", sealed); err != nil {
		t.Errorf("new seals do not use the new version: %v", err)
	}
	oldSealed, _ := ring(t, k1).Seal("n", []byte("x"))
	if _, err := s.Open("n", oldSealed); err != nil {
		t.Errorf("rotation broke data sealed with the old key: %v", err)
	}
	if !strings.Contains(e.logs.String(), "secrets changed") {
		t.Error("the change was not logged")
	}
	e.noLeak(t, "log", e.logs.String())
}

// TestOpenWithUnknownKeyReloads: data sealed with a key another instance
// loaded first opens at once (one reload, shared by concurrent callers);
// a key that is really gone fails with seal.ErrOpen without a reload per
// call.
func TestOpenWithUnknownKeyReloads(t *testing.T) {
	e := newVaultEnv(t)
	e.addKey(t, azuretest.VersionAttributes{})
	o := e.options()
	o.Secretless = true
	o.ReloadInterval = time.Hour // only the unknown key can bring the new one in time
	o.MinReloadGap = time.Minute
	a, err := secrets.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := secrets.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// b's start-up load was just now: let its reload gap pass.
	b.ForgetLastLoad()

	// Instance a learns of a new key first and seals with it; what one
	// reload costs in vault requests is counted on the way.
	e.addKey(t, azuretest.VersionAttributes{})
	before := e.kv.RequestCount()
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	perReload := e.kv.RequestCount() - before
	sealed, _ := a.Seal("n", []byte("from a"))

	// Instance b opens it at once, twenty callers at a time, with one reload.
	reads := e.kv.RequestCount()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if plain, err := b.Open("n", sealed); err != nil || string(plain) != "from a" {
				t.Errorf("b could not open data sealed with a key it had not loaded: %v", err)
			}
		})
	}
	wg.Wait()
	if n := e.kv.RequestCount() - reads; n != perReload {
		t.Errorf("%d vault requests for one unknown key, want one reload's %d", n, perReload)
	}

	// A key nobody holds: refused, and no more reloads within the gap.
	other := make([]byte, 32)
	other[0] = 7
	gone, _ := ring(t, other).Seal("n", []byte("x"))
	reads = e.kv.RequestCount()
	for range 5 {
		if _, err := b.Open("n", gone); !errors.Is(err, seal.ErrOpen) {
			t.Fatalf("a removed key: %v, want seal.ErrOpen", err)
		}
	}
	if n := e.kv.RequestCount() - reads; n != 0 {
		t.Errorf("%d vault reads within the reload gap", n)
	}
}

// TestOptionsRequired: New names the setting whose value it lacks, and
// reaches for nothing else (the environment is config's).
func TestOptionsRequired(t *testing.T) {
	vault := secrets.Settings{VaultURI: "https://x.vault.azure.net", ClientSecretName: clientSecretName, SealingKeyName: sealingKeyName}
	cred, err := azcred.New(azcred.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts secrets.Options
		want string
	}{
		{"no vault", secrets.Options{Credential: cred, Settings: secrets.Settings{ClientSecretName: clientSecretName, SealingKeyName: sealingKeyName}}, "KEY_VAULT_URI: "},
		{"no credential", secrets.Options{Settings: vault}, "KEY_VAULT_URI: "},
		{"no client secret name", secrets.Options{Credential: cred, Settings: secrets.Settings{VaultURI: vault.VaultURI, SealingKeyName: sealingKeyName}}, "KEY_VAULT_CLIENT_SECRET_NAME: "},
		{"no sealing key name", secrets.Options{Credential: cred, Settings: secrets.Settings{VaultURI: vault.VaultURI, ClientSecretName: clientSecretName}}, "KEY_VAULT_SEALING_KEY_NAME: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secrets.New(context.Background(), tc.opts)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestValuesPrintWithoutSecrets(t *testing.T) {
	e := newVaultEnv(t)
	e.set(clientSecretName, clientSecret, azuretest.VersionAttributes{})
	e.addKey(t, azuretest.VersionAttributes{})
	s, err := secrets.New(context.Background(), e.options())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", s.Current())
	e.noLeak(t, "slog output", buf.String())
	e.noLeak(t, "fmt output", fmtAll(s.Current()))
}

// helpers

func mustDecode(t *testing.T, b64 string) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fmtAll(v *secrets.Values) string {
	return fmt.Sprintf("%v %+v %#v %s", v, v, v, v)
}

func ring(t *testing.T, keys ...[]byte) *seal.Ring {
	t.Helper()
	r, err := seal.NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
