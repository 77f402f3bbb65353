package entra

import "context"

// rawToken carries the caller's access token in a context. It is a struct,
// not a string, so that printing a context (context.WithValue's String)
// shows only the type name, never the token.
type rawToken struct{ token string }

type rawTokenKey struct{}

// WithRawToken returns a copy of ctx that carries the caller's verified
// access token as it arrived, for tools that must present it onwards (the
// on-behalf-of flow). Set it next to NewContext, with the token the
// principal was verified from, and nowhere else.
func WithRawToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, rawTokenKey{}, rawToken{token: token})
}

// RawTokenFrom returns the access token carried by ctx, or "" if none.
func RawTokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(rawTokenKey{}).(rawToken)
	return t.token
}
