package entra

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// An ID token issued to this app has the API's audience and issuer; it has
// no scp, and that is what keeps it from passing as an access token.
func TestIDTokenIsNotAnAccessToken(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
		t.Run(name, func(t *testing.T) {
			_, err := e.v.VerifyIDToken(context.Background(), tok)
			if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnknownKey) {
				t.Errorf("%s: %v, want ErrInvalidToken and not ErrUnknownKey", name, err)
			}
		})
	}
}

// TestVerifyIDTokenUnknownKey checks that the sign-in callback can tell a
// key this server has not loaded from other refusals, while Verify still
// says nothing but ErrInvalidToken.
func TestVerifyIDTokenUnknownKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil)
	idClaims := with(e.claims(), "scp", nil, "nonce", "n")
	cases := []struct {
		name   string
		token  string
		reason error
	}{
		// Causes a fetch, and the kid is not in the fresh set either.
		{"unknown kid", e.sign(with(e.rs256Header(), "kid", "not-loaded"), idClaims), errNotInFetchedSet},
		// Right after, another unknown kid is throttled.
		{"unknown kid, throttled", e.sign(with(e.rs256Header(), "kid", "not-loaded-2"), idClaims), errRefreshThrottled},
		{"same kid again", e.sign(with(e.rs256Header(), "kid", "not-loaded"), idClaims), errKidThrottled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.VerifyIDToken(ctx, tc.token)
			if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.reason) {
				t.Fatalf("VerifyIDToken: %v, want ErrUnknownKey, ErrInvalidToken and %v", err, tc.reason)
			}
			if _, err := e.v.Verify(ctx, tc.token); err != ErrInvalidToken {
				t.Fatalf("Verify: %v, want exactly ErrInvalidToken", err)
			}
		})
	}
	t.Run("bad signature, known kid", func(t *testing.T) {
		good := e.sign(e.rs256Header(), idClaims)
		forged := good[:strings.LastIndexByte(good, '.')+1] + strings.Repeat("A", 342)
		_, err := e.v.VerifyIDToken(ctx, forged)
		if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, errSignature) || errors.Is(err, ErrUnknownKey) {
			t.Fatalf("VerifyIDToken: %v, want ErrInvalidToken for a bad signature, not ErrUnknownKey", err)
		}
	})
	t.Run("no keys loaded", func(t *testing.T) {
		e.idp.SetJWKSFailing(true)
		defer e.idp.SetJWKSFailing(false)
		cold := e.newVerifier(nil)
		_, err := cold.VerifyIDToken(ctx, e.sign(e.rs256Header(), idClaims))
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnknownKey) {
			t.Fatalf("VerifyIDToken: %v, want ErrUnavailable only", err)
		}
		// An outage, and one of Entra's signing keys, not of Redis.
		if !errors.Is(err, outage.ErrUnavailable) || outage.Dependency(err) != Dependency ||
			!strings.Contains(err.Error(), "entra signing keys unavailable") || strings.Contains(err.Error(), "redis") {
			t.Errorf("VerifyIDToken: %q does not name Entra's signing keys as what is unavailable", err)
		}
	})
}
