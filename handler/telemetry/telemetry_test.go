package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

const (
	testIKey        = "11111111-2222-3333-4444-555555555555"
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	testParentSpan  = "00f067aa0ba902b7"
	testTraceparent = "00-" + testTraceID + "-" + testParentSpan + "-01"
	secretToken     = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
)

func newTestClient(t *testing.T, in *ingestion, opts Options) *Client {
	t.Helper()
	if opts.ConnectionString == "" {
		opts.ConnectionString = "InstrumentationKey=" + testIKey + ";IngestionEndpoint=" + in.srv.URL + "/;"
	}
	opts.BaseURL = "https://mcp.example.com"
	opts.RoleName = "func-mcp"
	opts.Version = "1.2.3"
	// A long interval: the tests prove Flush sends what is buffered.
	opts.MaxBatchInterval = time.Minute
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if !c.Enabled() {
		t.Fatal("client not enabled")
	}
	return c
}

func flush(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// TestCorrelatedRequest drives one HTTP request through Middleware that
// calls Redis, an outgoing HTTP API, records an event and an exception,
// and checks every item the ingestion stand-in received.
func TestCorrelatedRequest(t *testing.T) {
	t.Parallel()
	in := newIngestion(t)
	c := newTestClient(t, in, Options{})

	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(c.RedisHook(mr.Addr()))

	// An Entra stand-in: the dependency type comes from the caller's map.
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant"}`)
	}))
	t.Cleanup(entra.Close)
	entraHost := strings.TrimPrefix(entra.URL, "http://")
	hc := &http.Client{Transport: c.Transport(nil, map[string]string{entraHost: TypeEntra})}

	mux := http.NewServeMux()
	mux.HandleFunc("/auth/exchange", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		time.Sleep(20 * time.Millisecond) // a measurable request duration
		if err := rdb.Set(ctx, "code:{abc}", "sealed-value-SECRET", time.Minute).Err(); err != nil {
			t.Errorf("redis SET: %v", err)
		}
		if err := rdb.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("redis GET: %v", err)
		}
		pipe := rdb.TxPipeline()
		pipe.Incr(ctx, "n")
		pipe.Expire(ctx, "n", time.Minute)
		if _, err := pipe.Exec(ctx); err != nil {
			t.Errorf("pipeline: %v", err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, entra.URL+"/tenant/oauth2/v2.0/token?client_secret=SECRET", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("token call: %v", err)
		} else {
			resp.Body.Close()
		}
		c.Event(ctx, "exchange", map[string]string{
			"tid": "tenant-1", "oid": "user-1",
			"access_token": secretToken, // must be dropped by name
			"note":         "Bearer " + secretToken,
		})
		err = &url.Error{Op: "Post", URL: "https://login.example/token?code=SECRET", Err: errors.New("boom")}
		c.Exception(ctx, fmt.Errorf("redeem: %w", err), map[string]string{"route": "exchange"})
		w.WriteHeader(http.StatusBadGateway)
	})
	srv := httptest.NewServer(c.Middleware(mux))
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/auth/exchange?code=SECRET", strings.NewReader("{}"))
	req.Header.Set("traceparent", testTraceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}

	flush(t, c)
	posts, envs := in.snapshot()

	for _, p := range posts {
		if p.Path != "/v2/track" {
			t.Errorf("posted to %q, want /v2/track", p.Path)
		}
		if p.Authorization != "" {
			t.Errorf("instrumentation-key mode sent Authorization %q", p.Authorization)
		}
		for _, secret := range []string{"SECRET", secretToken, "eyJ"} {
			if strings.Contains(p.Body, secret) {
				t.Errorf("payload contains %q:\n%s", secret, p.Body)
			}
		}
	}
	for _, e := range envs {
		if e.IKey != testIKey {
			t.Errorf("iKey %q", e.IKey)
		}
		if e.Data.BaseData.Name == "connect" {
			// go-redis dials with a context of its own: an operation of its own.
			continue
		}
		if got := e.Tags["ai.operation.id"]; got != testTraceID {
			t.Errorf("%s: operation id %q, want the traceparent's trace id", e.Data.BaseType, got)
		}
		if e.Tags["ai.cloud.role"] != "func-mcp" || e.Tags["ai.application.ver"] != "1.2.3" {
			t.Errorf("%s: role/version tags %v", e.Data.BaseType, e.Tags)
		}
	}

	reqs := find(envs, "RequestData")
	if len(reqs) != 1 {
		t.Fatalf("%d request items, want 1", len(reqs))
	}
	r := reqs[0]
	rd := r.Data.BaseData
	if !strings.HasSuffix(r.Name, ".Request") || !strings.Contains(r.Name, strings.ReplaceAll(testIKey, "-", "")) {
		t.Errorf("envelope name %q", r.Name)
	}
	if rd.Name != "POST /auth/exchange" || r.Tags["ai.operation.name"] != "POST /auth/exchange" {
		t.Errorf("request name %q / operation name %q", rd.Name, r.Tags["ai.operation.name"])
	}
	if rd.URL != "https://mcp.example.com/auth/exchange" {
		t.Errorf("request url %q", rd.URL)
	}
	if rd.ResponseCode != "502" || rd.Success == nil || *rd.Success {
		t.Errorf("request code %q success %v", rd.ResponseCode, rd.Success)
	}
	if d := parseDuration(t, rd.Duration); d < 20*time.Millisecond || d > 5*time.Second {
		t.Errorf("request duration %v", d)
	}
	if r.Tags["ai.operation.parentId"] != testParentSpan {
		t.Errorf("request parent %q, want the traceparent's parent id", r.Tags["ai.operation.parentId"])
	}
	if len(rd.ID) != 16 {
		t.Errorf("request id %q is not a span id", rd.ID)
	}
	requestID := rd.ID

	deps := find(envs, "RemoteDependencyData")
	byName := map[string]baseData{}
	connects := 0
	for _, d := range deps {
		if d.Data.BaseData.Name == "connect" {
			if d.Data.BaseData.Type != TypeRedis || d.Data.BaseData.Target != mr.Addr() || !*d.Data.BaseData.Success {
				t.Errorf("connect item %+v", d.Data.BaseData)
			}
			connects++
			continue
		}
		byName[d.Data.BaseData.Name] = d.Data.BaseData
		if d.Tags["ai.operation.parentId"] != requestID {
			t.Errorf("dependency %q parent %q, want request id %q", d.Data.BaseData.Name, d.Tags["ai.operation.parentId"], requestID)
		}
	}
	if connects == 0 {
		t.Error("no Redis connect item")
	}
	for name, want := range map[string]struct {
		typ, code string
		ok        bool
	}{
		"SET":                             {TypeRedis, "OK", true},
		"GET":                             {TypeRedis, "nil", true},
		"PIPELINE MULTI INCR EXPIRE EXEC": {TypeRedis, "OK", true},
		"POST /tenant/oauth2/v2.0/token":  {TypeEntra, "400", false},
	} {
		t.Run(name, func(t *testing.T) {
			d, ok := byName[name]
			if !ok {
				t.Errorf("no dependency %q; have %v", name, keys(byName))
				return
			}
			if d.Type != want.typ || d.ResultCode != want.code || d.Success == nil || *d.Success != want.ok {
				t.Errorf("dependency %q: type %q code %q success %v", name, d.Type, d.ResultCode, *d.Success)
			}
			if parseDuration(t, d.Duration) <= 0 {
				t.Errorf("dependency %q: duration %q", name, d.Duration)
			}
		})
	}
	if d := byName["SET"]; d.Target != mr.Addr() {
		t.Errorf("redis target %q", d.Target)
	}
	if d := byName["POST /tenant/oauth2/v2.0/token"]; d.Target != entraHost || d.Data != entra.URL+"/tenant/oauth2/v2.0/token" {
		t.Errorf("http dependency target %q data %q", d.Target, d.Data)
	}

	events := find(envs, "EventData")
	if len(events) != 1 {
		t.Fatalf("%d events", len(events))
	}
	ev := events[0]
	if ev.Data.BaseData.Name != "exchange" || ev.Tags["ai.operation.parentId"] != requestID {
		t.Errorf("event %q parent %q", ev.Data.BaseData.Name, ev.Tags["ai.operation.parentId"])
	}
	if p := ev.Data.BaseData.Properties; p["tid"] != "tenant-1" || p["oid"] != "user-1" || p["note"] != "Bearer [redacted]" {
		t.Errorf("event properties %v", p)
	} else if _, ok := p["access_token"]; ok {
		t.Error("access_token property recorded")
	}

	exs := find(envs, "ExceptionData")
	if len(exs) != 1 {
		t.Fatalf("%d exceptions", len(exs))
	}
	ex := exs[0].Data.BaseData
	if exs[0].Tags["ai.operation.parentId"] != requestID || len(ex.Exceptions) != 1 {
		t.Fatalf("exception %+v", exs[0])
	}
	if got := ex.Exceptions[0]; got.TypeName != "*fmt.wrapError" || !strings.Contains(got.Message, `Post "https://login.example/token": boom`) || !got.HasFullStack {
		t.Errorf("exception details %+v", got)
	}
	if ex.Properties["route"] != "exchange" {
		t.Errorf("exception properties %v", ex.Properties)
	}
}

func keys(m map[string]baseData) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// fakeCredential stands in for Entra: it hands out a fixed token and
// remembers the scopes asked for.
type fakeCredential struct {
	token string
	calls atomic.Int32
	mu    sync.Mutex
	scope []string
}

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.scope = append(f.scope, o.Scopes...)
	f.mu.Unlock()
	return azcore.AccessToken{Token: f.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestEntraAuthenticatedIngestion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, audience, wantScope string
	}{
		{"public cloud", "", "https://monitor.azure.com//.default"},
		{"audience", ";AADAudience=https://monitor.azure.us/", "https://monitor.azure.us/.default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newIngestion(t)
			cred := &fakeCredential{token: "entra-token-" + strings.Repeat("x", 20)}
			c := newTestClient(t, in, Options{
				ConnectionString:     "instrumentationkey=" + testIKey + ";ingestionendpoint=" + in.srv.URL + tc.audience,
				AuthenticationString: "Authorization=AAD;ClientId=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
				Credential:           cred,
				MaxBatchSize:         1, // several posts, one token
			})
			for i := range 3 {
				c.Event(context.Background(), fmt.Sprintf("e%d", i), nil)
			}
			flush(t, c)
			posts, envs := in.snapshot()
			if len(envs) != 3 || len(posts) < 2 {
				t.Fatalf("%d envelopes in %d posts", len(envs), len(posts))
			}
			for _, p := range posts {
				if p.Path != "/v2.1/track" {
					t.Errorf("posted to %q, want /v2.1/track", p.Path)
				}
				if p.Authorization != "Bearer "+cred.token {
					t.Errorf("Authorization %q", p.Authorization)
				}
				if strings.Contains(p.Body, cred.token) {
					t.Error("token inside the payload")
				}
			}
			if n := cred.calls.Load(); n != 1 {
				t.Errorf("GetToken called %d times, want 1 (cached)", n)
			}
			if cred.scope[0] != tc.wantScope {
				t.Errorf("scope %q, want %q", cred.scope[0], tc.wantScope)
			}
		})
	}
}

func TestRefusedIngestionIsLogged(t *testing.T) {
	t.Parallel()
	in := newIngestion(t)
	in.status = http.StatusForbidden // no Monitoring Metrics Publisher role
	var logs bytes.Buffer
	cred := &fakeCredential{token: "entra-token-must-not-be-logged"}
	c := newTestClient(t, in, Options{
		AuthenticationString: "Authorization=AAD",
		Credential:           cred,
		Logger:               slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	c.Event(context.Background(), "e", nil)
	flush(t, c)
	if !strings.Contains(logs.String(), `"msg":"telemetry post refused","status":403`) {
		t.Errorf("no refusal logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), cred.token) {
		t.Error("token in the logs")
	}
}

func TestFlushDeliversEverything(t *testing.T) {
	t.Parallel()
	in := newIngestion(t)
	c := newTestClient(t, in, Options{MaxBatchSize: 7})
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				c.Event(context.Background(), fmt.Sprintf("g%d-%d", g, i), nil)
			}
		}()
	}
	wg.Wait()
	flush(t, c)
	if _, envs := in.snapshot(); len(envs) != 500 {
		t.Fatalf("%d envelopes after Flush, want 500", len(envs))
	}
	// After Flush items are dropped, not a panic in the SDK.
	c.Event(context.Background(), "late", nil)
	c.Request(context.Background(), RequestItem{Name: "GET /late"})
	flush(t, c) // a second Flush is harmless
}

func TestFlushBoundedByContext(t *testing.T) {
	t.Parallel()
	in := newIngestion(t)
	in.hold = make(chan struct{})
	defer close(in.hold)
	c := newTestClient(t, in, Options{})
	c.Event(context.Background(), "stuck", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Flush(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush error %v, want deadline exceeded", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("Flush took %v", time.Since(start))
	}
}

func TestMiddlewareStatusFlushAndPanic(t *testing.T) {
	t.Parallel()
	in := newIngestion(t)
	c := newTestClient(t, in, Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Error("ResponseWriter lost http.Flusher")
			return
		}
		io.WriteString(w, "a")
		f.Flush()
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("kaput") })
	mux.HandleFunc("/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	// The app's recoverer sits inside Middleware and reports the panic.
	recoverer := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					c.Exception(r.Context(), v, nil)
					w.WriteHeader(http.StatusInternalServerError)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(c.Middleware(recoverer(mux)))
	t.Cleanup(srv.Close)

	inv := "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
	for _, path := range []string{"/stream", "/panic", "/tasks/42?x=1", "/nowhere"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if path == "/panic" {
			req.Header.Set(InvocationIDHeader, inv)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end: the handler (and Middleware's record) is done
		// only when the whole answer has been sent.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	flush(t, c)
	_, envs := in.snapshot()
	got := map[string]envelope{}
	for _, e := range find(envs, "RequestData") {
		got[e.Data.BaseData.Name] = e
	}
	for name, code := range map[string]string{
		"GET /stream": "200", "GET /panic": "500", "GET /tasks/{id}": "401", "GET /nowhere": "404",
	} {
		t.Run(name, func(t *testing.T) {
			e, ok := got[name]
			if !ok {
				t.Errorf("no request %q in %v", name, slices.Collect(maps.Keys(got)))
				return
			}
			if e.Data.BaseData.ResponseCode != code {
				t.Errorf("%s: code %s, want %s", name, e.Data.BaseData.ResponseCode, code)
			}
		})
	}
	// Without traceparent the invocation id is the operation id.
	p := got["GET /panic"]
	if want := "aaaaaaaabbbbccccddddeeeeeeeeeeee"; p.Tags["ai.operation.id"] != want || p.Data.BaseData.Properties["InvocationId"] != strings.ToLower(inv) {
		t.Errorf("panic request tags %v props %v", p.Tags, p.Data.BaseData.Properties)
	}
	if _, ok := p.Tags["ai.operation.parentId"]; ok {
		t.Errorf("root request has a parent: %v", p.Tags)
	}
	exs := find(envs, "ExceptionData")
	if len(exs) != 1 || exs[0].Data.BaseData.Exceptions[0].Message != "kaput" ||
		exs[0].Tags["ai.operation.id"] != p.Tags["ai.operation.id"] || exs[0].Tags["ai.operation.parentId"] != p.Data.BaseData.ID {
		t.Errorf("panic exception %+v", exs)
	}
}

// A panic that no one recovers still leaves a request item (a 500) and
// keeps propagating.
func TestMiddlewareUnrecoveredPanic(t *testing.T) {
	t.Parallel()
	in := newIngestion(t)
	c := newTestClient(t, in, Options{})
	h := c.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	}()
	flush(t, c)
	_, envs := in.snapshot()
	if r := find(envs, "RequestData"); len(r) != 1 || r[0].Data.BaseData.ResponseCode != "500" {
		t.Fatalf("requests %+v", r)
	}
}

func TestDisabledClient(t *testing.T) {
	c, err := New(Options{})
	if err != nil || c.Enabled() {
		t.Fatalf("New(no connection string) = %v, %v", c.Enabled(), err)
	}
	var nilClient *Client
	for _, c := range []*Client{c, nilClient, {}} {
		h := http.NotFoundHandler()
		if got := c.Middleware(h); fmt.Sprint(got) != fmt.Sprint(h) {
			t.Error("disabled Middleware wrapped the handler")
		}
		if c.Transport(nil, nil) != nil || c.Transport(http.DefaultTransport, nil) != http.DefaultTransport {
			t.Error("disabled Transport wrapped the transport")
		}
		ctx := context.Background()
		c.Request(ctx, RequestItem{})
		c.Dependency(ctx, DependencyItem{})
		c.Event(ctx, "e", map[string]string{"k": "v"})
		c.Exception(ctx, errors.New("x"), nil)
		if err := c.Flush(ctx); err != nil {
			t.Error(err)
		}
	}

	ctx := context.Background()
	tid, oid := "t", "o"
	boom := errors.New("boom")
	start := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		c.Request(ctx, RequestItem{Name: "POST /mcp", URL: "/mcp", Start: start, Duration: time.Millisecond, StatusCode: 200, Success: true})
		c.Dependency(ctx, DependencyItem{Type: TypeRedis, Target: "r", Name: "GET", Start: start, Success: true})
		c.Event(ctx, "tool.denied", map[string]string{"tid": tid, "oid": oid, "tool": "delete_task"})
		c.Exception(ctx, boom, nil)
	})
	if allocs != 0 {
		t.Fatalf("disabled client allocates %v per call set", allocs)
	}
}

func BenchmarkDisabledRequest(b *testing.B) {
	c, _ := New(Options{})
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	ctx := r.Context()
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
		c.Request(ctx, RequestItem{Name: "POST /mcp", Start: start, StatusCode: 200, Success: true})
		c.Event(ctx, "tool.allowed", map[string]string{"tid": "t", "oid": "o", "tool": "whoami"})
	}
}

func BenchmarkEnabledRequest(b *testing.B) {
	// An endpoint that accepts without decoding: the benchmark measures
	// the request path, not the stand-in.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	c, err := New(Options{ConnectionString: "InstrumentationKey=" + testIKey + ";IngestionEndpoint=" + srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("traceparent", testTraceparent)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Flush(ctx)
}
