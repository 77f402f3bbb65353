// Package testkit holds the small helpers several packages' tests need: a
// clock the test moves, a log sink safe for background goroutines, a
// getenv over a map, polls for background work (dev mode's tokens file
// among it), a JWT payload reader, HTTP answers and the fields of a form in
// them, a check that no part of a token leaked, and keys (a sealing key
// ring, an RSA key for the stand-ins). Only tests import it, and of ours it
// imports only seal, which imports nothing of ours, so any package's tests
// can.
package testkit

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/seal"
)

// Clock is a clock the test moves; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// SyncBuffer is a log sink safe for concurrent writes.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Env is a getenv that reads m, for code that takes its environment as a
// function.
func Env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// WaitFor polls cond until it holds, or fails the test after ten seconds:
// for background goroutines the test cannot join.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := poll(10*time.Second, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Eventually is WaitFor for a check that says what it saw: it polls check
// until it returns nil, or fails the test after ten seconds with check's
// last error. check runs on the test's goroutine, so it may fail the test
// itself to stop at once.
func Eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	EventuallyWithin(t, 10*time.Second, what, check)
}

// EventuallyWithin is Eventually with a deadline of d, for what takes
// longer than ten seconds on a loaded machine (a staged binary starting).
func EventuallyWithin(t testing.TB, d time.Duration, what string, check func() error) {
	t.Helper()
	if err := poll(d, check); err != nil {
		t.Fatalf("timed out after %v waiting for %s: last saw %v", d, what, err)
	}
}

var errNotYet = errors.New("not yet")

// poll calls check until it returns nil, and returns check's last error
// once d has passed. It waits 5 ms between the first calls, growing to
// 20 ms, so a quick condition is seen at once and a slow one is not
// hammered.
func poll(d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	wait := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Claims decodes a JWT's payload without checking its signature, or
// fails the test: for tests that look at what a token an issuer made says.
func Claims(t testing.TB, token string) map[string]any {
	t.Helper()
	m, err := DecodeClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// DecodeClaims is Claims for goroutines, which must not fail the test
// themselves.
func DecodeClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT: %.20s…", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	return m, nil
}

// RSAKey is one RSA-2048 key for the whole test binary, made on first use:
// stand-ins that each made their own spent most of some packages' test
// time in key generation. Tests that need distinct keys make their own.
var RSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// Reply is an HTTP answer as the tests of HTTP endpoints look at it, with
// the members of an OAuth error body when it is one.
type Reply struct {
	Status int
	Header http.Header
	Body   string
	OAuth  struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
}

// Do sends req with c and reads the whole answer, or fails the test.
func Do(t testing.TB, c *http.Client, req *http.Request) Reply {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", req.Method, req.URL, err)
	}
	r := Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	_ = json.Unmarshal(b, &r.OAuth)
	return r
}

// Get is Do for a GET of url.
func Get(t testing.TB, c *http.Client, url string) Reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Do(t, c, req)
}

// GetJSON gets url with c and, when the answer is a 200, decodes its body
// into v or fails the test. It returns the answer, for its status.
func GetJSON(t testing.TB, c *http.Client, url string, v any) Reply {
	t.Helper()
	r := Get(t, c, url)
	if r.Status == http.StatusOK {
		if err := json.Unmarshal([]byte(r.Body), v); err != nil {
			t.Fatalf("GET %s: %v in %q", url, err, r.Body)
		}
	}
	return r
}

// hiddenField is a form field an HTML page of ours carries: a name and a
// value that is not empty.
var hiddenField = regexp.MustCompile(`name="([^"]+)" value="([^"]+)"`)

// FormFields returns the fields of the given names that an HTML page's
// forms carry with a value (a consent page's request and csrf_token); a
// name the page repeats has its last value.
func FormFields(page string, names ...string) url.Values {
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		if slices.Contains(names, m[1]) {
			form.Set(m[1], m[2])
		}
	}
	return form
}

// NoTokenIn fails the test if any part of a JWT of tokens (its header,
// payload or signature) appears in s, which where names: for logs and
// stored records that must hold no token, not even in part. Parts of 16
// characters or fewer are not looked for; no JWT has one.
func NoTokenIn(t testing.TB, where, s string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 16 && strings.Contains(s, part) {
				t.Errorf("%s holds part of a token", where)
			}
		}
	}
}

// DevTokens waits up to d for the tokens file dev mode writes once it
// listens (its -dev-tokens flag; written whole, by a rename) and returns
// the tokens by demo user key, or fails the test with what it last read.
// alive, when not nil, runs each round on the test's goroutine: it fails
// the test itself when dev mode has stopped, rather than the wait running
// out.
func DevTokens(t testing.TB, d time.Duration, path string, alive func()) map[string]string {
	t.Helper()
	var tokens map[string]string
	EventuallyWithin(t, d, "dev mode's tokens in "+path, func() error {
		if alive != nil {
			alive()
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tokens = nil
		if err := json.Unmarshal(b, &tokens); err != nil {
			return err
		}
		if tokens["all"] == "" {
			return fmt.Errorf("no token for the all user in %.100q", b)
		}
		return nil
	})
	return tokens
}

// Ring is a sealing key ring with one fresh key, for a test's own stores.
func Ring(t testing.TB) *seal.Ring {
	t.Helper()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := seal.ParseKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// Together runs each f at once and returns what each returned, in order:
// for cases that each wait out a timeout, which then cost one timeout of
// the test's time, not one each.
func Together[T any](fs ...func() T) []T {
	out := make([]T, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() { out[i] = f() })
	}
	wg.Wait()
	return out
}
