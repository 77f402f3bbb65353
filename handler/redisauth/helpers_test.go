package redisauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/redis/go-redis/v9/auth"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// start is the fake clock's starting time.
var start = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// fakeClock is a Clock whose time moves only when the test says.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	afters  int           // calls to After so far
	lastAt  time.Time     // deadline of the latest After call
	changed chan struct{} // closed and replaced on every After call
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: start, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, fakeTimer{at: at, ch: ch})
	}
	c.afters++
	c.lastAt = at
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// set moves the clock to now and fires the timers that are due.
func (c *fakeClock) set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(now) {
			kept = append(kept, tm)
			continue
		}
		tm.ch <- now
	}
	c.timers = kept
}

// waitAfter waits until After has been called more than n times, and
// returns the number of calls and the deadline of the latest one.
func (c *fakeClock) waitAfter(t *testing.T, n int) (int, time.Time) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		afters, changed, at := c.afters, c.changed, c.lastAt
		c.mu.Unlock()
		if afters > n {
			return afters, at
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the provider scheduled no refresh (After calls: %d)", afters)
		}
	}
}

// stepper walks the fake clock from timer to timer, letting the provider's
// refresh loop run at each one.
type stepper struct {
	clk  *fakeClock
	seen int
}

// until fires every refresh the provider schedules up to target, then sets
// the clock to target.
func (s *stepper) until(t *testing.T, target time.Time) {
	t.Helper()
	for {
		n, at := s.clk.waitAfter(t, s.seen)
		if at.After(target) {
			s.clk.set(target)
			return
		}
		s.seen = n
		s.clk.set(at)
	}
}

// fakeCred is a TokenCredential issuing JWT-shaped tokens whose oid is the
// current user. The token for a user and generation is always the same
// string, so a test can set it as an ACL password in advance.
type fakeCred struct {
	clk *fakeClock

	mu    sync.Mutex
	user  string
	gen   string
	ttl   time.Duration
	err   error
	calls int
}

func newFakeCred(clk *fakeClock, user string) *fakeCred {
	return &fakeCred{clk: clk, user: user, ttl: time.Hour}
}

func (f *fakeCred) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if err := ctx.Err(); err != nil {
		return azcore.AccessToken{}, err
	}
	if len(opts.Scopes) != 1 || opts.Scopes[0] != "https://redis.azure.com/.default" {
		return azcore.AccessToken{}, &scopeError{opts.Scopes}
	}
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: tokenFor(f.user, f.gen), ExpiresOn: f.clk.Now().Add(f.ttl)}, nil
}

func (f *fakeCred) set(user, gen string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.user, f.gen, f.err = user, gen, err
}

func (f *fakeCred) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type scopeError struct{ scopes []string }

func (e *scopeError) Error() string { return "unexpected scopes " + strings.Join(e.scopes, ",") }

// tokenFor returns an unsigned JWT-shaped token carrying oid = user.
func tokenFor(user, gen string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." +
		enc(map[string]string{"oid": user, "gen": gen, "aud": "https://redis.azure.com"}) + ".sig"
}

// recorder is a CredentialsListener that records what it is sent.
type recorder struct {
	next chan auth.Credentials
	errs chan error
}

func newRecorder() *recorder {
	return &recorder{next: make(chan auth.Credentials, 100), errs: make(chan error, 100)}
}

func (r *recorder) OnNext(c auth.Credentials) { r.next <- c }
func (r *recorder) OnError(err error)         { r.errs <- err }

// loopGoroutines counts the goroutines running a Provider's refresh loop.
func loopGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "redisauth.(*Provider).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitLoops waits until at most n refresh loops run.
func waitLoops(t *testing.T, n int) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("at most %d refresh loops", n), func() error {
		if got := loopGoroutines(); got > n {
			return fmt.Errorf("%d refresh loops still running", got)
		}
		return nil
	})
}
