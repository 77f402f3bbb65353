package entra

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
)

// An ID token issued to this app has the API's audience and issuer; it has
// no scp, and that is what keeps it from passing as an access token.
func TestIDTokenIsNotAnAccessToken(t *testing.T) {
	e := newEnv(t, nil)
	idTok := e.mint(devidp.WithClaims(map[string]any{"scp": nil, "roles": nil, "nonce": "n-1"}))
	if _, err := e.v.verify(context.Background(), idTok); !errors.Is(err, errNoScope) {
		t.Fatalf("ID token as access token: %v, want errNoScope", err)
	}
	got, err := e.v.VerifyIDToken(context.Background(), idTok)
	writer := user(t, "writer")
	if err != nil || got.Nonce != "n-1" || got.ObjectID != writer.ObjectID || got.TenantID != e.idp.TenantID() {
		t.Fatalf("VerifyIDToken: %+v, %v", got, err)
	}
}

func TestVerifyIDTokenRefuses(t *testing.T) {
	e := newEnv(t, nil)
	good := e.mint(devidp.WithClaims(map[string]any{"scp": nil, "nonce": "n"}))
	parts := strings.Split(good, ".")
	cases := map[string]string{
		"forged signature": parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"other audience":   e.mint(devidp.WithClaims(map[string]any{"scp": nil, "aud": "api://someone-else"})),
		"other tenant":     e.mint(devidp.WithTenant(otherTenant), devidp.WithClaims(map[string]any{"scp": nil})),
		"expired":          e.mint(devidp.WithClaims(map[string]any{"scp": nil, "exp": e.clock.Now().Add(-2 * time.Hour).Unix()})),
		"not a JWT":        "abc.def",
	}
	for name, tok := range cases {
		if _, err := e.v.VerifyIDToken(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
