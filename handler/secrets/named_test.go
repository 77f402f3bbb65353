package secrets_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/entra-mcp/functions-mcp/handler/azuretest"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/secrets"
)

const apiKeyName = "upstream-api-key"

// namedEnv is a Store against the Key Vault stand-in, on a clock the test
// moves, for Secret.
type namedEnv struct {
	*vaultEnv
	store *secrets.Store
	clock *testkit.Clock
	gate  *gate
}

// newNamedEnv builds the Store once the vault holds a sealing key; edit
// adjusts its options.
func newNamedEnv(t *testing.T, edit func(*secrets.Options)) *namedEnv {
	t.Helper()
	e := newVaultEnv(t)
	e.addKey(t, azuretest.VersionAttributes{})
	clock := testkit.NewClock(time.Now())
	g := &gate{next: e.kv.HTTPClient()}
	o := e.options()
	o.Secretless = true
	o.Now = clock.Now
	o.ClientOptions.Transport = g
	if edit != nil {
		edit(&o)
	}
	s, err := secrets.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return &namedEnv{vaultEnv: e, store: s, clock: clock, gate: g}
}

// reads counts the requests Key Vault got for secret name (its value or
// its versions).
func (e *namedEnv) reads(name string) int {
	n := 0
	for _, r := range e.kv.Requests() {
		if r.Path == "/secrets/"+name || strings.HasPrefix(r.Path, "/secrets/"+name+"/") {
			n++
		}
	}
	return n
}

// secret calls Secret, wants value, and checks that it cost wantReads
// more Key Vault requests for name.
func (e *namedEnv) secret(t *testing.T, name, want string, wantReads int) {
	t.Helper()
	before := e.reads(name)
	got, err := e.store.Secret(context.Background(), name)
	if err != nil {
		t.Fatalf("Secret(%q): %v", name, err)
	}
	if got != want {
		t.Errorf("Secret(%q) returned the wrong value (len %d, want len %d)", name, len(got), len(want))
	}
	if n := e.reads(name) - before; n != wantReads {
		t.Errorf("Secret(%q) made %d Key Vault requests, want %d", name, n, wantReads)
	}
}

// failure calls Secret, wants an error, checks that it holds no secret
// value, and returns it.
func (e *namedEnv) failure(t *testing.T, ctx context.Context, name string) error {
	t.Helper()
	v, err := e.store.Secret(ctx, name)
	if err == nil {
		t.Fatalf("Secret(%q) succeeded (len %d), want an error", name, len(v))
	}
	e.noLeak(t, "error", err.Error())
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
	return err
}

// TestSecret runs Secret against the Key Vault stand-in, a fresh vault
// and Store per case.
func TestSecret(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"reads the latest version, trimmed", testSecretReads},
		{"a kept value costs no request", testSecretKept},
		{"an expired value is read again", testSecretExpires},
		{"ForgetSecret makes the next call read afresh", testSecretForget},
		{"ForgetSecret during a read keeps nothing it read", testSecretForgetDuringRead},
		{"concurrent first reads share one request", testSecretSingleFlight},
		{"a caller giving up leaves the shared read going", testSecretCallerGivesUp},
		{"a missing secret is a clear error, not kept", testSecretMissing},
		{"Key Vault answering 503 is an outage", testSecretOutage(azuretest.Unavailable)},
		{"Key Vault closing connections is an outage", testSecretOutage(azuretest.Closed)},
		{"Key Vault too slow is an outage", testSecretTooSlow},
		{"names Key Vault would refuse make no request", testSecretBadNames},
		{"a disabled latest version rolls back to the one before", testSecretDisabledLatest},
		{"an expired or not yet valid latest version is passed over", testSecretUnusableLatest},
		{"no usable version is a clear error", testSecretNoUsableVersion},
		{"an empty value is refused", testSecretEmpty},
		{"at most MaxSecrets values are kept, the oldest read dropped first", testSecretBounded},
	} {
		t.Run(tc.name, tc.run)
	}
}

func testSecretReads(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "old-key-MARKER", azuretest.VersionAttributes{})
	e.set(apiKeyName, "key-MARKER-1\n", azuretest.VersionAttributes{})
	e.secret(t, apiKeyName, "key-MARKER-1", 1)
	e.noLeak(t, "log", e.logs.String())
}

func testSecretKept(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	e.secret(t, apiKeyName, "key-MARKER-1", 1)
	e.clock.Add(secrets.DefaultSecretTTL - time.Second)
	for range 3 {
		e.secret(t, apiKeyName, "key-MARKER-1", 0)
	}
}

func testSecretExpires(t *testing.T) {
	e := newNamedEnv(t, func(o *secrets.Options) { o.SecretTTL = time.Minute })
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	e.secret(t, apiKeyName, "key-MARKER-1", 1)
	e.set(apiKeyName, "key-MARKER-2", azuretest.VersionAttributes{})
	e.clock.Add(59 * time.Second)
	e.secret(t, apiKeyName, "key-MARKER-1", 0)
	e.clock.Add(time.Second)
	e.secret(t, apiKeyName, "key-MARKER-2", 1)
	e.secret(t, apiKeyName, "key-MARKER-2", 0)
}

func testSecretForget(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	e.secret(t, apiKeyName, "key-MARKER-1", 1)
	// Rotated in Key Vault: the kept value is stale until forgotten.
	e.set(apiKeyName, "key-MARKER-2", azuretest.VersionAttributes{})
	e.secret(t, apiKeyName, "key-MARKER-1", 0)
	e.store.ForgetSecret(apiKeyName)
	e.secret(t, apiKeyName, "key-MARKER-2", 1)
	e.secret(t, apiKeyName, "key-MARKER-2", 0)
	e.store.ForgetSecret("never-read") // harmless
}

func testSecretForgetDuringRead(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	release := e.gate.holdAnswers("/secrets/" + apiKeyName + "/")
	done := make(chan string)
	go func() {
		v, _ := e.store.Secret(context.Background(), apiKeyName)
		done <- v
	}()
	// Key Vault has answered with the old value; it has not arrived.
	testkit.WaitFor(t, "the answer held", func() bool { return e.gate.held() == 1 })
	e.set(apiKeyName, "key-MARKER-2", azuretest.VersionAttributes{})
	e.store.ForgetSecret(apiKeyName)
	release()
	if v := <-done; v != "key-MARKER-1" {
		t.Errorf("the read under way returned len %d, want the value it read", len(v))
	}
	e.secret(t, apiKeyName, "key-MARKER-2", 1)
}

func testSecretSingleFlight(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	release := e.gate.hold("/secrets/" + apiKeyName + "/")
	var wg sync.WaitGroup
	var started sync.WaitGroup
	for range 20 {
		started.Add(1)
		wg.Go(func() {
			started.Done()
			v, err := e.store.Secret(context.Background(), apiKeyName)
			if err != nil || v != "key-MARKER-1" {
				t.Errorf("Secret = len %d, %v", len(v), err)
			}
		})
	}
	started.Wait()
	testkit.WaitFor(t, "the read held at the vault", func() bool { return e.gate.held() == 1 })
	time.Sleep(20 * time.Millisecond) // let the other callers reach the wait
	release()
	wg.Wait()
	if n := e.reads(apiKeyName); n != 1 {
		t.Errorf("%d Key Vault requests for 20 concurrent first reads, want 1", n)
	}
}

func testSecretCallerGivesUp(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	release := e.gate.hold("/secrets/" + apiKeyName + "/")
	// The read is held until released, so any deadline runs out during it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := e.failure(t, ctx, apiKeyName)
	// Too slow for the caller is unavailable, not misconfigured.
	if !errors.Is(err, outage.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want an outage and the deadline", err)
	}
	release()
	testkit.WaitFor(t, "the read kept", func() bool {
		return e.reads(apiKeyName) == 1 && e.gate.held() == 1
	})
	e.secret(t, apiKeyName, "key-MARKER-1", 0)
}

func testSecretMissing(t *testing.T) {
	e := newNamedEnv(t, nil)
	err := e.failure(t, context.Background(), "no-such-secret")
	t.Log(err)
	if msg := err.Error(); !strings.Contains(msg, `"no-such-secret"`) || !strings.Contains(msg, "HTTP 404") {
		t.Errorf("err = %q, want the secret's name and the 404", msg)
	}
	if errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("a missing secret is reported as an outage: %v", err)
	}
	// Created since: the next call finds it.
	e.set("no-such-secret", "key-MARKER-late", azuretest.VersionAttributes{})
	e.secret(t, "no-such-secret", "key-MARKER-late", 1)
}

// testSecretOutage: Key Vault failing in mode is an outage, and the next
// call after it recovers reads it (the failure was not kept).
func testSecretOutage(mode int) func(*testing.T) {
	return func(t *testing.T) {
		e := newNamedEnv(t, nil)
		e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
		e.kv.SetMode(mode)
		err := e.failure(t, context.Background(), apiKeyName)
		t.Log(err)
		if !errors.Is(err, outage.ErrUnavailable) || outage.Dependency(err) != secrets.Dependency {
			t.Errorf("err = %v (dependency %q), want a Key Vault outage", err, outage.Dependency(err))
		}
		if !strings.Contains(err.Error(), `"`+apiKeyName+`"`) {
			t.Errorf("err = %q does not name the secret", err)
		}
		e.kv.SetMode(azuretest.Healthy)
		e.secret(t, apiKeyName, "key-MARKER-1", 1)
	}
}

func testSecretTooSlow(t *testing.T) {
	// The request is held until the test ends, so the timeout runs out
	// there. (The same timeout bounds each start-up attempt, which must
	// not run out on a loaded machine: 200 ms, waited out once.)
	e := newNamedEnv(t, func(o *secrets.Options) { o.Retry.AttemptTimeout = 200 * time.Millisecond })
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	release := e.gate.hold("/secrets/" + apiKeyName + "/")
	defer release()
	err := e.failure(t, context.Background(), apiKeyName)
	t.Log(err)
	if !errors.Is(err, outage.ErrUnavailable) || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("err = %v, want a Key Vault outage that says it timed out", err)
	}
	if n := e.gate.held(); n == 0 {
		t.Error("the read never reached the vault: the timeout ran out elsewhere")
	}
}

func testSecretBadNames(t *testing.T) {
	e := newNamedEnv(t, nil)
	for name, bad := range map[string]string{
		"empty":      "",
		"underscore": "upstream_api_key",
		"space":      "upstream api key",
		"dot":        "upstream.key",
		"slash":      "a/versions",
		"non-ASCII":  "schlüssel",
		"128 chars":  strings.Repeat("k", 128),
		"a value":    "cs~pasted.value+where/the=name-goes",
	} {
		t.Run(name, func(t *testing.T) {
			before := e.kv.RequestCount()
			err := e.failure(t, context.Background(), bad)
			if n := e.kv.RequestCount() - before; n != 0 {
				t.Errorf("%d Key Vault requests for a bad name", n)
			}
			if bad != "" && strings.Contains(err.Error(), bad) {
				t.Errorf("err = %q repeats the bad name", err)
			}
		})
	}
	// The longest name Key Vault takes is asked for.
	long := strings.Repeat("k", 127)
	e.set(long, "key-MARKER-long", azuretest.VersionAttributes{})
	e.secret(t, long, "key-MARKER-long", 1)
}

func testSecretDisabledLatest(t *testing.T) {
	e := newNamedEnv(t, nil)
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	bad := e.set(apiKeyName, "key-MARKER-bad", azuretest.VersionAttributes{})
	e.kv.SetEnabled(apiKeyName, bad, false)
	// The latest (refused), the versions, the one before.
	e.secret(t, apiKeyName, "key-MARKER-1", 3)
}

func testSecretUnusableLatest(t *testing.T) {
	e := newNamedEnv(t, nil)
	now := e.clock.Now()
	e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	e.set(apiKeyName, "key-MARKER-expired", azuretest.VersionAttributes{Expires: now.Add(-time.Minute)})
	e.set(apiKeyName, "key-MARKER-future", azuretest.VersionAttributes{NotBefore: now.Add(time.Hour)})
	// The latest (served, but not valid now), the versions in two
	// pages, the newest valid one.
	e.secret(t, apiKeyName, "key-MARKER-1", 4)
}

func testSecretNoUsableVersion(t *testing.T) {
	e := newNamedEnv(t, nil)
	v := e.set(apiKeyName, "key-MARKER-1", azuretest.VersionAttributes{})
	e.kv.SetEnabled(apiKeyName, v, false)
	err := e.failure(t, context.Background(), apiKeyName)
	if !strings.Contains(err.Error(), `"`+apiKeyName+`" has no enabled, unexpired and currently valid version`) || errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("err = %v", err)
	}
}

func testSecretEmpty(t *testing.T) {
	e := newNamedEnv(t, nil)
	// Not through e.set: blank is no value to look for in errors.
	e.kv.SetSecret(apiKeyName, " \n")
	err := e.failure(t, context.Background(), apiKeyName)
	if !strings.Contains(err.Error(), `"`+apiKeyName+`" is empty`) || errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("err = %v", err)
	}
}

func testSecretBounded(t *testing.T) {
	e := newNamedEnv(t, func(o *secrets.Options) { o.MaxSecrets = 2 })
	for _, n := range []string{"key-a", "key-b", "key-c"} {
		e.set(n, "value-MARKER-"+n, azuretest.VersionAttributes{})
	}
	e.secret(t, "key-a", "value-MARKER-key-a", 1)
	e.clock.Add(time.Second)
	e.secret(t, "key-b", "value-MARKER-key-b", 1)
	e.clock.Add(time.Second)
	e.secret(t, "key-c", "value-MARKER-key-c", 1) // drops key-a
	e.secret(t, "key-b", "value-MARKER-key-b", 0)
	e.secret(t, "key-c", "value-MARKER-key-c", 0)
	e.secret(t, "key-a", "value-MARKER-key-a", 1)
}

// gate is the Store's transport to the stand-in; it can hold the requests
// for one path, or Key Vault's answers to them, until released, to keep a
// read under way while the test looks.
type gate struct {
	next policy.Transporter

	mu      sync.Mutex
	path    string
	answers bool // hold the answer, not the request
	release chan struct{}
	count   atomic.Int32 // requests (or answers) held, counted on arrival
}

// hold holds the requests for path from now on; the returned function
// lets them (and later ones) through.
func (g *gate) hold(path string) (release func()) { return g.start(path, false) }

// holdAnswers lets the requests for path reach Key Vault but holds its
// answers.
func (g *gate) holdAnswers(path string) (release func()) { return g.start(path, true) }

func (g *gate) start(path string, answers bool) func() {
	ch := make(chan struct{})
	g.mu.Lock()
	g.path, g.answers, g.release = path, answers, ch
	g.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

// held is the number of requests (or answers) that have reached the held
// path.
func (g *gate) held() int { return int(g.count.Load()) }

func (g *gate) Do(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	path, answers, ch := g.path, g.answers, g.release
	g.mu.Unlock()
	if ch == nil || r.URL.Path != path {
		return g.next.Do(r)
	}
	var resp *http.Response
	var err error
	if answers {
		if resp, err = g.next.Do(r); err != nil {
			return nil, err
		}
	}
	g.count.Add(1)
	select {
	case <-ch:
	case <-r.Context().Done():
		if resp != nil {
			resp.Body.Close()
		}
		return nil, r.Context().Err()
	}
	if answers {
		return resp, nil
	}
	return g.next.Do(r)
}
