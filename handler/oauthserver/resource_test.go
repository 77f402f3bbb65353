package oauthserver

import "testing"

// TestCanonicalResource: the names of one resource that RFC 3986's
// normalization and the MCP spec's canonical server URI rules make equal
// come out the same; what changes the resource, or is not allowed in a
// resource indicator, does not.
func TestCanonicalResource(t *testing.T) {
	t.Parallel()
	const ours = "https://mcp.example.com/mcp"
	t.Run("the same resource", func(t *testing.T) {
		for _, v := range []string{
			ours,
			"HTTPS://MCP.Example.COM/mcp",
			"https://mcp.example.com:443/mcp",
			"https://mcp.example.com:/mcp",
		} {
			if got, ok := canonicalResource(v); !ok || got != ours {
				t.Errorf("%q: %q %v, want %q", v, got, ok, ours)
			}
		}
		for v, want := range map[string]string{
			"HTTP://127.0.0.1:7071/mcp": "http://127.0.0.1:7071/mcp",
			"http://LOCALHOST:80/mcp":   "http://localhost/mcp",
			"http://[::1]:80/mcp":       "http://[::1]/mcp",
			"http://[::1]:7071/mcp":     "http://[::1]:7071/mcp",
		} {
			if got, ok := canonicalResource(v); !ok || got != want {
				t.Errorf("%q: %q %v, want %q", v, got, ok, want)
			}
		}
	})
	t.Run("another resource", func(t *testing.T) {
		for _, v := range []string{
			"https://mcp.example.com/MCP",
			"https://mcp.example.com/mcp/",
			"https://mcp.example.com/%6Dcp",
			"https://mcp.example.com:8443/mcp",
			"http://mcp.example.com/mcp",
			"https://mcp.example.com",
		} {
			if got, ok := canonicalResource(v); ok && got == ours {
				t.Errorf("%q names %q", v, ours)
			}
		}
	})
	t.Run("a look-alike host that Unicode case folding would turn into ours", func(t *testing.T) {
		const ours = "https://func-mcp.azurewebsites.net/mcp"
		for _, v := range []string{
			"https://func-mcp.azurewebs\u0130tes.net/mcp",  // İ folds to i
			"https://func-mcp.azurewebs%C4%B0tes.net/mcp",  // the same, percent-encoded
			"https://func-mcp.azurewebsites.net\u212A/mcp", // the Kelvin sign folds to k
			"https://\u212Aey.azurewebsites.net/mcp",
		} {
			if got, ok := canonicalResource(v); ok {
				t.Errorf("%q: accepted as %q; want refused (ours is %q)", v, got, ours)
			}
		}
		if got, ok := canonicalResource("HTTPS://FUNC-MCP.AZUREWEBSITES.NET/mcp"); !ok || got != ours {
			t.Errorf("ASCII upper case: %q %v, want %q", got, ok, ours)
		}
	})
	t.Run("not a resource indicator", func(t *testing.T) {
		for _, v := range []string{
			"", "/mcp", "mcp.example.com/mcp", "https://mcp.example.com/mcp#x", "https://mcp.example.com/mcp#",
			"https://mcp.example.com/mcp?x=1", "https://mcp.example.com/mcp?", "https://user@mcp.example.com/mcp",
			"urn:example:mcp", "https://mcp.example.com:x/mcp", "https://mcp.example.com/mcp\x00",
		} {
			if got, ok := canonicalResource(v); ok {
				t.Errorf("%q accepted as %q", v, got)
			}
		}
	})
}
