package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// wellKnownType names the dependency type of public and sovereign cloud
// hosts.
func wellKnownType(name string) (string, bool) {
	switch name {
	case "login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
		"login.partner.microsoftonline.cn":
		return TypeEntra, true
	case "graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us",
		"microsoftgraph.chinacloudapi.cn":
		return TypeGraph, true
	}
	for _, suffix := range []string{".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn"} {
		if strings.HasSuffix(name, suffix) {
			return TypeKeyVault, true
		}
	}
	return "", false
}

// Transport wraps base (nil: http.DefaultTransport) so that every call is
// recorded as a dependency of the request in its context. The type comes
// from the host: types (exact "host" or "host:port", or ".suffix") first,
// then Entra ID, Key Vault and Microsoft Graph hosts, else "HTTP". Pass
// types for sovereign or stand-in hosts, e.g. {"127.0.0.1:8443": "Entra ID"}.
// The name is "METHOD /path": queries are never recorded (they carry codes
// and secrets). Duration runs until the response headers arrive.
//
// A disabled client returns base itself.
func (c *Client) Transport(base http.RoundTripper, types map[string]string) http.RoundTripper {
	if !c.Enabled() {
		return base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	t := &depTransport{c: c, base: base, types: make(map[string]string, len(types))}
	for k, v := range types {
		t.types[strings.ToLower(k)] = v
	}
	return t
}

type depTransport struct {
	c     *Client
	base  http.RoundTripper
	types map[string]string
}

func (t *depTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	d := DependencyItem{
		Type:     t.kind(req.URL.Host),
		Target:   req.URL.Host,
		Name:     req.Method + " " + req.URL.Path,
		Data:     req.URL.Scheme + "://" + req.URL.Host + req.URL.EscapedPath(),
		Start:    start,
		Duration: time.Since(start),
	}
	if err != nil {
		d.ResultCode = httpErrCode(err)
	} else {
		d.ResultCode = strconv.Itoa(resp.StatusCode)
		d.Success = resp.StatusCode < 400
	}
	t.c.Dependency(req.Context(), d)
	return resp, err
}

// kind picks the dependency type for host ("name" or "name:port").
func (t *depTransport) kind(host string) string {
	host = strings.ToLower(host)
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if v, ok := t.types[host]; ok {
		return v
	}
	if v, ok := t.types[name]; ok {
		return v
	}
	for k, v := range t.types {
		if strings.HasPrefix(k, ".") && strings.HasSuffix(name, k) {
			return v
		}
	}
	if v, ok := wellKnownType(name); ok {
		return v
	}
	return TypeHTTP
}

// httpErrCode classifies a transport error without its text (url.Error
// quotes the full URL, query included).
func httpErrCode(err error) string {
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error"
	}
}
