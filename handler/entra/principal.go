package entra

import (
	"context"
	"time"
)

// Principal is the verified caller of a request. Identity for data and audit
// is TenantID + ObjectID; Name and Username are for display only.
type Principal struct {
	TenantID string
	ObjectID string
	Name     string
	Username string // preferred_username (v2) or upn (v1); display only
	AppID    string // azp (v2) or appid (v1): the client the token was issued to
	Roles    []string
	Scopes   []string
	Expires  time.Time
}

type principalKey struct{}

// NewContext returns a copy of ctx that carries p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal carried by ctx, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
