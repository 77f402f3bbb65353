package funchost_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/funchost"
)

// TestRouting holds the stand-in to the host's router: templates,
// catch-all, optional parameters, case, trailing slash, first match in
// function-name order, method constraints (404, not 405), 404 with an
// empty body, the homepage.
func TestRouting(t *testing.T) {
	t.Parallel()
	root := writeApp(t, hostJSON, map[string]string{
		// a_keyed sorts first: for GET it shadows b_open, for POST it does not.
		"a_keyed": fn("dup/{y}", "function", "get"),
		"b_open":  fn("dup/{x}", "anonymous", "get", "post"),
		"items":   fn("items/{id}", "anonymous", "get"),
		"files":   fn("files/{*rest}", "anonymous"),
		"opt":     fn("opt/{x?}", "anonymous", "GET"),
		"mixed":   fn("/Mixed/Case", "anonymous", "get"),
		"named":   fn("", "anonymous", "get"), // route defaults to the name
	})
	if err := os.Mkdir(filepath.Join(root, "not_a_function"), 0o755); err != nil { // no function.json: ignored
		t.Fatal(err)
	}
	h := startReady(t, funchost.Options{Root: root})

	for _, c := range []struct {
		name, method, path string
		status             int
	}{
		{"parameter", "GET", "/items/5", 200},
		{"literal in another case", "GET", "/ITEMS/5", 200},
		{"trailing slash", "GET", "/items/5/", 200},
		{"escaped segment", "GET", "/items/a%2Fb", 200},
		{"parameter missing", "GET", "/items", 404},
		{"one segment too many", "GET", "/items/5/6", 404},
		{"wrong method", "POST", "/items/5", 404},
		{"catch-all empty", "GET", "/files", 200},
		{"catch-all deep", "GET", "/files/a/b/c", 200},
		{"no methods means all", "PATCH", "/files/x", 200},
		{"optional absent", "GET", "/opt", 200},
		{"optional present", "GET", "/opt/1", 200},
		{"optional then more", "GET", "/opt/1/2", 404},
		{"route leading slash and case", "GET", "/mixed/case", 200},
		{"route defaults to the function name", "GET", "/NAMED", 200},
		{"first match keyed", "GET", "/dup/1", 401},
		{"first match by method", "POST", "/dup/1", 200},
		{"unknown", "GET", "/nope", 404},
		{"unknown under a known prefix", "GET", "/items2/5", 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := call(t, c.method, h.URL()+c.path)
			if resp.StatusCode != c.status {
				t.Fatalf("%s %s: %d %q, want %d", c.method, c.path, resp.StatusCode, body, c.status)
			}
			if c.status != 200 {
				if body != "" {
					t.Errorf("%d with body %q, want none", c.status, body)
				}
				return
			}
			e := echoed(t, resp, body)
			if e.Method != c.method || e.EscapedPath != c.path {
				t.Errorf("handler got %s %s, want %s %s unchanged", e.Method, e.EscapedPath, c.method, c.path)
			}
		})
	}
	t.Run("nothing refused reached the handler", func(t *testing.T) {
		for _, l := range handlerLog(t, h) {
			if strings.Contains(l, "/nope") || strings.Contains(l, "/items2") || l == "POST /items/5" || l == "GET /dup/1" {
				t.Errorf("handler received %q", l)
			}
		}
	})
	t.Run("homepage", func(t *testing.T) {
		resp, body := call(t, http.MethodGet, h.URL()+"/")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "Functions") {
			t.Errorf("GET /: %d %s %q, want the 200 HTML homepage", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})
}

// TestRoutePrefix: without extensions.http.routePrefix routes live under
// /api; a function whose route takes "/" gets it, not the homepage.
func TestRoutePrefix(t *testing.T) {
	t.Parallel()
	host := `{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}, "enableProxyingHttpRequest": true}}`
	h := startReady(t, funchost.Options{Root: writeApp(t, host, map[string]string{"items": fn("items/{id}", "anonymous", "get")})})
	if resp, body := call(t, http.MethodGet, h.URL()+"/api/items/5"); resp.StatusCode != 200 {
		t.Errorf("GET /api/items/5: %d %q, want 200", resp.StatusCode, body)
	}
	if resp, _ := call(t, http.MethodGet, h.URL()+"/items/5"); resp.StatusCode != 404 {
		t.Errorf("GET /items/5 without the prefix: %d, want 404", resp.StatusCode)
	}

	h2 := startReady(t, funchost.Options{Root: catchAll(t)})
	resp, body := call(t, http.MethodGet, h2.URL()+"/")
	if resp.StatusCode != 200 || body != "echo ready\n" {
		t.Errorf("GET / with a catch-all function: %d %q, want the handler's answer", resp.StatusCode, body)
	}
}

// TestAuthLevels: anonymous needs nothing; function, admin and a missing
// authLevel (function) need a key, by query or header; without one the
// stand-in answers 401 with an empty body and the handler sees nothing.
func TestAuthLevels(t *testing.T) {
	t.Parallel()
	h := startReady(t, funchost.Options{Root: writeApp(t, hostJSON, map[string]string{
		"anon":  fn("anon", "anonymous", "get"),
		"func":  fn("func", "function", "get"),
		"adm":   fn("adm", "admin", "get"),
		"dflt":  fn("dflt", "", "get"),
		"upper": fn("upper", "Anonymous", "get"),
	})})
	for _, c := range []struct {
		name, path string
		header     []string
		status     int
	}{
		{"anonymous", "/anon", nil, 200},
		{"anonymous in another case", "/upper", nil, 200},
		{"function without a key", "/func", nil, 401},
		{"admin without a key", "/adm", nil, 401},
		{"default level without a key", "/dflt", nil, 401},
		{"empty code", "/func?code=", nil, 401},
		{"function with code", "/func?code=any", nil, 200},
		{"admin with the header", "/adm", []string{"x-functions-key", "any"}, 200},
		{"default level with the header", "/dflt", []string{"X-Functions-Key", "k"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := call(t, http.MethodGet, h.URL()+c.path, c.header...)
			if resp.StatusCode != c.status {
				t.Fatalf("GET %s: %d %q, want %d", c.path, resp.StatusCode, body, c.status)
			}
			if c.status == 401 && body != "" {
				t.Errorf("401 with body %q", body)
			}
		})
	}
	t.Run("refused requests never reached the handler", func(t *testing.T) {
		got := strings.Join(handlerLog(t, h), ", ")
		if want := "GET /anon, GET /upper, GET /func, GET /adm, GET /dflt"; got != want {
			t.Errorf("handler received %s; want only the accepted %s", got, want)
		}
	})
}
