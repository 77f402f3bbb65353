// Package entra verifies Microsoft Entra ID access tokens and carries the
// verified caller (Principal) through request contexts.
//
// The Verifier is modelled on coreos/go-oidc: a small API, a claims policy
// apart from the key set it uses (KeySet), signing keys fetched through
// OpenID discovery and cached, refreshes single-flight and rate-limited,
// and an injectable clock. Verification is local: no network
// round trip per request once keys are cached, and a repeated token is
// answered from a bounded cache of verified tokens.
//
// A token whose kid is not in the cached key set makes the verifier fetch
// the set again, so a key Entra has just published is picked up by the
// first token signed with it, even on an instance that fetched keys a
// moment ago at start-up. Such fetches are limited twice: one per
// MinRefreshInterval for all unknown kids together, and a kid that was
// missing from a fetch made for it causes no other for KidRetryInterval. The
// start-up fetch and the background refresh of old keys do not count
// against either. A failed fetch keeps the last good key set.
package entra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// ErrInvalidToken is the only thing Verify tells its caller about a token it
// refuses. The reason is logged, never returned, so that a client cannot
// probe the verifier.
var ErrInvalidToken = errors.New("entra: invalid token")

// Dependency is how outages of the tenant's signing keys (discovery and
// JWKS) are named.
const Dependency = "entra signing keys"

// ErrUnavailable means no signing keys have ever been loaded and fetching
// them failed: the token could not be checked at all. Answer 503, not 401.
// It is an *outage.Error naming Entra's signing keys.
var ErrUnavailable error = outage.New(Dependency, nil)

// ErrUnknownKey is matched, besides ErrInvalidToken, by the error of
// VerifyIDToken when the token was signed with a key this verifier has not
// loaded: either the tenant published it after the last fetch and the
// throttle held back another, or it is not one of the tenant's keys. Only
// VerifyIDToken says so; Verify tells its callers nothing but
// ErrInvalidToken.
var ErrUnknownKey = errors.New("unknown signing key")

// Defaults and limits. The leeway absorbs clock skew between us and Entra;
// a minute is enough for NTP-synchronised hosts and keeps replay of an
// expired token short.
const (
	Leeway                    = 60 * time.Second
	MaxTokenBytes             = 16 << 10
	maxKidBytes               = 128
	maxDocumentBytes          = 1 << 20
	defaultMinRefreshInterval = 30 * time.Second
	defaultKidRetryInterval   = 5 * time.Minute
	defaultMaxKeyAge          = 24 * time.Hour
	defaultCacheSize          = 10000
	fetchTimeout              = 10 * time.Second
	// bootstrapRetryInterval limits fetch attempts while no key set has ever
	// loaded, so a start-up outage heals within seconds, not minutes.
	bootstrapRetryInterval = 10 * time.Second
)

// Config configures a Verifier. AuthorityHost, TenantID and ClientID are
// required.
type Config struct {
	// AuthorityHost is the scheme and host of the issuer, without a trailing
	// slash: https://login.microsoftonline.com, a sovereign cloud's host, or a
	// local stand-in. Plain http is accepted only for loopback hosts.
	AuthorityHost string
	// TenantID is the home tenant (a GUID). Keys are discovered through it.
	TenantID string
	// ClientID is the API application's client id: the audience of v2 tokens.
	ClientID string
	// AppIDURI is the audience of v1 tokens; "api://"+ClientID when empty.
	AppIDURI string
	// AllowedTenants are the tenants whose tokens are accepted;
	// [TenantID] when empty.
	AllowedTenants []string
	// TokenVersion is the access-token version the API is configured to
	// receive (requestedAccessTokenVersion): 2 (the default) or 1.
	TokenVersion int
	// AcceptAppTokens lets applications (service principals, managed
	// identities) call as themselves with app-only access tokens from the
	// client credentials grant, accepted with Principal.Kind CallerApp. A
	// token without scp then passes, besides every other check, only if
	// its roles are not empty, its idtyp (an optional claim) is "app" or,
	// when absent, it carries azpacr (v2) or appidacr (v1), and its sub
	// equals its oid; a token with scp and idtyp "app" is refused. Off, the
	// default, every token without scp is refused: an ID token issued to
	// this app has the API's audience and issuer too.
	AcceptAppTokens bool
	// HTTPClient fetches discovery and keys. The verifier uses a copy that
	// does not follow redirects and has a timeout. Default: a client with
	// timeouts.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MinRefreshInterval is how often tokens with unknown kids may cause a
	// key fetch, all kids together (default 30s); within it, such tokens fail
	// fast. The start-up fetch (Warm) and background refreshes do not count,
	// so the first unknown kid after them fetches at once.
	MinRefreshInterval time.Duration
	// KidRetryInterval is how long a kid that was still missing from a fetch
	// it caused is refused without causing another (default 5m), so a
	// made-up kid repeated costs one fetch per interval. At most 1024 such
	// kids are remembered, the oldest forgotten first.
	KidRetryInterval time.Duration
	// MaxKeyAge is the age after which keys are refreshed in the background
	// (default 24h). Callers keep using the cached keys meanwhile.
	MaxKeyAge time.Duration
	// CacheSize bounds the verified-token cache (default 10000; negative
	// disables it).
	CacheSize int
	// Logger receives the reasons tokens are refused; discarded when nil.
	Logger *slog.Logger
}

// Verifier checks Entra access tokens. It is safe for concurrent use.
//
// It verifies the RS256 signature with a key chosen by kid from its KeySet,
// the tenant's published set, before it reads any claim, then applies its
// policy: version, issuer, audience, tenant, times and the shape of the
// identity claims, and what kind of caller the token is for (a user, or,
// with Config.AcceptAppTokens, an application acting as itself). Tokens
// carrying jku, x5u, jwk, x5c or crit headers are refused outright: Entra
// never sends them, and honouring any of them would let the token choose
// its own key.
type Verifier struct {
	policy
	issuer string // the home tenant's v2 issuer
	keys   KeySet
	remote *remoteKeySet // keys, for Warm and Stats
	now    func() time.Time
	log    *slog.Logger
	cache  *tokenCache // nil when disabled

	refusals refusalWarnings
}

// refusalWarnings limits the warnings for refused tokens that point at an
// attack or a misconfiguration (a bad signature, another issuer, audience or
// tenant): at most maxRefusalWarnings per refusalWarningWindow for each
// reason, the next line counting the ones left out. Each reason has its
// own budget, so a flood of forged signatures (anyone can send them) does
// not hide a real client's wrong audience.
type refusalWarnings struct {
	mu       sync.Mutex
	byReason map[error]*lineBudget // keyed by the reason's sentinel error: a fixed set
}

const (
	maxRefusalWarnings   = 10
	refusalWarningWindow = 30 * time.Second
)

// take reports whether a refusal for reason may be logged as a warning at
// now, and how many for that reason were not since the last one.
func (r *refusalWarnings) take(reason error, now time.Time) (bool, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byReason == nil {
		r.byReason = make(map[error]*lineBudget)
	}
	b := r.byReason[reason]
	if b == nil {
		b = &lineBudget{}
		r.byReason[reason] = b
	}
	return b.take(now, refusalWarningWindow, maxRefusalWarnings)
}

// policy is what a token must claim to be accepted.
type policy struct {
	audience  string            // ClientID (v2) or AppIDURI (v1)
	version   string            // "2.0" or "1.0"
	issuers   map[string]string // allowed tid -> expected iss
	clientID  string            // audience of ID tokens
	idIssuers map[string]string // allowed tid -> v2 issuer (ID tokens are always v2)
	acceptApp bool              // app-only tokens (no scp) may be accepted
}

// NewVerifier checks cfg and returns a verifier. It fetches nothing: call
// Warm at start-up, or the first Verify will fetch the keys.
func NewVerifier(cfg Config) (*Verifier, error) {
	authority, host, allowHTTP, err := parseAuthority(cfg.AuthorityHost)
	if err != nil {
		return nil, err
	}
	tenant := strings.ToLower(cfg.TenantID)
	if !valid.GUID(tenant) {
		return nil, fmt.Errorf("entra: tenant id %q is not a GUID", cfg.TenantID)
	}
	pol, err := newPolicy(cfg, authority, host, tenant)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		policy: pol,
		issuer: authority + "/" + tenant + "/v2.0",
		now:    cfg.Now,
		log:    cfg.Logger,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.CacheSize == 0:
		v.cache = newTokenCache(defaultCacheSize)
	case cfg.CacheSize > 0:
		v.cache = newTokenCache(cfg.CacheSize)
	}
	v.remote = newRemoteKeySet(authority+"/"+tenant+"/v2.0/.well-known/openid-configuration", v.issuer,
		allowHTTP, fetchClient(cfg.HTTPClient), v.now, limitsOf(cfg), v.log)
	v.keys = v.remote
	return v, nil
}

// parseAuthority checks an authority host (scheme and host only; https, or
// plain http on loopback) and returns it without a trailing slash, its host
// name, and whether it is plain http.
func parseAuthority(authorityHost string) (authority, host string, allowHTTP bool, err error) {
	authority = strings.TrimSuffix(authorityHost, "/")
	u, err := url.Parse(authority)
	if err != nil || u.Host == "" {
		return "", "", false, fmt.Errorf("entra: authority host %q is not an absolute URL", authorityHost)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", false, fmt.Errorf("entra: authority host %q must be scheme and host only", authorityHost)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && valid.LoopbackHost(u.Hostname()):
		allowHTTP = true
	default:
		return "", "", false, fmt.Errorf("entra: authority host %q must be https (plain http only on loopback)", authorityHost)
	}
	return authority, u.Hostname(), allowHTTP, nil
}

// newPolicy reads the claims rules from cfg: audience and version, and the
// issuers of the allowed tenants.
func newPolicy(cfg Config, authority, host, tenant string) (policy, error) {
	clientID := strings.ToLower(cfg.ClientID)
	if !valid.GUID(clientID) {
		return policy{}, fmt.Errorf("entra: client id %q is not a GUID", cfg.ClientID)
	}
	p := policy{clientID: clientID, issuers: map[string]string{}, idIssuers: map[string]string{}, acceptApp: cfg.AcceptAppTokens}
	switch cfg.TokenVersion {
	case 0, 2:
		p.version = "2.0"
		p.audience = clientID
	case 1:
		p.version = "1.0"
		p.audience = cfg.AppIDURI
		if p.audience == "" {
			p.audience = "api://" + clientID
		}
	default:
		return policy{}, fmt.Errorf("entra: token version %d: want 1 or 2", cfg.TokenVersion)
	}
	allowed := cfg.AllowedTenants
	if len(allowed) == 0 {
		allowed = []string{tenant}
	}
	for _, t := range allowed {
		t = strings.ToLower(t)
		if !valid.GUID(t) {
			return policy{}, fmt.Errorf("entra: allowed tenant %q is not a GUID", t)
		}
		p.issuers[t] = issuerFor(authority, host, t, p.version)
		p.idIssuers[t] = issuerFor(authority, host, t, "2.0")
	}
	return p, nil
}

// fetchClient is a copy of c (or a new client) with a timeout that does
// not follow redirects: Entra does not redirect these documents, and
// following a redirect could downgrade to http or leave the authority.
func fetchClient(c *http.Client) *http.Client {
	client := http.Client{Timeout: fetchTimeout}
	if c != nil {
		client = *c
		if client.Timeout == 0 {
			client.Timeout = fetchTimeout
		}
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client
}

// limitsOf reads the refresh limits from cfg, with their defaults.
func limitsOf(cfg Config) refreshLimits {
	l := refreshLimits{minRefresh: cfg.MinRefreshInterval, kidRetry: cfg.KidRetryInterval, maxKeyAge: cfg.MaxKeyAge}
	if l.minRefresh <= 0 {
		l.minRefresh = defaultMinRefreshInterval
	}
	if l.kidRetry <= 0 {
		l.kidRetry = defaultKidRetryInterval
	}
	if l.maxKeyAge <= 0 {
		l.maxKeyAge = defaultMaxKeyAge
	}
	return l
}

// issuerFor is the iss a token of the given version from tenant tid carries.
// v1 tokens name the Security Token Service rather than the login host.
func issuerFor(authority, host, tid, version string) string {
	if version == "2.0" {
		return authority + "/" + tid + "/v2.0"
	}
	switch strings.ToLower(host) {
	case "login.microsoftonline.com", "login.microsoftonline.us":
		return "https://sts.windows.net/" + tid + "/"
	case "login.chinacloudapi.cn":
		return "https://sts.chinacloudapi.cn/" + tid + "/"
	default:
		return authority + "/" + tid + "/"
	}
}

// Issuer is the v2 issuer of the home tenant, as named in Protected
// Resource Metadata's authorization_servers.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience is the audience tokens must name: ClientID for v2 tokens,
// AppIDURI for v1.
func (v *Verifier) Audience() string { return v.audience }

// VerifierStats describes the verifier's caches, for an admin tool.
type VerifierStats struct {
	KeyIDs           []string  // kids of the cached signing keys
	LastRefresh      time.Time // when the cached key set was fetched; zero if never
	LastRefreshError string    // error of the latest fetch attempt; empty if it succeeded
	JWKSFetches      int64     // key-set fetch attempts so far
	ThrottledKids    int64     // tokens refused for an unknown kid without a fetch (throttled)
	CachedTokens     int       // entries in the verified-token cache
}

// Stats reports the state of the key and token caches.
func (v *Verifier) Stats() VerifierStats {
	st := v.remote.stats()
	if v.cache != nil {
		st.CachedTokens = v.cache.len()
	}
	return st
}

// stats reports the state of the key cache.
func (v *remoteKeySet) stats() VerifierStats {
	var st VerifierStats
	if ks := v.keys.Load(); ks != nil {
		st.KeyIDs = ks.kids()
		st.LastRefresh = ks.fetchedAt
	}
	v.mu.Lock()
	if v.state.lastErr != nil {
		st.LastRefreshError = v.state.lastErr.Error()
	}
	v.mu.Unlock()
	st.JWKSFetches = v.fetches.Load()
	st.ThrottledKids = v.throttled.Load()
	return st
}

// Warm fetches discovery and the key set now, waiting for a fetch already
// under way rather than starting a second. Call it at start-up so the first
// request does not pay for the fetch; a failure is worth logging but the
// verifier retries on its own. It spends none of the unknown-kid allowance.
func (v *Verifier) Warm(ctx context.Context) error { return v.remote.warm(ctx) }

func (v *remoteKeySet) warm(ctx context.Context) error {
	f, _ := v.startRefresh(byWarm, "") // never throttled
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("entra: waiting for key fetch: %w", ctx.Err())
	}
}
