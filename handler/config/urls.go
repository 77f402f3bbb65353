package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// Microsoft Graph in the public cloud, where my_profile reads the user's
// profile unless GRAPH_BASE_URL and GRAPH_SCOPE say otherwise.
const (
	DefaultGraphBaseURL = "https://graph.microsoft.com"
	DefaultGraphScope   = "https://graph.microsoft.com/User.Read"
)

func publicBaseURL(getenv func(string) string) (string, error) {
	if v := strings.TrimSpace(getenv("PUBLIC_BASE_URL")); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Trim(u.Path, "/") != "" {
			return "", fmt.Errorf("PUBLIC_BASE_URL: %q must be an absolute http(s) URL with no path, query or fragment", v)
		}
		if u.Scheme == "http" && !valid.LoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("PUBLIC_BASE_URL: %q must use https unless the host is loopback", v)
		}
		return u.Scheme + "://" + u.Host, nil
	}
	if h := strings.TrimSpace(getenv("WEBSITE_HOSTNAME")); h != "" {
		if strings.ContainsAny(h, "/?#@ ") {
			return "", fmt.Errorf("WEBSITE_HOSTNAME: %q is not a host name", h)
		}
		return "https://" + h, nil
	}
	return "", fmt.Errorf("PUBLIC_BASE_URL: required when WEBSITE_HOSTNAME is not set (e.g. http://localhost:7071 for func start)")
}

// loadGraph reads where my_profile calls Microsoft Graph.
func loadGraph(getenv func(string) string) (Graph, error) {
	g := Graph{
		BaseURL: strings.TrimRight(orDefault(getenv("GRAPH_BASE_URL"), DefaultGraphBaseURL), "/"),
		Scope:   orDefault(getenv("GRAPH_SCOPE"), DefaultGraphScope),
	}
	u, err := url.Parse(g.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && valid.LoopbackHost(u.Hostname()))) {
		return g, fmt.Errorf("GRAPH_BASE_URL: %q must be an https URL such as %s", g.BaseURL, DefaultGraphBaseURL)
	}
	return g, nil
}

func loadOrigins(v string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return nil, fmt.Errorf("MCP_ALLOWED_ORIGINS: %q is not an origin like https://example.com", o)
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	return out, nil
}

// ParseReturnURLs reads AUTH_ALLOWED_RETURN_URLS: absolute https URLs (http
// only for loopback hosts, where native apps listen), no fragments.
func ParseReturnURLs(v string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(v, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil ||
			(u.Scheme != "https" && !(u.Scheme == "http" && valid.LoopbackHost(u.Hostname()))) {
			return nil, fmt.Errorf("AUTH_ALLOWED_RETURN_URLS: %q must be an https URL (http only for loopback) without a fragment", raw)
		}
		out = append(out, raw)
	}
	return out, nil
}

// schemeRE is an RFC 3986 scheme, in lower case.
var schemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)

// ParseRedirectSchemes reads OAUTH_EXTRA_REDIRECT_SCHEMES: lower-case
// custom schemes, never http or https.
func ParseRedirectSchemes(v string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(v, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !schemeRE.MatchString(sc) || sc == "http" || sc == "https" || len(sc) > 64 {
			return nil, fmt.Errorf("OAUTH_EXTRA_REDIRECT_SCHEMES: %q must be a lower-case custom URI scheme such as cursor (not http or https)", sc)
		}
		out = append(out, sc)
	}
	return out, nil
}
