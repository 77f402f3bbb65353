// Package signin signs people in with Entra ID: the /auth pages and the
// pool of MSAL clients. /auth/login starts MSAL's authorization-code flow
// with PKCE, /auth/callback redeems the code and shows a one-time code,
// /auth/exchange trades that code for an access token and an opaque refresh
// handle, /auth/refresh rotates the handle, /auth/logout ends the session
// (codes and handles are package grants'). Another package may start a
// sign-in and get its result back (StartFor, handoff.go): the OAuth front
// does, for its clients.
//
// Nothing an anonymous request sends is stored: a sign-in in progress
// travels sealed in a cookie (flow.go), and every route that costs
// something is behind a limit per client address (or, once the user is
// known, per user).
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// Lifetimes.
const (
	flowTTL      = 10 * time.Minute
	msalCacheTTL = 90 * 24 * time.Hour // Entra's refresh-token lifetime
)

// Options configure the sign-in service.
type Options struct {
	// PublicBaseURL is the address users and clients reach us at; the
	// redirect URI is PublicBaseURL + "/auth/callback".
	PublicBaseURL string
	Entra         config.Entra
	// Credential authenticates us to Entra: a client secret or an assertion.
	Credential confidential.Credential
	// HTTPClient carries MSAL's requests; nil uses MSAL's default. Dev mode
	// and tests pass one that trusts the stand-in's certificate.
	HTTPClient *http.Client
	Sessions   *store.Sessions
	// Records keeps the one-time codes and refresh chains sign-ins issue.
	Records *grants.Records
	// Sealer seals sign-ins in progress into their cookies (the key ring
	// that seals what Redis holds).
	Sealer store.Sealer
	// IDTokens verifies the ID token of each sign-in (the token verifier).
	IDTokens IDTokenVerifier
	// Limits are the rate limits of the sign-in routes.
	Limits Limits
	// AllowedReturnURLs are the only return_to values /auth/login accepts,
	// compared exactly.
	AllowedReturnURLs []string
	// PoolSize is how many MSAL calls may run at once (default 8).
	PoolSize int
	Logger   *slog.Logger
	// Events receives a custom event per sign-in, exchange, refresh and
	// logout (tid and oid only); nil sends none.
	Events Events
}

// Limits are the sign-in routes' rate limits. Each is required.
type Limits struct {
	// SignIn counts sign-ins started per client address: /auth/login and
	// the OAuth front's authorization and consent requests.
	SignIn *ratelimit.Limiter
	// Callback counts /auth/callback per client address, before any code
	// is sent to Entra with the app's credential.
	Callback *ratelimit.Limiter
	// Failures and Refresh are the grants' (grants.Options): refused
	// codes and refresh tokens per client address, refreshes per user.
	Failures *ratelimit.Limiter
	Refresh  *ratelimit.Limiter
}

func (l Limits) complete() bool {
	return l.SignIn != nil && l.Callback != nil && l.Failures != nil && l.Refresh != nil
}

// IDTokenVerifier checks an ID token's signature and claims.
type IDTokenVerifier interface {
	VerifyIDToken(ctx context.Context, token string) (entra.IDToken, error)
}

// Events records custom events (Application Insights in Azure).
type Events interface {
	Event(ctx context.Context, name string, props map[string]string)
}

// event records one custom event, if anyone listens.
func (s *Service) event(ctx context.Context, name, tid, oid string) {
	if s.opts.Events != nil {
		s.opts.Events.Event(ctx, name, map[string]string{"tid": tid, "oid": oid})
	}
}

// Service serves the /auth routes.
type Service struct {
	opts        Options
	redirectURI string
	scopes      []string // what /auth/login asks Entra for
	apiScopes   []string // the resource scope tokens are acquired for
	pool        *pool
	secure      bool // https: cookies are __Host- and Secure
	grants      *grants.Service
	// continuation finishes hand-offs (HandOffTo).
	continuation atomic.Pointer[Continuation]
	// authorizeOrigin caches AuthorizeOrigin: the endpoint does not move.
	authorizeOrigin atomic.Pointer[string]
	log             *slog.Logger
}

// New builds the service. It does not contact Entra.
func New(opts Options) (*Service, error) {
	if opts.Sessions == nil || opts.Records == nil || opts.Sealer == nil || !opts.Limits.complete() || opts.IDTokens == nil {
		return nil, errors.New("sign-in: sessions, records, sealer, limits and ID token verifier are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 8
	}
	s := &Service{
		opts:        opts,
		redirectURI: opts.PublicBaseURL + "/auth/callback",
		apiScopes:   []string{opts.Entra.Scope()},
		log:         opts.Logger,
	}
	// The token requests MSAL makes add openid, profile and offline_access
	// by themselves; the authorize URL does not, so they are named here.
	s.scopes = []string{opts.Entra.Scope(), "openid", "profile", "offline_access"}
	s.secure = strings.HasPrefix(opts.PublicBaseURL, "https://")
	authority := opts.Entra.AuthorityHost + "/" + opts.Entra.TenantID
	publicCloud := opts.Entra.AuthorityHost == config.DefaultAuthorityHost
	p, err := newPool(opts.PoolSize, authority, opts.Entra.ClientID, opts.Credential, opts.HTTPClient, publicCloud, opts.Sessions, opts.Logger)
	if err != nil {
		return nil, err
	}
	s.pool = p
	s.grants, err = grants.New(grants.Options{Records: opts.Records, Tokens: tokenSource{s}, Failures: opts.Limits.Failures,
		Refresh: opts.Limits.Refresh, Logger: opts.Logger, Events: opts.Events})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Grants are the codes and handles this service's sign-ins issue, which
// the OAuth front redeems too.
func (s *Service) Grants() *grants.Service { return s.grants }

// tokenSource is the MSAL pool as the grants' source of access tokens.
type tokenSource struct{ s *Service }

// AccessToken implements grants.TokenSource.
func (t tokenSource) AccessToken(ctx context.Context, home, scope string) (grants.AccessToken, error) {
	res, err := t.s.acquireSilent(ctx, home, scope)
	switch {
	case err == nil:
		return grants.AccessToken{Token: res.AccessToken, ExpiresOn: res.ExpiresOn}, nil
	case errors.Is(err, store.ErrRevoked), isUnavailable(err):
		return grants.AccessToken{}, err
	}
	// Entra answered 4xx, or the cache holds no tokens for the user.
	return grants.AccessToken{}, fmt.Errorf("%w: %w", grants.ErrSessionRefused, err)
}

// RedirectURI is the callback address registered with Entra.
func (s *Service) RedirectURI() string { return s.redirectURI }

// RevokeUser ends every session of one user: their refresh handles, their
// MSAL cache (and so Entra's refresh token), their on-behalf-of tokens,
// one-time codes, remembered consents, and sign-ins and refreshes under way.
func (s *Service) RevokeUser(ctx context.Context, tid, oid string) (int, error) {
	return s.opts.Sessions.RevokeUser(ctx, tid, oid)
}

// randomString returns n random bytes, base64url without padding.
func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// s256 is the PKCE S256 transform.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func hashHex(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// returnAllowed reports whether u is on the return_to allow-list.
func (s *Service) returnAllowed(u string) bool {
	return slices.Contains(s.opts.AllowedReturnURLs, u)
}
