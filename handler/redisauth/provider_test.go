package redisauth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/redis/go-redis/v9/auth"

	"github.com/entra-mcp/functions-mcp/handler/redisauth"
)

// newProvider returns a provider on a fake clock, closed at cleanup.
func newProvider(t *testing.T, cred azcore.TokenCredential, clk *fakeClock, opts redisauth.Options) *redisauth.Provider {
	t.Helper()
	opts.Clock = clk
	p, err := redisauth.New(cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func subscribe(t *testing.T, p *redisauth.Provider, l auth.CredentialsListener) (user, pass string, unsubscribe auth.UnsubscribeFunc) {
	t.Helper()
	creds, unsub, err := p.Subscribe(l)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	user, pass = creds.BasicAuth()
	return user, pass, unsub
}

func expectNext(t *testing.T, r *recorder, wantUser, wantPass string) {
	t.Helper()
	select {
	case c := <-r.next:
		if u, p := c.BasicAuth(); u != wantUser || p != wantPass {
			t.Fatalf("OnNext(%q, <token gen %q>), want user %q", u, genOf(p), wantUser)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OnNext")
	}
}

func expectQuiet(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case c := <-r.next:
		u, p := c.BasicAuth()
		t.Fatalf("unexpected OnNext(%q, <token gen %q>)", u, genOf(p))
	case err := <-r.errs:
		t.Fatalf("unexpected OnError(%v)", err)
	default:
	}
}

// genOf names a fake token in messages without printing it.
func genOf(token string) string {
	for _, g := range []string{"", "2", "3"} {
		for _, u := range []string{"oid-1", "oid-2"} {
			if token == tokenFor(u, g) {
				return u + "/" + g
			}
		}
	}
	return "?"
}

func TestSubscribeFetchesOneTokenForConcurrentConnections(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	p := newProvider(t, cred, clk, redisauth.Options{})

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			creds, unsub, err := p.Subscribe(newRecorder())
			if err != nil {
				t.Errorf("Subscribe: %v", err)
				return
			}
			if u, pw := creds.BasicAuth(); u != "oid-1" || pw != tokenFor("oid-1", "") {
				t.Errorf("credentials = %q/<%s>, want the token's oid and the token", u, genOf(pw))
			}
			unsub()
		})
	}
	wg.Wait()
	if n := cred.callCount(); n != 1 {
		t.Errorf("GetToken called %d times, want 1", n)
	}
}

func TestUserName(t *testing.T) {
	t.Parallel()
	opaque := credFunc(func(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
		return azcore.AccessToken{Token: "opaque-token", ExpiresOn: start.Add(time.Hour)}, nil
	})

	t.Run("explicit", func(t *testing.T) {
		p := newProvider(t, opaque, newFakeClock(), redisauth.Options{UserName: "explicit-oid"})
		if user, pass, _ := subscribe(t, p, newRecorder()); user != "explicit-oid" || pass != "opaque-token" {
			t.Errorf("got user %q, want explicit-oid with the token as password", user)
		}
	})
	t.Run("no oid", func(t *testing.T) {
		p := newProvider(t, opaque, newFakeClock(), redisauth.Options{})
		_, _, err := p.Subscribe(newRecorder())
		if !errors.Is(err, redisauth.ErrNoToken) || !strings.Contains(err.Error(), "set Options.UserName") {
			t.Fatalf("Subscribe error = %v, want ErrNoToken asking for Options.UserName", err)
		}
		if strings.Contains(err.Error(), "opaque-token") {
			t.Errorf("error quotes the token: %v", err)
		}
	})
}

func TestRefreshPushesNewTokenToListeners(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	p := newProvider(t, cred, clk, redisauth.Options{})
	r1, r2, gone := newRecorder(), newRecorder(), newRecorder()
	subscribe(t, p, r1)
	subscribe(t, p, r2)
	_, _, unsub := subscribe(t, p, gone)
	unsub()

	s := &stepper{clk: clk}
	cred.set("oid-2", "2", nil)
	// 75% of the hour-long token: nothing before 45 minutes.
	s.until(t, start.Add(45*time.Minute-time.Second))
	if n := cred.callCount(); n != 1 {
		t.Fatalf("GetToken called %d times before the refresh was due", n)
	}
	expectQuiet(t, r1)

	s.until(t, start.Add(45*time.Minute))
	expectNext(t, r1, "oid-2", tokenFor("oid-2", "2"))
	expectNext(t, r2, "oid-2", tokenFor("oid-2", "2"))
	expectQuiet(t, gone)
	if user, pass, _ := subscribe(t, p, newRecorder()); user != "oid-2" || pass != tokenFor("oid-2", "2") {
		t.Errorf("new connection got %q/<%s>, want the new token", user, genOf(pass))
	}

	// The next refresh is due at 75% of the new token's lifetime.
	cred.set("oid-2", "3", nil)
	s.until(t, start.Add(90*time.Minute-time.Second))
	expectQuiet(t, r1)
	s.until(t, start.Add(90*time.Minute))
	expectNext(t, r1, "oid-2", tokenFor("oid-2", "3"))
}

func TestSameTokenIsNotPushedAgain(t *testing.T) {
	t.Parallel()
	// azidentity caches tokens and may return the same one when asked early.
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	p := newProvider(t, cred, clk, redisauth.Options{})
	r := newRecorder()
	subscribe(t, p, r)

	s := &stepper{clk: clk}
	s.until(t, start.Add(50*time.Minute))
	if n := cred.callCount(); n < 3 {
		t.Fatalf("GetToken called %d times, want retries after the cached token came back", n)
	}
	expectQuiet(t, r)

	cred.set("oid-1", "2", nil)
	s.until(t, start.Add(52*time.Minute))
	expectNext(t, r, "oid-1", tokenFor("oid-1", "2"))
	expectQuiet(t, r)
}

func TestRefreshFailureKeepsTokenUntilNearExpiry(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	p := newProvider(t, cred, clk, redisauth.Options{})
	r := newRecorder()
	subscribe(t, p, r)

	s := &stepper{clk: clk}
	outage := errors.New("managed identity endpoint unavailable")
	cred.set("oid-1", "2", outage)
	// Expiry is at 60 minutes; the default margin is one minute.
	s.until(t, start.Add(59*time.Minute-time.Millisecond))
	if n := cred.callCount(); n < 10 {
		t.Errorf("GetToken called %d times, want retries with backoff", n)
	}
	expectQuiet(t, r)
	if user, pass, _ := subscribe(t, p, newRecorder()); user != "oid-1" || pass != tokenFor("oid-1", "") {
		t.Errorf("new connection got %q/<%s>, want the old, still valid token", user, genOf(pass))
	}

	s.until(t, start.Add(59*time.Minute))
	select {
	case err := <-r.errs:
		if !errors.Is(err, redisauth.ErrNoToken) || !errors.Is(err, outage) {
			t.Errorf("OnError(%v), want ErrNoToken wrapping the credential's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OnError when the token was about to expire")
	}
	_, _, err := p.Subscribe(newRecorder())
	if !errors.Is(err, redisauth.ErrNoToken) || !errors.Is(err, outage) {
		t.Errorf("Subscribe near expiry: %v, want ErrNoToken wrapping the credential's error", err)
	}

	// Failure is reported once, not at every retry.
	s.until(t, start.Add(70*time.Minute))
	expectQuiet(t, r)

	// The token service recovers: the next retry delivers a new token.
	cred.set("oid-1", "2", nil)
	s.until(t, start.Add(72*time.Minute))
	expectNext(t, r, "oid-1", tokenFor("oid-1", "2"))
	if _, pass, _ := subscribe(t, p, newRecorder()); pass != tokenFor("oid-1", "2") {
		t.Errorf("new connection got <%s>, want the new token", genOf(pass))
	}
}

func TestSubscribeFailsFastAfterFailure(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	outage := errors.New("no identity")
	cred.set("oid-1", "", outage)
	p := newProvider(t, cred, clk, redisauth.Options{})

	for range 3 {
		_, _, err := p.Subscribe(newRecorder())
		if !errors.Is(err, redisauth.ErrNoToken) || !errors.Is(err, outage) {
			t.Fatalf("Subscribe: %v, want ErrNoToken wrapping the credential's error", err)
		}
	}
	if n := cred.callCount(); n != 1 {
		t.Errorf("GetToken called %d times, want 1: connections right after a failure fail fast", n)
	}

	// A second later a new connection tries again, and succeeds.
	cred.set("oid-1", "", nil)
	clk.set(start.Add(2 * time.Second))
	if user, _, _ := subscribe(t, p, newRecorder()); user != "oid-1" {
		t.Errorf("user %q, want oid-1", user)
	}
	if n := cred.callCount(); n != 2 {
		t.Errorf("GetToken called %d times, want 2", n)
	}
}

func TestCloseStopsRefreshing(t *testing.T) {
	t.Parallel()
	before := loopGoroutines()
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	p, err := redisauth.New(cred, redisauth.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	subscribe(t, p, r)
	clk.waitAfter(t, 0) // the first refresh is scheduled

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitLoops(t, before)
	calls := cred.callCount()
	cred.set("oid-1", "2", nil)
	clk.set(start.Add(3 * time.Hour))
	time.Sleep(50 * time.Millisecond)
	if n := cred.callCount(); n != calls {
		t.Errorf("GetToken called after Close")
	}
	expectQuiet(t, r)
	if _, _, err := p.Subscribe(newRecorder()); !errors.Is(err, redisauth.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseDuringFetch(t *testing.T) {
	t.Parallel()
	before := loopGoroutines()
	entered := make(chan struct{})
	var once sync.Once
	slow := credFunc(func(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return azcore.AccessToken{}, ctx.Err()
	})
	p, err := redisauth.New(slow, redisauth.Options{Clock: newFakeClock(), FetchTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := p.Subscribe(newRecorder())
		errc <- err
	}()
	<-entered
	p.Close()
	if err := <-errc; !errors.Is(err, redisauth.ErrClosed) {
		t.Errorf("Subscribe interrupted by Close: %v, want ErrClosed", err)
	}
	waitLoops(t, before)
}

func TestConcurrentSubscribeAndRefresh(t *testing.T) {
	t.Parallel()
	// For the race detector: connections come and go while tokens change.
	clk := newFakeClock()
	cred := newFakeCred(clk, "oid-1")
	p := newProvider(t, cred, clk, redisauth.Options{})
	subscribe(t, p, newRecorder())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, unsub, err := p.Subscribe(newRecorder())
				if err != nil {
					t.Errorf("Subscribe: %v", err)
					return
				}
				unsub()
			}
		})
	}
	s := &stepper{clk: clk}
	for i := range 5 {
		cred.set("oid-1", string(rune('a'+i)), nil)
		s.until(t, clk.Now().Add(45*time.Minute))
	}
	close(stop)
	wg.Wait()
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	if _, err := redisauth.New(nil, redisauth.Options{}); err == nil {
		t.Error("New(nil credential) succeeded")
	}
	if _, err := redisauth.New(newFakeCred(newFakeClock(), "x"), redisauth.Options{ExpiryMargin: -time.Second}); err == nil {
		t.Error("New with a negative margin succeeded")
	}
}

// credFunc adapts a function to azcore.TokenCredential.
type credFunc func(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error)

func (f credFunc) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return f(ctx, o)
}
