package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// callResult is a tools/call answer.
type callResult struct {
	Result struct {
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		StructuredContent map[string]any `json:"structuredContent"`
		Meta              map[string]any `json:"_meta"`
	} `json:"result"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func callTool(t *testing.T, s *Server, p *entra.Principal, name string, args map[string]any) callResult {
	t.Helper()
	return decodeCall(t, name, post(s, p, toolCall(t, name, args)))
}

// toolCall is the tools/call request for name with args.
func toolCall(t *testing.T, name string, args map[string]any) rpcCase {
	t.Helper()
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": name, "arguments": args}})
	if err != nil {
		t.Fatal(err)
	}
	return rpcCase{body: string(b)}
}

// decodeCall reads the answer to a tools/call of name.
func decodeCall(t *testing.T, name string, rec *httptest.ResponseRecorder) callResult {
	t.Helper()
	var r callResult
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
	}
	return r
}

func (r callResult) text() string {
	if len(r.Result.Content) == 0 {
		return ""
	}
	return r.Result.Content[0].Text
}

// revoker ends sessions by deleting a key, so that it meets the stalled
// Redis the way the real one does.
type revoker struct{ rdb *redis.Client }

func (r revoker) RevokeUser(ctx context.Context, tid, oid string) (int, error) {
	n, err := r.rdb.Del(ctx, "test:sessions:"+tid+"."+oid).Result()
	return int(n), store.MarkUnavailable(err)
}

// TestUnknownOutcomeMessages runs every Redis tool against a Redis whose
// replies are held past the client's timeout: the writes may have run, so
// only the reads may say "try again", and each write says how to check.
func TestUnknownOutcomeMessages(t *testing.T) {
	t.Parallel()
	rdb, proxy := storetest.Behind(t, storetest.Redis(t), 200*time.Millisecond)
	logs := &testkit.SyncBuffer{}
	s, err := New(Options{Tools: tools.All(tools.Deps{Tasks: taskstore.New(rdb), Sessions: revoker{rdb}}),
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	p := principalWith("Task.All", "MCPServer.Admin")
	// A loaded machine can take the first script past the 200 ms timeout:
	// retried as a client would, with the same idempotency key.
	var created callResult
	for range 5 {
		created = callTool(t, s, p, "create_task", map[string]any{"title": "before the stall", "idempotency_key": "before"})
		if !created.Result.IsError {
			break
		}
	}
	id, _ := created.Result.StructuredContent["id"].(string)
	if created.Result.IsError || id == "" {
		t.Fatalf("create before the stall: %+v", created)
	}
	proxy.Stall(time.Minute)
	defer proxy.Stall(0)

	cases := []struct {
		tool string
		args map[string]any
		want []string // all of these, and "try again" only for reads
		read bool
	}{
		{"list_tasks", nil, []string{"Try again in a moment"}, true},
		{"get_task", map[string]any{"id": id}, []string{"Try again in a moment"}, true},
		{"search_tasks", map[string]any{"query": "x"}, []string{"Try again in a moment"}, true},
		{"create_task", map[string]any{"title": "during", "idempotency_key": "k1"}, []string{"may have been created", "list_tasks", "same idempotency_key will not create a second one"}, false},
		{"update_task", map[string]any{"id": id, "notes": "n"}, []string{"may or may not have been made", "same arguments is safe"}, false},
		{"complete_task", map[string]any{"id": id}, []string{"may or may not have been made", "same arguments is safe"}, false},
		{"delete_task", map[string]any{"id": id}, []string{"may or may not have been deleted", "get_task", "same id is safe"}, false},
		{"revoke_sessions", map[string]any{"oid": p.ObjectID}, []string{"may or may not have been made", "same arguments is safe"}, false},
	}
	// Each call waits out the client's timeout on a connection of its own
	// while every reply is held, so they wait it out together, not one
	// after another.
	var calls []func() *httptest.ResponseRecorder
	for _, c := range cases {
		req := toolCall(t, c.tool, c.args)
		calls = append(calls, func() *httptest.ResponseRecorder { return post(s, p, req) })
	}
	answers := testkit.Together(calls...)
	for i, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			r := decodeCall(t, c.tool, answers[i])
			msg := r.text()
			if !r.Result.IsError {
				t.Fatalf("succeeded against a stalled Redis: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if retry := strings.Contains(strings.ToLower(msg), "try again"); retry != c.read {
				t.Errorf("%q: says try again = %v, want %v", msg, retry, c.read)
			}
			// The operator's log names what was unavailable.
			if want := `"tool":"` + c.tool + `","dependency":"redis"`; !strings.Contains(logs.String(), want) {
				t.Errorf("no log line with %s:\n%s", want, logs)
			}
		})
	}
}

// fixedLimiter is a Limiter whose answer the test sets.
type fixedLimiter struct{ err error }

func (f fixedLimiter) Allow(context.Context, string) (bool, time.Duration, error) {
	return f.err == nil, time.Second, f.err
}

func TestToolCallRateLimit(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	s, err := New(Options{
		Tools:   testTools(),
		Logger:  logger,
		Limiter: ratelimit.New(storetest.Redis(t), "tools", 1, time.Minute, 2, ratelimit.WithLogger(logger)),
	})
	if err != nil {
		t.Fatal(err)
	}
	limited := principalWith("Task.Read")
	other := principalWith("Task.Read")
	other.ObjectID = "33333333-3333-4333-8333-333333333333"
	elsewhere := principalWith("Task.Read")
	elsewhere.TenantID = "44444444-4444-4444-8444-444444444444"

	for i := range 2 {
		if r := callTool(t, s, limited, "list_things", nil); r.Result.IsError || r.Error != nil {
			t.Fatalf("call %d within the burst: %+v", i, r)
		}
	}
	for range 2 {
		r := callTool(t, s, limited, "get_thing", nil)
		secs, _ := r.Result.Meta["retryAfterSeconds"].(float64)
		if !r.Result.IsError || secs < 1 || secs > 60 || r.text() != "Too many tool calls: retry in "+strconv.Itoa(int(secs))+" seconds." {
			t.Fatalf("over the limit: %+v", r.Result)
		}
	}

	t.Run("other callers are not limited", func(t *testing.T) {
		for _, p := range []*entra.Principal{other, elsewhere} {
			if r := callTool(t, s, p, "list_things", nil); r.Result.IsError {
				t.Errorf("%s.%s: %q", p.TenantID, p.ObjectID, r.text())
			}
		}
	})
	t.Run("tools/list is not limited", func(t *testing.T) {
		for _, body := range []string{
			`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,                        // pre-encoded
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":""}}`, // mcp-go
		} {
			if got := names(t, post(s, limited, rpcCase{body: body}).Body.Bytes()); strings.Join(got, ",") != "get_thing,list_things,whoami" {
				t.Errorf("%s: %v", body, got)
			}
		}
	})
	t.Run("a denied tool still looks unknown", func(t *testing.T) {
		denied := post(s, limited, rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"make_thing","arguments":{}}}`})
		unknown := post(s, limited, rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"make_thingx","arguments":{}}}`})
		if denied.Code != unknown.Code || denied.Body.String() != strings.ReplaceAll(unknown.Body.String(), "make_thingx", "make_thing") {
			t.Errorf("denied %d %s\nunknown %d %s", denied.Code, denied.Body, unknown.Code, unknown.Body)
		}
	})
	t.Run("audited, counted and warned once", func(t *testing.T) {
		if n := strings.Count(logs.String(), `"outcome":"rate_limited"`); n != 2 {
			t.Errorf("%d audit lines with outcome rate_limited, want 2", n)
		}
		warning := `"level":"WARN","msg":"rate limit reached","limit":"tools","key":"` + limited.TenantID + "." + limited.ObjectID + `"`
		if n := strings.Count(logs.String(), `"msg":"rate limit reached"`); n != 1 || !strings.Contains(logs.String(), warning) {
			t.Errorf("want one warning naming the caller, for one caller in one window:\n%s", logs)
		}
		if n := s.metrics.Snapshot().RateLimited; n != 2 {
			t.Errorf("rate_limited_calls = %d, want 2", n)
		}
	})
}

// TestLimiterDownLetsCallsThrough: when the limiter cannot count (Redis
// down), tools still run, and the operator is told once.
func TestLimiterDownLetsCallsThrough(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	s, err := New(Options{
		Tools:   testTools(),
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
		Limiter: fixedLimiter{err: errors.Join(outage.ErrUnavailable, errors.New("dial refused"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := callTool(t, s, principalWith(), "whoami", nil); r.Result.IsError {
			t.Fatalf("limiter down: %q", r.text())
		}
	}
	if n := strings.Count(logs.String(), `"level":"WARN","msg":"tool-call rate limit failed`); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs)
	}
}
