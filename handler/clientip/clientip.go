// Package clientip decides which address a request comes from, for the
// limits counted per client address, and carries that decision in the
// request's context so every handler counts by the same address.
//
// Behind the Functions host every request arrives from loopback. The host
// forwards it through YARP, whose default transform replaces
// X-Forwarded-For with the address of the host's own peer (its
// HttpContext.Connection.RemoteIpAddress), so that header holds exactly one
// address, set by the host, and anything a client wrote there is gone. That
// is the default source. Behind Azure Front Door the host's peer is a Front
// Door edge shared by many callers: there the header to trust is
// X-Azure-SocketIP, and only if the app accepts traffic from your Front
// Door alone (check X-Azure-FDID at the edge). A header is believed only
// from a loopback peer: a remote peer could write anything in it.
package clientip

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// DefaultHeader is the header the Functions host sets to its peer's address.
const DefaultHeader = "X-Forwarded-For"

// Policy says where the client address comes from.
type Policy struct {
	// Header is the request header holding the client address when the
	// peer is loopback; "" means the peer address itself.
	Header string
}

// ParsePolicy reads the CLIENT_IP_HEADER setting: a header name, or "none"
// for the peer address. Empty means DefaultHeader.
func ParsePolicy(s string) (Policy, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Policy{Header: DefaultHeader}, nil
	case strings.EqualFold(s, "none"):
		return Policy{}, nil
	}
	for _, c := range s {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return Policy{}, fmt.Errorf("%q is not a header name (letters, digits and dashes) or none", s)
		}
	}
	return Policy{Header: http.CanonicalHeaderKey(s)}, nil
}

// Addr is the client address of r under the policy: the header's address
// when the peer is loopback and the header holds one, else the peer's.
// For X-Forwarded-For (a list) the last entry counts: the one the nearest
// proxy added. A port, if any, is dropped.
func (p Policy) Addr(r *http.Request) netip.Addr {
	peer := parse(r.RemoteAddr)
	if p.Header == "" || !peer.IsLoopback() {
		return peer
	}
	values := r.Header.Values(p.Header)
	if len(values) == 0 {
		return peer
	}
	entries := strings.Split(values[len(values)-1], ",")
	if a := parse(strings.TrimSpace(entries[len(entries)-1])); a.IsValid() {
		return a
	}
	return peer
}

// parse reads "ip", "ip:port", "[ip]" or "[ip]:port".
func parse(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Key is what per-address limits count by: an IPv4 address as it is, an
// IPv6 address by its /48, the block one site is usually given whole (a
// /64 per caller would let one site take 65,536 buckets).
func Key(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(48)
	if err != nil {
		return a.String()
	}
	return p.String()
}

type ctxKey struct{}

// NewContext records the client address of a request.
func NewContext(ctx context.Context, a netip.Addr) context.Context {
	return context.WithValue(ctx, ctxKey{}, a)
}

// Middleware records every request's client address under p in its
// context, where KeyOf finds it.
func (p Policy) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p.Addr(r))))
	})
}

// Of is the client address recorded in r's context, or the peer's address
// for a request that did not pass the middleware (a handler under test).
func Of(r *http.Request) netip.Addr {
	if a, ok := r.Context().Value(ctxKey{}).(netip.Addr); ok {
		return a
	}
	return parse(r.RemoteAddr)
}

// KeyOf is Key(Of(r)).
func KeyOf(r *http.Request) string { return Key(Of(r)) }
