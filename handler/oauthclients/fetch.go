package oauthclients

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// MetadataFetch is how a refused metadata-document fetch is named as an
// outage: every fetch slot this instance allows (in all, per site or per
// requester) is taken, so the lookup cannot be served now.
const MetadataFetch = "client metadata fetch"

// errAddressNotAllowed is the guard's refusal of a non-public address.
var errAddressNotAllowed = errors.New("address not allowed")

// errRedirect is the refusal of a redirect: the draft says an
// authorization server MUST NOT follow them, and a document's client_id
// must equal the URL it was fetched from anyway.
var errRedirect = errors.New("redirect not followed")

// guard decides which addresses metadata documents may come from: public
// unicast addresses, and loopback ones when allowed.
type guard struct {
	allowLoopback bool
	blocked       []netip.Prefix
}

func newGuard(allowLoopback bool) *guard {
	g := &guard{allowLoopback: allowLoopback}
	// Ranges that are not private in netip's sense but still reach no
	// public server, or embed an IPv4 address that may be private.
	for _, p := range []string{
		"0.0.0.0/8",        // "this network"
		"100.64.0.0/10",    // carrier-grade NAT, shared address space
		"168.63.129.16/32", // Azure's WireServer: a public address, but the host's own endpoint
		"192.0.0.0/24",     // IETF protocol assignments
		"192.0.2.0/24",     // documentation
		"198.18.0.0/15",    // benchmarking
		"198.51.100.0/24",  // documentation
		"203.0.113.0/24",   // documentation
		"240.0.0.0/4",      // reserved, and broadcast
		"::/96",            // IPv4-compatible (deprecated)
		"64:ff9b::/96",     // NAT64: could translate to a private IPv4 address
		"64:ff9b:1::/48",   // local-use NAT64
		"100::/64",         // discard
		"2001::/32",        // Teredo: embeds an IPv4 address
		"2001:db8::/32",    // documentation
		"2002::/16",        // 6to4: embeds an IPv4 address
		"fec0::/10",        // site-local (deprecated)
	} {
		g.blocked = append(g.blocked, netip.MustParsePrefix(p))
	}
	return g
}

// allowed reports whether a metadata document may be fetched from ip.
// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
func (g *guard) allowed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if ip.IsLoopback() {
		return g.allowLoopback
	}
	// IsGlobalUnicast is false for unspecified, link-local, multicast and
	// broadcast addresses; IsPrivate covers 10/8, 172.16/12, 192.168/16
	// and fc00::/7.
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range g.blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// control is net.Dialer.Control: the last check, on the very address the
// socket is about to connect to, whatever path led there.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !g.allowed(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, errAddressNotAllowed)
	}
	return nil
}

// dialer resolves the host itself, refuses it unless every address it has
// is allowed, and connects to those checked addresses only, so a DNS answer
// that changes between check and connect (rebinding) changes nothing.
// Resolving and connecting together get the connect timeout.
type dialer struct {
	guard    *guard
	resolver Resolver
	dial     func(ctx context.Context, network, address string) (net.Conn, error)
	timeout  time.Duration
}

func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else if addrs, err = d.resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	// All or nothing: a host with one public and one private address is
	// someone trying their luck.
	for _, ip := range addrs {
		if !d.guard.allowed(ip) {
			return nil, fmt.Errorf("%s resolves to %s: %w", host, ip, errAddressNotAllowed)
		}
	}
	var errs []error
	for _, ip := range addrs {
		conn, err := d.dial(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// fetchTimeouts bound a document fetch: connect covers resolving,
// connecting and the TLS handshake, header the wait for response headers,
// and total the whole exchange, body included.
type fetchTimeouts struct {
	total, connect, header time.Duration
}

// newFetchClient returns the HTTP client for metadata documents: guarded
// dials, no proxy (a proxy would make its own, unchecked, dials), no
// redirects, no kept-alive connections to hosts anyone can name, and
// timeouts on each step and on the whole exchange.
func newFetchClient(opts Options, to fetchTimeouts, g *guard) *http.Client {
	d := &dialer{guard: g, resolver: opts.Resolver, dial: opts.Dial, timeout: to.connect}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	if d.dial == nil {
		d.dial = (&net.Dialer{Timeout: to.connect, Control: g.control}).DialContext
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.TLSConfig != nil {
		tlsConfig = opts.TLSConfig.Clone()
		tlsConfig.MinVersion = max(tlsConfig.MinVersion, tls.VersionTLS12)
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            d.DialContext,
			TLSClientConfig:        tlsConfig,
			TLSHandshakeTimeout:    to.connect,
			ResponseHeaderTimeout:  to.header,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 16 << 10,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
		Timeout:       to.total,
	}
}

// documentFetcher finds the clients that Client ID Metadata Documents
// describe: it fetches documents over guarded connections, caches the
// valid ones in memory, and bounds the fetches under way. It is the
// Registry's other half, beside the registrations in Redis.
type documentFetcher struct {
	client       *http.Client
	timeout      time.Duration // of a whole fetch
	maxBytes     int64
	ttl, maxTTL  time.Duration // cache time without, and at most with, max-age
	allowLoop    bool
	extraSchemes []string
	now          func() time.Time
	log          *slog.Logger
	ctx          context.Context // parent of every fetch: cancelled by close
	cancel       context.CancelFunc

	mu    sync.Mutex // guards cache and slots
	cache docCache
	slots fetchSlots
}

// newDocumentFetcher returns the fetcher that opts describe; New has
// checked them.
func newDocumentFetcher(opts Options, now func() time.Time, log *slog.Logger) *documentFetcher {
	total := orDefault(opts.FetchTimeout, DefaultFetchTimeout)
	f := &documentFetcher{
		client: newFetchClient(opts, fetchTimeouts{
			total:   total,
			connect: min(orDefault(opts.ConnectTimeout, DefaultConnectTimeout), total),
			header:  min(orDefault(opts.HeaderTimeout, DefaultHeaderTimeout), total),
		}, newGuard(opts.AllowLoopback)),
		timeout:      total,
		maxBytes:     orDefault(opts.MaxDocumentBytes, DefaultMaxDocumentBytes),
		ttl:          orDefault(opts.DocumentTTL, DefaultDocumentTTL),
		maxTTL:       orDefault(opts.MaxDocumentTTL, DefaultMaxDocumentTTL),
		allowLoop:    opts.AllowLoopback,
		extraSchemes: slices.Clone(opts.ExtraRedirectSchemes),
		now:          now,
		log:          log,
		cache:        docCache{max: orDefault(opts.MaxCachedDocuments, DefaultMaxCachedDocuments), entries: make(map[string]cacheEntry)},
		slots: fetchSlots{
			calls: make(map[string]*fetchCall), byHost: make(map[string]int), byRequester: make(map[string]int),
			knownGood: newRecentSet(maxKnownGood),
		},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

// close stops fetches under way.
func (f *documentFetcher) close() { f.cancel() }

// fetchCall is a fetch under way; whoever asks for the same URL meanwhile
// waits for it rather than fetching again.
type fetchCall struct {
	host      string // what it counts against: its host,
	requester string // and whoever started it
	done      chan struct{}
	client    Client
	err       error
	// joined counts the lookups that started or joined it (guarded by
	// documentFetcher.mu): a test holds the document until all of its
	// lookups have joined, rather than hope a pause was long enough.
	joined int
}

// cacheEntry is the client a valid document describes. Failures are never
// cached: the draft forbids caching error responses and invalid documents.
type cacheEntry struct {
	client  Client
	expires time.Time
}

// Bounds on the metadata documents fetched at once: in all, from one site
// (siteOf), and started by one requester. reservedFetches of all the
// slots serve only client ids in the known-good set (maxKnownGood ids
// whose documents were last fetched and valid), so that a flood of new,
// slow documents from many requesters cannot stop a client we know from
// refreshing its document. Holding every unreserved slot takes
// (maxConcurrentFetches-reservedFetches)/maxFetchesPerRequester addresses
// and as many /maxFetchesPerHost registered domains.
const (
	maxConcurrentFetches   = 64
	maxFetchesPerHost      = 4
	maxFetchesPerRequester = 2
	reservedFetches        = 16
	maxKnownGood           = 1000
)

// siteOf is what the per-site cap counts a client_id URL by: its
// registered domain (public suffix plus one label, so that wildcard DNS
// under one domain is one site), or for an IP address the address (any
// port).
func siteOf(clientID string) string {
	u, err := url.Parse(clientID)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	if site, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return site
	}
	return host
}

// lookup returns the client a Client ID Metadata Document URL describes,
// from the cache or fetched.
func (f *documentFetcher) lookup(ctx context.Context, clientID, requester string) (Client, error) {
	if reason := f.checkClientIDURL(clientID); reason != "" {
		return Client{}, &oautherr.Error{Code: oautherr.InvalidClient, Description: "client_id " + reason}
	}
	f.mu.Lock()
	if c, ok := f.cache.get(clientID, f.now()); ok {
		f.mu.Unlock()
		return c.clone(), nil
	}
	// Joining a fetch under way costs nothing more, so it counts against
	// no cap. This is also what stands in for caching failures: however
	// many requests name a failing document at once, it is fetched once.
	call, ok := f.slots.calls[clientID]
	if !ok {
		host := siteOf(clientID)
		if reason := f.slots.refused(clientID, host, requester); reason != "" {
			// A flood of distinct client_ids must not become a flood of
			// outbound connections, and no one requester or slow host may
			// take every slot. Not cached: it says nothing of the document.
			f.mu.Unlock()
			return Client{}, fmt.Errorf("oauthclients: look up client: %w", outage.New(MetadataFetch, errors.New(reason)))
		}
		call = &fetchCall{host: host, requester: requester, done: make(chan struct{})}
		f.slots.take(clientID, call)
		// The fetch runs on its own context, so that one caller giving up
		// does not fail the others waiting for it, nor get cached.
		go f.run(clientID, call)
	}
	call.joined++
	f.mu.Unlock()
	select {
	case <-call.done:
		return call.client.clone(), call.err
	case <-ctx.Done():
		return Client{}, fmt.Errorf("oauthclients: look up client: %w", ctx.Err())
	}
}

// fetchSlots counts the fetches under way, in all, per site and per
// requester, and remembers which client ids had valid documents last. Not
// safe for concurrent use: documentFetcher.mu guards it.
type fetchSlots struct {
	calls       map[string]*fetchCall // by client_id URL
	byHost      map[string]int
	byRequester map[string]int
	knownGood   *recentSet // client ids whose documents were fetched and valid
}

// refused says why a new fetch may not start now, or "".
func (s *fetchSlots) refused(clientID, host, requester string) string {
	slots := maxConcurrentFetches - reservedFetches
	if s.knownGood.has(clientID) {
		slots = maxConcurrentFetches
	}
	switch {
	case s.byRequester[requester] >= maxFetchesPerRequester:
		return "this requester has too many metadata documents being fetched"
	case s.byHost[host] >= maxFetchesPerHost:
		return "too many metadata documents are being fetched from this site"
	case len(s.calls) >= slots:
		return "too many metadata documents are being fetched already"
	}
	return ""
}

// take counts a fetch that starts.
func (s *fetchSlots) take(clientID string, call *fetchCall) {
	s.byHost[call.host]++
	s.byRequester[call.requester]++
	s.calls[clientID] = call
}

// release frees the slot of a fetch that ended, valid (ok) or not. A
// document that stops being served well loses its place in the reserve:
// otherwise one fast answer would buy a host lasting use of it for slow
// ones.
func (s *fetchSlots) release(clientID string, call *fetchCall, ok bool) {
	delete(s.calls, clientID)
	decrement(s.byHost, call.host)
	decrement(s.byRequester, call.requester)
	if ok {
		s.knownGood.add(clientID)
	} else {
		s.knownGood.remove(clientID)
	}
}

// decrement lowers a count, dropping it at zero so the map holds only
// fetches under way.
func decrement(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

func (f *documentFetcher) run(clientID string, call *fetchCall) {
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	c, ttl, err := f.fetch(ctx, clientID)
	if err != nil {
		f.log.LogAttrs(ctx, slog.LevelWarn, "client metadata document refused",
			slog.String("client_id", clientID), slog.String("err", err.Error()))
	}
	call.client, call.err = c, err

	f.mu.Lock()
	defer f.mu.Unlock()
	f.slots.release(clientID, call, err == nil)
	// Only a valid document is cached, so a client that fixes its document
	// is served on its next request. Retrying a failing one costs a fetch
	// each time, paid for from the requester's own budgets: the callers'
	// per-address rate limit in front of every lookup, and the fetches in
	// flight per requester and per site.
	switch {
	case err != nil:
		f.cache.drop(clientID) // an expired copy, if any: it is not served again
	case f.ctx.Err() == nil:
		now := f.now()
		f.cache.put(clientID, cacheEntry{client: c, expires: now.Add(ttl)}, now)
	}
	close(call.done)
}

// docCache holds valid documents by client_id URL, at most max of them.
// Not safe for concurrent use: documentFetcher.mu guards it.
type docCache struct {
	max     int
	entries map[string]cacheEntry
}

// get returns the cached client for clientID unless it expired.
func (c *docCache) get(clientID string, now time.Time) (Client, bool) {
	e, ok := c.entries[clientID]
	if !ok || !now.Before(e.expires) {
		return Client{}, false
	}
	return e.client, true
}

func (c *docCache) drop(clientID string) { delete(c.entries, clientID) }

// put caches an entry, making room if the cache is full: first by
// dropping expired entries, then the one closest to expiry.
func (c *docCache) put(clientID string, e cacheEntry, now time.Time) {
	if _, ok := c.entries[clientID]; !ok && len(c.entries) >= c.max {
		var soonest string
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			} else if soonest == "" || v.expires.Before(c.entries[soonest].expires) {
				soonest = k
			}
		}
		if len(c.entries) >= c.max {
			delete(c.entries, soonest)
		}
	}
	c.entries[clientID] = e
}

// recentSet is a bounded set of strings that forgets the one added or
// re-added longest ago when full. Not safe for concurrent use.
type recentSet struct {
	max   int
	order *list.List               // most recent first
	elems map[string]*list.Element // of order
}

func newRecentSet(max int) *recentSet {
	return &recentSet{max: max, order: list.New(), elems: make(map[string]*list.Element)}
}

func (s *recentSet) has(k string) bool {
	_, ok := s.elems[k]
	return ok
}

// add puts k in the set as its most recent member.
func (s *recentSet) add(k string) {
	if e, ok := s.elems[k]; ok {
		s.order.MoveToFront(e)
		return
	}
	s.elems[k] = s.order.PushFront(k)
	if s.order.Len() > s.max {
		delete(s.elems, s.order.Remove(s.order.Back()).(string))
	}
}

func (s *recentSet) remove(k string) {
	if e, ok := s.elems[k]; ok {
		s.order.Remove(e)
		delete(s.elems, k)
	}
}

// checkClientIDURL returns why a client_id URL is refused before any fetch,
// or "". The draft: https, a path, no dot segments, no fragment, no user
// information; a query and a port are allowed. Plain http only to a loopback
// host, and only with AllowLoopback. A bare origin (path "/") is refused
// too: that is a site's home page, not a metadata document.
func (f *documentFetcher) checkClientIDURL(s string) string {
	if reason := checkURIText(s); reason != "" {
		return reason
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a URL"
	}
	switch {
	case strings.HasPrefix(s, "https://"):
	case strings.HasPrefix(s, "http://") && f.allowLoop && valid.LoopbackHost(u.Hostname()):
	default:
		return "must be an https URL"
	}
	if u.User != nil {
		return "must not contain user information"
	}
	if u.Hostname() == "" {
		return "must name a host"
	}
	if u.Path == "" || u.Path == "/" {
		return "must have a path"
	}
	for seg := range strings.SplitSeq(u.EscapedPath(), "/") {
		if dec, err := url.PathUnescape(seg); err != nil || dec == "." || dec == ".." {
			return "must not contain dot segments"
		}
	}
	return ""
}

// fetch gets, checks and validates a metadata document, and says how long
// to cache it. Its errors are *oautherr.Error with a description safe to show.
func (f *documentFetcher) fetch(ctx context.Context, clientID string) (Client, time.Duration, error) {
	body, header, err := f.get(ctx, clientID)
	if err != nil {
		return Client{}, 0, err
	}
	c, err := parseMetadata(body, true, f.extraSchemes)
	if err != nil {
		var e *oautherr.Error
		if errors.As(err, &e) {
			return Client{}, 0, documentError("is invalid: "+e.Description, nil)
		}
		return Client{}, 0, documentError("is invalid", err)
	}
	// Simple string comparison, no normalisation, as the draft requires:
	// otherwise one document could speak for many client_ids.
	if c.ClientID != clientID {
		return Client{}, 0, documentError("names another client_id", nil)
	}
	c.Source = SourceMetadataDocument
	return c, f.cacheTTL(header), nil
}

// documentError is a refused document: an *oautherr.Error whose description is
// safe to show, with the cause for logs.
func documentError(description string, cause error) *oautherr.Error {
	return &oautherr.Error{Code: oautherr.InvalidClient, Description: "client metadata document " + description, Err: cause}
}

// get fetches the document at clientID and returns its body and headers if
// it came whole, as JSON, with status 200 and within the size cap.
func (f *documentFetcher) get(ctx context.Context, clientID string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return nil, nil, documentError("could not be fetched", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	switch {
	case errors.Is(err, errAddressNotAllowed):
		return nil, nil, documentError("is not on a public address", err)
	case errors.Is(err, errRedirect):
		return nil, nil, documentError("redirects, and redirects are not followed", err)
	case isTimeout(err):
		return nil, nil, documentError("took too long to fetch", err)
	case err != nil:
		return nil, nil, documentError("could not be fetched", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, documentError(fmt.Sprintf("could not be fetched (HTTP status %d)", resp.StatusCode), nil)
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return nil, nil, documentError("is not served as application/json", nil)
	}
	body, err := f.readBody(ctx, resp)
	return body, resp.Header, err
}

// readBody reads a document's body, refusing one larger than the cap.
func (f *documentFetcher) readBody(ctx context.Context, resp *http.Response) ([]byte, error) {
	tooLarge := fmt.Sprintf("is larger than %d bytes", f.maxBytes)
	if resp.ContentLength > f.maxBytes {
		return nil, documentError(tooLarge, nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	switch {
	case isTimeout(err) || ctx.Err() != nil:
		// A body cut short by the deadline can also read as a clean end.
		return nil, documentError("took too long to fetch", err)
	case err != nil:
		return nil, documentError("could not be read", err)
	case int64(len(body)) > f.maxBytes:
		return nil, documentError(tooLarge, nil)
	}
	return body, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isJSON accepts application/json and application/<anything>+json, as the
// draft does.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// cacheTTL is how long to keep a document: its Cache-Control max-age
// within [1 min, MaxDocumentTTL], or DocumentTTL without one. no-store and
// no-cache get the minimum: the client asks not to be cached, and a minute
// is as close to that as we go.
func (f *documentFetcher) cacheTTL(h http.Header) time.Duration {
	ttl := f.ttl
	for d := range strings.SplitSeq(strings.ToLower(h.Get("Cache-Control")), ",") {
		d = strings.TrimSpace(d)
		if d == "no-store" || d == "no-cache" {
			return minDocumentTTL
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(f.maxTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, minDocumentTTL), max(f.maxTTL, minDocumentTTL))
}
