package telemetry

import (
	"regexp"
	"strings"
)

// Telemetry leaves the process and is read by more people than logs are, so
// nothing that could be a credential may reach it. Callers are expected not
// to pass secrets; these filters are the second line of defence.

var (
	// queryInURL matches the query and fragment of a URL inside free text
	// (net/url errors, for one, quote the full URL, query included).
	queryInURL = regexp.MustCompile(`(https?://[^\s"'?#]*)[?#][^\s"']*`)
	// jwtLike matches a compact JWS/JWE: base64url header starting "eyJ".
	jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]*`)
	// bearerLike matches an Authorization value quoted in an error.
	bearerLike = regexp.MustCompile(`(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)
)

const redacted = "[redacted]"

// scrubText removes URL queries, JWTs and bearer values from free text.
func scrubText(s string) string {
	if !strings.Contains(s, "?") && !strings.Contains(s, "#") && !strings.Contains(s, "eyJ") &&
		!strings.Contains(strings.ToLower(s), "bearer") && !strings.Contains(strings.ToLower(s), "basic") {
		return s // the common case: nothing to do, no regexp work
	}
	s = queryInURL.ReplaceAllString(s, "$1")
	s = jwtLike.ReplaceAllString(s, redacted)
	return bearerLike.ReplaceAllString(s, "$1 "+redacted)
}

// sensitiveKey reports property names that are credentials by their name.
func sensitiveKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"token", "secret", "password", "authorization", "cookie", "assertion", "verifier", "credential"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return k == "code" || strings.HasSuffix(k, "_code") || k == "state" || k == "nonce"
}

// cleanProps copies props (the SDK mutates the map it is given, and the
// caller's map must not escape so a no-op call stays allocation-free),
// dropping credential-named keys and scrubbing values.
func cleanProps(props map[string]string, extra int) map[string]string {
	out := make(map[string]string, len(props)+extra)
	for k, v := range props {
		if sensitiveKey(k) {
			continue
		}
		out[k] = scrubText(v)
	}
	return out
}

// stripQuery cuts a URL at its query or fragment.
func stripQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}
