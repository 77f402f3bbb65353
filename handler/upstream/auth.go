package upstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// OnBehalfOf exchanges the caller's token for one of a downstream API;
// *obo.Client is one.
type OnBehalfOf interface {
	// Token returns an access token for scopes on behalf of the caller in
	// ctx (principal and verified token, entra.NewVerifiedContext). Its
	// errors are an *obo.ConsentError, errors wrapping
	// outage.ErrUnavailable, or bugs.
	Token(ctx context.Context, scopes []string) (string, error)
	// Forget drops a kept token the downstream API refused.
	Forget(ctx context.Context, p *entra.Principal, scopes []string) error
}

// Secrets reads the values of named secrets: *secrets.Store (Key Vault,
// which keeps each value a few minutes), or values from the environment.
type Secrets interface {
	Secret(ctx context.Context, name string) (string, error)
	// ForgetSecret drops a kept value the upstream refused (rotated in
	// Key Vault), so that the next Secret reads it afresh.
	ForgetSecret(name string)
}

// authenticator gets the credential one upstream call carries.
type authenticator interface {
	// credential is the header to send for the caller in ctx.
	credential(ctx context.Context) (credential, error)
	// refused drops what the upstream refused (a 401), so that the next
	// call gets a fresh one.
	refused(ctx context.Context)
	// perUser reports whether the credential depends on the caller, so
	// that only people can be served (on-behalf-of).
	perUser() bool
}

// errNeedsUser: an on-behalf-of upstream called by an application acting
// as itself, for which Entra has nobody to act for.
var errNeedsUser = errors.New("on-behalf-of needs a signed-in user")

// newAuthenticator builds the authenticator of mode a, from what opts
// provides.
func newAuthenticator(a config.UpstreamAuth, opts Options) (authenticator, error) {
	switch a.Mode {
	case config.UpstreamOnBehalfOf:
		if opts.OnBehalfOf == nil {
			return nil, errors.New("on-behalf-of: no on-behalf-of client")
		}
		return &oboAuth{tokens: opts.OnBehalfOf, scopes: a.Scopes}, nil
	case config.UpstreamManagedIdentity:
		if opts.Identity == nil {
			return nil, errors.New("managed-identity: no managed identity")
		}
		return &identityAuth{cred: opts.Identity, scopes: a.Scopes}, nil
	case config.UpstreamHeader:
		if opts.Secrets == nil {
			return nil, errors.New("header: no secret store")
		}
		return &headerAuth{secrets: opts.Secrets, header: a.Header, secret: a.Secret}, nil
	case config.UpstreamNone:
		return noAuth{}, nil
	}
	return nil, fmt.Errorf("unknown auth mode %q", a.Mode)
}

// oboAuth sends a token Entra minted for the upstream, on behalf of the
// caller; obo keeps it sealed per user and scopes.
type oboAuth struct {
	tokens OnBehalfOf
	scopes []string
}

func (a *oboAuth) credential(ctx context.Context) (credential, error) {
	p := entra.FromContext(ctx)
	if p == nil || p.Kind == entra.CallerApp {
		return credential{}, errNeedsUser
	}
	tok, err := a.tokens.Token(ctx, a.scopes)
	if err != nil {
		return credential{}, err
	}
	return credential{name: "Authorization", value: "Bearer " + tok}, nil
}

func (a *oboAuth) refused(ctx context.Context) {
	if p := entra.FromContext(ctx); p != nil {
		_ = a.tokens.Forget(ctx, p, a.scopes)
	}
}

func (a *oboAuth) perUser() bool { return true }

// identityAuth sends this server's own managed-identity token; azidentity
// caches it until shortly before it expires.
type identityAuth struct {
	cred   azcore.TokenCredential
	scopes []string
}

func (a *identityAuth) credential(ctx context.Context) (credential, error) {
	tok, err := a.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: a.scopes})
	if err != nil {
		return credential{}, fmt.Errorf("managed identity token: %w", err)
	}
	return credential{name: "Authorization", value: "Bearer " + tok.Token}, nil
}

func (a *identityAuth) refused(context.Context) {}

func (a *identityAuth) perUser() bool { return false }

// headerAuth sends a secret; the secret store keeps it between calls and
// forgets it when the upstream refuses it (rotated: the next call reads the
// new value).
type headerAuth struct {
	secrets        Secrets
	header, secret string
}

func (a *headerAuth) credential(ctx context.Context) (credential, error) {
	v, err := a.secrets.Secret(ctx, a.secret)
	if err != nil {
		return credential{}, fmt.Errorf("read secret %s: %w", a.secret, err)
	}
	if v == "" {
		return credential{}, fmt.Errorf("secret %s is empty", a.secret)
	}
	return credential{name: a.header, value: v}, nil
}

func (a *headerAuth) refused(context.Context) { a.secrets.ForgetSecret(a.secret) }

func (a *headerAuth) perUser() bool { return false }

// noAuth sends nothing.
type noAuth struct{}

func (noAuth) credential(context.Context) (credential, error) { return credential{}, nil }
func (noAuth) refused(context.Context)                        {}
func (noAuth) perUser() bool                                  { return false }
