package app

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// countingTransport sits between the handler and the Entra stand-in: it
// counts the OpenID discovery documents fetched and the token requests
// made, and can hold token requests at Entra (Entra being slow) until the
// test lets them go.
type countingTransport struct {
	next      http.RoundTripper
	discovery atomic.Int64
	tokens    atomic.Int64

	mu   sync.Mutex
	gate chan struct{} // non-nil: token requests wait until it is closed
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
		c.discovery.Add(1)
	}
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		c.mu.Lock()
		gate := c.gate
		c.mu.Unlock()
		c.tokens.Add(1) // counted once it is held, so a test can wait for it
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
	}
	return c.next.RoundTrip(r)
}

// hold makes token requests wait at Entra from now until release is
// called (also at the test's end, so nothing is left waiting): a slow
// Entra for exactly as long as the test needs one, not a guessed delay.
func (c *countingTransport) hold(t testing.TB) (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	release = sync.OnceFunc(func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	})
	t.Cleanup(release)
	return release
}

// newTappedStack is a stack whose calls to Entra go through a
// countingTransport.
func newTappedStack(t testing.TB, rdb redis.UniversalClient, adjust func(*config.Config, *devidp.Options)) (*stack, *countingTransport) {
	t.Helper()
	ct := &countingTransport{}
	st := newStackFull(t, rdb, adjust, func(o *Options, idp *devidp.Server) {
		hc := *idp.HTTPClient()
		ct.next = hc.Transport
		if ct.next == nil {
			ct.next = http.DefaultTransport
		}
		hc.Transport = ct
		o.HTTPClient = &hc
	})
	return st, ct
}

// TestDiscoveryFetchedOncePerProcess: the sign-in pool's MSAL clients each
// resolve the authority on first use; the discovery document is fetched
// from Entra once for the pool, not once per pooled client (8), plus once
// by the token verifier.
func TestDiscoveryFetchedOncePerProcess(t *testing.T) {
	t.Parallel()
	st, ct := newTappedStack(t, storetest.Redis(t), nil)
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() { st.signIn(t, "reader") })
	}
	wg.Wait()
	if n := ct.discovery.Load(); n != 2 {
		t.Errorf("discovery documents fetched: %d, want 2 (the sign-in pool's and the verifier's)", n)
	}
}
