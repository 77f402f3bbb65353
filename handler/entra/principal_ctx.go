package entra

import "context"

// verified is what the HTTP layer learns from one bearer token: the
// principal and the token it was verified from, kept in ONE context value
// so that code which presents the token onwards (on-behalf-of) can never
// pair one user's principal with another's token. The token sits in a
// struct so printing a context shows only the type name.
type verified struct {
	p     *Principal
	token string
}

type principalKey struct{}

// NewContext returns a copy of ctx that carries p (with no token: tests
// and code that never presents the caller's token onwards).
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, verified{p: p})
}

// NewVerifiedContext returns a copy of ctx that carries p and the access
// token p was verified from, as the HTTP layer sets them after Verify.
func NewVerifiedContext(ctx context.Context, p *Principal, token string) context.Context {
	return context.WithValue(ctx, principalKey{}, verified{p: p, token: token})
}

// FromContext returns the principal carried by ctx, or nil.
func FromContext(ctx context.Context) *Principal {
	v, _ := ctx.Value(principalKey{}).(verified)
	return v.p
}

// RawTokenFrom returns the access token the principal in ctx was verified
// from, or "" if ctx carries none.
func RawTokenFrom(ctx context.Context) string {
	v, _ := ctx.Value(principalKey{}).(verified)
	return v.token
}
