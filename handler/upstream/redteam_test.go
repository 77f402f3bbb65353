package upstream

// Red-team tests: each proves a fault found in review against real HTTP
// servers on loopback. See the commit messages for the findings.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// redFixture is a federation in front of the devupstream behind a front
// the test writes.
type redFixture struct {
	up    *devupstream.Server
	fed   *Federation
	clock *clock
}

// newRedFixture fronts the devupstream (upOpts) with front (nil: none) and
// builds a federation with one entry for it, adjusted by edit.
func newRedFixture(t *testing.T, upOpts devupstream.Options, front func(w http.ResponseWriter, r *http.Request, next http.Handler), opts Options, edit func(*config.Upstream)) *redFixture {
	t.Helper()
	f := &redFixture{up: devupstream.New(upOpts), clock: &clock{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if front != nil {
			front(w, r, f.up)
			return
		}
		f.up.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u := config.Upstream{Name: "notes", URL: srv.URL + "/mcp", Auth: config.UpstreamAuth{Mode: config.UpstreamNone}, Tools: rules}
	if edit != nil {
		edit(&u)
	}
	f.fed = newFederationOf(t, opts, f.clock, u)
	return f
}

// newFederationOf checks the entries as the configuration loader does and
// builds a federation of them.
func newFederationOf(t *testing.T, opts Options, c *clock, ups ...config.Upstream) *Federation {
	t.Helper()
	text, err := json.Marshal(map[string]any{"upstreams": ups})
	if err != nil {
		t.Fatal(err)
	}
	checked, err := config.ParseUpstreams(text, authz.DefaultTable())
	if err != nil {
		t.Fatal(err)
	}
	opts.Upstreams = checked
	opts.Now = c.now
	fed, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fed.Close)
	return fed
}

// toolOf is the listed tool name, after the lists were prepared as ctx.
func (f *redFixture) toolOf(t *testing.T, ctx context.Context, name string) tools.Tool {
	t.Helper()
	f.fed.Prepare(ctx, "")
	_, l := f.fed.Components()
	for _, tool := range l.Tools {
		if tool.Def.Name == name {
			return tool
		}
	}
	t.Fatalf("%s is not listed", name)
	return tools.Tool{}
}

// run calls tool as the caller in ctx.
func run(ctx context.Context, tool tools.Tool, args map[string]any) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = tool.Def.Name
	req.Params.Arguments = args
	return tool.Run(ctx, tools.Call{Principal: entra.FromContext(ctx), Request: req})
}

// rpcMethod peeks at a request's JSON-RPC method and id, leaving the body
// readable.
func rpcMethod(r *http.Request) (method string, id json.RawMessage, params json.RawMessage) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(body, &req)
	return req.Method, req.ID, req.Params
}

func toolCalled(params json.RawMessage) string {
	var p struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(params, &p)
	return p.Name
}

// TestRedteamCallerCausedFailuresDoNotOpenTheBreaker: the breaker is there
// for upstream outages. A caller who hangs up, or whose arguments the
// upstream's front refuses with a 4xx, or who asks for more than the cap,
// got an answer (or gave up) - none of it says the upstream is down. Any
// caller allowed one upstream tool must not be able to pause it for
// everyone by doing so five times in a row.
func TestRedteamCallerCausedFailuresDoNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	var mode atomic.Value
	mode.Store("")
	atUpstream := make(chan struct{}, 1) // a slow call reached it: its caller may hang up now
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		method, _, params := rpcMethod(r)
		if method == "tools/call" {
			switch mode.Load().(string) {
			case "slow":
				select {
				case atUpstream <- struct{}{}:
				default:
				}
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
					return
				}
			case "413":
				// What a gateway in front of an upstream answers to a body
				// it will not take; the upstream never saw it.
				http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
				return
			case "400":
				http.Error(w, "bad request: "+toolCalled(params), http.StatusBadRequest)
				return
			case "huge":
				// The whole answer to a broad query: more than the cap.
				_, id, _ := rpcMethod(r)
				w.Header().Set("Content-Type", "application/json")
				_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s"}]}}`, id, strings.Repeat("x", 128<<10))
				return
			}
		}
		next.ServeHTTP(w, r)
	}
	for _, c := range []struct{ name, mode string }{
		{"the caller hangs up", "slow"},
		{"a gateway refuses the request with 413", "413"},
		{"the upstream answers 400 in plain text", "400"},
		{"the caller asks for more than the answer cap", "huge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newRedFixture(t, devupstream.Options{}, front, Options{}, func(u *config.Upstream) { u.MaxResponseBytes = 64 << 10 })
			tool := f.toolOf(t, user("u1"), "notes.list_notes")
			mode.Store(c.mode)
			for i := 0; i < breakerThreshold+1; i++ {
				ctx, cancel := context.WithCancel(user("u1"))
				if c.mode == "slow" {
					go hangUpAt(ctx, cancel, atUpstream)
				}
				_, _ = run(ctx, tool, nil)
				cancel()
			}
			if b := f.fed.Health()[0].Breaker; b != "closed" {
				t.Errorf("breaker %s after %d calls of one caller: every caller of the upstream is now refused", b, breakerThreshold+1)
			}
			mode.Store("")
			if _, err := run(user("u2"), tool, nil); err != nil {
				t.Errorf("another user's good call: %s", failureText(err))
			}
		})
	}
}

// heldRead fronts the upstream: a list_notes call (a slow read, answered)
// is held until answer is called, so a test can do what it tests while the
// read is in flight; add_note is refused as an overloaded upstream would.
func heldRead() (front func(http.ResponseWriter, *http.Request, http.Handler), arrived <-chan struct{}, answer func()) {
	in, out := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	answer = func() { once.Do(func() { close(out) }) }
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		method, _, params := rpcMethod(r)
		if method == "tools/call" {
			switch toolCalled(params) {
			case devupstream.ListNotesTool:
				select {
				case in <- struct{}{}:
				case <-r.Context().Done():
					return
				}
				select {
				case <-out:
				case <-r.Context().Done():
					return
				}
			case devupstream.AddNoteTool:
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	}, in, answer
}

// hangUpAt cancels the call of ctx once it reached the upstream (a value
// on at), or sees it end without.
func hangUpAt(ctx context.Context, cancel context.CancelFunc, at <-chan struct{}) {
	select {
	case <-at:
	case <-ctx.Done():
	}
	cancel()
}

// TestRedteamOneFailedCallDoesNotCancelAnother: a user's calls to one
// upstream share a connection. When one of them fails, or the pool evicts
// the connection, the connection is closed - and closing mcp-go's
// transport cancels every request still in flight on it: the user's other
// call, which the upstream may well have carried out, fails as
// "unreachable" and counts against the breaker.
func TestRedteamOneFailedCallDoesNotCancelAnother(t *testing.T) {
	t.Parallel()
	t.Run("another call of the same user fails", func(t *testing.T) {
		front, arrived, answer := heldRead()
		f := newRedFixture(t, devupstream.Options{}, front, Options{}, nil)
		t.Cleanup(answer) // before the server closes, which waits for the held call
		slow, failing := f.toolOf(t, user("u1"), "notes.list_notes"), f.toolOf(t, user("u1"), "notes.add_note")
		done := make(chan error, 1)
		go func() {
			_, err := run(user("u1"), slow, nil)
			done <- err
		}()
		select {
		case <-arrived:
		case err := <-done:
			t.Fatalf("the slow call ended before it reached the upstream: %v", err)
		}
		if _, err := run(user("u1"), failing, map[string]any{"text": "x"}); outcome(t, err) != OutcomeUnavailable {
			t.Fatalf("the failing call: %v", err)
		}
		answer()
		if err := <-done; err != nil {
			t.Fatalf("the slow call, which the upstream answered, failed: %s (%v)", failureText(err), err)
		}
	})
	t.Run("the pool evicts the connection", func(t *testing.T) {
		front, arrived, answer := heldRead()
		f := newRedFixture(t, devupstream.Options{}, front, Options{}, nil)
		t.Cleanup(answer) // before the server closes, which waits for the held call
		slow := f.toolOf(t, user("u1"), "notes.list_notes")
		who := f.toolOf(t, user("u1"), "notes.whoami")
		f.fed.servers[0].pool.max = 1 // 2000 in production: as if 2000 others came
		done := make(chan error, 1)
		go func() {
			_, err := run(user("u1"), slow, nil)
			done <- err
		}()
		select {
		case <-arrived:
		case err := <-done:
			t.Fatalf("the slow call ended before it reached the upstream: %v", err)
		}
		if _, err := run(user("u2"), who, nil); err != nil {
			t.Fatal(err)
		}
		answer()
		if err := <-done; err != nil {
			t.Fatalf("u1's call, which the upstream answered, failed when u2 took the last pool slot: %s (%v)", failureText(err), err)
		}
	})
}

// fakeOBO mints "token-for-<oid>" for everyone but the users it refuses,
// as Entra refuses users whose tenant never consented.
type fakeOBO struct {
	refuse map[string]bool
	calls  atomic.Int64
}

func (o *fakeOBO) Token(ctx context.Context, scopes []string) (string, error) {
	o.calls.Add(1)
	p := entra.FromContext(ctx)
	if o.refuse[p.ObjectID] {
		return "", &obo.ConsentError{Scopes: scopes, Code: 65001}
	}
	return "token-for-" + p.ObjectID, nil
}

func (o *fakeOBO) Forget(context.Context, *entra.Principal, []string) error { return nil }

func verifiedUser(oid string) context.Context {
	return entra.NewVerifiedContext(context.Background(), &entra.Principal{TenantID: "tid", ObjectID: oid, Kind: entra.CallerUser}, "caller-token-"+oid)
}

// TestRedteamOneUsersRefusedExchangeDoesNotHideTheUpstream: an
// on-behalf-of upstream is listed as whoever asks first - any signed-in
// person, whether or not their grants allow any of its tools. A user for
// whom Entra refuses the exchange (a guest whose tenant never consented,
// a user Conditional Access stops) makes the listing "fail", and for
// retryFailedListing nobody else's request lists it: such a user calling
// tools/list every 15 s keeps the upstream's tools from everyone, and
// /health reports the upstream unavailable although it is fine.
func TestRedteamOneUsersRefusedExchangeDoesNotHideTheUpstream(t *testing.T) {
	t.Parallel()
	tokens := &fakeOBO{refuse: map[string]bool{"outsider": true}}
	f := newRedFixture(t, devupstream.Options{}, nil, Options{OnBehalfOf: tokens}, func(u *config.Upstream) {
		u.Auth = config.UpstreamAuth{Mode: config.UpstreamOnBehalfOf, Scopes: []string{"api://notes/Notes.Read"}}
	})
	f.fed.Prepare(verifiedUser("outsider"), "")
	testkit.WaitFor(t, "the condition", func() bool { return tokens.calls.Load() > 0 && !f.fed.servers[0].isRefreshing() })

	f.fed.Prepare(verifiedUser("colleague"), "")
	if _, l := f.fed.Components(); len(l.Tools) == 0 {
		t.Errorf("a colleague Entra would serve gets no upstream tools because another user's exchange was refused (health: %+v)", f.fed.Health()[0])
	}
	if h := f.fed.Health()[0]; h.ListError != "" {
		t.Errorf("health blames the upstream for one user's refused exchange: %q", h.ListError)
	}
}

// isRefreshing reports whether a list fetch is running.
func (s *server) isRefreshing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshing
}

// TestRedteamCredentialNeverEchoedBack: an upstream that quotes what it
// was sent - its JSON-RPC error message, or the body of an error page -
// must not get the header secret (or a token) into the caller's error or
// into the log line (Failure.Err is what the endpoint logs).
func TestRedteamCredentialNeverEchoedBack(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-api-key-value"
	secrets := &mapSecrets{m: map[string]string{"notes-key": secret}}
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		method, id, params := rpcMethod(r)
		if method == "tools/call" {
			got := r.Header.Get("X-Api-Key")
			switch toolCalled(params) {
			case devupstream.ListNotesTool:
				w.Header().Set("Content-Type", "application/json")
				_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32602,"message":"key %s has no access to this project"}}`, id, got)
				return
			case devupstream.AddNoteTool:
				// A debugging proxy's error page that dumps the request.
				http.Error(w, "upstream error; request headers: X-Api-Key: "+got+"; RAW-BODY-MARKER", http.StatusBadGateway)
				return
			}
		}
		next.ServeHTTP(w, r)
	}
	f := newRedFixture(t, devupstream.Options{}, front, Options{Secrets: secrets}, func(u *config.Upstream) {
		u.Auth = config.UpstreamAuth{Mode: config.UpstreamHeader, Header: "X-Api-Key", Secret: "notes-key"}
	})
	for _, name := range []string{"notes.list_notes", "notes.add_note"} {
		_, err := run(user("u1"), f.toolOf(t, user("u1"), name), map[string]any{"text": "x"})
		var fail *tools.Failure
		if !errors.As(err, &fail) {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(fail.Text, secret) {
			t.Errorf("%s: the caller is told the secret: %q", name, fail.Text)
		}
		if strings.Contains(fail.Err.Error(), secret) || strings.Contains(fail.Err.Error(), "RAW-BODY-MARKER") {
			t.Errorf("%s: the log line gets the secret or the upstream's raw body: %q", name, fail.Err.Error())
		}
	}
}

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + l.Addr().String() + "/mcp"
}

// TestRedteamFirstListingsAreFetchedTogether: a tools/list before any
// upstream was listed waits for the lists - one upstream after another,
// each up to its timeout (10 s at most), so four stuck upstreams hold the
// first tools/list of every instance for 40 s instead of 10.
func TestRedteamFirstListingsAreFetchedTogether(t *testing.T) {
	t.Parallel()
	// One after another they would take 10 timeouts; together, one. The
	// limit of 5 leaves a loaded machine four timeouts to spare.
	const timeout = 100 * time.Millisecond
	var ups []config.Upstream
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		ups = append(ups, config.Upstream{Name: name, URL: blackHole(t), Auth: config.UpstreamAuth{Mode: config.UpstreamNone},
			Tools: rules, Timeout: config.Duration(timeout)})
	}
	fed := newFederationOf(t, Options{}, &clock{}, ups...)
	start := time.Now()
	fed.Prepare(user("u1"), "")
	if d := time.Since(start); d > 5*timeout {
		t.Fatalf("tools/list waited %v for %d stuck upstreams of %v timeout each", d.Round(time.Millisecond), len(ups), timeout)
	}
}

// TestRedteamOnBehalfOfListsAreNotSharedBetweenUsers: an on-behalf-of
// upstream answers every request as the user whose token it got, and
// what it lists can be that user's own: their documents as resources,
// their projects in tool descriptions. The federation lists it once, as
// whoever asked first, and serves that one list to every caller: Bob is
// shown the names, URIs and descriptions of Alice's resources.
func TestRedteamOnBehalfOfListsAreNotSharedBetweenUsers(t *testing.T) {
	t.Parallel()
	tokens := &fakeOBO{}
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		method, id, _ := rpcMethod(r)
		if method == "resources/list" {
			who := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer token-for-")
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resources":[{"uri":"docs://%s/salary-review.docx","name":"%s's salary review"}]}}`, id, who, who)
			return
		}
		next.ServeHTTP(w, r)
	}
	f := newRedFixture(t, devupstream.Options{}, front, Options{OnBehalfOf: tokens}, func(u *config.Upstream) {
		u.Auth = config.UpstreamAuth{Mode: config.UpstreamOnBehalfOf, Scopes: []string{"api://notes/Notes.Read"}}
		u.Resources = []config.UpstreamRule{{Match: "docs://*", Permission: "tasks.read"}}
	})
	f.fed.Prepare(verifiedUser("alice"), "")
	f.fed.Prepare(verifiedUser("bob"), "")
	// What the endpoint serves Bob: the federation has one list for all.
	_, l := f.fed.Components()
	for _, r := range l.Resources {
		if strings.Contains(r.Def.URI, "alice") {
			t.Errorf("Bob is served Alice's resource %q (%q)", r.Def.URI, r.Def.Name)
		}
	}
}

// TestRedteamAListingKeepsOnlyWhatCanBeServed: maxResponseBytes caps one
// page, but a listing is up to maxListPages pages, and listAll keeps every
// item it decodes - schemas of any size - until build drops the ones over
// maxSchemaBytes. An upstream whose pages each carry one tool with a
// schema just under the cap makes one listing hold maxListPages times the
// cap (1.25 GiB at the 64 MiB maximum) at once.
func TestRedteamAListingKeepsOnlyWhatCanBeServed(t *testing.T) {
	t.Parallel()
	// Any cap whose page holds a schema over maxToolBytes shows the fault
	// (20 such schemas are far over the limit); each page is decoded
	// several times, so the test's CPU grows with the cap.
	const maxResponse = 256 << 10
	big := `{"type":"object","description":"` + strings.Repeat("x", maxResponse-4096) + `"}`
	front := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		method, id, params := rpcMethod(r)
		if method == "tools/list" {
			var p struct {
				Cursor string `json:"cursor"`
			}
			_ = json.Unmarshal(params, &p)
			var n int
			_, _ = fmt.Sscanf(p.Cursor, "%d", &n)
			next := ""
			if n+1 < maxListPages {
				next = fmt.Sprint(n + 1)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"list_%d","inputSchema":%s}],"nextCursor":%q}}`, id, n, big, next)
			return
		}
		next.ServeHTTP(w, r)
	}
	f := newRedFixture(t, devupstream.Options{}, front, Options{}, func(u *config.Upstream) { u.MaxResponseBytes = maxResponse })
	l := f.fetched(t)
	kept := 0
	for _, ut := range l.tools {
		kept += len(ut.InputSchema)
	}
	if kept > maxSchemaBytes*maxListPages {
		t.Fatalf("one listing held %d bytes of schemas no tool may have (%d tools decoded, each over %d bytes)", kept, len(l.tools), maxSchemaBytes)
	}
}
