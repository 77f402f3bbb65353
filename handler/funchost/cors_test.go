package funchost_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/funchost"
)

// corsApp has a function without options (items) and one with (opts).
func corsApp(t *testing.T) string {
	return writeApp(t, hostJSON, map[string]string{
		"items": fn("items/{id}", "anonymous", "get", "post"),
		"opts":  fn("opts", "anonymous", "get", "options"),
	})
}

// preflight sends a CORS preflight for POST with two request headers.
func preflight(t *testing.T, url, origin string) *http.Response {
	t.Helper()
	header := []string{"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "Content-Type, Authorization"}
	if origin != "" {
		header = append(header, "Origin", origin)
	}
	resp, body := call(t, http.MethodOptions, url, header...)
	if resp.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("preflight from %q: %d %q, want 204 with no body", origin, resp.StatusCode, body)
	}
	return resp
}

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Allow-Credentials", "Access-Control-Max-Age", "Access-Control-Expose-Headers", "Vary",
}

func wantNoCORS(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, k := range corsHeaders {
		if v := resp.Header.Values(k); v != nil {
			t.Errorf("%s = %q, want none", k, v)
		}
	}
}

func wantHeader(t *testing.T, resp *http.Response, k, want string) {
	t.Helper()
	if got := strings.Join(resp.Header.Values(k), ", "); got != want {
		t.Errorf("%s = %q, want %q", k, got, want)
	}
}

// handlerCORS makes the handler send CORS headers of its own.
const handlerCORS = "?h=Access-Control-Allow-Origin:https://handler.example&h=Access-Control-Expose-Headers:WWW-Authenticate&h=Vary:Accept-Encoding"

// TestCORS holds the stand-in to the Flex host's CORS middleware with
// siteConfig.cors: preflights answered 204 before routing and never
// forwarded, the policy's headers on them, other requests' headers
// overwritten for allowed origins, Expose-Headers left to the handler.
func TestCORS(t *testing.T) {
	t.Parallel()
	h := startReady(t, funchost.Options{Root: corsApp(t), CORSOrigins: []string{"https://APP.example", "https://other.example"}})
	const app = "https://app.example"

	t.Run("preflight, allowed origin", func(t *testing.T) {
		resp := preflight(t, h.URL()+"/items/1", app)
		wantHeader(t, resp, "Access-Control-Allow-Origin", app)
		wantHeader(t, resp, "Access-Control-Allow-Methods", "POST")
		wantHeader(t, resp, "Access-Control-Allow-Headers", "Content-Type,Authorization")
		wantHeader(t, resp, "Vary", "Origin") // more than one origin
		for _, k := range []string{"Access-Control-Max-Age", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"} {
			if v := resp.Header.Values(k); v != nil {
				t.Errorf("%s = %q, want none", k, v)
			}
		}
	})
	t.Run("preflight on a path no function serves", func(t *testing.T) {
		wantHeader(t, preflight(t, h.URL()+"/nope", app), "Access-Control-Allow-Origin", app)
	})
	t.Run("preflight on a function that lists options", func(t *testing.T) {
		wantHeader(t, preflight(t, h.URL()+"/opts", app), "Access-Control-Allow-Origin", app)
	})
	t.Run("preflight, disallowed origin", func(t *testing.T) {
		wantNoCORS(t, preflight(t, h.URL()+"/items/1", "https://evil.example"))
		wantNoCORS(t, preflight(t, h.URL()+"/opts", "https://app.example.evil"))
	})
	t.Run("preflights never reach the handler", func(t *testing.T) {
		for _, l := range handlerLog(t, h) {
			if strings.HasPrefix(l, "OPTIONS") {
				t.Errorf("handler received %q", l)
			}
		}
	})
	t.Run("OPTIONS without Access-Control-Request-Method is routed", func(t *testing.T) {
		resp, body := call(t, http.MethodOptions, h.URL()+"/opts", "Origin", app)
		if e := echoed(t, resp, body); e.Method != http.MethodOptions {
			t.Errorf("handler got %s", e.Method)
		}
		wantHeader(t, resp, "Access-Control-Allow-Origin", app)
		if resp, _ := call(t, http.MethodOptions, h.URL()+"/items/1", "Origin", app); resp.StatusCode != 404 {
			t.Errorf("OPTIONS on a function without options: %d, want 404", resp.StatusCode)
		}
	})
	t.Run("a preflight without Origin is routed", func(t *testing.T) {
		resp, body := call(t, http.MethodOptions, h.URL()+"/opts", "Access-Control-Request-Method", "POST")
		if e := echoed(t, resp, body); e.Header.Get("Access-Control-Request-Method") != "POST" {
			t.Errorf("handler got %v", e.Header)
		}
	})
	t.Run("allowed origin: Allow-Origin overwritten, Expose-Headers the handler's", func(t *testing.T) {
		resp, _ := call(t, http.MethodGet, h.URL()+"/items/1"+handlerCORS, "Origin", app)
		wantHeader(t, resp, "Access-Control-Allow-Origin", app)
		wantHeader(t, resp, "Access-Control-Expose-Headers", "WWW-Authenticate")
		if v := resp.Header.Values("Vary"); !slices.Contains(v, "Accept-Encoding") || !slices.Contains(v, "Origin") {
			t.Errorf("Vary = %q, want the handler's and Origin", v)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Error("Allow-Credentials added without supportCredentials")
		}
	})
	t.Run("allowed origin on a 404", func(t *testing.T) {
		resp, _ := call(t, http.MethodGet, h.URL()+"/nope", "Origin", app)
		wantHeader(t, resp, "Access-Control-Allow-Origin", app)
	})
	t.Run("disallowed origin or none: the handler's headers untouched", func(t *testing.T) {
		for _, origin := range []string{"https://evil.example", ""} {
			var header []string
			if origin != "" {
				header = []string{"Origin", origin}
			}
			resp, _ := call(t, http.MethodGet, h.URL()+"/items/1"+handlerCORS, header...)
			wantHeader(t, resp, "Access-Control-Allow-Origin", "https://handler.example")
			wantHeader(t, resp, "Access-Control-Expose-Headers", "WWW-Authenticate")
			wantHeader(t, resp, "Vary", "Accept-Encoding")
		}
	})
}

// TestCORSPolicies: one origin (no Vary) with credentials; "*"; none.
func TestCORSPolicies(t *testing.T) {
	t.Parallel()
	// Started together, so that their handlers start at once.
	oneOrigin := start(t, funchost.Options{Root: corsApp(t), CORSOrigins: []string{"https://app.example"}, CORSCredentials: true})
	anyOrigin := start(t, funchost.Options{Root: corsApp(t), CORSOrigins: []string{"*"}})
	starAmong := start(t, funchost.Options{Root: corsApp(t), CORSOrigins: []string{"*", "https://app.example"}})
	noOrigins := start(t, funchost.Options{Root: corsApp(t)})
	t.Run("one origin with credentials", func(t *testing.T) {
		h := waitReady(t, oneOrigin)
		resp := preflight(t, h.URL()+"/items/1", "https://app.example")
		wantHeader(t, resp, "Access-Control-Allow-Origin", "https://app.example")
		wantHeader(t, resp, "Access-Control-Allow-Credentials", "true")
		wantHeader(t, resp, "Vary", "")
		resp, _ = call(t, http.MethodGet, h.URL()+"/items/1", "Origin", "https://app.example")
		wantHeader(t, resp, "Access-Control-Allow-Credentials", "true")
		wantHeader(t, resp, "Vary", "")
	})
	t.Run("any origin", func(t *testing.T) {
		h := waitReady(t, anyOrigin)
		resp := preflight(t, h.URL()+"/items/1", "https://anyone.example")
		wantHeader(t, resp, "Access-Control-Allow-Origin", "*")
		wantHeader(t, resp, "Vary", "")
		resp, _ = call(t, http.MethodGet, h.URL()+"/items/1"+handlerCORS, "Origin", "https://anyone.example")
		wantHeader(t, resp, "Access-Control-Allow-Origin", "*")
	})
	t.Run("* among other origins is a literal", func(t *testing.T) {
		h := waitReady(t, starAmong)
		wantNoCORS(t, preflight(t, h.URL()+"/items/1", "https://anyone.example"))
	})
	t.Run("no origins: preflights still answered, bare", func(t *testing.T) {
		h := waitReady(t, noOrigins)
		wantNoCORS(t, preflight(t, h.URL()+"/opts", "https://app.example"))
		resp, _ := call(t, http.MethodGet, h.URL()+"/items/1"+handlerCORS, "Origin", "https://app.example")
		wantHeader(t, resp, "Access-Control-Allow-Origin", "https://handler.example")
		for _, l := range handlerLog(t, h) {
			if strings.HasPrefix(l, "OPTIONS") {
				t.Errorf("handler received %q", l)
			}
		}
	})
}
