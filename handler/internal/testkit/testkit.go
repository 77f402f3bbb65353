// Package testkit holds the small helpers several packages' tests need: a
// clock the test moves, a log sink safe for background goroutines, a
// getenv over a map, a poll for background work, a JWT payload reader, HTTP
// answers, and keys (a sealing key ring, an RSA key for the stand-ins). Only
// tests import it, and of ours it imports only seal, which imports nothing
// of ours, so any package's tests can.
package testkit

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
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
