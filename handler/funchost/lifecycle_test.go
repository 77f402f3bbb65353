package funchost_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/funchost"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// TestLaunch: the handler starts as the host starts it: in the script
// root, with host.json's arguments expanded (app settings, the worker's own
// variables, unknown ones removed) and the extra arguments after them, and
// the host's variables over the inherited environment and app settings.
func TestLaunch(t *testing.T) {
	t.Parallel()
	host := `{"version": "2.0",
	  "customHandler": {"description": {"defaultExecutablePath": "handler",
	    "arguments": ["--mode", "%ECHO_MODE%", "--port=%FUNCTIONS_CUSTOMHANDLER_PORT%", "%ECHO_UNSET%"]},
	    "enableProxyingHttpRequest": true},
	  "extensions": {"http": {"routePrefix": ""}}}`
	root := writeApp(t, host, map[string]string{"all": fn("{*path}", "anonymous")})
	var stdout testkit.SyncBuffer
	h := startReady(t, funchost.Options{
		Root:        root,
		Args:        []string{"-extra", "%FUNCTIONS_APP_ROOT_PATH%"},
		Environ:     []string{"PATH=" + os.Getenv("PATH"), "ECHO_INHERITED=yes", "ECHO_OVERRIDDEN=env"},
		Settings:    map[string]string{"ECHO_MODE": "fast", "ECHO_OVERRIDDEN": "setting", "FUNCTIONS_HTTPWORKER_ID": "spoofed"},
		CORSOrigins: []string{"https://app.example"},
		Stdout:      &stdout,
	})
	resp, body := call(t, http.MethodGet, h.URL()+"/x")
	e := echoed(t, resp, body)
	port := h.HandlerAddr()[strings.LastIndex(h.HandlerAddr(), ":")+1:]

	t.Run("arguments", func(t *testing.T) {
		want := []string{"--mode", "fast", "--port=" + port, "-extra", root}
		if !slices.Equal(e.Args, want) {
			t.Errorf("args %q, want %q", e.Args, want)
		}
	})
	t.Run("environment", func(t *testing.T) {
		for _, kv := range []string{
			"FUNCTIONS_CUSTOMHANDLER_PORT=" + port, "FUNCTIONS_HTTPWORKER_PORT=" + port,
			"FUNCTIONS_APP_ROOT_PATH=" + root, "ECHO_INHERITED=yes", "ECHO_OVERRIDDEN=setting", "ECHO_MODE=fast",
			`CORS_ALLOWED_ORIGINS=["https://app.example"]`, "CORS_SUPPORT_CREDENTIALS=false",
		} {
			if !hasEnv(e.Env, kv) {
				t.Errorf("handler environment lacks %s: %q", kv, e.Env)
			}
		}
		var ids []string
		for _, kv := range e.Env {
			if k, v, _ := strings.Cut(kv, "="); k == "FUNCTIONS_CUSTOMHANDLER_WORKER_ID" || k == "FUNCTIONS_HTTPWORKER_ID" {
				ids = append(ids, v)
			}
		}
		if len(ids) != 2 || ids[0] != ids[1] || !guid.MatchString(ids[0]) {
			t.Errorf("worker ids %q, want one GUID in both variables", ids)
		}
	})
	t.Run("working directory", func(t *testing.T) {
		if e.Dir != root {
			t.Errorf("working directory %q, want %q", e.Dir, root)
		}
	})
	t.Run("output passed through", func(t *testing.T) {
		if !strings.Contains(stdout.String(), "echo: listening on") {
			t.Errorf("stdout %q", stdout.String())
		}
	})
}

// TestRefusesWhatItDoesNotImitate: a package the stand-in cannot run as the
// host would is refused at start with a clear error.
func TestRefusesWhatItDoesNotImitate(t *testing.T) {
	t.Parallel()
	good := fn("items", "anonymous", "get")
	two := `{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "a"}, {"type": "httpTrigger", "direction": "in", "name": "b"}, {"type": "http", "direction": "out", "name": "res"}]}`
	noOut := `{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"}]}`
	extra := `{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}, {"type": "http", "direction": "out", "name": "res"}, {"type": "queue", "direction": "out", "name": "q"}]}`
	for _, c := range []struct {
		name      string
		host      string
		functions map[string]string
		opts      funchost.Options
		want      string
	}{
		{"no host.json", "", map[string]string{"items": good}, funchost.Options{}, "host.json"},
		{"forwarding, not proxying", strings.Replace(hostJSON, `"enableProxyingHttpRequest": true`, `"enableForwardingHttpRequest": true`, 1),
			map[string]string{"items": good}, funchost.Options{}, "enableProxyingHttpRequest"},
		{"customHandler.http", strings.Replace(hostJSON, `"enableProxyingHttpRequest": true`, `"enableProxyingHttpRequest": true, "http": {"routes": [{"route": "x"}]}`, 1),
			map[string]string{"items": good}, funchost.Options{}, "customHandler.http"},
		{"two triggers", hostJSON, map[string]string{"items": two}, funchost.Options{}, "exactly one"},
		{"no http out", hostJSON, map[string]string{"items": noOut}, funchost.Options{}, "exactly one"},
		{"another binding", hostJSON, map[string]string{"items": extra}, funchost.Options{}, "exactly one"},
		{"route constraint", hostJSON, map[string]string{"items": fn("items/{id:int}", "anonymous")}, funchost.Options{}, "constraint"},
		{"reserved route", hostJSON, map[string]string{"items": fn("Admin/x", "anonymous")}, funchost.Options{}, "reserves"},
		{"same route twice", hostJSON, map[string]string{"a": fn("x", "anonymous", "get"), "b": fn("X", "anonymous", "get", "post")}, funchost.Options{}, "conflicts"},
		{"no functions", hostJSON, nil, funchost.Options{}, "no function"},
		{"CORS origin with a path", hostJSON, map[string]string{"items": good}, funchost.Options{CORSOrigins: []string{"https://app.example/x"}}, "CORS origin"},
		{"any origin with credentials", hostJSON, map[string]string{"items": good}, funchost.Options{CORSOrigins: []string{"*"}, CORSCredentials: true}, "credentials"},
		{"CORS as a setting", hostJSON, map[string]string{"items": good}, funchost.Options{Settings: map[string]string{"CORS_ALLOWED_ORIGINS": "[]"}}, "CORSOrigins"},
		{"argument with a quote", hostJSON, map[string]string{"items": good}, funchost.Options{Args: []string{`"a b"`}}, "quote"},
		{"bad body limit", hostJSON, map[string]string{"items": good}, funchost.Options{Settings: map[string]string{"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "lots"}}, "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			opts.Root = writeApp(t, c.host, c.functions)
			h, err := funchost.Start(opts)
			if err == nil {
				h.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestReadiness: requests wait for a handler that starts slowly; a handler
// that never listens gets requests a 503 after the wait, and one that exits
// gets them a 503 at once.
func TestReadiness(t *testing.T) {
	t.Parallel()
	t.Run("slow start", func(t *testing.T) {
		t.Parallel()
		// The handler listens once the gate file exists, which the test
		// creates only when the stand-in holds the request.
		gate := filepath.Join(t.TempDir(), "listen")
		waiting := newLogWatch("funchost: a request waits for the handler")
		h := start(t, funchost.Options{Root: catchAll(t), Settings: map[string]string{"ECHO_START_GATE": gate}, Logger: slog.New(waiting)})
		type answer struct {
			resp *http.Response
			body string
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			var a answer
			if a.resp, a.err = client.Get(h.URL() + "/early"); a.err == nil {
				b, err := io.ReadAll(a.resp.Body)
				a.resp.Body.Close()
				a.body, a.err = string(b), err
			}
			answered <- a
		}()
		select {
		case <-waiting.seen:
		case a := <-answered:
			t.Fatalf("answered before the handler listened: %v %v %q", a.err, a.resp, a.body)
		case <-time.After(30 * time.Second):
			t.Fatal("the request did not reach the stand-in within 30 s")
		}
		writeFile(t, gate, "")
		a := <-answered
		if a.err != nil {
			t.Fatalf("GET /early: %v", a.err)
		}
		if e := echoed(t, a.resp, a.body); e.Path != "/early" {
			t.Errorf("handler got %s", e.Path)
		}
	})
	t.Run("never listens", func(t *testing.T) {
		t.Parallel()
		// Both limits run out by design, so short ones are as sure as long.
		h := start(t, funchost.Options{
			Root: catchAll(t), Settings: map[string]string{"ECHO_NEVER_LISTEN": "1"},
			StartTimeout: 100 * time.Millisecond, RequestWait: 50 * time.Millisecond, StopGrace: time.Second,
		})
		resp, body := call(t, http.MethodGet, h.URL()+"/x")
		if resp.StatusCode != 503 || body != "Function host is not running." {
			t.Errorf("%d %q, want 503 \"Function host is not running.\"", resp.StatusCode, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.WaitReady(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitReady: %v, want the start-up limit's error", err)
		}
	})
	t.Run("exits at start", func(t *testing.T) {
		t.Parallel()
		h := start(t, funchost.Options{Root: catchAll(t), Settings: map[string]string{"ECHO_EXIT_AT_START": "3"}})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("WaitReady: %v, want the exit status", err)
		}
		<-h.Done()
		if resp, _ := call(t, http.MethodGet, h.URL()+"/x"); resp.StatusCode != 503 {
			t.Errorf("after the exit: %d, want 503", resp.StatusCode)
		}
	})
}

// TestShutdown: Close stops the handler with SIGTERM, and kills one that
// ignores it after the grace period.
func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("SIGTERM", func(t *testing.T) {
		mark := filepath.Join(t.TempDir(), "term")
		h := startReady(t, funchost.Options{Root: catchAll(t), Settings: map[string]string{"ECHO_TERM_FILE": mark}})
		url := h.URL()
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if b, err := os.ReadFile(mark); err != nil || string(b) != "SIGTERM\n" {
			t.Errorf("the handler did not get SIGTERM: %q %v", b, err)
		}
		select {
		case <-h.Done():
		default:
			t.Error("Close returned with the handler running")
		}
		if _, err := client.Get(url + "/x"); err == nil {
			t.Error("the stand-in still answers after Close")
		}
	})
	t.Run("SIGTERM ignored", func(t *testing.T) {
		// The handler never exits by itself, so the grace always runs out:
		// a short one proves the kill as well as a long one.
		h := startReady(t, funchost.Options{Root: catchAll(t), Settings: map[string]string{"ECHO_IGNORE_TERM": "1"}, StopGrace: 50 * time.Millisecond})
		if err := h.Close(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Close: %v, want the kill reported", err)
		}
		<-h.Done()
	})
}

// TestCommand runs the command as CI does: it announces its URL and
// readiness, proxies, passes -arg and -setting, and on SIGTERM stops the
// handler and exits 0; it exits 1 when the handler exits.
func TestCommand(t *testing.T) {
	t.Parallel()
	bin, err := goBinary("./cmd", t.TempDir())
	if err != nil {
		t.Fatalf("build the command: %v", err)
	}
	t.Run("serves and stops on SIGTERM", func(t *testing.T) {
		mark := filepath.Join(t.TempDir(), "term")
		cmd := exec.Command(bin, "-root", catchAll(t), "-addr", "127.0.0.1:0", "-arg", "-dev", "-setting", "ECHO_TERM_FILE="+mark, "-cors-origin", "https://app.example")
		url := runUntilReady(t, cmd)
		resp, body := call(t, http.MethodGet, url+"/x")
		if e := echoed(t, resp, body); !slices.Equal(e.Args, []string{"-dev"}) || !hasEnv(e.Env, `CORS_ALLOWED_ORIGINS=["https://app.example"]`) {
			t.Errorf("handler args %q env %q", e.Args, e.Env)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("exit: %v, want 0", err)
		}
		if _, err := os.Stat(mark); err != nil {
			t.Errorf("the handler did not get SIGTERM: %v", err)
		}
	})
	t.Run("exits 1 with the handler", func(t *testing.T) {
		cmd := exec.Command(bin, "-root", catchAll(t), "-addr", "127.0.0.1:0", "-setting", "ECHO_EXIT_AT_START=3")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "exit status 3") {
			t.Errorf("exit %v, output %q; want 1 naming the handler's exit", err, out)
		}
	})
	t.Run("usage", func(t *testing.T) {
		err := exec.Command(bin, "-addr", "127.0.0.1:0").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("without -root: %v, want exit 2", err)
		}
	})
}

// runUntilReady starts cmd and reads its stderr until "funchost: ready",
// returning the URL it announced; the process is killed at the end of the
// test if still running.
func runUntilReady(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	var url string
	var seen []string
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the command ended before it was ready:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if u, ok := strings.CutPrefix(l, "funchost: listening on "); ok {
				url = u
			}
			if l == "funchost: ready" {
				go func() { // keep the pipe drained
					for range lines {
					}
				}()
				return url
			}
		case <-timeout:
			t.Fatalf("the command was not ready within 60 s:\n%s", strings.Join(seen, "\n"))
		}
	}
}

// logWatch is a slog handler that closes seen when a message is logged.
type logWatch struct {
	msg  string
	seen chan struct{}
	once sync.Once
}

func newLogWatch(msg string) *logWatch { return &logWatch{msg: msg, seen: make(chan struct{})} }

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }

func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message == w.msg {
		w.once.Do(func() { close(w.seen) })
	}
	return nil
}

func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }
