package httpx_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// answer is an endpoint's answer.
type answer = testkit.Reply

// call sends a request to h over real HTTP.
func call(t *testing.T, h http.Handler, contentType, body string, header http.Header) answer {
	t.Helper()
	url, client := serve(t, h)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return testkit.Do(t, client, req)
}

// serve serves h on a loopback port until the test ends, and returns its
// URL and a client for it.
func serve(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, h)
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return "http://" + ln.Addr().String(), &http.Client{Transport: transport}
}

// echo reads the body with b and answers it back, or the refusal.
func echo(b httpx.Body) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, refusal := b.Read(w, r)
		if refusal != nil {
			oautherr.Write(w, refusal)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"got": string(body)})
	})
}

func TestBodyRead(t *testing.T) {
	t.Parallel()
	form := httpx.Body{MediaType: "application/x-www-form-urlencoded", Max: 16, WrongTypeStatus: http.StatusBadRequest}
	registration := httpx.Body{MediaType: "application/json", Max: 16, Code: oautherr.InvalidClientMetadata}
	for _, tc := range []struct {
		name        string
		b           httpx.Body
		contentType string
		body        string
		status      int
		code        string
	}{
		{"the media type", form, "application/x-www-form-urlencoded", "a=1", http.StatusOK, ""},
		{"with a charset", form, "application/x-www-form-urlencoded; charset=utf-8", "a=1", http.StatusOK, ""},
		{"the media type in upper case", registration, "Application/JSON", "{}", http.StatusOK, ""},
		{"exactly the cap", form, "application/x-www-form-urlencoded", strings.Repeat("a", 16), http.StatusOK, ""},
		{"one byte over the cap", form, "application/x-www-form-urlencoded", strings.Repeat("a", 17),
			http.StatusRequestEntityTooLarge, oautherr.InvalidRequest},
		{"over the cap, with the body's code", registration, "application/json", strings.Repeat("a", 100),
			http.StatusRequestEntityTooLarge, oautherr.InvalidClientMetadata},
		{"another media type, with the configured status", form, "application/json", "{}", http.StatusBadRequest, oautherr.InvalidRequest},
		{"another media type, 415 by default", registration, "text/plain", "{}", http.StatusUnsupportedMediaType, oautherr.InvalidClientMetadata},
		{"no content type", registration, "", "{}", http.StatusUnsupportedMediaType, oautherr.InvalidClientMetadata},
		{"a malformed content type", registration, "application/json; =", "{}", http.StatusUnsupportedMediaType, oautherr.InvalidClientMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, echo(tc.b), tc.contentType, tc.body, nil)
			if a.Status != tc.status || a.OAuth.Error != tc.code {
				t.Fatalf("%d %s; want %d %q", a.Status, a.Body, tc.status, tc.code)
			}
			if tc.code == "" && !strings.Contains(a.Body, `"got":"`+tc.body+`"`) {
				t.Errorf("body %s; want %q echoed", a.Body, tc.body)
			}
			if tc.code != "" && a.OAuth.Description == "" {
				t.Error("a refusal without a description")
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	a := call(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusCreated, map[string]int{"n": 1})
	}), "", "", nil)
	if a.Status != http.StatusCreated || a.Body != "{\"n\":1}\n" {
		t.Errorf("%d %q", a.Status, a.Body)
	}
	if a.Header.Get("Content-Type") != "application/json" || a.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", a.Header)
	}
}

// TestAllow: the rate guard counts per client address, as clientip decided
// it, and answers 429 slow_down with Retry-After over the limit.
func TestAllow(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	l := ratelimit.New(rdb, "httpx-test", 1, time.Hour, 2)
	h := clientip.Policy{Header: clientip.DefaultHeader}.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if httpx.Allow(w, r, l) {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
	for i := range 2 {
		if a := call(t, h, "", "", from("192.0.2.1")); a.Status != http.StatusNoContent {
			t.Fatalf("request %d within the burst: %d %s", i+1, a.Status, a.Body)
		}
	}
	a := call(t, h, "", "", from("192.0.2.1"))
	if a.Status != http.StatusTooManyRequests || a.OAuth.Error != oautherr.SlowDown || a.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %v %s", a.Status, a.Header, a.Body)
	}
	t.Run("another address has its own budget", func(t *testing.T) {
		if a := call(t, h, "", "", from("192.0.2.2")); a.Status != http.StatusNoContent {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
	})
	t.Run("an IPv6 address counts by its /48", func(t *testing.T) {
		for _, addr := range []string{"2001:db8:1:1::1", "2001:db8:1:2::1"} {
			if a := call(t, h, "", "", from(addr)); a.Status != http.StatusNoContent {
				t.Fatalf("%s: %d %s", addr, a.Status, a.Body)
			}
		}
		if a := call(t, h, "", "", from("2001:db8:1:ffff::1")); a.Status != http.StatusTooManyRequests {
			t.Fatalf("a third address in the same /48: %d %s", a.Status, a.Body)
		}
	})
}
