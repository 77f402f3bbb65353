package entra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// TestKeyRollover publishes a key after the verifier last fetched and checks
// that the first token signed with it is accepted at once, on the same clock
// instant: whatever fetch came before (start-up, background refresh of old
// keys, a bootstrap retry) spends none of the unknown-kid allowance.
func TestKeyRollover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// rotateAndVerify publishes a new key and verifies an access token and
	// an ID token signed with it, expecting exactly one fetch.
	rotateAndVerify := func(t *testing.T, e *env, v *Verifier) {
		t.Helper()
		before := e.idp.JWKSFetches()
		newKid, err := e.idp.RotateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, e.mint()); err != nil {
			t.Fatalf("access token from the new key: %v", err)
		}
		if _, err := v.VerifyIDToken(ctx, e.mint(devidp.WithClaims(map[string]any{"scp": nil}))); err != nil {
			t.Fatalf("ID token from the new key: %v", err)
		}
		if n := e.idp.JWKSFetches() - before; n != 1 {
			t.Errorf("%d JWKS fetches, want 1", n)
		}
		if st := v.Stats(); !slices.Contains(st.KeyIDs, newKid) {
			t.Errorf("Stats().KeyIDs = %v, want %s among them", st.KeyIDs, newKid)
		}
	}
	t.Run("after start-up fetch", func(t *testing.T) {
		e := newEnv(t, nil) // Warm has just fetched
		rotateAndVerify(t, e, e.v)
	})
	t.Run("after background refresh", func(t *testing.T) {
		e := newEnv(t, nil)
		e.clock.Add(defaultMaxKeyAge)
		before := e.idp.JWKSFetches()
		if _, err := e.v.Verify(ctx, e.mint()); err != nil { // starts the refresh
			t.Fatal(err)
		}
		testkit.WaitFor(t, "the verifier's background work", func() bool { return e.idp.JWKSFetches() > before && idle(e.v) })
		rotateAndVerify(t, e, e.v)
	})
	t.Run("after bootstrap retry", func(t *testing.T) {
		e := newEnv(t, nil)
		e.idp.SetJWKSFailing(true)
		v := e.newVerifier(nil)
		if err := v.Warm(ctx); err == nil {
			t.Fatal("Warm succeeded during an outage")
		}
		e.idp.SetJWKSFailing(false)
		e.clock.Add(bootstrapRetryInterval)
		if _, err := v.Verify(ctx, e.mint()); err != nil { // the retry loads the keys
			t.Fatal(err)
		}
		rotateAndVerify(t, e, v)
	})
	t.Run("second rollover within MinRefreshInterval", func(t *testing.T) {
		e := newEnv(t, nil)
		rotateAndVerify(t, e, e.v)
		e.clock.Add(time.Second)
		if _, err := e.idp.RotateKey(); err != nil {
			t.Fatal(err)
		}
		tok := e.mint()
		if _, err := e.v.verify(ctx, tok); !errors.Is(err, errRefreshThrottled) {
			t.Fatalf("second new key within the interval: %v, want throttled", err)
		}
		e.clock.Add(defaultMinRefreshInterval)
		if _, err := e.v.verify(ctx, tok); err != nil {
			t.Fatalf("once the interval has passed: %v", err)
		}
	})
}

// idle reports whether v has no key fetch under way.
func idle(v *Verifier) bool {
	v.remote.mu.Lock()
	defer v.remote.mu.Unlock()
	return v.remote.state.inflight == nil
}

// unknownKid is a token naming kid. The kid is looked up before the
// signature is checked, so a junk signature is enough to exercise the
// refresh path.
func (e *env) unknownKid(kid string) string {
	return unsigned(map[string]any{"alg": "RS256", "kid": kid}, e.claims(), "AAAA")
}

func randomKid(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestUnknownKidFlood sends 1000 tokens with distinct unknown kids, one after
// another and all at once, and checks that they cause at most one fetch per
// MinRefreshInterval, starting right after the start-up fetch, while tokens
// with known kids keep verifying.
func TestUnknownKidFlood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	steps := []struct {
		advance time.Duration
		want    int64
	}{
		{0, 1},                             // right after Warm: one fetch for all
		{0, 0},                             // same instant: none
		{defaultMinRefreshInterval / 2, 0}, // still inside the interval: none
		{defaultMinRefreshInterval / 2, 1}, // next interval: one again
	}
	floods := map[string]func(t *testing.T, e *env){
		"tight loop": func(t *testing.T, e *env) {
			for range 1000 {
				if _, err := e.v.verify(ctx, e.unknownKid(randomKid(t))); !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("flood token: %v", err)
				}
			}
			if _, err := e.v.verify(ctx, e.mint()); err != nil {
				t.Errorf("known kid after flood: %v", err)
			}
		},
		"concurrent": func(t *testing.T, e *env) {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 1000 {
				tok := e.unknownKid(randomKid(t))
				wg.Go(func() {
					<-start
					if _, err := e.v.verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
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
		},
	}
	for name, flood := range floods {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			for i, step := range steps {
				e.clock.Add(step.advance)
				before := e.idp.JWKSFetches()
				flood(t, e)
				if n := e.idp.JWKSFetches() - before; n != step.want {
					t.Errorf("step %d: %d JWKS fetches, want %d", i, n, step.want)
				}
			}
			e.v.remote.mu.Lock()
			missed := e.v.remote.state.missedKids.len()
			e.v.remote.mu.Unlock()
			e.v.remote.warns.mu.Lock()
			warned := e.v.remote.warns.kids.len()
			e.v.remote.warns.mu.Unlock()
			if missed > 2 || warned > 2*maxUnknownKidWarnings {
				t.Errorf("remembers %d missed and %d warned kids after the floods", missed, warned)
			}
		})
	}
}

// TestSameUnknownKidRepeated checks that a kid missing from the fetch it
// caused causes no other for KidRetryInterval, without holding back other
// kids.
func TestSameUnknownKidRepeated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil)
	gone := e.unknownKid("gone")
	fetches := func(f func()) int64 {
		before := e.idp.JWKSFetches()
		f()
		return e.idp.JWKSFetches() - before
	}
	repeat := func(want error) func() {
		return func() {
			for range 100 {
				if _, err := e.v.verify(ctx, gone); !errors.Is(err, want) {
					t.Fatalf("repeated kid: %v, want %v", err, want)
				}
			}
		}
	}
	if n := fetches(repeat(ErrUnknownKey)); n != 1 {
		t.Errorf("first appearances: %d fetches, want 1", n)
	}
	// The global allowance is back, but not this kid's.
	e.clock.Add(defaultMinRefreshInterval)
	if n := fetches(repeat(errKidThrottled)); n != 0 {
		t.Errorf("within KidRetryInterval: %d fetches, want 0", n)
	}
	if n := fetches(func() { _, _ = e.v.verify(ctx, e.unknownKid("other")) }); n != 1 {
		t.Errorf("another kid: %d fetches, want 1", n)
	}
	e.clock.Add(defaultKidRetryInterval - defaultMinRefreshInterval)
	if n := fetches(repeat(ErrUnknownKey)); n != 1 {
		t.Errorf("after KidRetryInterval: %d fetches, want 1", n)
	}

	t.Run("failed fetch is not held against the kid", func(t *testing.T) {
		e := newEnv(t, nil)
		e.idp.SetJWKSFailing(true)
		newKid, err := e.idp.RotateKey()
		if err != nil {
			t.Fatal(err)
		}
		tok := e.mint()
		if _, err := e.v.verify(ctx, tok); !errors.Is(err, errFetchFailed) {
			t.Fatalf("during outage: %v", err)
		}
		e.idp.SetJWKSFailing(false)
		e.clock.Add(defaultMinRefreshInterval)
		if _, err := e.v.verify(ctx, tok); err != nil {
			t.Fatalf("kid %s after the outage: %v", newKid, err)
		}
	})
	t.Run("KidRetryInterval is configurable", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.KidRetryInterval = time.Hour })
		before := e.idp.JWKSFetches()
		if _, err := e.v.verify(ctx, e.unknownKid("gone")); !errors.Is(err, errNotInFetchedSet) {
			t.Fatalf("first appearance: %v", err)
		}
		if n := e.idp.JWKSFetches() - before; n != 1 {
			t.Fatalf("%d fetches, want 1", n)
		}
		e.clock.Add(defaultKidRetryInterval)
		if _, err := e.v.verify(ctx, e.unknownKid("gone")); !errors.Is(err, errKidThrottled) {
			t.Fatalf("after the default interval: %v, want throttled", err)
		}
	})
}

func TestUnknownKidWarnings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil)
	const msg = `level=WARN msg="entra: token signed with a key this server has not loaded"`
	warnings := func(kid string) int {
		n := 0
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, msg) && (kid == "" || strings.Contains(line, " kid="+kid+" ")) {
				n++
			}
		}
		return n
	}
	// The first appearance fetches; the kid is still unknown: one warning.
	for range 50 {
		_, _ = e.v.verify(ctx, e.unknownKid("k-1"))
	}
	if n := warnings("k-1"); n != 1 {
		t.Errorf("k-1: %d warnings, want 1", n)
	}
	// A second kid now is throttled, and says so.
	_, _ = e.v.verify(ctx, e.unknownKid("k-2"))
	if n := warnings("k-2"); n != 1 || !strings.Contains(e.logs.String(), "key refresh throttled") {
		t.Errorf("k-2: %d warnings, want 1 naming the throttle:\n%s", n, e.logs.String())
	}
	if n := e.v.Stats().ThrottledKids; n != 50 {
		t.Errorf("ThrottledKids = %d, want 50 (49 repeats of k-1 and k-2)", n)
	}
	// Verify's own refusal line stays at DEBUG for these.
	for line := range strings.Lines(e.logs.String()) {
		if strings.Contains(line, "token refused") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("refusal logged above DEBUG: %s", line)
		}
	}
	// Once the per-kid interval has passed, the kid may be logged again.
	e.clock.Add(defaultKidRetryInterval)
	_, _ = e.v.verify(ctx, e.unknownKid("k-1"))
	_, _ = e.v.verify(ctx, e.unknownKid("k-1"))
	if n := warnings("k-1"); n != 2 {
		t.Errorf("k-1 after KidRetryInterval: %d warnings, want 2", n)
	}

	t.Run("flood of distinct kids", func(t *testing.T) {
		e.clock.Add(defaultMinRefreshInterval)
		before := warnings("")
		for range 1000 {
			_, _ = e.v.verify(ctx, e.unknownKid(randomKid(t)))
		}
		if n := warnings("") - before; n != maxUnknownKidWarnings {
			t.Errorf("%d warnings for 1000 kids, want %d", n, maxUnknownKidWarnings)
		}
		// The next window's first line counts what was left out.
		e.clock.Add(defaultMinRefreshInterval)
		_, _ = e.v.verify(ctx, e.unknownKid("after-flood"))
		var line string
		for l := range strings.Lines(e.logs.String()) {
			if strings.Contains(l, msg) && strings.Contains(l, " kid=after-flood ") {
				line = l
			}
		}
		_, count, _ := strings.Cut(line, "similar_not_logged=")
		if n, err := strconv.Atoi(strings.TrimSpace(count)); err != nil || n < 1000-maxUnknownKidWarnings {
			t.Errorf("line after the flood does not count the %d left out: %q", 1000-maxUnknownKidWarnings, line)
		}
	})
	t.Run("long kid is cut", func(t *testing.T) {
		e.clock.Add(defaultMinRefreshInterval)
		_, _ = e.v.verify(ctx, e.unknownKid(strings.Repeat("x", maxKidBytes)))
		logs := e.logs.String()
		if !strings.Contains(logs, strings.Repeat("x", maxLoggedKid)+"…") || strings.Contains(logs, strings.Repeat("x", maxLoggedKid+1)) {
			t.Errorf("kid not cut to %d bytes:\n%s", maxLoggedKid, logs[max(0, len(logs)-600):])
		}
	})
}

func TestKidMemoBounded(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_800_000_000, 0)
	m := newKidMemo(maxRememberedKids)
	for i := range maxRememberedKids + 1 {
		m.set(fmt.Sprint(i), at)
	}
	if m.len() != maxRememberedKids || m.within("0", at, time.Minute) || !m.within("1", at, time.Minute) {
		t.Fatalf("len %d; oldest kept %v; next kept %v", m.len(), m.within("0", at, time.Minute), m.within("1", at, time.Minute))
	}
	// Setting a kid again makes it the newest: the next one out is "2".
	m.set("1", at.Add(time.Second))
	m.set("new", at)
	if !m.within("1", at, 2*time.Second) || m.within("2", at, time.Minute) || m.len() != maxRememberedKids {
		t.Errorf("after refreshing \"1\": kept %v, \"2\" kept %v, len %d", m.within("1", at, 2*time.Second), m.within("2", at, time.Minute), m.len())
	}
	if m.within("1", at.Add(time.Minute+time.Second), time.Minute) {
		t.Error("within counts an entry a full interval old")
	}
}

func TestOutageKeepsCachedKeys(t *testing.T) {
	t.Parallel()
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
	testkit.WaitFor(t, "the verifier's background work", func() bool { return e.v.Stats().LastRefreshError != "" })
	// An unknown kid forces a fetch of its own at once (the background
	// refresh spent none of its allowance), which fails too.
	if _, err := e.v.verify(ctx, e.sign(with(e.rs256Header(), "kid", "new"), e.claims())); !errors.Is(err, errFetchFailed) {
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
	t.Parallel()
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
				testkit.WaitFor(t, "the verifier's background work", func() bool {
					st := e.v.Stats()
					return st.JWKSFetches > fetches && !slices.Contains(st.KeyIDs, old)
				})
			}
			if _, err := e.v.verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("retired key's token after refresh: %v", err)
			}
			// A token minted now with the retired key is refused as well.
			if _, err := e.v.verify(ctx, e.mint(devidp.WithKeyID(old))); !errors.Is(err, ErrUnknownKey) {
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
	t.Parallel()
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

	unknown := make(chan error, 1)
	go func() {
		_, err := v.verify(ctx, e.sign(with(e.rs256Header(), "kid", "brand-new"), e.claims()))
		unknown <- err
	}()
	select {
	case <-bt.entered: // the fetch is now stuck
	case err := <-unknown:
		t.Fatalf("unknown kid right after Warm did not fetch: %v", err)
	}

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
	if err := <-unknown; !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
}

func TestColdStartAndUnavailable(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
