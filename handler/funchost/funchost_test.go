package funchost_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// echoBin is the test handler (testdata/echo), built once for the run.
var echoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "funchost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if echoBin, err = goBinary("./testdata/echo", dir); err != nil {
		fmt.Fprintf(os.Stderr, "build the test handler: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goBinary builds the main package pkg and returns its executable. It asks
// go run for it (with -exec echo, which prints the path instead of running
// it), because go run keeps executables in the build cache: with a warm
// cache nothing is linked, where go build -o into a fresh folder links
// every time. On a cold cache go run names a copy in its work folder, gone
// once it exits; the second run names the cached one. Should the cache not
// keep it, go build -o into dir does.
func goBinary(pkg, dir string) (string, error) {
	for range 2 {
		cmd := exec.Command("go", "run", "-exec", "echo", pkg)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go run %s: %v\n%s", pkg, err, stderr.String())
		}
		if bin := strings.TrimSpace(string(out)); filepath.IsAbs(bin) {
			if _, err := os.Stat(bin); err == nil {
				return bin, nil
			}
		}
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// echo is what the test handler answers (testdata/echo's Echo).
type echo struct {
	Method           string      `json:"method"`
	Path             string      `json:"path"`
	EscapedPath      string      `json:"escapedPath"`
	Query            string      `json:"query"`
	Host             string      `json:"host"`
	Header           http.Header `json:"header"`
	BodyLen          int64       `json:"bodyLen"`
	ContentLength    int64       `json:"contentLength"`
	TransferEncoding []string    `json:"transferEncoding"`
	Args             []string    `json:"args"`
	Env              []string    `json:"env"`
	Dir              string      `json:"dir"`
}

// hostJSON is a host.json like ours: the proxy protocol, no route prefix.
const hostJSON = `{
  "version": "2.0",
  "customHandler": {"description": {"defaultExecutablePath": "handler"}, "enableProxyingHttpRequest": true},
  "extensions": {"http": {"routePrefix": ""}}
}`

// fn is a function.json with one httpTrigger (route, methods, authLevel;
// empty ones left out) and one http out.
func fn(route, auth string, methods ...string) string {
	trigger := map[string]any{"type": "httpTrigger", "direction": "in", "name": "req"}
	if route != "" {
		trigger["route"] = route
	}
	if auth != "" {
		trigger["authLevel"] = auth
	}
	if methods != nil {
		trigger["methods"] = methods
	}
	b, _ := json.Marshal(map[string]any{"bindings": []any{trigger, map[string]any{"type": "http", "direction": "out", "name": "res"}}})
	return string(b)
}

// writeApp lays out a staged folder: host.json, one folder per function,
// and the test handler as "handler".
func writeApp(t *testing.T, host string, functions map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if host != "" {
		writeFile(t, filepath.Join(root, "host.json"), host)
	}
	for name, doc := range functions {
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, name, "function.json"), doc)
	}
	if err := os.Symlink(echoBin, filepath.Join(root, "handler")); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// catchAll is an app with one anonymous function taking every path and
// method: for the forwarding tests.
func catchAll(t *testing.T) string {
	return writeApp(t, hostJSON, map[string]string{"all": fn("{*path}", "anonymous")})
}

// start starts a stand-in with the handler's output captured, stops it at
// the end of the test, and shows the output if the test failed.
func start(t *testing.T, opts funchost.Options) *funchost.Host {
	t.Helper()
	var out testkit.SyncBuffer
	if opts.Stdout == nil {
		opts.Stdout = &out
	}
	if opts.Stderr == nil {
		opts.Stderr = &out
	}
	h, err := funchost.Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		if t.Failed() {
			t.Logf("handler output:\n%s", withoutTokens(out.String()))
		}
	})
	return h
}

// startReady is start, then waitReady.
func startReady(t *testing.T, opts funchost.Options) *funchost.Host {
	t.Helper()
	return waitReady(t, start(t, opts))
}

// waitReady waits for the handler's first answer and returns h.
func waitReady(t *testing.T, h *funchost.Host) *funchost.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return h
}

// client talks to the stand-in with nothing of its own added: no proxy,
// no Accept-Encoding.
var client = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func newRequest(t *testing.T, method, url string, body io.Reader, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return req
}

// send is testkit.Do with client, its answer as the status and header (a
// response with no body: it has been read) and the body this package's
// checks take.
func send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	r := testkit.Do(t, client, req)
	return &http.Response{StatusCode: r.Status, Header: r.Header}, r.Body
}

// call sends a request without a body and returns the status and body.
func call(t *testing.T, method, url string, header ...string) (*http.Response, string) {
	t.Helper()
	return send(t, newRequest(t, method, url, nil, header...))
}

// echoed decodes the test handler's answer, failing unless it is one.
func echoed(t *testing.T, resp *http.Response, body string) echo {
	t.Helper()
	var e echo
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &e) != nil || e.Method == "" {
		t.Fatalf("want the handler's echo, got %d %q", resp.StatusCode, body)
	}
	return e
}

// handlerLog is what the handler has received, as "METHOD /path" lines,
// asked of the handler directly.
func handlerLog(t *testing.T, h *funchost.Host) []string {
	t.Helper()
	_, body := call(t, http.MethodGet, "http://"+h.HandlerAddr()+"/_log")
	var log []string
	if err := json.Unmarshal([]byte(body), &log); err != nil {
		t.Fatalf("handler log %q: %v", body, err)
	}
	return log
}

func hasEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// withoutTokens drops the lines of dev mode's output that carry tokens.
func withoutTokens(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "TOKEN_") && !strings.Contains(l, "eyJ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
