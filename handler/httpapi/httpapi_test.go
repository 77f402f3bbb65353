package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/httpapi"
	"github.com/entra-mcp/functions-mcp/handler/internal/standin"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// The HTTP front is tested with the real token verifier (trusting the
// Entra stand-in) in front of an endpoint that only counts the requests
// the guards let through.

const allowedOrigin = "https://app.example"

type api struct {
	t       *testing.T
	url     string
	reached atomic.Int64
	logs    testkit.SyncBuffer // what the front logs, at INFO and above
}

func newAPI(t *testing.T) *api {
	t.Helper()
	_, verifier := standin.Start(t, devidp.Options{})
	a := &api{t: t}
	srv := httptest.NewUnstartedServer(nil)
	a.url = "http://" + srv.Listener.Addr().String()
	srv.Config.Handler = httpapi.New(httpapi.Options{
		PublicBaseURL:        a.url,
		AllowedOrigins:       []string{allowedOrigin},
		AuthorizationServers: []string{"https://login.example/tenant/v2.0"},
		Scopes:               []string{"api://app/access_as_user"},
		Verifier:             verifier,
		MCP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.reached.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}),
		MaxBodyBytes: 1 << 10,
		ClientIP:     clientip.Policy{Header: clientip.DefaultHeader},
		Logger:       slog.New(slog.NewJSONHandler(&a.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return a
}

// answer is an endpoint's answer.
type answer = testkit.Reply

func (a *api) do(method, path, body string, header http.Header) answer {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return testkit.Do(a.t, http.DefaultClient, req)
}

func TestMCPGuards(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	jsonType := http.Header{"Content-Type": {"application/json"}}
	with := func(h http.Header, k string, v ...string) http.Header {
		c := h.Clone()
		c[k] = v
		return c
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		status int
		code   string
		// challenge is the WWW-Authenticate expected ("" for none).
		challenge string
	}{
		{"from a foreign origin", with(jsonType, "Origin", "https://evil.example"), "{}", http.StatusForbidden, "forbidden_origin", ""},
		{"not JSON", http.Header{"Content-Type": {"text/plain"}}, "{}", http.StatusUnsupportedMediaType, "unsupported_media_type", ""},
		{"a body over the cap", jsonType, strings.Repeat(" ", 2<<10), http.StatusRequestEntityTooLarge, "request_too_large", ""},
		{"no token", jsonType, "{}", http.StatusUnauthorized, "invalid_token", "Bearer resource_metadata="},
		{"not a bearer token", with(jsonType, "Authorization", "Basic eDp5"), "{}", http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`},
		{"two Authorization headers", with(jsonType, "Authorization", "Bearer a", "Bearer b"), "{}", http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`},
		{"an Authorization header over the cap", with(jsonType, "Authorization", "Bearer "+strings.Repeat("a", 17<<10)), "{}",
			http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`},
		{"a token that does not verify", with(jsonType, "Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), "{}",
			http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`},
		{"an allowed origin still needs a token", with(jsonType, "Origin", allowedOrigin), "{}", http.StatusUnauthorized, "invalid_token", "Bearer resource_metadata="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(http.MethodPost, httpapi.PathMCP, tc.body, tc.header)
			if r.Status != tc.status || r.OAuth.Error != tc.code || r.OAuth.Description == "" {
				t.Fatalf("%d %s; want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
			if c := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, tc.challenge) || (tc.challenge == "") != (c == "") {
				t.Errorf("WWW-Authenticate %q; want %q…", c, tc.challenge)
			}
			if tc.challenge != "" {
				c := r.Header.Get("WWW-Authenticate")
				if !strings.Contains(c, `resource_metadata="`+a.url+httpapi.PathPRMResource+`"`) || !strings.Contains(c, `scope="api://app/access_as_user"`) {
					t.Errorf("challenge %q names no metadata or scope", c)
				}
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", r.Header)
			}
		})
	}
	if n := a.reached.Load(); n != 0 {
		t.Errorf("%d refused requests reached the endpoint", n)
	}
	// Anyone can send tokens that do not verify: the verifier logs why,
	// within a budget, so a flood is not a warning per request here.
	if logs := a.logs.String(); logs != "" {
		t.Errorf("refused requests logged at INFO or above:\n%s", logs)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		code, allow        string
	}{
		{"the host's probe", http.MethodGet, "/", http.StatusOK, "", ""},
		{"an unknown route", http.MethodGet, "/nope", http.StatusNotFound, "not_found", ""},
		{"GET on the MCP endpoint", http.MethodGet, httpapi.PathMCP, http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"DELETE on the MCP endpoint", http.MethodDelete, httpapi.PathMCP, http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"POST on metadata", http.MethodPost, httpapi.PathPRMResource, http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD"},
		{"protected resource metadata", http.MethodGet, httpapi.PathPRMResource, http.StatusOK, "", ""},
		{"the OAuth front unserved in entra mode", http.MethodPost, httpapi.PathToken, http.StatusNotFound, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(tc.method, tc.path, "", nil)
			if r.Status != tc.status || r.OAuth.Error != tc.code || r.Header.Get("Allow") != tc.allow {
				t.Fatalf("%d %v %s; want %d %q Allow %q", r.Status, r.Header, r.Body, tc.status, tc.code, tc.allow)
			}
		})
	}
	t.Run("metadata names the resource and its authorization server", func(t *testing.T) {
		var m struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		r := a.do(http.MethodGet, httpapi.PathPRMResource, "", nil)
		if json.Unmarshal([]byte(r.Body), &m) != nil || m.Resource != a.url+httpapi.PathMCP ||
			strings.Join(m.AuthorizationServers, " ") != "https://login.example/tenant/v2.0" {
			t.Fatalf("%s", r.Body)
		}
	})
}

// TestHealthNamesTheClientAddress: the address per-address limits count by
// is the one the Functions host forwards (the peer is loopback here).
func TestHealthNamesTheClientAddress(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for name, tc := range map[string]struct{ forwarded, want string }{
		"IPv4":                  {"203.0.113.7", "203.0.113.7"},
		"IPv6 by its /48":       {"2001:db8:abcd:12::1", "2001:db8:abcd::/48"},
		"the host's last entry": {"198.51.100.1, 203.0.113.9", "203.0.113.9"},
	} {
		t.Run(name, func(t *testing.T) {
			var h struct {
				ClientAddress string `json:"client_address"`
			}
			r := a.do(http.MethodGet, httpapi.PathHealth, "", http.Header{"X-Forwarded-For": {tc.forwarded}})
			if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &h) != nil || h.ClientAddress != tc.want {
				t.Fatalf("%d %s; want %s", r.Status, r.Body, tc.want)
			}
		})
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	preflight := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"},
			"Access-Control-Request-Headers": {"authorization, content-type, mcp-protocol-version"}}
	}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		allowOrigin        string
		allowMethods       string
		exposed            bool
	}{
		{"a preflight from an allowed origin", http.MethodOptions, httpapi.PathMCP, preflight(allowedOrigin),
			http.StatusNoContent, allowedOrigin, "POST", false},
		{"a preflight from the public origin", http.MethodOptions, httpapi.PathMCP, preflight("PUBLIC"),
			http.StatusNoContent, "PUBLIC", "POST", false},
		{"a preflight from another origin is answered without CORS headers", http.MethodOptions, httpapi.PathMCP,
			preflight("https://evil.example"), http.StatusNoContent, "", "", false},
		{"a preflight for public metadata from any origin", http.MethodOptions, httpapi.PathPRMResource,
			preflight("https://evil.example"), http.StatusNoContent, "*", "GET, HEAD", false},
		{"a call from an allowed origin may read the challenge", http.MethodPost, httpapi.PathMCP,
			http.Header{"Origin": {allowedOrigin}, "Content-Type": {"application/json"}}, http.StatusUnauthorized, allowedOrigin, "", true},
		{"a call from another origin may read nothing", http.MethodPost, httpapi.PathMCP,
			http.Header{"Origin": {"https://evil.example"}, "Content-Type": {"application/json"}}, http.StatusForbidden, "", "", false},
		{"public documents may be read from any origin", http.MethodGet, httpapi.PathHealth,
			http.Header{"Origin": {"https://evil.example"}}, http.StatusOK, "*", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header, allowOrigin := tc.header.Clone(), tc.allowOrigin
			if header.Get("Origin") == "PUBLIC" {
				header.Set("Origin", a.url)
				allowOrigin = a.url
			}
			r := a.do(tc.method, tc.path, "", header)
			h := r.Header
			if r.Status != tc.status || h.Get("Access-Control-Allow-Origin") != allowOrigin || h.Get("Access-Control-Allow-Methods") != tc.allowMethods {
				t.Fatalf("%d %v", r.Status, h)
			}
			if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary %v", h.Values("Vary"))
			}
			if tc.allowMethods != "" && (h.Get("Access-Control-Allow-Headers") != header.Get("Access-Control-Request-Headers") || h.Get("Access-Control-Max-Age") != "600") {
				t.Errorf("preflight headers %v", h)
			}
			if exposed := strings.Contains(h.Get("Access-Control-Expose-Headers"), "WWW-Authenticate"); exposed != tc.exposed {
				t.Errorf("Expose-Headers %q", h.Get("Access-Control-Expose-Headers"))
			}
		})
	}
	if n := a.reached.Load(); n != 0 {
		t.Errorf("%d preflights or refused calls reached the endpoint", n)
	}
}
