package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

// asHandler, set in a child's environment, makes this test binary run the
// handler's main instead of the tests: the tests exec the code under test
// without linking a second binary. BenchmarkColdStart builds the real one,
// whose start-up time is the figure the README reports.
const asHandler = "HANDLER_TEST_RUN_AS_HANDLER"

func TestMain(m *testing.M) {
	if os.Getenv(asHandler) == "1" {
		main()
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// handlerCommand is an exec.Cmd that runs the handler's main with env.
func handlerCommand(t testing.TB, env []string) *exec.Cmd {
	t.Helper()
	if _, ok := t.(*testing.B); ok {
		cmd := exec.Command(builtBinary(t))
		cmd.Env = env
		return cmd
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(env, asHandler+"=1")
	return cmd
}

// builtBinary builds the handler once per benchmark run.
func builtBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "handler-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "handler")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// launch execs the binary with env(port), for a port that was free a
// moment ago, and returns once ready says so, with its output and when the
// try that worked began. Another process can take the port first (the race
// the Functions host has too: it picks the port the same way); the child
// then exits saying so, and is started again on another port.
func launch(t testing.TB, env func(port int) []string, ready func(port int, out string) bool) (cmd *exec.Cmd, port int, out *testkit.SyncBuffer, started time.Time) {
	t.Helper()
	for try := 1; ; try++ {
		port = freePort(t)
		out = &testkit.SyncBuffer{}
		cmd = handlerCommand(t, env(port))
		cmd.Stdout, cmd.Stderr = out, out
		started = time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for !ready(port, out.String()) {
			if try < 3 && strings.Contains(out.String(), "address already in use") {
				_ = cmd.Wait() // it has exited
				break
			}
			if time.Since(started) > 10*time.Second {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("the binary was never ready:\n%s", out.String())
			}
			time.Sleep(200 * time.Microsecond)
		}
		if cmd.ProcessState == nil { // not the try that lost its port
			return cmd, port, out, started
		}
	}
}

// answersToolsList is launch's ready for a binary whose /mcp answers
// token's tools/list.
func answersToolsList(token string) func(int, string) bool {
	return func(port int, _ string) bool { _, err := toolsList(port, token); return err == nil }
}

// prodEnv is a production-mode environment pointing at a stand-in issuer
// whose certificate the child trusts through SSL_CERT_FILE.
func prodEnv(t testing.TB, idp *devidp.Server, port int) []string {
	t.Helper()
	certFile := filepath.Join(t.TempDir(), "issuer.pem")
	if err := os.WriteFile(certFile, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"SSL_CERT_FILE=" + certFile,
		"FUNCTIONS_CUSTOMHANDLER_PORT=" + strconv.Itoa(port),
		"PUBLIC_BASE_URL=https://mcp.example.com",
		"ENTRA_TENANT_ID=" + idp.TenantID(),
		"ENTRA_CLIENT_ID=" + idp.ClientID(),
		"ENTRA_AUTHORITY_HOST=" + idp.AuthorityHost(),
		// Redis is not touched by tools/list; a dead port proves it.
		"REDIS_URL=redis://127.0.0.1:1/0",
		"ENTRA_CLIENT_SECRET=" + idp.ClientSecret(),
		"TOKEN_SEALING_KEYS=" + testSealingKey,
	}
}

func toolsList(port int, token string) ([]string, error) {
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/mcp", port),
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Result struct {
			Tools []struct{ Name string } `json:"tools"`
		} `json:"result"`
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	var names []string
	for _, tl := range r.Result.Tools {
		names = append(names, tl.Name)
	}
	return names, nil
}

// startProd execs the binary in production mode and returns when its first
// tools/list with token (the demo user "all"'s) answers the golden list,
// with the time that took.
func startProd(t testing.TB, idp *devidp.Server, token string) (*exec.Cmd, time.Duration) {
	t.Helper()
	want := strings.Join(toolstest.Load(t).User(t, "all").Tools, ",")
	cmd, _, _, start := launch(t, func(port int) []string { return prodEnv(t, idp, port) }, func(port int, _ string) bool {
		names, err := toolsList(port, token)
		return err == nil && strings.Join(names, ",") == want
	})
	return cmd, time.Since(start)
}

func TestProductionBinaryServesAndStops(t *testing.T) {
	t.Parallel()
	idp, err := devidp.Start(devidp.Options{SigningKey: testkit.RSAKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	all, _ := devidp.DemoUser("all")
	token, err := idp.Mint(all)
	if err != nil {
		t.Fatal(err)
	}
	cmd, took := startProd(t, idp, token)
	t.Logf("exec to first correct tools/list: %v", took)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// BenchmarkColdStart measures exec to the first correct tools/list in
// production mode, with configuration from the environment and keys
// fetched from the issuer over HTTPS.
func BenchmarkColdStart(b *testing.B) {
	idp, err := devidp.Start(devidp.Options{SigningKey: testkit.RSAKey()})
	if err != nil {
		b.Fatal(err)
	}
	defer idp.Close()
	all, _ := devidp.DemoUser("all")
	token, _ := idp.Mint(all)
	builtBinary(b)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd, took := startProd(b, idp, token)
		total += took
		b.StopTimer()
		cmd.Process.Kill()
		cmd.Wait()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-first-list")
}

// testSealingKey is a fixed sealing key for tests (base64 of 32 bytes).
const testSealingKey = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w="

func TestConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "7777",
		"PUBLIC_BASE_URL":              "https://mcp.example.com",
		"ENTRA_TENANT_ID":              "11111111-1111-4111-8111-111111111111",
		"ENTRA_CLIENT_ID":              "22222222-2222-4222-8222-222222222222",
		"REDIS_URL":                    "redis://127.0.0.1:6379/0",
		"ENTRA_CLIENT_SECRET":          "s3cr3t-value",
		"TOKEN_SEALING_KEYS":           testSealingKey,
	}
	cases := []struct{ key, value, want string }{
		{"FUNCTIONS_CUSTOMHANDLER_PORT", "", "FUNCTIONS_CUSTOMHANDLER_PORT"},
		{"FUNCTIONS_CUSTOMHANDLER_PORT", "http", "FUNCTIONS_CUSTOMHANDLER_PORT"},
		{"ENTRA_TENANT_ID", "", "ENTRA_TENANT_ID"},
		{"ENTRA_CLIENT_ID", "not-a-guid", "ENTRA_CLIENT_ID"},
		{"ENTRA_AUTHORITY_HOST", "http://login.example.com", "ENTRA_AUTHORITY_HOST"},
		{"ENTRA_TOKEN_VERSION", "3", "ENTRA_TOKEN_VERSION"},
		{"ENTRA_ALLOWED_TENANTS", "x", "ENTRA_ALLOWED_TENANTS"},
		{"REDIS_URL", "", "REDIS_URL"},
		{"REDIS_URL", "http://user:hunter2@x", "REDIS_URL"},
		{"ROLE_MAP", `{"Task.Read":["fly"]}`, "ROLE_MAP"},
		{"PUBLIC_BASE_URL", "ftp://x", "PUBLIC_BASE_URL"},
		{"LOG_LEVEL", "loud", "LOG_LEVEL"},
		{"ENTRA_CLIENT_SECRET", "", "ENTRA_CLIENT_SECRET"},
		{"TOKEN_SEALING_KEYS", "", "TOKEN_SEALING_KEYS"},
		{"TOKEN_SEALING_KEYS", "c2hvcnQta2V5LW1hdGVyaWFs", "TOKEN_SEALING_KEYS"},
		{"TOKEN_SEALING_KEYS", testSealingKey + "," + testSealingKey, "TOKEN_SEALING_KEYS"},
		{"AUTH_ALLOWED_RETURN_URLS", "http://evil.example/cb", "AUTH_ALLOWED_RETURN_URLS"},
		{"ENTRA_CLIENT_AUTH", "certificate", "ENTRA_CLIENT_AUTH"},
		{"KEY_VAULT_URI", "http://kv.vault.azure.net", "KEY_VAULT_URI"},
		{"REDIS_AUTH", "entra", "REDIS_AUTH"}, // with a redis:// URL: a token must not travel in clear
		{"REDIS_AUTH", "keys", "REDIS_AUTH"},
		{"GRAPH_BASE_URL", "http://graph.example", "GRAPH_BASE_URL"},
		{"REDIS_USERNAME", "33333333-3333-4333-8333-333333333333", "REDIS_USERNAME"}, // without REDIS_AUTH=entra
		{"MCP_AUTH_MODE", "open", "MCP_AUTH_MODE"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			env[c.key] = c.value
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), nil, testkit.Env(env), &stdout, &stderr)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("%s=%q: exit %d, stderr %q; want non-zero and one line naming %s", c.key, c.value, code, stderr.String(), c.want)
			}
			if strings.Contains(stderr.String(), "hunter2") || strings.Contains(stderr.String(), "c2hvcnQta2V5") ||
				strings.Contains(stderr.String(), testSealingKey) || strings.Contains(stderr.String(), "s3cr3t") {
				t.Errorf("a secret from REDIS_URL was echoed: %q", stderr.String())
			}
		})
	}
}

func TestBinaryExitsOnBadConfig(t *testing.T) {
	t.Parallel()
	cmd := handlerCommand(t, []string{"PATH=" + os.Getenv("PATH"), "FUNCTIONS_CUSTOMHANDLER_PORT=7777", "WEBSITE_HOSTNAME=myapp.azurewebsites.net"})
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("exited 0 with no Entra configuration: %s", out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "ENTRA_TENANT_ID") {
		t.Fatalf("want one line naming ENTRA_TENANT_ID, got %q", out)
	}
}

// TestDevFlagPointsToTheDevCommand: dev mode is not in this binary; an
// old command line says where it went instead of starting production.
func TestDevFlagPointsToTheDevCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-dev"}, func(string) string { return "" }, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "go run ./handler/dev") {
		t.Fatalf("-dev: exit %d, %q; want 2 and the dev command", code, stderr.String())
	}
}

// TestShutdownDrainsAndFlushes sends SIGTERM while a request is half
// sent: the request still completes, and the telemetry the process held
// reaches ingestion before it exits.
func TestShutdownDrainsAndFlushes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var posted int
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		posted += len(body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"itemsReceived":1,"itemsAccepted":1,"errors":[]}`))
	}))
	defer ingest.Close()

	idp, err := devidp.Start(devidp.Options{SigningKey: testkit.RSAKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	all, _ := devidp.DemoUser("all")
	token, _ := idp.Mint(all)
	cmd, port, out, _ := launch(t, func(port int) []string {
		return append(prodEnv(t, idp, port),
			"APPLICATIONINSIGHTS_CONNECTION_STRING=InstrumentationKey=00000000-0000-4000-8000-000000000001;IngestionEndpoint="+ingest.URL)
	}, answersToolsList(token))
	defer cmd.Process.Kill()

	// Half a request: headers and part of the body, then SIGTERM.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", token, len(body), body[:10])
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Fprint(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request lost at shutdown: %v\n%s", err, out.String())
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"id":7`) {
		t.Fatalf("in-flight request: %d %s", resp.StatusCode, b)
	}
	conn.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if posted == 0 {
		t.Fatalf("no telemetry was flushed before exit:\n%s", out.String())
	}
}

// TestStartUpSaysWhenRedisIsUnusable: a Redis that answers but refuses
// our password is named in one log line at start-up, and /health says
// degraded; the handler still serves what needs no Redis.
func TestStartUpSaysWhenRedisIsUnusable(t *testing.T) {
	t.Parallel()
	idp, err := devidp.Start(devidp.Options{SigningKey: testkit.RSAKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	srv := storetest.Server(t, "--requirepass", "right-password")
	cmd, port, out, _ := launch(t, func(port int) []string {
		return append(prodEnv(t, idp, port), "REDIS_URL=redis://:wrong-password@"+srv.Options().Addr+"/0")
	}, func(_ int, out string) bool { return strings.Contains(out, "Redis is not usable") })
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	log := out.String()
	if !strings.Contains(log, `"level":"ERROR","msg":"Redis is not usable`) || !strings.Contains(log, "REDIS_URL / REDIS_AUTH") {
		t.Fatalf("no start-up line naming the Redis settings:\n%s", log)
	}
	if strings.Contains(log, "wrong-password") {
		t.Fatal("the log repeats the password")
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 503 || h.Status != "degraded" || h.Checks["redis"] != "unavailable" {
		t.Fatalf("health: %d %+v %v", resp.StatusCode, h, err)
	}
}
