package entra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
)

func TestNewKidPickedUp(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	before := e.idp.JWKSFetches()
	newKid, err := e.idp.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	tok := e.mint()
	// Within the refresh interval of Warm, an unknown kid fails fast...
	if _, err := e.v.verify(ctx, tok); !errors.Is(err, errRefreshThrottled) {
		t.Fatalf("inside refresh interval: %v", err)
	}
	if n := e.idp.JWKSFetches() - before; n != 0 {
		t.Fatalf("%d fetches inside the refresh interval", n)
	}
	// ...and once the interval has passed it causes one fetch and verifies.
	e.clock.Add(defaultMinRefreshInterval)
	if _, err := e.v.verify(ctx, tok); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := e.idp.JWKSFetches() - before; n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if st := e.v.Stats(); !slices.Contains(st.KeyIDs, newKid) || len(st.KeyIDs) != 2 {
		t.Errorf("Stats().KeyIDs = %v", st.KeyIDs)
	}
}

// TestUnknownKidFlood sends 1000 concurrent tokens with distinct unknown kids
// and checks that they cause at most one fetch per refresh interval, while
// tokens with known kids keep verifying.
func TestUnknownKidFlood(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	claims := e.claims()
	flood := func() {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 1000 {
			// The kid is looked up before the signature is checked, so a junk
			// signature is enough to exercise the refresh path.
			tok := unsigned(map[string]any{"alg": "RS256", "kid": fmt.Sprintf("flood-%d", i)}, claims, "AAAA")
			wg.Go(func() {
				<-start
				if _, err := e.v.verify(ctx, tok); !errors.Is(err, errUnknownKid) {
					t.Errorf("flood token: %v", err)
				}
			})
		}
		good := e.mint() // never seen, so it takes the key path, not the cache
		wg.Go(func() {
			<-start
			if _, err := e.v.verify(ctx, good); err != nil {
				t.Errorf("known kid during flood: %v", err)
			}
		})
		close(start)
		wg.Wait()
	}
	for i, step := range []struct {
		advance time.Duration
		want    int64
	}{
		{defaultMinRefreshInterval, 1},     // interval passed: one fetch for all
		{0, 0},                             // same instant: none
		{defaultMinRefreshInterval / 2, 0}, // still inside the interval: none
		{defaultMinRefreshInterval / 2, 1}, // next interval: one again
	} {
		e.clock.Add(step.advance)
		before := e.idp.JWKSFetches()
		flood()
		if n := e.idp.JWKSFetches() - before; n != step.want {
			t.Errorf("step %d: %d JWKS fetches, want %d", i, n, step.want)
		}
	}
}

func TestOutageKeepsCachedKeys(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	kids := e.v.Stats().KeyIDs
	e.idp.SetJWKSFailing(true)

	// Keys are old enough for a background refresh; it fails, and the old
	// keys keep working.
	e.clock.Add(defaultMaxKeyAge + time.Second)
	if _, err := e.v.Verify(ctx, e.mint()); err != nil {
		t.Fatalf("during outage: %v", err)
	}
	waitFor(t, func() bool { return e.v.Stats().LastRefreshError != "" })
	// An unknown kid forces a fetch of its own, which fails too.
	e.clock.Add(defaultMinRefreshInterval)
	if _, err := e.v.verify(ctx, e.sign(with(e.rs256Header(), "kid", "new"), e.claims())); !errors.Is(err, errUnknownKid) {
		t.Fatalf("unknown kid during outage: %v", err)
	}
	if _, err := e.v.Verify(ctx, e.mint()); err != nil {
		t.Fatalf("after failed refreshes: %v", err)
	}
	st := e.v.Stats()
	if !slices.Equal(st.KeyIDs, kids) || !strings.Contains(st.LastRefreshError, "503") || st.JWKSFetches < 3 {
		t.Errorf("Stats() = %+v, want keys %v kept and a 503 error", st, kids)
	}

	// Recovery: the next refresh succeeds and clears the error.
	e.idp.SetJWKSFailing(false)
	if err := e.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.v.Stats(); st.LastRefreshError != "" || !st.LastRefresh.Equal(e.clock.Now()) {
		t.Errorf("after recovery Stats() = %+v", st)
	}
}

func TestRetiredKeyStopsVerifying(t *testing.T) {
	for _, how := range []string{"warm", "background"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			old := e.idp.CurrentKeyID()
			// Long-lived, so that it outlives the key age the background
			// case waits for.
			tok := e.mint(devidp.WithLifetime(2 * defaultMaxKeyAge))
			p1, err := e.v.Verify(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.idp.RotateKey(); err != nil {
				t.Fatal(err)
			}
			e.idp.RetireKey(old)
			// Until the verifier refreshes, the cached token still stands.
			if p2, err := e.v.Verify(ctx, tok); err != nil || p2 != p1 {
				t.Fatalf("before refresh: %v (same principal: %v)", err, p2 == p1)
			}
			switch how {
			case "warm":
				if err := e.v.Warm(ctx); err != nil {
					t.Fatal(err)
				}
			case "background":
				e.clock.Add(defaultMaxKeyAge)
				fetches := e.v.Stats().JWKSFetches
				// This call is served (cache), and starts the refresh.
				if _, err := e.v.Verify(ctx, tok); err != nil {
					t.Fatalf("call that starts the refresh: %v", err)
				}
				waitFor(t, func() bool {
					st := e.v.Stats()
					return st.JWKSFetches > fetches && !slices.Contains(st.KeyIDs, old)
				})
			}
			if _, err := e.v.verify(ctx, tok); !errors.Is(err, errUnknownKid) {
				t.Fatalf("retired key's token after refresh: %v", err)
			}
			// A token minted now with the retired key is refused as well.
			if _, err := e.v.verify(ctx, e.mint(devidp.WithKeyID(old))); !errors.Is(err, errUnknownKid) {
				t.Fatalf("new token from retired key: %v", err)
			}
			if _, err := e.v.Verify(ctx, e.mint()); err != nil {
				t.Fatalf("token from the new key: %v", err)
			}
		})
	}
}

// blockingTransport, once armed, holds key-set requests until release is
// closed.
type blockingTransport struct {
	base    http.RoundTripper
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.armed.Load() && strings.HasSuffix(r.URL.Path, "/keys") {
		b.once.Do(func() { close(b.entered) })
		<-b.release
	}
	return b.base.RoundTrip(r)
}

func TestKnownKidNotBlockedByRefresh(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	bt := &blockingTransport{base: e.idp.HTTPClient().Transport, entered: make(chan struct{}), release: make(chan struct{})}
	client := e.idp.HTTPClient()
	client.Transport = bt
	v := e.newVerifier(func(c *Config) { c.HTTPClient = client })
	if err := v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	bt.armed.Store(true)

	e.clock.Add(defaultMinRefreshInterval)
	unknown := make(chan error, 1)
	go func() {
		_, err := v.verify(ctx, e.sign(with(e.rs256Header(), "kid", "brand-new"), e.claims()))
		unknown <- err
	}()
	<-bt.entered // the fetch is now stuck

	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, e.mint())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("known kid during refresh: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a known kid waited for the key refresh")
	}
	// A caller that gives up stops waiting; the fetch carries on for others.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := v.verify(cctx, e.sign(with(e.rs256Header(), "kid", "other"), e.claims())); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	close(bt.release)
	if err := <-unknown; !errors.Is(err, errUnknownKid) {
		t.Fatalf("unknown kid: %v", err)
	}
}

func TestColdStartAndUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	// Without Warm, the first Verify fetches the keys itself.
	cold := e.newVerifier(nil)
	if _, err := cold.Verify(ctx, e.mint()); err != nil {
		t.Fatalf("cold verifier: %v", err)
	}

	e.idp.SetJWKSFailing(true)
	broken := e.newVerifier(nil)
	if err := broken.Warm(ctx); err == nil {
		t.Fatal("Warm succeeded during an outage")
	}
	// Keys were never loaded: that is an outage, not a bad token.
	if _, err := broken.Verify(ctx, e.mint()); err != ErrUnavailable {
		t.Fatalf("Verify with no keys: %v, want ErrUnavailable", err)
	}
	// Retries come sooner than MinRefreshInterval while no keys are loaded.
	e.idp.SetJWKSFailing(false)
	e.clock.Add(bootstrapRetryInterval)
	if _, err := broken.Verify(ctx, e.mint()); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// TestDocumentChecks serves broken discovery and key documents over plain
// loopback http (which the verifier allows for stand-ins).
func TestDocumentChecks(t *testing.T) {
	const tid = "11111111-2222-4333-8444-555555555555"
	var srvURL string
	e := newEnv(t, nil)
	resp, err := e.idp.HTTPClient().Get(e.idp.Authority() + "/discovery/v2.0/keys")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	keys := string(body)
	discovery := func(iss, jwks string) string {
		return fmt.Sprintf(`{"issuer":%q,"jwks_uri":%q}`, iss, jwks)
	}
	cases := []struct {
		name      string
		discovery func() (int, string)
		keys      func() (int, string)
		wantErr   string
	}{
		{"good", func() (int, string) { return 200, discovery(srvURL+"/"+tid+"/v2.0", srvURL+"/keys") },
			func() (int, string) { return 200, keys }, ""},
		{"issuer mismatch", func() (int, string) { return 200, discovery("https://evil.example/"+tid+"/v2.0", srvURL+"/keys") },
			func() (int, string) { return 200, keys }, "issuer"},
		{"jwks over http elsewhere", func() (int, string) { return 200, discovery(srvURL+"/"+tid+"/v2.0", "http://example.com/keys") },
			func() (int, string) { return 200, keys }, "jwks_uri"},
		{"discovery 404", func() (int, string) { return 404, "" },
			func() (int, string) { return 200, keys }, "404"},
		{"keys 500", func() (int, string) { return 200, discovery(srvURL+"/"+tid+"/v2.0", srvURL+"/keys") },
			func() (int, string) { return 500, keys }, "500"},
		{"keys oversize", func() (int, string) { return 200, discovery(srvURL+"/"+tid+"/v2.0", srvURL+"/keys") },
			func() (int, string) { return 200, `{"keys":[],"pad":"` + strings.Repeat("x", maxDocumentBytes) + `"}` }, "larger"},
		{"keys none usable", func() (int, string) { return 200, discovery(srvURL+"/"+tid+"/v2.0", srvURL+"/keys") },
			func() (int, string) { return 200, `{"keys":[{"kty":"EC","kid":"a","use":"sig"}]}` }, "no usable"},
		{"keys trailing junk", func() (int, string) { return 200, discovery(srvURL+"/"+tid+"/v2.0", srvURL+"/keys") },
			func() (int, string) { return 200, keys + "junk" }, "decoding"},
		{"redirect not followed", func() (int, string) { return 302, "" },
			func() (int, string) { return 200, keys }, "302"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				code, body := tc.keys()
				if strings.HasSuffix(r.URL.Path, "openid-configuration") {
					code, body = tc.discovery()
				}
				if code == 302 {
					w.Header().Set("Location", srvURL+"/keys")
				}
				w.WriteHeader(code)
				_, _ = w.Write([]byte(body))
			}))
			defer srv.Close()
			srvURL = srv.URL
			v, err := NewVerifier(Config{AuthorityHost: srv.URL, TenantID: tid, ClientID: tid})
			if err != nil {
				t.Fatal(err)
			}
			err = v.Warm(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Warm: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Warm error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// waitFor polls cond until it holds or the test has waited too long; it
// waits for the verifier's background goroutines.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
