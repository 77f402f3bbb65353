package oauthserver

import (
	"net"
	"net/url"
	"strings"
)

// canonicalResource is raw, an RFC 8707 resource indicator, in the form two
// names of one resource share: scheme and host lower-cased (ASCII only; a
// host with other characters is refused), a port that is
// the scheme's default left out (RFC 3986 §6.2.2.1 and §6.2.3; the MCP
// spec's canonical server URI section asks servers to accept upper-case
// scheme and host). The path stays exactly as given: it is case-sensitive,
// and /mcp/ names another resource than /mcp. It fails for what RFC 8707 §2
// does not allow, a relative URI or one with a fragment, and for userinfo
// or a query, which our resource has not.
func canonicalResource(raw string) (string, bool) {
	u, ok := resourceURL(raw)
	if !ok {
		return "", false
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	authority := host
	switch {
	case port != "":
		authority = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		authority = "[" + host + "]" // an IPv6 literal
	}
	return scheme + "://" + authority + u.EscapedPath(), true
}

// resourceURL parses raw, a resource indicator: absolute, with a host of
// ASCII characters only, and no userinfo, query or fragment.
func resourceURL(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil || u.Host == "" ||
		u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "#") {
		return nil, false
	}
	// Only ASCII case folds: strings.ToLower maps some non-ASCII letters to
	// ASCII ones (İ to i, the Kelvin sign to k), so a look-alike host, raw
	// or percent-encoded, would fold into ours. Our host is ASCII (an
	// internationalized name would be in its punycode form).
	for _, b := range []byte(u.Hostname()) {
		if b >= 0x80 {
			return nil, false
		}
	}
	return u, true
}

// checkResource checks a request's RFC 8707 resource parameters and returns
// the description of an invalid_target error, or "". None is fine (the
// token is for our MCP endpoint anyway). RFC 8707 §2 lets a client name
// several resources; this server issues tokens for one, so each value must
// name it. The same resource named twice (even spelled differently) asks
// for the same token as naming it once, so it is served rather than
// refused: refusing would protect nothing.
func (s *Server) checkResource(values []string) string {
	for _, v := range values {
		if c, ok := canonicalResource(v); !ok || c != s.resource {
			if len(values) > 1 {
				return "this server issues tokens for one resource only: " + s.opts.Resource
			}
			return "resource must be " + s.opts.Resource
		}
	}
	return ""
}
