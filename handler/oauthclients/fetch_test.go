package oauthclients_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/selfsigned"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// fakeDNS answers for the test's host names only; nothing reaches real DNS.
// The document server's certificate is valid for example.com,
// *.example.com and *.test.
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
	requests map[string]int // by path
	byURI    map[string]int // by path and query
	release  chan struct{}  // closed by releaseSlow or at cleanup: slow handlers stop waiting
	once     sync.Once
	paused   chan struct{} // closed by unpause or at cleanup: the /pause documents are served
	slowed   chan struct{} // gets a value when a slow handler starts waiting, if it has room
	unpaused sync.Once
}

func (d *docServer) releaseSlow() { d.once.Do(func() { close(d.release) }) }

func (d *docServer) unpause() { d.unpaused.Do(func() { close(d.paused) }) }

// noteSlowed tells a test waiting on slowed that a slow handler stalls.
func (d *docServer) noteSlowed() {
	select {
	case d.slowed <- struct{}{}:
	default:
	}
}

const (
	appHost   = "app.example.com"
	otherHost = "other.example.com"
)

func newDocServer(t *testing.T) *docServer {
	t.Helper()
	d := &docServer{requests: make(map[string]int), byURI: make(map[string]int), release: make(chan struct{}), paused: make(chan struct{}),
		slowed: make(chan struct{}, 1)}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			d.conns.Add(1)
		}
	}
	// Valid for example.com, *.example.com and *.test: the hosts of the
	// per-site tests (h0.test, h1.test, ...) are sites of their own.
	cert, _, err := selfsigned.New(selfsigned.Names{CommonName: "example.com",
		DNS: []string{"example.com", "*.example.com", "*.test"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	d.srv.Config.ErrorLog = log.New(withoutHandshakeErrors{}, "", log.LstdFlags)
	d.srv.StartTLS()
	t.Cleanup(func() {
		d.releaseSlow()
		d.unpause()
		d.srv.Close()
	})
	_, d.port, _ = net.SplitHostPort(d.srv.Listener.Addr().String())
	return d
}

// withoutHandshakeErrors is the document server's error log, less TLS
// handshake errors: fetches that a test started and no longer waits for
// (startSlow) may still be in their handshake when it ends, and Close cuts
// them. Everything else the server logs, a handler's panic say, is kept.
type withoutHandshakeErrors struct{}

func (withoutHandshakeErrors) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("http: TLS handshake error")) {
		return len(p), nil
	}
	return os.Stderr.Write(p)
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
	d.byURI[r.URL.RequestURI()]++
	seen := d.byURI[r.URL.RequestURI()]
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
		doc["logo_uri"] = "javascript:alert(1)"
	case "/no-name.json":
		delete(doc, "client_name")
	case "/null-name.json":
		doc["client_name"] = nil
	case "/blank-name.json":
		doc["client_name"] = " \t\u3000 "
	case "/number-name.json":
		doc["client_name"] = 42
	case "/long-name.json":
		doc["client_name"] = strings.Repeat("n", oauthclients.MaxClientName+1)
	case "/max-name.json":
		doc["client_name"] = "  " + strings.Repeat("é", oauthclients.MaxClientName) + "  "
	case "/bidi-name.json":
		doc["client_name"] = "Evil\u202e"
	case "/fixed-status.json":
		// Fails once (the client's server has a bad moment), then is fine.
		if seen == 1 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
	case "/fixed-doc.json":
		// Invalid once (the client published a broken document), then fixed.
		if seen == 1 {
			delete(doc, "redirect_uris")
		}
	case "/pause-missing.json":
		d.pause(r)
		http.NotFound(w, r)
		return
	case "/big.json":
		doc["padding"] = strings.Repeat("x", oauthclients.DefaultMaxDocumentBytes)
	case "/text.json":
		w.Header().Set("Content-Type", "text/plain")
	case "/redirect.json":
		http.Redirect(w, r, "https://"+otherHost+":"+d.port+"/client.json", http.StatusFound)
		return
	case "/turns-slow.json":
		// Served well the first time, then as /slow.json.
		if seen == 1 {
			break
		}
		fallthrough
	case "/slow.json":
		d.noteSlowed()
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
		d.pause(r)
	case "/once.json":
		// A document that is served well once, then not at all.
		if seen > 1 {
			http.NotFound(w, r)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(doc)
}

// pause holds a /pause document until the test has every lookup of it
// waiting (unpause).
func (d *docServer) pause(r *http.Request) {
	select {
	case <-d.paused:
	case <-r.Context().Done():
	}
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
		clock: newClock(),
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
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	id := e.docs.url(appHost, "/client.json")
	c, err := e.reg.Lookup(ctx, id, "requester")
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
	if _, err := e.reg.Lookup(ctx, e.docs.url(appHost, "/vendor.json"), "requester"); err != nil {
		t.Errorf("application/client-metadata+json: %v", err)
	}
	// Optional display fields a document gets wrong are dropped, not fatal.
	c, err = e.reg.Lookup(ctx, e.docs.url(appHost, "/bad-display.json"), "requester")
	if err != nil || c.LogoURI != "" || c.ClientURI == "" || c.ClientName == "" {
		t.Errorf("bad logo_uri: %+v, %v; want the logo dropped, the rest kept", c, err)
	}
}

func TestDocumentRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	for _, path := range []string{
		"/mismatch.json", "/secret.json", "/basic.json", "/no-redirects.json", "/bad-redirect.json",
		"/big.json", "/text.json", "/missing.json",
	} {
		t.Run(path, func(t *testing.T) {
			_, err := e.reg.Lookup(ctx, e.docs.url(appHost, path), "requester")
			if err := wantCode(t, path, err, oautherr.InvalidClient); err != nil {
				t.Logf("%s: %s", path, err.Description)
			}
			if e.docs.count(path) != 1 {
				t.Errorf("%s: fetched %d times; want once", path, e.docs.count(path))
			}
		})
	}
}

func TestDocumentRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	e := newCIMD(t, true, nil)
	_, err := e.reg.Lookup(context.Background(), e.docs.url(appHost, "/redirect.json"), "requester")
	wantCode(t, "redirect", err, oautherr.InvalidClient)
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
	t.Parallel()
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
		t.Run(id, func(t *testing.T) {
			_, err := e.reg.Lookup(ctx, id, "requester")
			wantCode(t, id, err, oautherr.InvalidClient)
		})
	}
	if n := e.dials.count(); n != 0 || len(e.dns.lookups) != 0 || e.docs.conns.Load() != 0 {
		t.Errorf("refused URLs caused %d dials, %d DNS lookups, %d connections; want none", n, len(e.dns.lookups), e.docs.conns.Load())
	}
}

func TestDocumentNonPublicAddressRefusedWithoutConnecting(t *testing.T) {
	t.Parallel()
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
		t.Run(id, func(t *testing.T) {
			_, err := e.reg.Lookup(ctx, id, "requester")
			if oe := wantCode(t, id, err, oautherr.InvalidClient); oe != nil && strings.Contains(oe.Description, "10.0.0.1") {
				t.Errorf("%s: the description shows the address: %s", id, oe.Description)
			}
		})
	}
	if n := e.dials.count(); n != 0 {
		t.Errorf("%d dials attempted (%v); want none", n, e.dials.addrs)
	}
	if n := e.docs.conns.Load(); n != 0 {
		t.Errorf("%d connections reached the loopback server; want none", n)
	}
}

func TestDocumentPlainHTTPOnLoopbackInDevMode(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"client_id":"http://%s/client.json","client_name":"Dev","redirect_uris":["http://localhost/cb"]}`, r.Host)
	}))
	t.Cleanup(srv.Close)
	id := srv.URL + "/client.json"

	dev := newCIMD(t, true, nil)
	c, err := dev.reg.Lookup(context.Background(), id, "requester")
	if err != nil || c.ClientID != id {
		t.Fatalf("dev mode, http loopback document: %+v, %v", c, err)
	}

	prod := newCIMD(t, false, nil)
	_, err = prod.reg.Lookup(context.Background(), id, "requester")
	wantCode(t, "production, http loopback document", err, oautherr.InvalidClient)
	if requests.Load() != 1 {
		t.Errorf("%d requests; want only dev mode's one", requests.Load())
	}
}

func TestDocumentSlowServerRefusedWithinCap(t *testing.T) {
	t.Parallel()
	const limit = 200 * time.Millisecond
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout = limit })
	// Both wait out the limit, so they wait at the same time.
	paths := []string{"/slow.json", "/slow-body.json"}
	var lookups []func() lookupResult
	for _, path := range paths {
		lookups = append(lookups, func() lookupResult { return e.timedLookup(e.docs.url(appHost, path), "requester-"+path) })
	}
	results := testkit.Together(lookups...)
	for i, path := range paths {
		t.Run(path, func(t *testing.T) {
			r := results[i]
			t.Logf("%s took %v", path, r.took)
			if oe := wantCode(t, path, r.err, oautherr.InvalidClient); oe != nil && !strings.Contains(oe.Description, "too long") {
				t.Errorf("%s: %q; want a timeout", path, oe.Description)
			}
			if r.took > limit+time.Second {
				t.Errorf("%s: took %v; want about %v", path, r.took, limit)
			}
		})
	}
}

// lookupResult is what one lookup returned, and how long it took.
type lookupResult struct {
	err  error
	took time.Duration
}

// timedLookup looks clientID up for requester, timing it.
func (e *cimdEnv) timedLookup(clientID, requester string) lookupResult {
	start := time.Now()
	_, err := e.reg.Lookup(context.Background(), clientID, requester)
	return lookupResult{err, time.Since(start)}
}

func TestDocumentCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	id := e.docs.url(appHost, "/client.json")
	first, err := e.reg.Lookup(ctx, id, "requester")
	if err != nil {
		t.Fatal(err)
	}
	first.RedirectURIs[0] = "https://changed.example/cb" // must not reach the cache
	second, err := e.reg.Lookup(ctx, id, "requester")
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
	if _, err := e.reg.Lookup(ctx, id, "requester"); err != nil || e.docs.count("/client.json") != 2 {
		t.Errorf("after the TTL: %v, %d requests; want a second fetch", err, e.docs.count("/client.json"))
	}

	// max-age=120 is honoured.
	cached := e.docs.url(appHost, "/cached.json")
	e.reg.Lookup(ctx, cached, "requester")
	e.clock.Add(100 * time.Second)
	e.reg.Lookup(ctx, cached, "requester")
	if n := e.docs.count("/cached.json"); n != 1 {
		t.Errorf("within max-age: %d requests; want 1", n)
	}
	e.clock.Add(30 * time.Second)
	e.reg.Lookup(ctx, cached, "requester")
	if n := e.docs.count("/cached.json"); n != 2 {
		t.Errorf("past max-age: %d requests; want 2", n)
	}
}

// TestDocumentFailuresNotCached: the draft's Metadata Caching section says
// an authorization server MUST NOT cache error responses, nor documents
// that are invalid or malformed. A client that fixes its document is
// accepted on its very next request; what keeps a failing client_id from
// hammering anyone is the callers' per-requester rate limits, the fetch
// caps and the coalescing of concurrent lookups of one URL.
func TestDocumentFailuresNotCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	t.Run("a document that could not be fetched is accepted once it is served", func(t *testing.T) {
		id := e.docs.url(appHost, "/fixed-status.json")
		_, err := e.reg.Lookup(ctx, id, "requester")
		wantCode(t, "first lookup (HTTP 503)", err, oautherr.InvalidClient)
		if c, err := e.reg.Lookup(ctx, id, "requester"); err != nil || c.ClientID != id {
			t.Errorf("the very next lookup: %+v, %v; want the fixed document", c, err)
		}
	})
	t.Run("an invalid document is accepted once it is fixed", func(t *testing.T) {
		id := e.docs.url(appHost, "/fixed-doc.json")
		_, err := e.reg.Lookup(ctx, id, "requester")
		if oe := wantCode(t, "first lookup (no redirect_uris)", err, oautherr.InvalidClient); oe != nil && !strings.Contains(oe.Description, "redirect_uris") {
			t.Errorf("first lookup: %q; want the invalid field named", oe.Description)
		}
		if c, err := e.reg.Lookup(ctx, id, "requester"); err != nil || c.ClientID != id {
			t.Errorf("the very next lookup: %+v, %v; want the fixed document", c, err)
		}
	})
	t.Run("each lookup of a failing document fetches it again", func(t *testing.T) {
		id := e.docs.url(appHost, "/mismatch.json")
		for i := range 3 {
			_, err := e.reg.Lookup(ctx, id, "requester")
			wantCode(t, fmt.Sprintf("lookup %d", i+1), err, oautherr.InvalidClient)
		}
		if n := e.docs.count("/mismatch.json"); n != 3 {
			t.Errorf("%d requests for three lookups; want 3 (nothing remembered)", n)
		}
	})
	t.Run("concurrent lookups of a failing document share one fetch", func(t *testing.T) {
		id := e.docs.url(appHost, "/pause-missing.json")
		const n = 10
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				// Many requesters: joining costs none of them a fetch slot.
				_, err := e.reg.Lookup(ctx, id, fmt.Sprintf("requester-%d", i))
				errs <- err
			})
		}
		e.unpauseOnceJoined(t, id, n)
		wg.Wait()
		close(errs)
		for err := range errs {
			wantCode(t, "concurrent lookup", err, oautherr.InvalidClient)
		}
		if got := e.docs.count("/pause-missing.json"); got != 1 {
			t.Errorf("%d requests for %d concurrent lookups; want 1", got, n)
		}
		// Shared while under way, not remembered after.
		e.reg.Lookup(ctx, id, "requester")
		if got := e.docs.count("/pause-missing.json"); got != 2 {
			t.Errorf("%d requests after the shared fetch ended and one more lookup; want 2", got)
		}
	})
	t.Run("a requester at its cap of fetches in flight cannot retry a failing document", func(t *testing.T) {
		for n := range oauthclients.MaxFetchesPerRequester {
			if err := e.startSlow(e.host(200+n), n, "retrier"); errors.Is(err, outage.ErrUnavailable) {
				t.Fatalf("fetch %d refused: %v", n+1, err)
			}
		}
		before := e.docs.count("/mismatch.json")
		_, err := e.reg.Lookup(ctx, e.docs.url(appHost, "/mismatch.json"), "retrier")
		wantUnavailable(t, "one more fetch of a requester at its cap", err)
		if n := e.docs.count("/mismatch.json"); n != before {
			t.Errorf("the refused lookup fetched the document (%d requests, was %d)", n, before)
		}
	})
}

// TestDocumentClientName: MCP's client-registration section says a
// metadata document MUST include client_id, client_name and redirect_uris,
// and the authorization server MUST check it contains the required fields.
// client_name is what the consent page names the client by, so a document
// without a usable one is refused like any other invalid document, with
// the reason; RFC 7591 registrations may still leave it out
// (TestRegisterClientNameOptional).
func TestDocumentClientName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	for _, tc := range []struct{ name, path, reason string }{
		{"a document without client_name is refused", "/no-name.json", "client_name is required"},
		{"a null client_name counts as none", "/null-name.json", "client_name is required"},
		{"a client_name of only white space counts as none", "/blank-name.json", "client_name is required"},
		{"a client_name that is not a string is refused", "/number-name.json", "client_name must be a string"},
		{"a client_name over 100 characters is refused, not cut", "/long-name.json", "client_name is longer than 100 characters"},
		{"a client_name with a bidirectional override is refused", "/bidi-name.json", "client_name contains control, formatting or private-use characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.reg.Lookup(ctx, e.docs.url(appHost, tc.path), "requester")
			oe := wantCode(t, tc.path, err, oautherr.InvalidClient)
			if want := "client metadata document is invalid: " + tc.reason; oe != nil && oe.Description != want {
				t.Errorf("%s: %q; want %q", tc.path, oe.Description, want)
			}
		})
	}
	t.Run("a client_name of 100 characters is accepted, trimmed", func(t *testing.T) {
		c, err := e.reg.Lookup(ctx, e.docs.url(appHost, "/max-name.json"), "requester")
		if want := strings.Repeat("é", oauthclients.MaxClientName); err != nil || c.ClientName != want {
			t.Errorf("%q, %v; want %q", c.ClientName, err, want)
		}
	})
}

func TestDocumentCacheBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.MaxCachedDocuments = 2 })
	a, b, c := e.docs.url(appHost, "/client.json"), e.docs.url(appHost, "/other.json"), e.docs.url(appHost, "/vendor.json")
	e.reg.Lookup(ctx, a, "requester")
	e.clock.Add(time.Second) // b expires after a
	e.reg.Lookup(ctx, b, "requester")
	e.reg.Lookup(ctx, c, "requester") // evicts a, the soonest to expire
	e.reg.Lookup(ctx, b, "requester")
	e.reg.Lookup(ctx, a, "requester")
	if na, nb := e.docs.count("/client.json"), e.docs.count("/other.json"); na != 2 || nb != 1 {
		t.Errorf("requests: a %d, b %d; want a evicted (2) and b kept (1)", na, nb)
	}
}

func TestDocumentConcurrentLookupsFetchOnce(t *testing.T) {
	t.Parallel()
	e := newCIMD(t, true, nil)
	id := e.docs.url(appHost, "/pause.json")
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := e.reg.Lookup(context.Background(), id, "requester")
			errs <- err
		})
	}
	e.unpauseOnceJoined(t, id, 10)
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
	t.Parallel()
	e := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout = 2 * time.Second })
	ctx := &passingDeadline{Context: context.Background(), passed: make(chan struct{})}
	returned := make(chan struct{})
	go func() {
		select {
		case <-e.docs.slowed: // the fetch is under way, and the server stalls it
			close(ctx.passed)
		case <-returned:
		}
	}()
	start := time.Now()
	_, err := e.reg.Lookup(ctx, e.docs.url(appHost, "/slow.json"), "requester")
	close(returned)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("caller's deadline passed while the document was fetched: %v after %v; want its deadline error, promptly", err, time.Since(start))
	}
}

// passingDeadline is a caller's context whose deadline passes when passed
// is closed: at a moment the test picks, not after a wait.
type passingDeadline struct {
	context.Context
	passed chan struct{}
}

func (c *passingDeadline) Done() <-chan struct{} { return c.passed }

func (c *passingDeadline) Err() error {
	select {
	case <-c.passed:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// unpauseOnceJoined serves the /pause document id once n lookups wait
// for its one fetch: were they not joined to it, it would never be.
func (e *cimdEnv) unpauseOnceJoined(t *testing.T, id string, n int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%d lookups joined to one fetch", n), func() bool { return oauthclients.Joined(e.reg, id) >= n })
	e.docs.unpause()
}

// host names h<i>.example.com on the loopback server.
func (e *cimdEnv) host(i int) string {
	h := fmt.Sprintf("h%d.test", i)
	e.dns.mu.Lock()
	defer e.dns.mu.Unlock()
	e.dns.hosts[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	return h
}

// startSlow starts a fetch of a document that hangs until the server is
// released, for requester; the caller gives up at once, the fetch goes on.
// It returns the lookup's error: ErrUnavailable if the fetch was refused.
func (e *cimdEnv) startSlow(h string, n int, requester string) error {
	ctx, cancel := gaveUp()
	defer cancel()
	_, err := e.reg.Lookup(ctx, e.docs.url(h, fmt.Sprintf("/slow.json?n=%d", n)), requester)
	return err
}

// gaveUp is the context of a caller whose deadline has passed: its lookup
// still starts (or joins) the fetch, which counts against the caps from
// then on, and returns at once with the deadline's error.
func gaveUp() (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), time.Now())
}

// fill starts slow fetches from requesters attacker-0, attacker-1, ...
// (two each) on hosts h0, h1, ... (four each) until n are under way.
func (e *cimdEnv) fill(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if err := e.startSlow(e.host(i/oauthclients.MaxFetchesPerHost), i, fmt.Sprintf("attacker-%d", i/oauthclients.MaxFetchesPerRequester)); errors.Is(err, outage.ErrUnavailable) {
			t.Fatalf("slow fetch %d refused: %v", i+1, err)
		}
	}
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("%s: %v; want ErrUnavailable", what, err)
	}
	// The refusal is ours, not Redis's: its text and dependency say so.
	if outage.Dependency(err) != oauthclients.MetadataFetch || strings.Contains(err.Error(), "redis") ||
		!strings.Contains(err.Error(), "client metadata fetch unavailable") {
		t.Errorf("%s: %q does not name the metadata fetch as what is unavailable", what, err)
	}
}

// lookupEventually retries a lookup until it succeeds (slow fetches ending
// after a release).
func (e *cimdEnv) lookupEventually(t *testing.T, what, id, requester string) {
	t.Helper()
	testkit.Eventually(t, what, func() error {
		_, err := e.reg.Lookup(context.Background(), id, requester)
		return err
	})
}

// TestDocumentFetchesBounded: a flood of distinct client_id URLs does not
// become a flood of outbound fetches, and one slow host cannot take every
// slot. The refusal is an outage (503), not a verdict on the document, and
// is not cached.
func TestDocumentFetchesBounded(t *testing.T) {
	t.Parallel()
	e := newCIMD(t, true, nil)
	t.Run("per host", func(t *testing.T) {
		h0 := e.host(0)
		for n := range oauthclients.MaxFetchesPerHost {
			if err := e.startSlow(h0, n, fmt.Sprintf("r%d", n)); errors.Is(err, outage.ErrUnavailable) {
				t.Fatalf("fetch %d from one host refused: %v", n+1, err)
			}
		}
		wantUnavailable(t, "fifth fetch from one host", e.startSlow(h0, 99, "another"))
		if _, err := e.reg.Lookup(context.Background(), e.docs.url(appHost, "/client.json"), "another"); err != nil {
			t.Errorf("another host while one is slow: %v", err)
		}
	})
	t.Run("in all, for new client ids", func(t *testing.T) {
		// h0 holds four already; fill the rest of the unreserved slots.
		for i := oauthclients.MaxFetchesPerHost; i < oauthclients.MaxConcurrentFetches-oauthclients.ReservedFetches; i++ {
			h := e.host(i / oauthclients.MaxFetchesPerHost)
			if err := e.startSlow(h, i, fmt.Sprintf("r%d", i)); errors.Is(err, outage.ErrUnavailable) {
				t.Fatalf("fetch %d refused: %v", i+1, err)
			}
		}
		_, err := e.reg.Lookup(context.Background(), e.docs.url(otherHost, "/client.json"), "victim")
		wantUnavailable(t, "a new document with the unreserved slots taken", err)
		if n := e.docs.count("/client.json"); n != 1 {
			t.Errorf("/client.json fetched %d times, want once (the refused lookup fetched nothing)", n)
		}
	})
	e.docs.releaseSlow()
	t.Run("not cached", func(t *testing.T) {
		e.lookupEventually(t, "once the slow fetches ended", e.docs.url(otherHost, "/client.json"), "victim")
	})
}

// TestDocumentFetchesPerRequester: one requester starts at most two
// fetches at once; joining a fetch already under way costs it nothing.
func TestDocumentFetchesPerRequester(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	for n := range oauthclients.MaxFetchesPerRequester {
		if err := e.startSlow(e.host(n), n, "greedy"); errors.Is(err, outage.ErrUnavailable) {
			t.Fatalf("fetch %d of one requester refused: %v", n+1, err)
		}
	}
	third := e.docs.url(appHost, "/client.json")
	t.Run("third refused", func(t *testing.T) {
		_, err := e.reg.Lookup(ctx, third, "greedy")
		wantUnavailable(t, "a third fetch of one requester", err)
	})
	t.Run("another requester served", func(t *testing.T) {
		if _, err := e.reg.Lookup(ctx, e.docs.url(otherHost, "/client.json"), "other"); err != nil {
			t.Errorf("another requester: %v", err)
		}
	})
	t.Run("joining a fetch under way is free", func(t *testing.T) {
		if err := e.startSlow(e.host(5), 5, "other"); errors.Is(err, outage.ErrUnavailable) {
			t.Fatal(err)
		}
		err := e.startSlow(e.host(5), 5, "greedy") // the same URL
		if errors.Is(err, outage.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("greedy, at its cap, joining another's fetch: %v; want to wait for it (its own deadline)", err)
		}
	})
	e.docs.releaseSlow()
	t.Run("refusal not cached", func(t *testing.T) {
		e.lookupEventually(t, "the third document once the first two ended", third, "greedy")
	})
}

// TestDocumentSlowRequesterDoesNotStopAnother: one requester serving slow
// documents from eight hosts (what once took all 32 slots) holds two; a
// victim's first authorization with a fast document goes through.
func TestDocumentSlowRequesterDoesNotStopAnother(t *testing.T) {
	t.Parallel()
	e := newCIMD(t, true, nil)
	started := 0
	for i := range oauthclients.MaxConcurrentFetches {
		if err := e.startSlow(e.host(i%8), i, "attacker"); !errors.Is(err, outage.ErrUnavailable) {
			started++
		}
	}
	if started != oauthclients.MaxFetchesPerRequester {
		t.Errorf("one requester started %d slow fetches; want %d", started, oauthclients.MaxFetchesPerRequester)
	}
	if _, err := e.reg.Lookup(context.Background(), e.docs.url(appHost, "/client.json"), "victim"); err != nil {
		t.Errorf("victim's fast document: %v", err)
	}
}

// TestDocumentFetchReserve: with every unreserved slot held by slow new
// documents from many requesters, a client whose document was fetched
// fine before still refreshes it; one whose last fetch failed does not
// keep that privilege; and the reserve is bounded too.
func TestDocumentFetchReserve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newCIMD(t, true, nil)
	good := e.docs.url(appHost, "/client.json")
	once := e.docs.url(appHost, "/once.json")
	// Documents fetched fine once that then turn slow: known-good ids
	// that would hold the reserve.
	var turning []string
	for i := range oauthclients.ReservedFetches + 1 {
		turning = append(turning, e.docs.url(e.host(100+i), fmt.Sprintf("/turns-slow.json?n=%d", i)))
	}
	for _, id := range append([]string{good, once}, turning...) {
		if _, err := e.reg.Lookup(ctx, id, "victim"); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	e.clock.Add(oauthclients.DefaultDocumentTTL + time.Second) // all must be fetched again
	if _, err := e.reg.Lookup(ctx, once, "victim"); err == nil {
		t.Fatal("/once.json served twice: the test proves nothing")
	}

	e.fill(t, oauthclients.MaxConcurrentFetches-oauthclients.ReservedFetches)
	t.Run("new document refused", func(t *testing.T) {
		_, err := e.reg.Lookup(ctx, e.docs.url(otherHost, "/client.json"), "newcomer")
		wantUnavailable(t, "a new document with the unreserved slots taken", err)
	})
	t.Run("known-good document refreshed", func(t *testing.T) {
		if _, err := e.reg.Lookup(ctx, good, "victim"); err != nil {
			t.Errorf("known-good client: %v", err)
		}
		if n := e.docs.count("/client.json"); n != 2 {
			t.Errorf("/client.json fetched %d times; want 2 (refreshed)", n)
		}
	})
	t.Run("a failed document loses its place", func(t *testing.T) {
		_, err := e.reg.Lookup(ctx, once, "victim")
		wantUnavailable(t, "a document whose last fetch failed", err)
	})
	t.Run("the reserve is bounded", func(t *testing.T) {
		started := 0
		for i, id := range turning {
			tctx, cancel := gaveUp()
			_, err := e.reg.Lookup(tctx, id, fmt.Sprintf("turning-%d", i))
			cancel()
			if !errors.Is(err, outage.ErrUnavailable) {
				started++
			}
		}
		if started != oauthclients.ReservedFetches {
			t.Errorf("%d known-good documents turned slow started; want the reserve, %d", started, oauthclients.ReservedFetches)
		}
	})
}

// TestDocumentFetchTimeouts: connecting (and the TLS handshake) and
// waiting for headers each give up well before the whole fetch's timeout,
// so a server that stalls holds its slot less long.
func TestDocumentFetchTimeouts(t *testing.T) {
	t.Parallel()
	const (
		step  = 100 * time.Millisecond
		total = 5 * time.Second
	)
	// A listener that accepts and never speaks: a TLS handshake never
	// answered.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var held []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	_, silentPort, _ := net.SplitHostPort(l.Addr().String())
	connect := newCIMD(t, true, func(o *oauthclients.Options) {
		o.FetchTimeout, o.ConnectTimeout = total, step
		o.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) { // a SYN never answered
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	handshake := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout, o.ConnectTimeout = total, step })
	headers := newCIMD(t, true, func(o *oauthclients.Options) { o.FetchTimeout, o.HeaderTimeout = total, step })
	cases := []struct {
		name string
		id   string
		e    *cimdEnv
	}{
		{"connect", connect.docs.url(appHost, "/client.json"), connect},
		{"TLS handshake", "https://" + appHost + ":" + silentPort + "/client.json", handshake},
		{"response headers", headers.docs.url(appHost, "/slow.json"), headers},
	}
	// Each waits out its step's timeout, so they wait at the same time.
	var lookups []func() lookupResult
	for _, c := range cases {
		lookups = append(lookups, func() lookupResult { return c.e.timedLookup(c.id, "requester") })
	}
	results := testkit.Together(lookups...)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := results[i]
			if oe := wantCode(t, c.id, r.err, oautherr.InvalidClient); oe != nil && !strings.Contains(oe.Description, "too long") {
				t.Errorf("%q; want a timeout", oe.Description)
			}
			if r.took >= total-time.Second {
				t.Errorf("took %v: the step's timeout (%v) did not apply, only the whole fetch's (%v)", r.took, step, total)
			}
		})
	}
}

// TestSiteOf: the per-site cap counts a registered domain once, however
// many names wildcard DNS gives it, and an IP address once, whatever port.
func TestSiteOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://a.evil.example.com/client.json":     "example.com",
		"https://b.c.evil.example.com:8443/c.json":   "example.com",
		"https://app.example.co.uk/client.json":      "example.co.uk",
		"https://tenant.azurewebsites.net/client":    "tenant.azurewebsites.net",
		"https://203.0.113.9:8443/client.json":       "203.0.113.9",
		"https://203.0.113.9:9443/other.json":        "203.0.113.9",
		"https://[2001:db8::1]:8443/client.json":     "2001:db8::1",
		"https://Mixed.Case.Example.COM/client.json": "example.com",
	} {
		t.Run(in, func(t *testing.T) {
			if got := oauthclients.SiteOf(in); got != want {
				t.Errorf("siteOf(%s) = %q, want %q", in, got, want)
			}
		})
	}
}
