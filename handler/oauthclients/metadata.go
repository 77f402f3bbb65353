package oauthclients

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on client metadata.
const (
	MaxRedirectURIs = 20
	MaxURILength    = 2000 // bytes, for redirect URIs, client_uri and logo_uri
	MaxClientName   = 100  // Unicode code points
)

// Grant and response types a client may have. Refresh tokens come only from
// an authorization code, so every client needs authorization_code.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	responseCode           = "code"
)

// parseMetadata validates client metadata: the body of a registration
// request, or (doc) a fetched Client ID Metadata Document.
//
// Unknown members are ignored, as RFC 7591 §2 requires. The two sources
// differ where the client can or cannot react: a registering client gets an
// error for a bad client_uri or logo_uri and can fix it, while a document's
// bad ones are dropped (the consent page then shows the client_id URL,
// which is more trustworthy anyway). client_name is optional in a
// registration (RFC 7591 §2) but required in a document (MCP's client
// registration: a document MUST include client_id, client_name and
// redirect_uris), so a document without a usable one is refused. A
// document must not carry a client_secret, and its client_id is returned
// for the caller to compare with the URL.
func parseMetadata(body []byte, doc bool, extraSchemes []string) (Client, error) {
	fields, err := decodeObject(body)
	if err != nil {
		return Client{}, err
	}
	var c Client
	if c.RedirectURIs, err = redirectURIs(fields, extraSchemes); err != nil {
		return Client{}, err
	}
	if err := checkAuthMethod(fields); err != nil {
		return Client{}, err
	}
	// RFC 7591's default when it is absent is client_secret_basic; we have
	// no secret to give, so the client is registered as public and the
	// response says so.
	c.TokenEndpointAuthMethod = "none"
	if c.GrantTypes, c.ResponseTypes, err = grantAndResponseTypes(fields); err != nil {
		return Client{}, err
	}
	if doc {
		if c.ClientID, err = documentClientID(fields); err != nil {
			return Client{}, err
		}
	}
	if c.ClientName, err = clientName(fields, doc); err != nil {
		return Client{}, err
	}
	if c.ClientURI, c.LogoURI, err = displayURIs(fields, doc); err != nil {
		return Client{}, err
	}
	return c, nil
}

// decodeObject reads the members of one JSON object with nothing after it.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return nil, metadataError("the metadata must be a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, metadataError("the metadata must be one JSON object with nothing after it")
	}
	return fields, nil
}

// redirectURIs reads and checks redirect_uris: required, at most
// MaxRedirectURIs, each allowed; duplicates dropped.
func redirectURIs(fields map[string]json.RawMessage, extraSchemes []string) ([]string, error) {
	uris, err := stringList(fields, "redirect_uris")
	if err != nil {
		return nil, redirectError("redirect_uris must be an array of strings")
	}
	if len(uris) == 0 {
		return nil, redirectError("redirect_uris is required")
	}
	if len(uris) > MaxRedirectURIs {
		return nil, redirectError("redirect_uris may hold at most %d URIs", MaxRedirectURIs)
	}
	for i, u := range uris {
		if reason := checkRedirectURI(u, extraSchemes); reason != "" {
			return nil, redirectError("redirect_uris[%d] %s", i, reason)
		}
	}
	return dedupe(uris), nil
}

// checkAuthMethod refuses any token_endpoint_auth_method but "none".
func checkAuthMethod(fields map[string]json.RawMessage) error {
	method, err := stringField(fields, "token_endpoint_auth_method")
	if err != nil {
		return err
	}
	if method != "" && method != "none" {
		return metadataError(`token_endpoint_auth_method must be "none": only public clients are supported and no client secrets are issued`)
	}
	return nil
}

// grantAndResponseTypes reads grant_types (which must include
// authorization_code) and response_types, with their defaults.
func grantAndResponseTypes(fields map[string]json.RawMessage) (grants, responses []string, err error) {
	if grants, err = typeList(fields, "grant_types", []string{grantAuthorizationCode, grantRefreshToken}, grantAuthorizationCode); err != nil {
		return nil, nil, err
	}
	if !slices.Contains(grants, grantAuthorizationCode) {
		return nil, nil, metadataError("grant_types must include authorization_code")
	}
	if responses, err = typeList(fields, "response_types", []string{responseCode}, responseCode); err != nil {
		return nil, nil, err
	}
	return grants, responses, nil
}

// documentClientID reads a document's client_id, refusing a document that
// carries a secret.
func documentClientID(fields map[string]json.RawMessage) (string, error) {
	for _, name := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := fields[name]; ok {
			return "", metadataError("a client metadata document must not contain %s", name)
		}
	}
	return stringField(fields, "client_id")
}

// displayURIs reads client_uri and logo_uri: a registration's bad one is
// an error, a document's is dropped.
func displayURIs(fields map[string]json.RawMessage, doc bool) (clientURI, logoURI string, err error) {
	out := [2]string{}
	for i, name := range []string{"client_uri", "logo_uri"} {
		v, err := stringField(fields, name)
		if err != nil {
			if doc {
				continue
			}
			return "", "", err
		}
		v, reason := checkHTTPSURL(v)
		if reason != "" {
			if doc {
				continue
			}
			return "", "", metadataError("%s %s", name, reason)
		}
		out[i] = v
	}
	return out[0], out[1], nil
}

// clientName reads client_name, trimmed. It is what the consent page names
// the client by, so a bad one is refused from either source rather than
// dropped or cut short (a cut name could read as another's); a document
// must have one, and white space alone counts as none.
func clientName(fields map[string]json.RawMessage, doc bool) (string, error) {
	v, err := stringField(fields, "client_name")
	if err != nil {
		return "", err
	}
	v, reason := checkName(v)
	if reason != "" {
		return "", metadataError("client_name %s", reason)
	}
	if doc && v == "" {
		return "", metadataError("client_name is required")
	}
	return v, nil
}

// stringField reads an optional string member; null counts as absent.
func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", metadataError("%s must be a string", name)
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}

// stringList reads an optional array of strings; null counts as absent
// and gives a nil slice, an empty array an empty one.
func stringList(fields map[string]json.RawMessage, name string) ([]string, error) {
	raw, ok := fields[name]
	if !ok {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, metadataError("%s must be an array of strings", name)
	}
	return list, nil
}

// typeList reads grant_types or response_types: absent means [def], as
// RFC 7591 §2 says; an empty array would leave the client unusable and is
// refused, as is any value outside allowed.
func typeList(fields map[string]json.RawMessage, name string, allowed []string, def string) ([]string, error) {
	list, err := stringList(fields, name)
	if err != nil {
		return nil, err
	}
	if list == nil {
		return []string{def}, nil
	}
	if len(list) == 0 {
		return nil, metadataError("%s must not be empty", name)
	}
	for _, v := range list {
		if !slices.Contains(allowed, v) {
			return nil, metadataError("%s may hold only %s", name, strings.Join(allowed, " and "))
		}
	}
	return dedupe(list), nil
}

func dedupe(list []string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// checkRedirectURI returns why a redirect URI is refused, or "". Allowed
// are https URLs, plain http to a loopback host (RFC 8252 §7.3), and
// private-use schemes (RFC 8252 §7.1). A private-use scheme must contain a
// dot, being a reverse domain name that its app owns: a scheme such as
// "myapp" can be claimed by any app on the device, so the code could land in
// the wrong one. ExtraRedirectSchemes lets an operator accept named
// exceptions. Schemes browsers execute (javascript:, data:) have no dot and
// so never pass.
func checkRedirectURI(s string, extraSchemes []string) string {
	if reason := checkURIText(s); reason != "" {
		return reason
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "must be an absolute URI"
	}
	if u.User != nil {
		return "must not contain user information"
	}
	switch u.Scheme {
	case "https":
		if u.Hostname() == "" {
			return "must name a host"
		}
	case "http":
		if u.Opaque != "" || !loopbackRedirectHost(u.Hostname()) {
			return "may use http only with the loopback hosts 127.0.0.1, [::1] or localhost (RFC 8252 §7.3)"
		}
	default:
		if !strings.Contains(u.Scheme, ".") && !slices.Contains(extraSchemes, u.Scheme) {
			return "uses a custom scheme that is not a reverse domain name such as com.example.app (RFC 8252 §7.1)"
		}
	}
	return ""
}

// checkURIText checks what every URI here must be: short, printable ASCII
// (no look-alike characters on the consent page, and one spelling to match
// exactly) and without a fragment.
func checkURIText(s string) string {
	if len(s) > MaxURILength {
		return "is longer than 2000 characters"
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return "must be a URI of printable ASCII characters"
		}
	}
	if strings.Contains(s, "#") {
		return "must not contain a fragment"
	}
	return ""
}

// loopbackRedirectHost reports whether host (as url.URL.Hostname gives it)
// is one of the loopback hosts a native app may listen on.
func loopbackRedirectHost(host string) bool {
	return host == "127.0.0.1" || host == "::1" || strings.EqualFold(host, "localhost")
}

// checkHTTPSURL checks client_uri and logo_uri: https, a host, no user
// information (https://bank.example@evil.example reads as the bank).
func checkHTTPSURL(s string) (string, string) {
	if s == "" {
		return "", ""
	}
	if reason := checkURIText(s); reason != "" {
		return "", reason
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", "must be an https URL"
	}
	if u.User != nil {
		return "", "must not contain user information"
	}
	return s, ""
}

// checkName checks client_name, which the consent page shows: bounded, and
// free of control, formatting (bidirectional overrides, zero-width) and
// private-use characters that could make it read as another name.
func checkName(s string) (string, string) {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > MaxClientName {
		return "", "is longer than 100 characters"
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp)
	}) {
		return "", "contains control, formatting or private-use characters"
	}
	return s, ""
}

// RedirectAllowed reports whether uri is one of the client's redirect URIs.
// The match is exact, except for http loopback URIs: the port may differ,
// as RFC 8252 §7.3 requires (a native app gets whatever port is free when
// it starts listening), while the scheme, host, path and query must still
// be exactly the same.
func RedirectAllowed(c Client, uri string) bool {
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	want, ok := loopbackWithoutPort(uri)
	if !ok {
		return false
	}
	for _, reg := range c.RedirectURIs {
		if got, ok := loopbackWithoutPort(reg); ok && got == want {
			return true
		}
	}
	return false
}

// RedirectTrusted reports whether the server may send the browser to the
// client's registered redirect URI uri on its own, before the user has seen
// where it leads. Anyone can register a client, or host a metadata document
// that vouches for any site of theirs, so an https redirect URI may be a
// phishing site, and automatic error redirects there would make this server
// an open redirector (RFC 9700 §4.11.2). Trusted are only loopback URIs and
// custom schemes: they reach an app on the user's own machine. Call it for
// a uri RedirectAllowed accepted.
func RedirectTrusted(uri string) bool {
	if _, ok := loopbackWithoutPort(uri); ok {
		return true
	}
	u, err := url.Parse(uri)
	return err == nil && u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https"
}

// loopbackWithoutPort returns an http loopback redirect URI without its
// port, or false if uri is not one.
func loopbackWithoutPort(uri string) (string, bool) {
	if !strings.HasPrefix(uri, "http://") || checkURIText(uri) != "" {
		return "", false
	}
	u, err := url.Parse(uri)
	if err != nil || u.User != nil || u.Opaque != "" || !loopbackRedirectHost(u.Hostname()) {
		return "", false
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	query := ""
	if u.ForceQuery || u.RawQuery != "" {
		query = "?" + u.RawQuery
	}
	return "http://" + host + u.EscapedPath() + query, true
}
