package oautherr_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/oautherr"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        *oautherr.Error
		status     int
		body       string
		retryAfter string
	}{
		{"400 by default", oautherr.New(oautherr.InvalidRequest, "x is required"), http.StatusBadRequest,
			`{"error":"invalid_request","error_description":"x is required"}`, ""},
		{"an empty description is still sent", &oautherr.Error{Code: oautherr.TemporarilyUnavailable}, http.StatusBadRequest,
			`{"error":"temporarily_unavailable","error_description":""}`, ""},
		{"a status of its own", oautherr.New(oautherr.InvalidClient, "no").WithStatus(http.StatusUnauthorized), http.StatusUnauthorized,
			`{"error":"invalid_client","error_description":"no"}`, ""},
		{"an outage", oautherr.Unavailable("try again"), http.StatusServiceUnavailable,
			`{"error":"temporarily_unavailable","error_description":"try again"}`, "5"},
		{"a rate limit, Retry-After rounded up", oautherr.TooManyRequests("slow", 1500*time.Millisecond), http.StatusTooManyRequests,
			`{"error":"slow_down","error_description":"slow"}`, "2"},
		{"a Retry-After under a second is one", oautherr.TooManyRequests("slow", time.Millisecond), http.StatusTooManyRequests,
			`{"error":"slow_down","error_description":"slow"}`, "1"},
		{"a limiter that says no wait still sends one", oautherr.TooManyRequests("slow", 0), http.StatusTooManyRequests,
			`{"error":"slow_down","error_description":"slow"}`, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { oautherr.Write(w, tc.err) }))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(b) != tc.body+"\n" {
				t.Errorf("%d %s; want %d %s", resp.StatusCode, b, tc.status, tc.body)
			}
			h := resp.Header
			if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Retry-After") != tc.retryAfter {
				t.Errorf("headers %v; want Retry-After %q", h, tc.retryAfter)
			}
		})
	}
}

func TestRedirectable(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		oautherr.InvalidRequest: true, oautherr.UnauthorizedClient: true, oautherr.AccessDenied: true,
		oautherr.UnsupportedResponseType: true, oautherr.InvalidScope: true, oautherr.ServerError: true,
		oautherr.TemporarilyUnavailable: true, oautherr.InvalidTarget: true,
		oautherr.InvalidClient: false, oautherr.InvalidGrant: false, oautherr.UnsupportedGrantType: false,
		oautherr.SlowDown: false, oautherr.InvalidClientMetadata: false, oautherr.InvalidToken: false,
	} {
		t.Run(code, func(t *testing.T) {
			if got := oautherr.New(code, "d").Redirectable(); got != want {
				t.Errorf("Redirectable() = %v, want %v", got, want)
			}
		})
	}
}

// TestRedirect: the client's redirect URI keeps its own query and gains
// the error, the state it sent (none when it sent none) and iss.
func TestRedirect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, redirect, state string
		err                   *oautherr.Error
		want                  url.Values
	}{
		{"with state", "http://127.0.0.1:7777/cb", "xyz", oautherr.New(oautherr.AccessDenied, "the user denied access"),
			url.Values{"error": {"access_denied"}, "error_description": {"the user denied access"}, "state": {"xyz"}, "iss": {"https://as.example"}}},
		{"without state", "http://127.0.0.1:7777/cb", "", oautherr.New(oautherr.InvalidScope, "scope must be s"),
			url.Values{"error": {"invalid_scope"}, "error_description": {"scope must be s"}, "iss": {"https://as.example"}}},
		{"without description", "myapp://cb?keep=1", "s", &oautherr.Error{Code: oautherr.TemporarilyUnavailable},
			url.Values{"error": {"temporarily_unavailable"}, "state": {"s"}, "keep": {"1"}, "iss": {"https://as.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			oautherr.Redirect(rec, httptest.NewRequest(http.MethodGet, "/oauth/authorize", nil), tc.redirect, "https://as.example", tc.state, tc.err)
			if rec.Code != http.StatusFound || rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Referrer-Policy") != "no-referrer" {
				t.Fatalf("%d %v", rec.Code, rec.Header())
			}
			u, err := url.Parse(rec.Header().Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Query(); got.Encode() != tc.want.Encode() {
				t.Errorf("query %v; want %v", got, tc.want)
			}
		})
	}
}

func TestErrorUnwrapsItsCause(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp: refused")
	e := &oautherr.Error{Code: oautherr.InvalidClient, Description: "client metadata document could not be fetched", Err: cause}
	if !errors.Is(e, cause) || e.Error() != "invalid_client: client metadata document could not be fetched: dial tcp: refused" {
		t.Errorf("%v", e)
	}
	var target *oautherr.Error
	if !errors.As(errors.Join(errors.New("x"), e), &target) || target != e {
		t.Error("errors.As does not find the error")
	}
}
