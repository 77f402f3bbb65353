package oauthclients_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// fakeDNS answers for the test's host names only; nothing reaches real DNS.
// The httptest certificate is valid for example.com and *.example.com.
type fakeDNS struct {
	mu      sync.Mutex
	hosts   map[string][]netip.Addr
	lookups []string
}

func (f *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups = append(f.lookups, host)
	if a, ok := f.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// dialLog records every dial the registry attempts, and connects only to
// loopback addresses: a test never sends traffic anywhere else, even if the
// code under test were wrong.
type dialLog struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialLog) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, address)
	d.mu.Unlock()
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("test dialer: will not dial %s", address)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func (d *dialLog) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.addrs)
}

// docServer is a TLS server of metadata documents on a loopback port,
// counting connections and requests per path.
type docServer struct {
	srv      *httptest.Server
	port     string
	conns    atomic.Int32
	mu       sync.Mutex
	requests map[string]int
	release  chan struct{} // closed by releaseSlow or at cleanup: slow handlers stop waiting
	once     sync.Once
}

func (d *docServer) releaseSlow() { d.once.Do(func() { close(d.release) }) }

const (
	appHost   = "app.example.com"
	otherHost = "other.example.com"
)

func newDocServer(t *testing.T) *docServer {
	t.Helper()
	d := &docServer{requests: make(map[string]int), release: make(chan struct{})}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			d.conns.Add(1)
		}
	}
	d.srv.StartTLS()
	t.Cleanup(func() {
		d.releaseSlow()
		d.srv.Close()
	})
	_, d.port, _ = net.SplitHostPort(d.srv.Listener.Addr().String())
	return d
}

// url is the client_id URL of a path on the server, under a host name.
func (d *docServer) url(host, path string) string { return "https://" + host + ":" + d.port + path }

func (d *docServer) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests[path]
}

func (d *docServer) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.requests[r.URL.Path]++
	d.mu.Unlock()
	self := "https://" + r.Host + r.URL.RequestURI()
	doc := map[string]any{
		"client_id":                  self,
		"client_name":                "Example MCP Client",
		"client_uri":                 "https://app.example.com/",
		"redirect_uris":              []string{"http://127.0.0.1/callback", "https://app.example.com/oauth/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/client.json", "/other.json":
	case "/cached.json":
		w.Header().Set("Cache-Control", "public, max-age=120")
	case "/vendor.json":
		w.Header().Set("Content-Type", "application/client-metadata+json; charset=utf-8")
	case "/mismatch.json":
		doc["client_id"] = "https://" + r.Host + "/client.json"
	case "/secret.json":
		doc["client_secret"] = "s3cret"
	case "/basic.json":
		doc["token_endpoint_auth_method"] = "client_secret_basic"
	case "/no-redirects.json":
		delete(doc, "redirect_uris")
	case "/bad-redirect.json":
		doc["redirect_uris"] = []string{"http://app.example.com/callback"}
	case "/bad-display.json":
		doc["client_name"] = "Evil\u202e"
		doc["logo_uri"] = "javascript:alert(1)"
	case "/big.json":
		doc["padding"] = strings.Repeat("x", oauthclients.DefaultMaxDocumentBytes)
	case "/text.json":
		w.Header().Set("Content-Type", "text/plain")
	case "/redirect.json":
		http.Redirect(w, r, "https://"+otherHost+":"+d.port+"/client.json", http.StatusFound)
		return
	case "/slow.json":
		select {
		case <-r.Context().Done():
		case <-d.release:
		case <-time.After(10 * time.Second):
		}
	case "/slow-body.json":
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"client_id":`))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-d.release:
		case <-time.After(10 * time.Second):
		}
		return
	case "/pause.json":
		time.Sleep(200 * time.Millisecond)
	default:
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(doc)
}

type cimdEnv struct {
	docs  *docServer
	dns   *fakeDNS
	dials *dialLog
	clock *testkit.Clock
	reg   *oauthclients.Registry
}

func newCIMD(t *testing.T, allowLoopback bool, tweak func(*oauthclients.Options)) *cimdEnv {
	t.Helper()
	e := &cimdEnv{
		docs:  newDocServer(t),
		dials: &dialLog{},
		clock: testkit.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)),
	}
	loop := netip.MustParseAddr("127.0.0.1")
	e.dns = &fakeDNS{hosts: map[string][]netip.Addr{
		appHost:                {loop},
		otherHost:              {loop},
		"private.example.com":  {netip.MustParseAddr("10.0.0.1")},
		"metadata.example.com": {netip.MustParseAddr("169.254.169.254")},
		"cgnat.example.com":    {netip.MustParseAddr("100.64.0.1")},
		"mapped.example.com":   {netip.MustParseAddr("::ffff:192.168.1.1")},
		"ula.example.com":      {netip.MustParseAddr("fd00::1")},
		"nat64.example.com":    {netip.MustParseAddr("64:ff9b::a00:1")},
		"zero.example.com":     {netip.MustParseAddr("0.0.0.0")},
		// One public and one private answer: refused as a whole, so the
		// public address (never dialled here) does not matter.
		"mixed.example.com": {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("10.0.0.1")},
	}}
	opts := oauthclients.Options{
		AllowLoopback: allowLoopback,
		TLSConfig:     e.docs.srv.Client().Transport.(*http.Transport).TLSClientConfig,
		Resolver:      e.dns,
		Dial:          e.dials.dial,
		Now:           e.clock.Now,
	}
	if tweak != nil {
		tweak(&opts)
	}
	e.reg = newRegistry(t, storetest.Mini(t), opts)
	return e
}

func TestDocumentAccepted(t *testing.T) {
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	id := e.docs.url(appHost, "/client.json")
	c, err := e.reg.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := oauthclients.Client{
		ClientID: id, ClientName: "Example MCP Client", ClientURI: "https://app.example.com/",
		RedirectURIs:            []string{"http://127.0.0.1/callback", "https://app.example.com/oauth/callback"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "none", Source: oauthclients.SourceMetadataDocument,
	}
	if !equalClients(c, want) {
		t.Errorf("got\n %+v\nwant\n %+v", c, want)
	}
	if !oauthclients.RedirectAllowed(c, "http://127.0.0.1:50123/callback") {
		t.Error("the document's loopback redirect URI does not match with a port")
	}

	// A vendor +json content type is JSON too.
	if _, err := e.reg.Lookup(ctx, e.docs.url(appHost, "/vendor.json")); err != nil {
		t.Errorf("application/client-metadata+json: %v", err)
	}
	// Display fields a document gets wrong are dropped, not fatal.
	c, err = e.reg.Lookup(ctx, e.docs.url(appHost, "/bad-display.json"))
	if err != nil || c.ClientName != "" || c.LogoURI != "" || c.ClientURI == "" {
		t.Errorf("bad display fields: %+v, %v; want name and logo dropped, the rest kept", c, err)
	}
}

func TestDocumentRefused(t *testing.T) {
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	for _, path := range []string{
		"/mismatch.json", "/secret.json", "/basic.json", "/no-redirects.json", "/bad-redirect.json",
		"/big.json", "/text.json", "/missing.json",
	} {
		_, err := e.reg.Lookup(ctx, e.docs.url(appHost, path))
		if err := wantCode(t, path, err, oauthclients.CodeInvalidClient); err != nil {
			t.Logf("%s: %s", path, err.Description)
		}
		if e.docs.count(path) != 1 {
			t.Errorf("%s: fetched %d times; want once", path, e.docs.count(path))
		}
	}
}

func TestDocumentRedirectNotFollowed(t *testing.T) {
	e := newCIMD(t, true, nil)
	_, err := e.reg.Lookup(context.Background(), e.docs.url(appHost, "/redirect.json"))
	wantCode(t, "redirect", err, oauthclients.CodeInvalidClient)
	if n := e.docs.count("/client.json"); n != 0 {
		t.Errorf("the redirect was followed (%d requests to its target)", n)
	}
	e.dns.mu.Lock()
	defer e.dns.mu.Unlock()
	if slices.Contains(e.dns.lookups, otherHost) {
		t.Error("the redirect target's host was resolved")
	}
}

func TestDocumentURLRefusedBeforeFetch(t *testing.T) {
	ctx := context.Background()
	e := newCIMD(t, false, nil)
	for _, id := range []string{
		"http://" + appHost + "/client.json", // http without AllowLoopback
		"http://127.0.0.1:" + e.docs.port + "/client.json",
		"HTTPS://" + appHost + "/client.json",
		"ftp://" + appHost + "/client.json",
		"https://" + appHost,
		"https://" + appHost + "/",
		"https://" + appHost + "/a/../client.json",
		"https://" + appHost + "/a/%2e%2e/client.json",
		"https://" + appHost + "/./client.json",
		"https://" + appHost + "/client.json#x",
		"https://user@" + appHost + "/client.json",
		"https:///client.json",
		"https://" + appHost + "/cl ient.json",
		"urn:example:client",
	} {
		_, err := e.reg.Lookup(ctx, id)
		wantCode(t, id, err, oauthclients.CodeInvalidClient)
	}
	if n := e.dials.count(); n != 0 || len(e.dns.lookups) != 0 || e.docs.conns.Load() != 0 {
		t.Errorf("refused URLs caused %d dials, %d DNS lookups, %d connections; want none", n, len(e.dns.lookups), e.docs.conns.Load())
	}
}

func TestDocumentNonPublicAddressRefusedWithoutConnecting(t *testing.T) {
	ctx := context.Background()
	e := newCIMD(t, false, nil)
	for _, id := range []string{
		e.docs.url(appHost, "/client.json"), // resolves to 127.0.0.1: the real server is there
		e.docs.url("private.example.com", "/client.json"),
		e.docs.url("metadata.example.com", "/latest/meta-data"),
		e.docs.url("cgnat.example.com", "/client.json"),
		e.docs.url("mapped.example.com", "/client.json"),
		e.docs.url("ula.example.com", "/client.json"),
		e.docs.url("nat64.example.com", "/client.json"),
		e.docs.url("zero.example.com", "/client.json"),
		e.docs.url("mixed.example.com", "/client.json"),
		"https://127.0.0.1:" + e.docs.port + "/client.json",
		"https://[::1]:" + e.docs.port + "/client.json",
		"https://10.0.0.1/client.json",
		"https://169.254.169.254/latest/meta-data/",
		"https://[::ffff:10.0.0.1]/client.json",
		"https://[fe80::1]/client.json",
		"https://224.0.0.1/client.json",
		"https://localhost:" + e.docs.port + "/client.json", // not in fakeDNS: fails to resolve
	} {
		_, err := e.reg.Lookup(ctx, id)
		if oe := wantCode(t, id, err, oauthclients.CodeInvalidClient); oe != nil && strings.Contains(oe.Description, "10.0.0.1") {
			t.Errorf("%s: the description shows the address: %s", id, oe.Description)
		}
	}
	if n := e.dials.count(); n != 0 {
		t.Errorf("%d dials attempted (%v); want none", n, e.dials.addrs)
	}
	if n := e.docs.conns.Load(); n != 0 {
		t.Errorf("%d connections reached the loopback server; want none", n)
	}
}

func TestDocumentPlainHTTPOnLoopbackInDevMode(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"client_id":"http://%s/client.json","redirect_uris":["http://localhost/cb"]}`, r.Host)
	}))
	t.Cleanup(srv.Close)
	id := srv.URL + "/client.json"

	dev := newCIMD(t, true, nil)
	c, err := dev.reg.Lookup(context.Background(), id)
	if err != nil || c.ClientID != id {
		t.Fatalf("dev mode, http loopback document: %+v, %v", c, err)
	}

	prod := newCIMD(t, false, nil)
	_, err = prod.reg.Lookup(context.Background(), id)
	wantCode(t, "production, http loopback document", err, oauthclients.CodeInvalidClient)
	if requests.Load() != 1 {
		t.Errorf("%d requests; want only dev mode's one", requests.Load())
	}
}

func TestDocumentSlowServerRefusedWithinCap(t *testing.T) {
	const limit = 300 * time.Millisecond
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout = limit })
	for _, path := range []string{"/slow.json", "/slow-body.json"} {
		start := time.Now()
		_, err := e.reg.Lookup(context.Background(), e.docs.url(appHost, path))
		took := time.Since(start)
		t.Logf("%s took %v", path, took)
		if oe := wantCode(t, path, err, oauthclients.CodeInvalidClient); oe != nil && !strings.Contains(oe.Description, "too long") {
			t.Errorf("%s: %q; want a timeout", path, oe.Description)
		}
		if took > limit+time.Second {
			t.Errorf("%s: took %v; want about %v", path, took, limit)
		}
	}
}

func TestDocumentCache(t *testing.T) {
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	id := e.docs.url(appHost, "/client.json")
	first, err := e.reg.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	first.RedirectURIs[0] = "https://changed.example/cb" // must not reach the cache
	second, err := e.reg.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.docs.count("/client.json"); n != 1 {
		t.Errorf("%d requests for two lookups; want 1", n)
	}
	if second.RedirectURIs[0] != "http://127.0.0.1/callback" {
		t.Errorf("a caller's change reached the cache: %v", second.RedirectURIs)
	}

	// Default TTL: gone after ten minutes.
	e.clock.Add(oauthclients.DefaultDocumentTTL + time.Second)
	if _, err := e.reg.Lookup(ctx, id); err != nil || e.docs.count("/client.json") != 2 {
		t.Errorf("after the TTL: %v, %d requests; want a second fetch", err, e.docs.count("/client.json"))
	}

	// max-age=120 is honoured.
	cached := e.docs.url(appHost, "/cached.json")
	e.reg.Lookup(ctx, cached)
	e.clock.Add(100 * time.Second)
	e.reg.Lookup(ctx, cached)
	if n := e.docs.count("/cached.json"); n != 1 {
		t.Errorf("within max-age: %d requests; want 1", n)
	}
	e.clock.Add(30 * time.Second)
	e.reg.Lookup(ctx, cached)
	if n := e.docs.count("/cached.json"); n != 2 {
		t.Errorf("past max-age: %d requests; want 2", n)
	}

	// Failures are remembered briefly.
	bad := e.docs.url(appHost, "/mismatch.json")
	e.reg.Lookup(ctx, bad)
	_, err = e.reg.Lookup(ctx, bad)
	wantCode(t, "cached failure", err, oauthclients.CodeInvalidClient)
	if n := e.docs.count("/mismatch.json"); n != 1 {
		t.Errorf("failure: %d requests for two lookups; want 1", n)
	}
	e.clock.Add(oauthclients.DefaultFailureTTL + time.Second)
	e.reg.Lookup(ctx, bad)
	if n := e.docs.count("/mismatch.json"); n != 2 {
		t.Errorf("after the failure TTL: %d requests; want 2", n)
	}
}

func TestDocumentCacheBounded(t *testing.T) {
	ctx := context.Background()
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.MaxCachedDocuments = 2 })
	a, b, c := e.docs.url(appHost, "/client.json"), e.docs.url(appHost, "/other.json"), e.docs.url(appHost, "/vendor.json")
	e.reg.Lookup(ctx, a)
	e.clock.Add(time.Second) // b expires after a
	e.reg.Lookup(ctx, b)
	e.reg.Lookup(ctx, c) // evicts a, the soonest to expire
	e.reg.Lookup(ctx, b)
	e.reg.Lookup(ctx, a)
	if na, nb := e.docs.count("/client.json"), e.docs.count("/other.json"); na != 2 || nb != 1 {
		t.Errorf("requests: a %d, b %d; want a evicted (2) and b kept (1)", na, nb)
	}
}

func TestDocumentConcurrentLookupsFetchOnce(t *testing.T) {
	e := newCIMD(t, true, nil)
	id := e.docs.url(appHost, "/pause.json")
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := e.reg.Lookup(context.Background(), id)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := e.docs.count("/pause.json"); n != 1 {
		t.Errorf("%d requests for 10 concurrent lookups; want 1", n)
	}
}

func TestDocumentLookupHonoursCallerContext(t *testing.T) {
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout = 2 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.reg.Lookup(ctx, e.docs.url(appHost, "/slow.json"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("caller gave up after 100ms: %v after %v; want its deadline error, promptly", err, time.Since(start))
	}
}

// TestDocumentFetchesBounded: a flood of distinct client_id URLs does not
// become a flood of outbound fetches, and one slow host cannot take every
// slot. The refusal is an outage (503), not a verdict on the document, and
// is not cached.
func TestDocumentFetchesBounded(t *testing.T) {
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout = 5 * time.Second })
	host := func(i int) string {
		h := fmt.Sprintf("h%d.example.com", i)
		e.dns.mu.Lock()
		e.dns.hosts[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		e.dns.mu.Unlock()
		return h
	}
	// startSlow starts a fetch that hangs until the server is released;
	// the caller gives up at once, the fetch goes on.
	startSlow := func(h string, n int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := e.reg.Lookup(ctx, e.docs.url(h, fmt.Sprintf("/slow.json?n=%d", n)))
		return err
	}

	// One host: four at once, the fifth refused, another host still served.
	h0 := host(0)
	for n := range 4 {
		if err := startSlow(h0, n); errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("fetch %d from one host refused: %v", n+1, err)
		}
	}
	if err := startSlow(h0, 4); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("fifth fetch from one host: %v, want ErrUnavailable", err)
	}
	if _, err := e.reg.Lookup(context.Background(), e.docs.url(appHost, "/client.json")); err != nil {
		t.Errorf("another host while one is slow: %v", err)
	}

	// All hosts: 32 at once, the 33rd refused.
	for i := 1; i < 8; i++ {
		h := host(i)
		for n := range 4 {
			if err := startSlow(h, n); errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("fetch %d from host %d refused: %v", n+1, i, err)
			}
		}
	}
	_, err := e.reg.Lookup(context.Background(), e.docs.url(otherHost, "/client.json"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("33rd concurrent document: %v, want ErrUnavailable", err)
	}
	if n := e.docs.count("/client.json"); n != 1 {
		t.Errorf("/client.json fetched %d times, want once (the refused lookup fetched nothing)", n)
	}
	e.docs.releaseSlow()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = e.reg.Lookup(context.Background(), e.docs.url(otherHost, "/client.json"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("once the slow fetches ended: %v", err)
	}
}
