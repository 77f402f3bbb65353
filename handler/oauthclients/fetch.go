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
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

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

// fetchCall is a fetch under way; whoever asks for the same URL meanwhile
// waits for it rather than fetching again.
type fetchCall struct {
	host      string // what it counts against: its host,
	requester string // and whoever started it
	done      chan struct{}
	client    Client
	err       error
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

// lookupDocument returns the client a Client ID Metadata Document URL
// describes, from the cache or fetched.
func (r *Registry) lookupDocument(ctx context.Context, clientID, requester string) (Client, error) {
	if reason := r.checkClientIDURL(clientID); reason != "" {
		return Client{}, &oautherr.Error{Code: CodeInvalidClient, Description: "client_id " + reason}
	}
	r.mu.Lock()
	if e, ok := r.docs[clientID]; ok && r.now().Before(e.expires) {
		r.mu.Unlock()
		return e.client.clone(), nil
	}
	// Joining a fetch under way costs nothing more, so it counts against
	// no cap. This is also what stands in for caching failures: however
	// many requests name a failing document at once, it is fetched once.
	call, ok := r.inflight[clientID]
	if !ok {
		host := siteOf(clientID)
		if reason := r.fetchRefused(clientID, host, requester); reason != "" {
			// A flood of distinct client_ids must not become a flood of
			// outbound connections, and no one requester or slow host may
			// take every slot. Not cached: it says nothing of the document.
			r.mu.Unlock()
			return Client{}, fmt.Errorf("oauthclients: look up client: %w: %s", store.ErrUnavailable, reason)
		}
		r.inflightHosts[host]++
		r.inflightBy[requester]++
		call = &fetchCall{host: host, requester: requester, done: make(chan struct{})}
		r.inflight[clientID] = call
		// The fetch runs on its own context, so that one caller giving up
		// does not fail the others waiting for it, nor get cached.
		go r.runFetch(clientID, call)
	}
	r.mu.Unlock()
	select {
	case <-call.done:
		return call.client.clone(), call.err
	case <-ctx.Done():
		return Client{}, fmt.Errorf("oauthclients: look up client: %w", ctx.Err())
	}
}

// fetchRefused says why a new fetch may not start now, or "". The caller
// holds r.mu.
func (r *Registry) fetchRefused(clientID, host, requester string) string {
	slots := maxConcurrentFetches - reservedFetches
	if r.knownGood.has(clientID) {
		slots = maxConcurrentFetches
	}
	switch {
	case r.inflightBy[requester] >= maxFetchesPerRequester:
		return "this requester has too many metadata documents being fetched"
	case r.inflightHosts[host] >= maxFetchesPerHost:
		return "too many metadata documents are being fetched from this site"
	case len(r.inflight) >= slots:
		return "too many metadata documents are being fetched already"
	}
	return ""
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

func (r *Registry) runFetch(clientID string, call *fetchCall) {
	ctx, cancel := context.WithTimeout(r.fetchCtx, r.fetchTO)
	defer cancel()
	c, ttl, err := r.fetch(ctx, clientID)
	if err != nil {
		r.log.LogAttrs(ctx, slog.LevelWarn, "client metadata document refused",
			slog.String("client_id", clientID), slog.String("err", err.Error()))
	}
	call.client, call.err = c, err

	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, clientID)
	decrement(r.inflightHosts, call.host)
	decrement(r.inflightBy, call.requester)
	// A document that stops being served well loses its place in the
	// reserve: otherwise one fast answer would buy a host lasting use of
	// it for slow ones.
	if err == nil {
		r.knownGood.add(clientID)
	} else {
		r.knownGood.remove(clientID)
	}
	// Only a valid document is cached, so a client that fixes its document
	// is served on its next request. Retrying a failing one costs a fetch
	// each time, paid for from the requester's own budgets: the callers'
	// per-address rate limit in front of every lookup, and the fetches in
	// flight per requester and per site.
	switch {
	case err != nil:
		delete(r.docs, clientID) // an expired copy, if any: it is not served again
	case r.fetchCtx.Err() == nil:
		r.store(clientID, cacheEntry{client: c, expires: r.now().Add(ttl)})
	}
	close(call.done)
}

// store caches an entry, making room if the cache is full: first by
// dropping expired entries, then the one closest to expiry. The caller
// holds r.mu.
func (r *Registry) store(clientID string, e cacheEntry) {
	if _, ok := r.docs[clientID]; !ok && len(r.docs) >= r.maxCached {
		now := r.now()
		var soonest string
		for k, v := range r.docs {
			if !now.Before(v.expires) {
				delete(r.docs, k)
			} else if soonest == "" || v.expires.Before(r.docs[soonest].expires) {
				soonest = k
			}
		}
		if len(r.docs) >= r.maxCached {
			delete(r.docs, soonest)
		}
	}
	r.docs[clientID] = e
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
func (r *Registry) checkClientIDURL(s string) string {
	if reason := checkURIText(s); reason != "" {
		return reason
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a URL"
	}
	switch {
	case strings.HasPrefix(s, "https://"):
	case strings.HasPrefix(s, "http://") && r.allowLoop && valid.LoopbackHost(u.Hostname()):
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
func (r *Registry) fetch(ctx context.Context, clientID string) (Client, time.Duration, error) {
	refuse := func(description string, cause error) (Client, time.Duration, error) {
		return Client{}, 0, &oautherr.Error{Code: CodeInvalidClient, Description: "client metadata document " + description, Err: cause}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return refuse("could not be fetched", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.fetcher.Do(req)
	switch {
	case errors.Is(err, errAddressNotAllowed):
		return refuse("is not on a public address", err)
	case errors.Is(err, errRedirect):
		return refuse("redirects, and redirects are not followed", err)
	case isTimeout(err):
		return refuse("took too long to fetch", err)
	case err != nil:
		return refuse("could not be fetched", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return refuse(fmt.Sprintf("could not be fetched (HTTP status %d)", resp.StatusCode), nil)
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return refuse("is not served as application/json", nil)
	}
	tooLarge := fmt.Sprintf("is larger than %d bytes", r.maxDoc)
	if resp.ContentLength > r.maxDoc {
		return refuse(tooLarge, nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.maxDoc+1))
	switch {
	case isTimeout(err) || ctx.Err() != nil:
		// A body cut short by the deadline can also read as a clean end.
		return refuse("took too long to fetch", err)
	case err != nil:
		return refuse("could not be read", err)
	case int64(len(body)) > r.maxDoc:
		return refuse(tooLarge, nil)
	}

	c, err := parseMetadata(body, true, r.extraSchemes)
	if err != nil {
		var e *oautherr.Error
		if errors.As(err, &e) {
			return refuse("is invalid: "+e.Description, nil)
		}
		return refuse("is invalid", err)
	}
	// Simple string comparison, no normalisation, as the draft requires:
	// otherwise one document could speak for many client_ids.
	if c.ClientID != clientID {
		return refuse("names another client_id", nil)
	}
	c.Source = SourceMetadataDocument
	return c, r.cacheTTL(resp.Header), nil
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
func (r *Registry) cacheTTL(h http.Header) time.Duration {
	ttl := r.docTTL
	for d := range strings.SplitSeq(strings.ToLower(h.Get("Cache-Control")), ",") {
		d = strings.TrimSpace(d)
		if d == "no-store" || d == "no-cache" {
			return minDocumentTTL
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(r.maxDocTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, minDocumentTTL), max(r.maxDocTTL, minDocumentTTL))
}
