package signin

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// discoveryTTL is how long Entra's discovery documents are reused. They
// name endpoints, which do not move.
const discoveryTTL = 24 * time.Hour

// maxDiscoveryBytes bounds a cached discovery document.
const maxDiscoveryBytes = 1 << 20

// discoveryCache is the pool's HTTP transport. Each MSAL client resolves
// its authority on first use and keeps the result to itself, so a pool of
// n clients would fetch the same discovery documents from Entra n times.
// This answers repeats from memory; everything else passes through.
type discoveryCache struct {
	next http.RoundTripper
	now  func() time.Time

	mu      sync.Mutex // held across a fetch: concurrent first uses wait for it
	entries map[string]discoveryEntry
}

type discoveryEntry struct {
	header  http.Header
	body    []byte
	expires time.Time
}

func newDiscoveryCache(next http.RoundTripper) *discoveryCache {
	if next == nil {
		next = http.DefaultTransport
	}
	return &discoveryCache{next: next, now: time.Now, entries: map[string]discoveryEntry{}}
}

// isDiscovery reports whether r fetches an OpenID configuration or
// Entra's instance discovery.
func isDiscovery(r *http.Request) bool {
	p := r.URL.Path
	return r.Method == http.MethodGet &&
		(strings.HasSuffix(p, "/.well-known/openid-configuration") || strings.HasSuffix(p, "/discovery/instance"))
}

func (c *discoveryCache) RoundTrip(r *http.Request) (*http.Response, error) {
	if !isDiscovery(r) {
		return c.next.RoundTrip(r)
	}
	key := r.URL.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && c.now().Before(e.expires) {
		return e.response(r), nil
	}
	resp, err := c.next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		// Failures are not kept: the next use asks again.
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read discovery document: %w", err)
	}
	if len(body) > maxDiscoveryBytes {
		return nil, fmt.Errorf("discovery document larger than %d bytes", maxDiscoveryBytes)
	}
	e := discoveryEntry{header: resp.Header.Clone(), body: body, expires: c.now().Add(discoveryTTL)}
	c.entries[key] = e
	return e.response(r), nil
}

func (e discoveryEntry) response(r *http.Request) *http.Response {
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        e.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(e.body)),
		ContentLength: int64(len(e.body)),
		Request:       r,
	}
}
