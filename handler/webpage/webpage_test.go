package webpage

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBrowserCookie(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		secure bool
		want   string // the Set-Cookie header's start
	}{
		{true, "__Host-mcp-x=v; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Strict"},
		{false, "mcp-x=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"},
	} {
		t.Run(fmt.Sprintf("secure=%v", tc.secure), func(t *testing.T) {
			c := BrowserCookie{Name: "mcp-x", Secure: tc.secure, SameSite: http.SameSiteStrictMode}
			w := httptest.NewRecorder()
			c.Set(w, "v", time.Minute)
			if got := w.Header().Get("Set-Cookie"); got != tc.want {
				t.Errorf("secure=%v: Set-Cookie %q, want %q", tc.secure, got, tc.want)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Cookie", strings.SplitN(tc.want, ";", 2)[0])
			if got := c.Value(r); got != "v" {
				t.Errorf("secure=%v: Value %q, want v", tc.secure, got)
			}
			// The other variant's name is not read: an http cookie cannot
			// stand in for a __Host- one.
			other := BrowserCookie{Name: "mcp-x", Secure: !tc.secure}
			if got := other.Value(r); got != "" {
				t.Errorf("secure=%v: the other name read %q", tc.secure, got)
			}
			w = httptest.NewRecorder()
			c.Clear(w)
			if got := w.Header().Get("Set-Cookie"); !strings.Contains(got, "Max-Age=0") {
				t.Errorf("secure=%v: Clear sent %q", tc.secure, got)
			}
		})
	}
}
