// Package standin starts the Entra stand-in for tests outside package
// entra, together with a verifier of its tokens. Only tests import it.
package standin

import (
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// Start starts the stand-in with opts, stopped when the test ends, and a
// verifier that trusts its tokens (fetching keys over its HTTPS).
func Start(t testing.TB, opts devidp.Options) (*devidp.Server, *entra.Verifier) {
	t.Helper()
	if opts.SigningKey == nil {
		opts.SigningKey = testkit.RSAKey()
	}
	idp, err := devidp.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	v, err := entra.NewVerifier(entra.Config{
		AuthorityHost: idp.AuthorityHost(), TenantID: idp.TenantID(), ClientID: idp.ClientID(), HTTPClient: idp.HTTPClient(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return idp, v
}
