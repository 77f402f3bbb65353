package upstream

// Checks made in the red-team review that found nothing wrong, kept as
// regression tests.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// TestCheckRedirectsCarryNoCredential: an upstream that redirects gets its
// 3xx back as a failed answer; the credential never reaches the target.
func TestCheckRedirectsCarryNoCredential(t *testing.T) {
	t.Parallel()
	var reached atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		http.Error(w, "no", http.StatusInternalServerError)
	})}
	go func() { _ = target.Serve(l) }()
	t.Cleanup(func() { _ = target.Close() })
	var redirect atomic.Bool
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if redirect.Load() {
			http.Redirect(w, r, "http://"+l.Addr().String()+"/mcp", http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	}
	secrets := &mapSecrets{m: map[string]string{"k": "secret-value"}}
	f := newRedFixture(t, devupstream.Options{}, front, Options{Secrets: secrets}, func(u *config.Upstream) {
		u.Auth = config.UpstreamAuth{Mode: config.UpstreamHeader, Header: "X-Api-Key", Secret: "k"}
	})
	tool := f.toolOf(t, user("u1"), "notes.list_notes")
	redirect.Store(true)
	if _, err := run(user("u1"), tool, nil); err == nil {
		t.Fatal("a redirect was taken for an answer")
	}
	if reached.Load() != 0 {
		t.Fatal("a redirect was followed")
	}
}

// TestCheckHostileStreams: server-to-client requests and notifications on
// an SSE answer are not relayed (mcp-go answers the requests "method not
// found" itself) and the answer still arrives; a stream that never ends is
// cut at the timeout, one that grows past the cap at the cap.
func TestCheckHostileStreams(t *testing.T) {
	t.Parallel()
	var mode atomic.Value
	mode.Store("")
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		method, id, _ := rpcMethod(r)
		if method == "" && r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted) // our answers to its requests
			return
		}
		if method != "tools/call" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		switch mode.Load().(string) {
		case "requests":
			for i := range 20 {
				_, _ = fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n", 1000+i)
				_, _ = fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"x\"}}\n\n")
			}
			_, _ = fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}\n\n", id)
		case "endless":
			for {
				if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
					return
				}
				fl.Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		case "growing":
			_, _ = fmt.Fprint(w, "data: ")
			chunk := strings.Repeat("x", 64<<10)
			for range 1000 {
				if _, err := fmt.Fprint(w, chunk); err != nil {
					return
				}
				fl.Flush()
			}
		}
	}
	f := newRedFixture(t, devupstream.Options{}, front, Options{}, func(u *config.Upstream) {
		u.Timeout = config.Duration(500 * time.Millisecond)
		u.MaxResponseBytes = 1 << 20
	})
	tool := f.toolOf(t, user("u1"), "notes.list_notes")

	mode.Store("requests")
	if res, err := run(user("u1"), tool, nil); err != nil || toolstest.Text(res) != "ok" {
		t.Errorf("requests and notifications on the stream: %v %v", res, err)
	}
	// The endless stream waits out the timeout, so it gets an upstream of
	// its own with a short one, and everything before the stream is done
	// beforehand with time to spare: the timeout goes to the stream alone.
	mode.Store("endless")
	const short = 100 * time.Millisecond
	endless := newRedFixture(t, devupstream.Options{}, front, Options{}, func(u *config.Upstream) {
		u.Timeout = config.Duration(short)
		u.MaxResponseBytes = 1 << 20
	})
	start := time.Now()
	if _, err := run(user("u1"), endless.readyTool(t, "u1", "notes.list_notes"), nil); outcome(t, err) != OutcomeTimeout || time.Since(start) > 2*time.Second {
		t.Errorf("endless stream: %v after %v", err, time.Since(start))
	}
	mode.Store("growing")
	if _, err := run(user("u1"), tool, nil); outcome(t, err) != OutcomeBadAnswer || !strings.Contains(failureText(err), "1048576 bytes") {
		t.Errorf("growing stream: %v", err)
	}
}

// TestCheckForgottenSessionsDoNotLoop: an upstream that answers 404 to
// every request of a session costs a bounded number of requests per call.
func TestCheckForgottenSessionsDoNotLoop(t *testing.T) {
	t.Parallel()
	var hits, forget atomic.Int64
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		hits.Add(1)
		if forget.Load() == 1 && r.Header.Get("Mcp-Session-Id") != "" {
			http.Error(w, "unknown session", http.StatusNotFound)
			return
		}
		next.ServeHTTP(w, r)
	}
	f := newRedFixture(t, devupstream.Options{Sessions: true}, front, Options{}, nil)
	tool := f.toolOf(t, user("u1"), "notes.list_notes")
	forget.Store(1)
	before := hits.Load()
	if _, err := run(user("u1"), tool, nil); err == nil {
		t.Fatal("a call on sessions the upstream keeps forgetting worked")
	}
	if n := hits.Load() - before; n > 6 {
		t.Fatalf("one call made %d requests", n)
	}
}

// fetched is what f's upstream lists, fetched without the upstream's own
// timeout.
func (f *redFixture) fetched(t *testing.T) listing {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := f.fed.servers[0].fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// readyTool is the named tool of f's upstream with oid's connection to it
// initialised, both done without the upstream's timeout: for a test whose
// timeout is meant for what the call does after.
func (f *redFixture) readyTool(t *testing.T, oid, name string) tools.Tool {
	t.Helper()
	s := f.fed.servers[0]
	l := f.fetched(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, release, err := s.pool.get("tid." + oid) // the key do uses for user(oid)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := c.init(ctx); err != nil {
		t.Fatal(err)
	}
	built, _ := s.build(l)
	for _, tool := range built.Tools {
		if tool.Def.Name == name {
			return tool
		}
	}
	t.Fatalf("%s is not listed", name)
	return tools.Tool{}
}
