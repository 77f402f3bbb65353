package oauthclients_test

import (
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
)

func TestRedirectAllowed(t *testing.T) {
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
		if got := oauthclients.RedirectAllowed(c, tc.uri); got != tc.want {
			t.Errorf("RedirectAllowed(%q) = %v; want %v", tc.uri, got, tc.want)
		}
	}
	if oauthclients.RedirectAllowed(oauthclients.Client{}, "http://127.0.0.1/callback") {
		t.Error("a client without redirect URIs allowed one")
	}
}

func TestRedirectTrusted(t *testing.T) {
	registered := oauthclients.Client{ClientID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", Source: oauthclients.SourceRegistered}
	doc := oauthclients.Client{ClientID: "https://app.example/oauth/client.json", Source: oauthclients.SourceMetadataDocument}
	for _, tc := range []struct {
		c    oauthclients.Client
		uri  string
		want bool
	}{
		{registered, "http://127.0.0.1:4711/callback", true},
		{registered, "http://localhost/cb", true},
		{registered, "cursor://anysphere.cursor-mcp/oauth/callback", true},
		{registered, "https://app.example/callback", false},
		{registered, "https://evil.example/phish", false},
		{doc, "https://app.example/callback", true},
		{doc, "https://APP.example/callback", true},
		{doc, "https://evil.example/callback", false},
		{doc, "https://app.example:8443/callback", false},
		{doc, "http://app.example/callback", false},
		{doc, "http://127.0.0.1:9/cb", true},
	} {
		if got := oauthclients.RedirectTrusted(tc.c, tc.uri); got != tc.want {
			t.Errorf("RedirectTrusted(%s client, %q) = %v, want %v", tc.c.Source, tc.uri, got, tc.want)
		}
	}
}
