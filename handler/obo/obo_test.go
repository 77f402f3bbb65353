package obo_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/standin"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

var graphScopes = []string{devidp.GraphResource + "/User.Read"}

// env is a stand-in Entra with its Graph, a verifier for its tokens, a
// Redis and an obo.Client over all of them.
type env struct {
	t      *testing.T
	idp    *devidp.Server
	verify *entra.Verifier
	rdb    redis.UniversalClient
	client *obo.Client
	logs   *testkit.SyncBuffer
}

func newEnv(t *testing.T, rdb redis.UniversalClient, opts ...func(*obo.Options)) *env {
	t.Helper()
	idp, v := standin.Start(t, devidp.Options{})
	e := &env{t: t, idp: idp, verify: v, rdb: rdb, logs: &testkit.SyncBuffer{}}
	e.client = e.newClient(opts...)
	return e
}

func (e *env) newClient(opts ...func(*obo.Options)) *obo.Client {
	e.t.Helper()
	cred, err := confidential.NewCredFromSecret(e.idp.ClientSecret())
	if err != nil {
		e.t.Fatal(err)
	}
	o := obo.Options{
		Authority:  e.idp.Authority(),
		ClientID:   e.idp.ClientID(),
		Credential: cred,
		HTTPClient: e.idp.HTTPClient(),
		Redis:      e.rdb,
		Ring:       testkit.Ring(e.t),
		Logger:     slog.New(slog.NewJSONHandler(e.logs, nil)),
	}
	for _, f := range opts {
		f(&o)
	}
	c, err := obo.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// signIn mints an access token for the demo user key, as a client would
// send it, and verifies it into a principal as the HTTP layer does.
func (e *env) signIn(key string) (*entra.Principal, string) {
	e.t.Helper()
	u, ok := devidp.DemoUser(key)
	if !ok {
		e.t.Fatalf("no demo user %q", key)
	}
	tok, err := e.idp.Mint(u)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := e.verify.Verify(context.Background(), tok)
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	return p, tok
}

func (e *env) oboRequests() int64 { return e.idp.TokenRequests(devidp.GrantJWTBearer) }

// me calls the Graph stand-in with token and returns its JSON.
func (e *env) me(token string) map[string]any {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.idp.GraphBaseURL()+"/v1.0/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.idp.HTTPClient().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("Graph /me: %d %v", resp.StatusCode, body)
	}
	return body
}

// redisValues returns every kept token in the test's Redis, by
// "<key> <field>".
func redisValues(t *testing.T, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		fields, err := rdb.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range fields {
			out[k+" "+f] = v
		}
	}
	return out
}

func TestHappyPathAndCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Redis(t))
	p, incoming := e.signIn("reader")

	tok, err := e.client.Token(entra.NewVerifiedContext(ctx, p, incoming), graphScopes)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	me := e.me(tok)
	if me["id"] != p.ObjectID || me["displayName"] != "Rita Reader" || me["mail"] != "reader@devidp.example" || me["jobTitle"] == nil {
		t.Errorf("/me = %v", me)
	}
	if n := e.oboRequests(); n != 1 {
		t.Fatalf("OBO requests = %d, want 1", n)
	}

	// Kept sealed in Redis under the user's key, until shortly before expiry.
	vals := redisValues(t, e.rdb)
	if len(vals) != 1 {
		t.Fatalf("Redis holds %d keys, want 1: %v", len(vals), vals)
	}
	for kf, v := range vals {
		k, field, _ := strings.Cut(kf, " ")
		if !strings.HasPrefix(k, "obo:{") || !strings.HasSuffix(k, "}:"+p.TenantID+"."+p.ObjectID) || len(field) != 64 {
			t.Errorf("key %q field %q, want obo:{<tag>}:<tid>.<oid> and a scope digest", k, field)
		}
		testkit.NoTokenIn(t, "Redis value", v, incoming, tok)
		ttl := e.rdb.TTL(ctx, k).Val()
		if ttl < 50*time.Minute || ttl > 55*time.Minute {
			t.Errorf("TTL %v, want about an hour less the 5-minute margin", ttl)
		}
	}

	// The next call, even with a new token of the same user, is answered
	// from Redis: no OBO request. So is a call from another instance (a
	// fresh Client with the same ring would be; here the same Client).
	p2, incoming2 := e.signIn("reader")
	again, err := e.client.Token(entra.NewVerifiedContext(ctx, p2, incoming2), []string{strings.ToLower(graphScopes[0])})
	if err != nil || again != tok {
		t.Fatalf("second Token: %v (same token: %v)", err, again == tok)
	}
	if n := e.oboRequests(); n != 1 {
		t.Errorf("OBO requests after a cached call = %d, want 1", n)
	}
	testkit.NoTokenIn(t, "logs", e.logs.String(), incoming, incoming2, tok)
}

func TestUsersNeverShareTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Redis(t))
	reader, readerTok := e.signIn("reader")
	writer, writerTok := e.signIn("writer")

	got := map[string]string{}
	for _, c := range []struct {
		p   *entra.Principal
		tok string
	}{{reader, readerTok}, {writer, writerTok}, {reader, readerTok}, {writer, writerTok}} {
		tok, err := e.client.Token(entra.NewVerifiedContext(ctx, c.p, c.tok), graphScopes)
		if err != nil {
			t.Fatal(err)
		}
		if oid := testkit.Claims(t, tok)["oid"]; oid != c.p.ObjectID {
			t.Fatalf("%s got a token for %v", c.p.Name, oid)
		}
		if prev, ok := got[c.p.ObjectID]; ok && prev != tok {
			t.Errorf("%s: cached token not reused", c.p.Name)
		}
		got[c.p.ObjectID] = tok
	}
	if got[reader.ObjectID] == got[writer.ObjectID] {
		t.Error("two users got the same token")
	}
	if n := e.oboRequests(); n != 2 {
		t.Errorf("OBO requests = %d, want 2", n)
	}
	if n := len(redisValues(t, e.rdb)); n != 2 {
		t.Errorf("Redis holds %d tokens, want 2", n)
	}

}

func TestConcurrentUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Redis(t))
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		key := []string{"reader", "writer", "all", "admin"}[i%4]
		p, tok := e.signIn(key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes)
			if err != nil {
				t.Errorf("%s: %v", key, err)
				return
			}
			if oid := testkit.Claims(t, got)["oid"]; oid != p.ObjectID {
				t.Errorf("%s got a token for %v", key, oid)
			}
		}()
	}
	wg.Wait()
}

func TestConsentMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Redis(t))
	p, tok := e.signIn("reader")
	e.idp.RevokeConsent(p.ObjectID, "User.Read")

	_, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes)
	var ce *obo.ConsentError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a ConsentError", err)
	}
	if ce.Code != 65001 || ce.InteractionRequired || ce.ClientID != e.idp.ClientID() || len(ce.Scopes) != 1 {
		t.Errorf("ConsentError = %+v", ce)
	}
	msg := ce.UserMessage()
	for _, want := range []string{"User.Read", "https://graph.microsoft.com", "admin consent", e.idp.ClientID(), "AADSTS65001"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if errors.Is(err, outage.ErrUnavailable) {
		t.Error("consent error claims an outage")
	}
	if n := len(redisValues(t, e.rdb)); n != 0 {
		t.Errorf("Redis holds %d keys after a refusal", n)
	}
	// Once an admin consents, the same token works.
	e.idp.GrantConsent(p.ObjectID, "User.Read")
	if _, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes); err != nil {
		t.Errorf("after consent: %v", err)
	}
}

func TestEntraOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Redis(t))
	p, tok := e.signIn("reader")

	e.idp.SetTokenFailing(true)
	_, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes)
	if !errors.Is(err, obo.ErrUnavailable) || !errors.Is(err, outage.ErrUnavailable) {
		t.Fatalf("token endpoint 503: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), tok) {
		t.Errorf("error text: %v", err)
	}
	// An Entra outage is logged as one, not as Redis's.
	if outage.Dependency(err) != obo.Dependency || !strings.Contains(err.Error(), "entra token service unavailable") || strings.Contains(err.Error(), "redis") {
		t.Errorf("token endpoint 503: %q does not name Entra's token service as what is unavailable", err)
	}
	e.idp.SetTokenFailing(false)
	if _, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	// Entra gone altogether: a network error, also unavailable. (Another
	// user, so the cache does not answer.)
	w, wtok := e.signIn("writer")
	_ = e.idp.Close()
	_, err = e.client.Token(entra.NewVerifiedContext(ctx, w, wtok), graphScopes)
	if !errors.Is(err, obo.ErrUnavailable) {
		t.Errorf("Entra unreachable: %v, want ErrUnavailable", err)
	}
}

func TestOtherRefusalsAreNotOutages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Redis(t))
	p, tok := e.signIn("reader")
	// A wrong client secret is our misconfiguration: an internal error
	// naming Entra's code, neither consent nor outage.
	bad := e.newClient(func(o *obo.Options) {
		o.Credential, _ = confidential.NewCredFromSecret("wrong")
	})
	_, err := bad.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes)
	var ce *obo.ConsentError
	if err == nil || errors.As(err, &ce) || errors.Is(err, obo.ErrUnavailable) || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("wrong secret: %v", err)
	}
	// An unknown permission likewise.
	_, err = e.client.Token(entra.NewVerifiedContext(ctx, p, tok), []string{devidp.GraphResource + "/Nope.Read"})
	if err == nil || errors.As(err, &ce) || errors.Is(err, obo.ErrUnavailable) {
		t.Errorf("unknown scope: %v", err)
	}
	// Arguments.
	for name, call := range map[string]func() error{
		"nil principal": func() error {
			_, err := e.client.Token(entra.NewVerifiedContext(ctx, nil, tok), graphScopes)
			return err
		},
		"no token":  func() error { _, err := e.client.Token(entra.NewVerifiedContext(ctx, p, ""), graphScopes); return err },
		"no scopes": func() error { _, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), nil); return err },
		"not a GUID": func() error {
			_, err := e.client.Token(entra.NewVerifiedContext(ctx, &entra.Principal{TenantID: "x", ObjectID: p.ObjectID}, tok), graphScopes)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); err == nil {
				t.Errorf("%s: no error", name)
			}
		})
	}
}

func TestRedisDownStillWorks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, storetest.Down(t))
	p, tok := e.signIn("reader")
	for i := 1; i <= 2; i++ {
		got, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if testkit.Claims(t, got)["oid"] != p.ObjectID {
			t.Fatal("wrong user")
		}
	}
	if !strings.Contains(e.logs.String(), "obo: read token cache") {
		t.Errorf("the outage was not logged: %s", e.logs.String())
	}
	testkit.NoTokenIn(t, "logs", e.logs.String(), tok)
}

func TestExpiryMarginAndForget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, storetest.Redis(t), func(o *obo.Options) { o.Now = clock })
	p, tok := e.signIn("reader")
	first, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes)
	if err != nil {
		t.Fatal(err)
	}
	// 54 minutes on, the hour-long token is still good for longer than
	// the margin; at 56 it is not, and Entra is asked again (with a new
	// incoming token, as a client would have by then).
	mu.Lock()
	now = now.Add(54 * time.Minute)
	mu.Unlock()
	if got, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok), graphScopes); err != nil || got != first || e.oboRequests() != 1 {
		t.Fatalf("at 54 min: %v, same %v, %d requests", err, got == first, e.oboRequests())
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	_, tok2 := e.signIn("reader")
	if _, err := e.client.Token(entra.NewVerifiedContext(ctx, p, tok2), graphScopes); err != nil || e.oboRequests() != 2 {
		t.Fatalf("at 56 min: %v, %d requests", err, e.oboRequests())
	}

	// Forget drops the kept token.
	if err := e.client.Forget(ctx, p, graphScopes); err != nil {
		t.Fatal(err)
	}
	if n := len(redisValues(t, e.rdb)); n != 0 {
		t.Errorf("Redis holds %d keys after Forget", n)
	}
}

func TestNewChecksOptions(t *testing.T) {
	t.Parallel()
	ring := testkit.Ring(t)
	rdb := storetest.Mini(t)
	for name, o := range map[string]obo.Options{
		"no authority":    {ClientID: "c", Redis: rdb, Ring: ring},
		"no client id":    {Authority: "https://login.microsoftonline.com/t", Redis: rdb, Ring: ring},
		"no redis":        {Authority: "https://login.microsoftonline.com/t", ClientID: "c", Ring: ring},
		"no ring":         {Authority: "https://login.microsoftonline.com/t", ClientID: "c", Redis: rdb},
		"http authority":  {Authority: "http://login.microsoftonline.com/t", ClientID: "c", Redis: rdb, Ring: ring},
		"bad credentials": {Authority: "https://login.microsoftonline.com/t", ClientID: "c", Redis: rdb, Ring: ring},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := obo.New(o); err == nil {
				t.Errorf("%s: New succeeded", name)
			}
		})
	}
}
