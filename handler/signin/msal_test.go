package signin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

const redirect = "http://127.0.0.1:9/auth/callback"

// newService is a sign-in service with ONE pooled MSAL client, so every
// call reuses the cache accessor the previous call left behind.
func newService(t *testing.T) (*Service, *devidp.Server, *store.Sessions) {
	s, idp, sessions, _, _ := newServiceWithRing(t)
	return s, idp, sessions
}

// newServiceWithRing also returns the sealing ring (to rotate keys under
// the service) and its log.
func newServiceWithRing(t *testing.T) (*Service, *devidp.Server, *store.Sessions, *seal.Ring, *testkit.SyncBuffer) {
	t.Helper()
	idp, err := devidp.Start(devidp.Options{RedirectURIs: []string{redirect}, SigningKey: testkit.RSAKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	ring := testkit.Ring(t)
	rdb := storetest.Redis(t)
	sessions := store.NewSessions(rdb, ring)
	logs := &testkit.SyncBuffer{}
	cred, _ := confidential.NewCredFromSecret(idp.ClientSecret())
	ids, err := entra.NewVerifier(entra.Config{AuthorityHost: idp.AuthorityHost(), TenantID: idp.TenantID(),
		ClientID: idp.ClientID(), HTTPClient: idp.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		IDTokens:      ids,
		PublicBaseURL: "http://127.0.0.1:9",
		Entra: config.Entra{TenantID: idp.TenantID(), ClientID: idp.ClientID(), AuthorityHost: idp.AuthorityHost(),
			AllowedTenants: []string{idp.TenantID()}, TokenVersion: 2, AppIDURI: "api://" + idp.ClientID()},
		Credential: cred,
		HTTPClient: idp.HTTPClient(),
		Sessions:   sessions,
		Records:    grants.NewRecords(rdb, ring),
		Sealer:     ring,
		Limits: Limits{
			SignIn:   ratelimit.New(rdb, "test-signin", 100, time.Second, 100),
			Callback: ratelimit.New(rdb, "test-callback", 100, time.Second, 100),
			Failures: ratelimit.New(rdb, "test-failures", 100, time.Second, 100),
			Refresh:  ratelimit.New(rdb, "test-refresh", 100, time.Second, 100),
		},
		PoolSize: 1,
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, idp, sessions, ring, logs
}

// redeem signs user in at the stand-in and redeems the code through the
// pool, as the callback does.
func redeem(t *testing.T, s *Service, idp *devidp.Server, user string) confidential.AuthResult {
	t.Helper()
	ctx := context.Background()
	verifier, _ := randomString(32)
	var authURL string
	if _, err := s.pool.with(ctx, "", func(c confidential.Client) error {
		var err error
		authURL, err = c.AuthCodeURL(ctx, idp.ClientID(), redirect, s.scopes)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	q.Set("code_challenge", s256(verifier))
	q.Set("code_challenge_method", "S256")
	q.Set("state", "s")
	q.Set("nonce", "n")
	u.RawQuery = q.Encode()
	loc, err := idp.SignIn(ctx, u.String(), user)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse(loc)
	var res confidential.AuthResult
	if _, err := s.pool.redeem(ctx, time.Time{}, func(c confidential.Client) error {
		var err error
		res, err = c.AcquireTokenByAuthCode(ctx, cb.Query().Get("code"), redirect, s.apiScopes, confidential.WithChallenge(verifier))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestCacheNeverCarriesAnotherUsersTokens: with one shared client, a second
// user's sign-in must start from an empty cache, so their stored cache never
// holds the first user's tokens, and a user whose cache is gone gets an
// error, not someone else's token.
func TestCacheNeverCarriesAnotherUsersTokens(t *testing.T) {
	t.Parallel()
	s, idp, sessions := newService(t)
	ctx := context.Background()
	reader, _ := devidp.DemoUser("reader")
	writer, _ := devidp.DemoUser("writer")

	a := redeem(t, s, idp, "reader")
	b := redeem(t, s, idp, "writer")
	if a.Account.HomeAccountID != homeAccountID(idp.TenantID(), reader.ObjectID) ||
		b.Account.HomeAccountID != homeAccountID(idp.TenantID(), writer.ObjectID) {
		t.Fatalf("accounts %q, %q", a.Account.HomeAccountID, b.Account.HomeAccountID)
	}
	data, found, _, err := sessions.LoadMSAL(ctx, idp.TenantID(), writer.ObjectID)
	if err != nil || !found {
		t.Fatalf("writer's cache: %v %v", found, err)
	}
	if strings.Contains(string(data), reader.ObjectID) {
		t.Fatal("the writer's stored cache holds the reader's account or tokens")
	}

	// The reader's silent call gets the reader's token although the client
	// last held the writer's cache.
	res, err := s.acquireSilent(ctx, a.Account.HomeAccountID, s.opts.Entra.Scope())
	if err != nil || testkit.Claims(t, res.AccessToken)["oid"] != reader.ObjectID {
		t.Fatalf("reader's silent token: %v", err)
	}

	// With the reader's cache gone, the reader gets an error: never the
	// writer's token from the client's memory.
	if err := sessions.DeleteMSAL(ctx, idp.TenantID(), reader.ObjectID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.acquireSilent(ctx, b.Account.HomeAccountID, s.opts.Entra.Scope()); err != nil {
		t.Fatalf("writer: %v", err)
	}
	if res, err := s.acquireSilent(ctx, a.Account.HomeAccountID, s.opts.Entra.Scope()); err == nil {
		t.Fatalf("reader with no cache got a token for %s", testkit.Claims(t, res.AccessToken)["oid"])
	}
}

// TestUnopenableCacheIsEmpty: after the key that sealed a user's MSAL
// cache is removed from the ring (an emergency rotation), the user's next
// sign-in works at once, from an empty cache, and says so at WARN.
func TestUnopenableCacheIsEmpty(t *testing.T) {
	t.Parallel()
	s, idp, sessions, ring, logs := newServiceWithRing(t)
	ctx := context.Background()
	reader, _ := devidp.DemoUser("reader")
	redeem(t, s, idp, "reader")

	key, _ := seal.GenerateKey()
	fresh, _ := seal.ParseKeys(key)
	ring.Update(fresh) // the old key is gone
	if _, _, _, err := sessions.LoadMSAL(ctx, idp.TenantID(), reader.ObjectID); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("the old cache opens: %v", err)
	}
	res := redeem(t, s, idp, "reader")
	if res.AccessToken == "" {
		t.Fatal("no token after the key was removed")
	}
	if _, found, _, err := sessions.LoadMSAL(ctx, idp.TenantID(), reader.ObjectID); !found || err != nil {
		t.Fatalf("the cache was not resealed with the new key: %v %v", found, err)
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"MSAL cache does not open`) {
		t.Errorf("no WARN line: %s", logs)
	}
}

// TestHandOffWithoutContinuation: a Service never given a Continuation
// refuses a hand-off before the browser goes to Entra, with a page that
// does not ask to retry.
func TestHandOffWithoutContinuation(t *testing.T) {
	t.Parallel()
	s, _, _ := newService(t)
	w := httptest.NewRecorder()
	s.StartFor(w, httptest.NewRequest(http.MethodGet, "/oauth/authorize", nil), json.RawMessage(`{}`))
	if w.Code != http.StatusInternalServerError || w.Header().Get("Location") != "" || w.Header().Get("Retry-After") != "" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}
