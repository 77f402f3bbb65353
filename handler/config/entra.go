package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// DefaultAuthorityHost is Entra ID in the public cloud.
const DefaultAuthorityHost = "https://login.microsoftonline.com"

// loadEntra reads the app registration: its ids, the Entra host, the
// tenants whose tokens are accepted and the tokens' form.
func loadEntra(getenv func(string) string) (Entra, error) {
	var e Entra
	var err error
	if e.TenantID, err = loadGUID("ENTRA_TENANT_ID", getenv("ENTRA_TENANT_ID"), "the directory (tenant) id of the app registration", "tenant id"); err != nil {
		return e, err
	}
	if e.ClientID, err = loadGUID("ENTRA_CLIENT_ID", getenv("ENTRA_CLIENT_ID"), "the application (client) id of the API's app registration", "client id"); err != nil {
		return e, err
	}
	if e.AuthorityHost, err = authorityHost(getenv("ENTRA_AUTHORITY_HOST")); err != nil {
		return e, err
	}
	if e.AllowedTenants, err = parseAllowedTenants(getenv("ENTRA_ALLOWED_TENANTS")); err != nil {
		return e, err
	}
	if e.AllowedTenants == nil {
		e.AllowedTenants = []string{e.TenantID}
	}
	if e.TokenVersion, err = parseTokenVersion(getenv("ENTRA_TOKEN_VERSION")); err != nil {
		return e, err
	}
	e.AppIDURI, err = appIDURI(getenv("ENTRA_APP_ID_URI"), e.ClientID)
	return e, err
}

// loadGUID reads v, the required setting name: an id (what) such as a
// tenant id, described by role. It returns it lower-cased.
func loadGUID(name, v, role, what string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", fmt.Errorf("%s: required (%s)", name, role)
	}
	if !valid.GUID(v) {
		return "", fmt.Errorf("%s: %q is not a %s (GUID)", name, v, what)
	}
	return strings.ToLower(v), nil
}

// parseAllowedTenants reads ENTRA_ALLOWED_TENANTS: comma-separated tenant
// ids, lower-cased. Empty returns nil: the app's own tenant only.
func parseAllowedTenants(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		if !valid.GUID(t) {
			return nil, fmt.Errorf("ENTRA_ALLOWED_TENANTS: %q is not a tenant id (GUID)", t)
		}
		out = append(out, t)
	}
	return out, nil
}

// parseTokenVersion reads ENTRA_TOKEN_VERSION: 2 (default) or 1, the app
// registration's accessTokenAcceptedVersion.
func parseTokenVersion(v string) (int, error) {
	switch v = strings.TrimSpace(v); v {
	case "", "2":
		return 2, nil
	case "1":
		return 1, nil
	}
	return 0, fmt.Errorf("ENTRA_TOKEN_VERSION: %q must be 1 or 2", v)
}

// appIDURI reads ENTRA_APP_ID_URI, default api://<client id>.
func appIDURI(v, clientID string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "api://" + clientID, nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || strings.HasSuffix(v, "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("ENTRA_APP_ID_URI: %q must be an absolute URI without a trailing slash", v)
	}
	return v, nil
}

func authorityHost(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultAuthorityHost, nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("ENTRA_AUTHORITY_HOST: %q must be a URL like %s", v, DefaultAuthorityHost)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !valid.LoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("ENTRA_AUTHORITY_HOST: %q: plain http is accepted only for a loopback host", v)
		}
	default:
		return "", fmt.Errorf("ENTRA_AUTHORITY_HOST: %q must use https", v)
	}
	return u.Scheme + "://" + u.Host, nil
}
