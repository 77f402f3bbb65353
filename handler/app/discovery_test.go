package app

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// countingTransport counts the OpenID discovery documents fetched.
type countingTransport struct {
	next      http.RoundTripper
	discovery atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
		c.discovery.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestDiscoveryFetchedOncePerProcess: the sign-in pool's MSAL clients each
// resolve the authority on first use; the discovery document is fetched
// from Entra once for the pool, not once per pooled client (8), plus once
// by the token verifier.
func TestDiscoveryFetchedOncePerProcess(t *testing.T) {
	ct := &countingTransport{}
	st := newStackFull(t, storetest.Redis(t), func(*config.Config, *devidp.Options) {}, func(o *Options, idp *devidp.Server) {
		hc := *idp.HTTPClient()
		ct.next = hc.Transport
		if ct.next == nil {
			ct.next = http.DefaultTransport
		}
		hc.Transport = ct
		o.HTTPClient = &hc
	})
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() { st.signIn(t, "reader") })
	}
	wg.Wait()
	if n := ct.discovery.Load(); n != 2 {
		t.Errorf("discovery documents fetched: %d, want 2 (the sign-in pool's and the verifier's)", n)
	}
}
