package devidp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// noRedirect is a plain-HTTP client that shows redirects instead of
// following them.
func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// authQuery is a valid authorize query; pairs override it ("" deletes).
func authQuery(s *Server, pairs ...string) url.Values {
	f := newFlow()
	q := url.Values{
		"client_id": {s.ClientID()}, "response_type": {"code"}, "redirect_uri": {testRedirect},
		"scope": {"openid profile offline_access " + s.Scope()}, "state": {"st"}, "nonce": {"n"},
		"code_challenge": {f.challenge}, "code_challenge_method": {"S256"},
	}
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			q.Del(pairs[i])
		} else {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	return q
}

func TestAuthorizePage(t *testing.T) {
	t.Parallel()
	s := startSignIn(t, Options{})
	page := s.AuthorizeURL() + "?" + authQuery(s).Encode()
	resp := testkit.Get(t, noRedirect(), page)
	body := resp.Body
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET page: %d %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'self' http://127.0.0.1:7071 http://127.0.0.1:* http://localhost:*;", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	// The one inline style is the one the CSP's hash allows.
	style := regexp.MustCompile(`(?s)<style>(.*)</style>`).FindStringSubmatch(body)
	if style == nil {
		t.Fatal("no style element")
	}
	sum := sha256.Sum256([]byte(style[1]))
	if !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Errorf("CSP %q does not allow the page's style", csp)
	}
	for _, banned := range []string{"<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "style=\""} {
		if strings.Contains(body, banned) {
			t.Errorf("page contains %q", banned)
		}
	}
	if regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
		t.Error("page has an event handler attribute")
	}
	for _, u := range DemoUsers() {
		if !strings.Contains(body, `name="user" value="`+u.Key+`"`) || !strings.Contains(body, u.Name) {
			t.Errorf("page lacks a button for %s", u.Key)
		}
	}
	if !strings.Contains(body, `name="cancel"`) || !strings.Contains(body, `<form method="post">`) {
		t.Error("page lacks the cancel button or the self-posting form")
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q", h, got)
		}
	}

	// The HTTPS listener serves the same page, as Entra's one host does.
	hs, err := s.HTTPClient().Get(s.Authority() + "/oauth2/v2.0/authorize?" + authQuery(s).Encode())
	if err != nil {
		t.Fatal(err)
	}
	hs.Body.Close()
	if hs.StatusCode != http.StatusOK {
		t.Errorf("HTTPS page: %d", hs.StatusCode)
	}
	// The plain-HTTP listener serves nothing else.
	for _, p := range []string{"/" + s.TenantID() + "/v2.0/.well-known/openid-configuration", "/" + s.TenantID() + "/oauth2/v2.0/token"} {
		if resp := testkit.Get(t, noRedirect(), strings.Replace(s.AuthorizeURL(), "/"+s.TenantID()+"/oauth2/v2.0/authorize", p, 1)); resp.Status != http.StatusNotFound && resp.Status != http.StatusMethodNotAllowed {
			t.Errorf("plain HTTP %s: %d", p, resp.Status)
		}
	}
}

func TestAuthorizeErrorPages(t *testing.T) {
	t.Parallel()
	s := startSignIn(t, Options{})
	for _, tc := range []struct {
		name   string
		url    string
		aadsts string
	}{
		{"unknown client", s.AuthorizeURL() + "?" + authQuery(s, "client_id", DefaultClientAppID).Encode(), "AADSTS700016"},
		{"no client", s.AuthorizeURL() + "?" + authQuery(s, "client_id", "").Encode(), "AADSTS900144"},
		{"unregistered redirect", s.AuthorizeURL() + "?" + authQuery(s, "redirect_uri", "https://evil.example/cb").Encode(), "AADSTS50011"},
		{"redirect with extra slash", s.AuthorizeURL() + "?" + authQuery(s, "redirect_uri", testRedirect+"/").Encode(), "AADSTS50011"},
		{"two redirects", s.AuthorizeURL() + "?" + authQuery(s).Encode() + "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", "AADSTS50011"},
		{"unknown tenant", strings.Replace(s.AuthorizeURL(), s.TenantID(), "contoso.example", 1) + "?" + authQuery(s).Encode(), "AADSTS90002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := testkit.Get(t, noRedirect(), tc.url)
			if resp.Status != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(resp.Body, tc.aadsts+": ") ||
				!strings.Contains(resp.Header.Get("Content-Security-Policy"), "form-action 'none'") || strings.Contains(resp.Body, "<form") {
				t.Errorf("%s: %d %q", tc.name, resp.Status, resp.Header.Get("Location"))
			}
		})
	}
	// SignIn reports a page error as an error naming it.
	if _, err := s.SignIn(context.Background(), s.AuthorizeURL()+"?"+authQuery(s, "client_id", DefaultClientAppID).Encode(), "reader"); err == nil || !strings.Contains(err.Error(), "AADSTS700016: Application with identifier") {
		t.Errorf("SignIn on an error page: %v", err)
	}
}

func TestAuthorizeRedirectErrors(t *testing.T) {
	t.Parallel()
	s := startSignIn(t, Options{})
	for _, tc := range []struct {
		name   string
		q      url.Values
		code   string
		aadsts string
	}{
		{"no PKCE", authQuery(s, "code_challenge", "", "code_challenge_method", ""), "invalid_request", "AADSTS900144"},
		{"plain PKCE", authQuery(s, "code_challenge_method", "plain"), "invalid_request", "AADSTS90023"},
		{"short challenge", authQuery(s, "code_challenge", "abc"), "invalid_request", "AADSTS501491"},
		{"no openid", authQuery(s, "scope", s.Scope()+" offline_access"), "invalid_scope", "AADSTS70011"},
		{"no API scope", authQuery(s, "scope", "openid profile"), "invalid_scope", "AADSTS70011"},
		{"no scope", authQuery(s, "scope", ""), "invalid_request", "AADSTS900144"},
		{"resource with scope", authQuery(s, "resource", "https://mcp.example"), "invalid_target", "AADSTS9010010"},
		{"token response", authQuery(s, "response_type", "token"), "unsupported_response_type", "AADSTS90023"},
		{"form_post", authQuery(s, "response_mode", "form_post"), "invalid_request", "AADSTS90023"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := testkit.Get(t, noRedirect(), s.AuthorizeURL()+"?"+tc.q.Encode())
			loc, _ := url.Parse(resp.Header.Get("Location"))
			q := loc.Query()
			if resp.Status != http.StatusFound || !strings.HasPrefix(loc.String(), testRedirect+"?") || q.Get("error") != tc.code ||
				!strings.HasPrefix(q.Get("error_description"), tc.aadsts+": ") || q.Get("state") != "st" || q.Has("code") {
				t.Errorf("%s: %d %s", tc.name, resp.Status, loc)
			}
		})
	}

	// A .default scope and the bare client id are the API's scope too.
	loc, err := s.SignIn(context.Background(), s.AuthorizeURL()+"?"+authQuery(s, "scope", "openid "+s.ClientID()+"/.default").Encode(), "reader")
	if err != nil || !strings.Contains(loc, "code=") {
		t.Errorf(".default: %s %v", loc, err)
	}
}

func TestAuthorizePost(t *testing.T) {
	t.Parallel()
	s := startSignIn(t, Options{})
	page := s.AuthorizeURL() + "?" + authQuery(s).Encode()
	post := func(origin string, form url.Values) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, page, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("https://evil.example", url.Values{"user": {"admin"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: %d", resp.StatusCode)
	}
	if resp := post("", url.Values{"user": {"nobody"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown user: %d", resp.StatusCode)
	}
	own, _ := url.Parse(s.AuthorizeURL())
	resp := post("http://"+own.Host, url.Values{"user": {"admin"}})
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st" {
		t.Errorf("sign-in: %d %s", resp.StatusCode, loc)
	}
	// Each sign-in gets its own code.
	if again := post("", url.Values{"user": {"admin"}}); again.Header.Get("Location") == resp.Header.Get("Location") {
		t.Error("two sign-ins got the same code")
	}
}
