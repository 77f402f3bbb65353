package oauthclients_test

import (
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
)

func TestRedirectAllowed(t *testing.T) {
	t.Parallel()
	c := oauthclients.Client{RedirectURIs: []string{
		"https://app.example/cb?tenant=a",
		"http://127.0.0.1/callback",
		"http://[::1]/callback",
		"http://localhost/oauth/callback",
		"http://127.0.0.1:33418/fixed",
		"com.example.app:/oauth",
	}}
	cases := []struct {
		uri  string
		want bool
	}{
		// Exact matches.
		{"https://app.example/cb?tenant=a", true},
		{"com.example.app:/oauth", true},
		{"http://127.0.0.1/callback", true},
		// Anything but exact, outside loopback.
		{"https://app.example/cb", false},
		{"https://app.example/cb?tenant=a&x=1", false},
		{"https://app.example/cb?tenant=a#x", false},
		{"https://APP.example/cb?tenant=a", false},
		{"https://app.example:443/cb?tenant=a", false},
		{"https://app.example/cb/?tenant=a", false},
		{"https://app.example/CB?tenant=a", false},
		{"https://app.example:8443/cb?tenant=a", false},
		{"com.example.app:/oauth/x", false},
		{"", false},
		// Loopback: any port (RFC 8252 §7.3), same host literal, path and query.
		{"http://127.0.0.1:1/callback", true},
		{"http://127.0.0.1:65535/callback", true},
		{"http://[::1]:8080/callback", true},
		{"http://localhost:6274/oauth/callback", true},
		{"http://127.0.0.1:5000/fixed", true},
		{"http://127.0.0.1/fixed", true},
		{"http://127.0.0.1:5000/callback/", false},
		{"http://127.0.0.1:5000/callback?x=1", false},
		{"http://127.0.0.1:5000/callback?", false},
		{"http://127.0.0.1:5000/callback#x", false},
		{"http://localhost:5000/callback", false},       // registered as 127.0.0.1
		{"http://127.0.0.1:5000/oauth/callback", false}, // registered as localhost
		{"http://[::1]:5000/oauth/callback", false},
		{"http://127.0.0.2:5000/callback", false},
		{"http://user@127.0.0.1:5000/callback", false},
		{"https://127.0.0.1:5000/callback", false},
		{"http://127.0.0.1.evil.example:5000/callback", false},
		{"http://127.0.0.1:5000@evil.example/callback", false},
		{"http://127.0.0.1:port/callback", false},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			if got := oauthclients.RedirectAllowed(c, tc.uri); got != tc.want {
				t.Errorf("RedirectAllowed(%q) = %v; want %v", tc.uri, got, tc.want)
			}
		})
	}
	if oauthclients.RedirectAllowed(oauthclients.Client{}, "http://127.0.0.1/callback") {
		t.Error("a client without redirect URIs allowed one")
	}
}

func TestRedirectTrusted(t *testing.T) {
	t.Parallel()
	for uri, want := range map[string]bool{
		"http://127.0.0.1:4711/callback":               true,
		"http://localhost/cb":                          true,
		"http://[::1]:9/cb":                            true,
		"cursor://anysphere.cursor-mcp/oauth/callback": true,
		"com.example.app:/oauth":                       true,
		"https://app.example/callback":                 false,
		"https://evil.example/phish":                   false,
		"http://localhost.evil.example/cb":             false,
		"https://127.0.0.1/cb":                         false,
	} {
		t.Run(uri, func(t *testing.T) {
			if got := oauthclients.RedirectTrusted(uri); got != want {
				t.Errorf("RedirectTrusted(%q) = %v, want %v", uri, got, want)
			}
		})
	}
}
