package app

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// countingTransport sits between the handler and the Entra stand-in: it
// counts the OpenID discovery documents fetched and the token requests
// made, and can hold token requests for a while (Entra being slow).
type countingTransport struct {
	next      http.RoundTripper
	discovery atomic.Int64
	tokens    atomic.Int64
	delay     atomic.Int64 // nanoseconds each token request is held
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
		c.discovery.Add(1)
	}
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		c.tokens.Add(1)
		time.Sleep(time.Duration(c.delay.Load()))
	}
	return c.next.RoundTrip(r)
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
