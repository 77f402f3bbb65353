package signin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

func TestDiscoveryCache(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	fail := atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"issuer":"x"}`)
	}))
	defer srv.Close()
	clock := testkit.NewClock(time.Unix(1_800_000_000, 0))
	dc := newDiscoveryCache(nil)
	dc.now = clock.Now
	c := &http.Client{Transport: dc}
	get := func(path string) (int, string) {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const disc = "/tenant/v2.0/.well-known/openid-configuration"

	fail.Store(true)
	if code, _ := get(disc); code != http.StatusServiceUnavailable {
		t.Fatalf("failure passed on as %d", code)
	}
	fail.Store(false)
	for range 3 {
		if code, body := get(disc); code != 200 || body != `{"issuer":"x"}` {
			t.Fatalf("discovery: %d %q", code, body)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("%d fetches for a failure and three uses, want 2 (failures are not kept)", n)
	}
	get("/tenant/oauth2/v2.0/token")
	get("/tenant/oauth2/v2.0/token")
	if n := hits.Load(); n != 4 {
		t.Errorf("other requests were answered from the cache (%d fetches, want 4)", n)
	}
	clock.Add(discoveryTTL)
	get(disc)
	if n := hits.Load(); n != 5 {
		t.Errorf("an expired document was reused (%d fetches, want 5)", n)
	}
	resp, err := c.Post(srv.URL+disc, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := hits.Load(); n != 6 {
		t.Errorf("a POST was answered from the cache (%d fetches, want 6)", n)
	}
}
