package funchost_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/funchost"
)

var guid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// hopByHop are YARP's hop-by-hop headers that Go's client lets a caller
// send (it writes Transfer-Encoding, and Connection for closing, itself).
var hopByHop = []string{
	"Keep-Alive", "Upgrade", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authentication-Info",
	"Proxy-Authorization", "Proxy-Features", "Proxy-Instruction", "Security-Scheme", "ALPN", "Close",
	"HTTP2-Settings", "Upgrade-Insecure-Requests", "TE", "Alt-Svc",
}

// TestForwarding holds the request the handler receives to YARP's default
// transform, and the answer the caller receives to YARP's response copy.
func TestForwarding(t *testing.T) {
	t.Parallel()
	h := startReady(t, funchost.Options{Root: catchAll(t)})

	header := []string{
		"X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example",
		"X-Forwarded-Prefix", "/evil", "Forwarded", "for=198.51.100.1;host=evil.example",
		"X-Ms-Invocation-Id", "spoofed", "X-Azure-Functions-InvocationId", "spoofed",
		"X-Azure-Functions-HostVersion", "spoofed", "X-Custom", "kept", "Authorization", "Bearer t",
		"Connection", "X-Custom-Hop",
	}
	for _, k := range hopByHop {
		header = append(header, k, "x")
	}
	req := newRequest(t, http.MethodGet, h.URL()+"/items/a%20b%2Fc?x=1&y=%2F&z", nil, header...)
	req.Host = "public.example:8443"
	req.Header["User-Agent"] = []string{""} // send none
	resp, body := send(t, req)
	e := echoed(t, resp, body)

	t.Run("path and query unchanged", func(t *testing.T) {
		if e.EscapedPath != "/items/a%20b%2Fc" || e.Query != "x=1&y=%2F&z" || e.Method != "GET" {
			t.Errorf("handler got %s %s ? %s", e.Method, e.EscapedPath, e.Query)
		}
	})
	t.Run("Host is the handler's address", func(t *testing.T) {
		if e.Host != h.HandlerAddr() {
			t.Errorf("Host %q, want %q", e.Host, h.HandlerAddr())
		}
	})
	t.Run("X-Forwarded headers replaced, not appended", func(t *testing.T) {
		for k, want := range map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "public.example:8443",
		} {
			if got := e.Header.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("%s = %q, want [%q]", k, got, want)
			}
		}
		for _, k := range []string{"X-Forwarded-Prefix", "Forwarded"} {
			if v := e.Header.Values(k); v != nil {
				t.Errorf("%s = %q, want it removed", k, v)
			}
		}
	})
	t.Run("hop-by-hop headers dropped", func(t *testing.T) {
		for _, k := range append(hopByHop, "Connection", "Transfer-Encoding") {
			if v := e.Header.Values(k); v != nil {
				t.Errorf("%s = %q reached the handler", k, v)
			}
		}
	})
	t.Run("the host's headers set", func(t *testing.T) {
		id := e.Header.Get("X-Azure-Functions-InvocationId")
		if !guid.MatchString(id) || e.Header.Get("X-Ms-Invocation-Id") != id || len(e.Header.Values("X-Ms-Invocation-Id")) != 1 {
			t.Errorf("invocation ids %q and %q, want one fresh GUID in both",
				e.Header.Values("X-Azure-Functions-InvocationId"), e.Header.Values("X-Ms-Invocation-Id"))
		}
		if v := e.Header.Values("X-Azure-Functions-HostVersion"); len(v) != 1 || v[0] == "spoofed" || v[0] == "" {
			t.Errorf("X-Azure-Functions-HostVersion = %q, want the host's own", v)
		}
		resp, body := call(t, http.MethodGet, h.URL()+"/again")
		if again := echoed(t, resp, body).Header.Get("X-Ms-Invocation-Id"); again == id {
			t.Errorf("two requests share invocation id %s", id)
		}
	})
	t.Run("other headers kept, nothing of the proxy's own added", func(t *testing.T) {
		if e.Header.Get("X-Custom") != "kept" || e.Header.Get("Authorization") != "Bearer t" {
			t.Errorf("X-Custom %q, Authorization %q: want them as sent", e.Header.Get("X-Custom"), e.Header.Get("Authorization"))
		}
		for _, k := range []string{"User-Agent", "Accept-Encoding"} {
			if v := e.Header.Values(k); v != nil {
				t.Errorf("%s = %q added", k, v)
			}
		}
	})

	t.Run("answer: status and headers through, hop-by-hop dropped", func(t *testing.T) {
		path := "/answer?status=201&h=X-Answer:yes&h=Keep-Alive:timeout%3D1&h=Alt-Svc:h3&h=Proxy-Authenticate:Basic&h=Upgrade-Insecure-Requests:1"
		// The handler does send them: without the stand-in they arrive.
		direct, _ := call(t, http.MethodGet, "http://"+h.HandlerAddr()+path)
		for _, k := range []string{"Keep-Alive", "Alt-Svc", "Proxy-Authenticate"} {
			if direct.Header.Get(k) == "" {
				t.Fatalf("the handler did not send %s; the check below would prove nothing", k)
			}
		}
		resp, _ := call(t, http.MethodGet, h.URL()+path)
		if resp.StatusCode != 201 || resp.Header.Get("X-Answer") != "yes" {
			t.Errorf("answer %d X-Answer %q, want 201 and yes", resp.StatusCode, resp.Header.Get("X-Answer"))
		}
		for _, k := range []string{"Keep-Alive", "Alt-Svc", "Proxy-Authenticate", "Upgrade-Insecure-Requests"} {
			if v := resp.Header.Values(k); v != nil {
				t.Errorf("answer header %s = %q came through", k, v)
			}
		}
	})

	t.Run("bodies with a length and chunked", func(t *testing.T) {
		resp, body := send(t, newRequest(t, http.MethodPost, h.URL()+"/upload", strings.NewReader(strings.Repeat("a", 1000))))
		if e := echoed(t, resp, body); e.BodyLen != 1000 || e.ContentLength != 1000 {
			t.Errorf("handler got %d bytes, Content-Length %d; want 1000 and 1000", e.BodyLen, e.ContentLength)
		}
		resp, body = send(t, newRequest(t, http.MethodPost, h.URL()+"/upload", io.MultiReader(strings.NewReader(strings.Repeat("b", 5000)))))
		if e := echoed(t, resp, body); e.BodyLen != 5000 || e.ContentLength != -1 || strings.Join(e.TransferEncoding, ",") != "chunked" {
			t.Errorf("handler got %d bytes, length %d, %v; want 5000 chunked", e.BodyLen, e.ContentLength, e.TransferEncoding)
		}
	})
}

// TestBodyLimit: a body over the host's limit gets 413, whether it
// announces its length or is chunked, and never reaches the handler.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	byDefault := start(t, funchost.Options{Root: catchAll(t)})
	bySetting := start(t, funchost.Options{Root: catchAll(t), Settings: map[string]string{"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1000"}})
	// A 413 with the body unread closes the connection, and Go's server
	// then lingers 500 ms (its RST avoidance), which Close waits for:
	// closing both stand-ins at once waits that out once.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, h := range []*funchost.Host{byDefault, bySetting} {
			wg.Go(func() { _ = h.Close() })
		}
		wg.Wait()
	})
	t.Run("the default limit, 104857600 bytes", func(t *testing.T) {
		h := waitReady(t, byDefault)
		// Only the announced length is sent: the stand-in must refuse it
		// without reading 100 MiB.
		if got := rawStatus(t, h, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 104857601\r\n\r\n"); got != 413 {
			t.Errorf("Content-Length 104857601: %d, want 413", got)
		}
		if got := rawStatus(t, h, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"); got != 200 {
			t.Errorf("Content-Length 3: %d, want 200", got)
		}
	})
	t.Run("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", func(t *testing.T) {
		h := waitReady(t, bySetting)
		resp, body := send(t, newRequest(t, http.MethodPost, h.URL()+"/at-limit", strings.NewReader(strings.Repeat("a", 1000))))
		if e := echoed(t, resp, body); e.BodyLen != 1000 {
			t.Errorf("1000 bytes: handler got %d", e.BodyLen)
		}
		resp, _ = send(t, newRequest(t, http.MethodPost, h.URL()+"/over-limit", strings.NewReader(strings.Repeat("a", 1001))))
		if resp.StatusCode != 413 {
			t.Errorf("1001 bytes with a length: %d, want 413", resp.StatusCode)
		}
		resp, _ = send(t, newRequest(t, http.MethodPost, h.URL()+"/over-limit-chunked", io.MultiReader(strings.NewReader(strings.Repeat("a", 1001)))))
		if resp.StatusCode != 413 {
			t.Errorf("1001 bytes chunked: %d, want 413", resp.StatusCode)
		}
		for _, l := range handlerLog(t, h) {
			if l == "POST /over-limit" {
				t.Errorf("the handler received %q", l)
			}
		}
	})
}

// rawStatus writes a raw HTTP/1.1 request and returns the answer's status.
func rawStatus(t *testing.T, h *funchost.Host, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStreaming: the handler's answer reaches the caller as it is written.
// The handler sends one line and holds the rest until a second request
// releases it; a stand-in that buffered would never show the first line
// before the release.
func TestStreaming(t *testing.T) {
	t.Parallel()
	h := startReady(t, funchost.Options{Root: catchAll(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := newRequest(t, http.MethodGet, h.URL()+"/stream/1", nil).WithContext(ctx)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v (buffered?)", line, err)
	}
	if resp, _ := call(t, http.MethodGet, h.URL()+"/release/1"); resp.StatusCode != 200 {
		t.Fatalf("release: %d", resp.StatusCode)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "second\n" {
		t.Errorf("rest %q, %v; want the second line", rest, err)
	}
}

// TestHandlerFailures: a handler that drops the connection before
// answering gives the caller a 500; one that breaks off mid-answer gets the
// caller's connection aborted, so the cut answer is not taken for whole.
func TestHandlerFailures(t *testing.T) {
	t.Parallel()
	h := startReady(t, funchost.Options{Root: catchAll(t)})
	t.Run("no answer", func(t *testing.T) {
		resp, body := call(t, http.MethodGet, h.URL()+"/hangup")
		if resp.StatusCode != 500 || body != "" {
			t.Errorf("%d %q, want 500 with no body", resp.StatusCode, body)
		}
	})
	t.Run("answer broken off", func(t *testing.T) {
		resp, err := client.Get(h.URL() + "/breakoff")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("read %q to a clean end; want an error", b)
		}
	})
}
