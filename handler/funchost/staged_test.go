package funchost_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/funchost"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// moduleRoot is the module's root, from this package's folder.
const moduleRoot = "../.."

// TestStagedPackage stages the real package in dev mode (go run
// ./handler/stage -dev) and runs it under the stand-in, as CI does: the handler is
// reached only through the host's routes, methods, headers and CORS.
func TestStagedPackage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and stages the handler")
	}
	tmp := t.TempDir()
	pkg := filepath.Join(tmp, "pkg")
	// A production staging's zip from before must not survive next to the
	// dev folder: it is not what the folder holds.
	if err := os.WriteFile(pkg+".zip", []byte("an earlier production package"), 0o644); err != nil {
		t.Fatal(err)
	}
	stage := exec.Command("go", "run", "./handler/stage", "-dev", "-out", pkg)
	stage.Dir = moduleRoot
	if out, err := stage.CombinedOutput(); err != nil {
		t.Fatalf("stage: %v\n%s", err, out)
	}
	if _, err := os.Stat(pkg + ".zip"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stage -dev left %s.zip (%v)", pkg, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	const browser = "https://app.example"
	tokens := filepath.Join(tmp, "tokens.json")
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBSITE_") { // dev mode refuses an Azure host
			environ = append(environ, kv)
		}
	}
	h := startReady(t, funchost.Options{
		Root:     pkg,
		Listener: ln,
		// Dev mode listens on the port the host hands the worker.
		Args:        []string{"-dev-tokens", tokens},
		Settings:    map[string]string{"PUBLIC_BASE_URL": base, "MCP_ALLOWED_ORIGINS": browser},
		CORSOrigins: []string{browser},
		Environ:     environ,
	})

	t.Run("health", func(t *testing.T) {
		// The signing keys are fetched in the background: degraded until then.
		testkit.EventuallyWithin(t, 30*time.Second, "GET /health to answer 200", func() error {
			if resp, body := call(t, http.MethodGet, base+"/health"); resp.StatusCode != 200 {
				return fmt.Errorf("%d %q", resp.StatusCode, body)
			}
			return nil
		})
	})
	t.Run("protected resource metadata names the public URL", func(t *testing.T) {
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		getJSON(t, base+"/.well-known/oauth-protected-resource/mcp", &prm)
		if prm.Resource != base+"/mcp" {
			t.Errorf("resource %q, want %q (PUBLIC_BASE_URL through the host)", prm.Resource, base+"/mcp")
		}
		if len(prm.AuthorizationServers) == 0 {
			t.Error("no authorization_servers")
		}
	})
	t.Run("OAuth metadata", func(t *testing.T) {
		var meta struct {
			Issuer               string `json:"issuer"`
			RegistrationEndpoint string `json:"registration_endpoint"`
		}
		getJSON(t, base+"/.well-known/oauth-authorization-server", &meta)
		if meta.Issuer != base || meta.RegistrationEndpoint != base+"/oauth/register" {
			t.Errorf("issuer %q, registration %q; want them under %s", meta.Issuer, meta.RegistrationEndpoint, base)
		}
	})
	t.Run("401 on /mcp points at the metadata", func(t *testing.T) {
		resp, _ := call(t, http.MethodPost, base+"/mcp", "Content-Type", "application/json")
		want := `resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"`
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
			t.Errorf("%d WWW-Authenticate %q, want 401 with %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
	})
	t.Run("a browser's preflight and request", func(t *testing.T) {
		resp := preflight(t, base+"/oauth/register", browser)
		wantHeader(t, resp, "Access-Control-Allow-Origin", browser)
		wantHeader(t, resp, "Access-Control-Allow-Methods", "POST")
		resp, _ = call(t, http.MethodPost, base+"/mcp", "Origin", browser, "Content-Type", "application/json")
		wantHeader(t, resp, "Access-Control-Allow-Origin", browser)
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
			t.Errorf("Expose-Headers %q: the handler's should name WWW-Authenticate", resp.Header.Get("Access-Control-Expose-Headers"))
		}
	})
	t.Run("MCP with a dev token", func(t *testing.T) {
		// Dev mode writes the file after it starts listening, which is
		// when the host counts it ready: under load the file can lag.
		toks := testkit.DevTokens(t, 10*time.Second, tokens, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := newRequest(t, http.MethodPost, base+"/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"funchost-test","version":"1"}}}`),
			"Authorization", "Bearer "+toks["all"], "Content-Type", "application/json", "Accept", "application/json, text/event-stream").WithContext(ctx)
		resp, body := send(t, req)
		if resp.StatusCode != 200 || !strings.Contains(body, `"protocolVersion"`) {
			t.Errorf("initialize: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("routes and methods only as function.json lists them", func(t *testing.T) {
		if resp, _ := call(t, http.MethodPut, base+"/mcp"); resp.StatusCode != 404 {
			t.Errorf("PUT /mcp: %d, want the host's 404", resp.StatusCode)
		}
		if resp, _ := call(t, http.MethodGet, base+"/not-a-route"); resp.StatusCode != 404 {
			t.Errorf("GET /not-a-route: %d, want 404", resp.StatusCode)
		}
	})
	if err := h.Close(); err != nil {
		t.Errorf("the handler did not stop cleanly on SIGTERM: %v", err)
	}
}

// getJSON is testkit.GetJSON with client, failing unless the answer is a
// 200.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if r := testkit.GetJSON(t, client, url, v); r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %q", url, r.Status, r.Body)
	}
}
