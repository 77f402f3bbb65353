// Package httpapi is the handler's HTTP front: its routes, and the guards in
// front of everything (method, Origin, content type, body size, bearer token)
// that answer bad requests with a 4xx JSON error before any handler runs.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/oauthserver"
)

// Route is one path the handler serves and the methods it accepts there.
// Each route is also an Azure Function (functions/<name>/function.json).
type Route struct {
	Path    string
	Methods []string
}

// Paths of the handler's routes.
const (
	PathMCP         = "/mcp"
	PathHealth      = "/health"
	PathPRM         = "/.well-known/oauth-protected-resource"
	PathPRMResource = "/.well-known/oauth-protected-resource/mcp"
	PathLogin       = "/auth/login"
	PathCallback    = "/auth/callback"
	PathExchange    = "/auth/exchange"
	PathRefresh     = "/auth/refresh"
	PathLogout      = "/auth/logout"

	PathOAuthMetadata = oauthserver.PathMetadata
	PathAuthorize     = oauthserver.PathAuthorize
	PathToken         = oauthserver.PathToken
	PathRegister      = oauthserver.PathRegister
	PathRevoke        = oauthserver.PathRevoke
)

// Routes lists the routes the Functions host must forward to the handler.
// (The host's own probe of "/" reaches the handler directly.)
func Routes() []Route {
	// OPTIONS reaches the handler where the host does not answer CORS
	// preflights itself (see cors.go); GET and DELETE on /mcp reach it so
	// it can answer 405 in JSON: the endpoint is stateless and does not
	// stream.
	get, post, options := http.MethodGet, http.MethodPost, http.MethodOptions
	return []Route{
		{Path: PathMCP, Methods: []string{post, get, http.MethodDelete, options}},
		{Path: PathHealth, Methods: []string{get}},
		{Path: PathPRM, Methods: []string{get, options}},
		{Path: PathPRMResource, Methods: []string{get, options}},
		{Path: PathLogin, Methods: []string{get}},
		{Path: PathCallback, Methods: []string{get}},
		{Path: PathExchange, Methods: []string{post, options}},
		{Path: PathRefresh, Methods: []string{post, options}},
		{Path: PathLogout, Methods: []string{post, options}},
		// The OAuth front (MCP_AUTH_MODE=proxy; 404 in entra mode).
		{Path: PathOAuthMetadata, Methods: []string{get, options}},
		{Path: PathAuthorize, Methods: []string{get, post}},
		{Path: PathToken, Methods: []string{post, options}},
		{Path: PathRegister, Methods: []string{post, options}},
		{Path: PathRevoke, Methods: []string{post, options}},
	}
}

// OAuth serves the OAuth authorization-server front.
type OAuth interface {
	Metadata(http.ResponseWriter, *http.Request)
	Authorize(http.ResponseWriter, *http.Request)
	Token(http.ResponseWriter, *http.Request)
	Register(http.ResponseWriter, *http.Request)
	Revoke(http.ResponseWriter, *http.Request)
}

// SignIn serves the /auth routes.
type SignIn interface {
	Login(http.ResponseWriter, *http.Request)
	Callback(http.ResponseWriter, *http.Request)
	Exchange(http.ResponseWriter, *http.Request)
	Refresh(http.ResponseWriter, *http.Request)
	Logout(http.ResponseWriter, *http.Request)
}

// TokenVerifier checks a bearer token and returns its principal.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*entra.Principal, error)
}

// Options configure the HTTP front.
type Options struct {
	// PublicBaseURL is the origin clients use (scheme://host[:port]); it
	// names the resource and is the only Origin accepted besides
	// AllowedOrigins.
	PublicBaseURL  string
	AllowedOrigins []string
	// AuthorizationServers go into Protected Resource Metadata.
	AuthorizationServers []string
	// Scopes go into Protected Resource Metadata (scopes_supported) and
	// into the 401 challenge's scope parameter.
	Scopes   []string
	Verifier TokenVerifier
	// MCP serves POST /mcp for an authenticated caller.
	MCP http.Handler
	// SignIn serves /auth/*.
	SignIn SignIn
	// OAuth serves the authorization-server front; nil (entra mode)
	// leaves its routes unserved.
	OAuth   OAuth
	Version string
	Logger  *slog.Logger
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64
	// Telemetry records one request item per call and recovered panics;
	// nil or disabled records nothing and costs nothing.
	Telemetry Telemetry
	// ClientIP decides each request's client address for the limits
	// counted per address (clientip.KeyOf reads it from the context).
	ClientIP clientip.Policy
	// Health reports each dependency as "ok" or "unavailable" for /health,
	// and whether all are ok; nil reports none.
	Health func(ctx context.Context) (map[string]string, bool)
}

// Telemetry is what the HTTP front reports to (Application Insights).
type Telemetry interface {
	Middleware(next http.Handler) http.Handler
	Exception(ctx context.Context, v any, props map[string]string)
}

// Limits on what a caller may send.
const (
	defaultMaxBody = 1 << 20
	// maxAuthHeader bounds the Authorization header before it is parsed:
	// Entra access tokens are a few KiB even with many groups or roles.
	maxAuthHeader = 16 << 10
)

type api struct {
	opts        Options
	origins     []string
	resourceURL string
	prmURL      string
	// challengeParams follow the error code in the 401's challenge:
	// resource_metadata, and scope when there are scopes.
	challengeParams string
	prm             http.Handler
	log             *slog.Logger
}

// New returns the handler's whole HTTP surface.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = defaultMaxBody
	}
	a := &api{
		opts:        opts,
		resourceURL: opts.PublicBaseURL + PathMCP,
		prmURL:      opts.PublicBaseURL + PathPRMResource,
		log:         opts.Logger,
	}
	a.origins = append([]string{originOf(opts.PublicBaseURL)}, opts.AllowedOrigins...)
	// The scope parameter is what scopes_supported says (MCP authorization,
	// scope selection: a client takes the challenge's scope first, so the
	// two must agree).
	a.challengeParams = `resource_metadata=` + quoted(a.prmURL)
	if len(opts.Scopes) > 0 {
		a.challengeParams += `, scope=` + quoted(strings.Join(opts.Scopes, " "))
	}
	a.prm = server.NewProtectedResourceMetadataHandler(server.ProtectedResourceMetadataConfig{
		Resource:               a.resourceURL,
		AuthorizationServers:   opts.AuthorizationServers,
		ScopesSupported:        opts.Scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "MCP tools",
	})

	mux := http.NewServeMux()
	// route serves one path: its methods (OPTIONS, a preflight, is answered
	// by cors), and who may read it from a browser.
	route := func(path string, access corsAccess, h http.HandlerFunc, methods ...string) {
		mux.Handle(path, a.cors(access, methods, a.allow(h, methods...)))
	}
	route(PathMCP, allowedOrigins, a.mcp, http.MethodPost)
	route(PathHealth, anyOrigin, a.health, http.MethodGet, http.MethodHead)
	route(PathPRM, anyOrigin, a.prm.ServeHTTP, http.MethodGet, http.MethodHead)
	route(PathPRMResource, anyOrigin, a.prm.ServeHTTP, http.MethodGet, http.MethodHead)
	if si := opts.SignIn; si != nil {
		// Browser pages (login, callback) are navigations, not CORS calls.
		mux.Handle(PathLogin, a.allow(si.Login, http.MethodGet))
		mux.Handle(PathCallback, a.allow(si.Callback, http.MethodGet))
		route(PathExchange, allowedOrigins, si.Exchange, http.MethodPost)
		route(PathRefresh, allowedOrigins, si.Refresh, http.MethodPost)
		route(PathLogout, allowedOrigins, si.Logout, http.MethodPost)
	}
	if o := opts.OAuth; o != nil {
		route(PathOAuthMetadata, anyOrigin, o.Metadata, http.MethodGet, http.MethodHead)
		mux.Handle(PathAuthorize, a.allow(o.Authorize, http.MethodGet, http.MethodPost))
		route(PathToken, allowedOrigins, o.Token, http.MethodPost)
		route(PathRegister, allowedOrigins, o.Register, http.MethodPost)
		route(PathRevoke, allowedOrigins, o.Revoke, http.MethodPost)
	}
	mux.HandleFunc("/", a.root)
	h := a.recoverer(a.headers(opts.ClientIP.Middleware(mux)))
	if opts.Telemetry != nil {
		h = opts.Telemetry.Middleware(h)
	}
	return h
}

// allow answers methods outside the list with 405 and an Allow header.
func (a *api) allow(h http.HandlerFunc, methods ...string) http.Handler {
	allowHeader := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			w.Header().Set("Allow", allowHeader)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not supported here")
			return
		}
		h(w, r)
	})
}

// root answers the host's probe of "/" and 404s everything unknown.
func (a *api) root(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "no such route")
}

// health answers the operator's probes: 200 with status "ok" when every
// dependency answers, 503 with status "degraded" and which one does not
// (never why: that is in the log). It also tells callers the address their
// per-address limits count by (their own address, or their IPv6 /48), so an
// operator can check from two networks that two callers get two buckets.
func (a *api) health(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"status": "ok", "version": a.opts.Version, "client_address": clientip.KeyOf(r)}
	status := http.StatusOK
	if a.opts.Health != nil {
		checks, ok := a.opts.Health(r.Context())
		body["checks"] = checks
		if !ok {
			body["status"], status = "degraded", http.StatusServiceUnavailable
		}
	}
	httpx.WriteJSON(w, status, body)
}

// mcp runs the guards in order, cheapest first, and hands an authenticated
// request with a capped body to the MCP endpoint.
func (a *api) mcp(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !slices.Contains(a.origins, origin) {
		// DNS rebinding and cross-site calls: browsers always send Origin.
		writeError(w, http.StatusForbidden, "forbidden_origin", "this origin may not call the MCP endpoint")
		return
	}
	if !httpx.HasMediaType(r, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return
	}
	if r.ContentLength > a.opts.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "request body too large")
		return
	}
	p, token, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	// Tools that call APIs on the user's behalf trade the token (OBO).
	r = r.WithContext(entra.NewVerifiedContext(r.Context(), p, token))
	r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes)
	w.Header().Set("Cache-Control", "no-store")
	a.opts.MCP.ServeHTTP(w, r)
}

// authenticate verifies the bearer token. On failure it answers 401 with a
// WWW-Authenticate challenge pointing at Protected Resource Metadata, and
// logs why; the caller is never told why.
func (a *api) authenticate(w http.ResponseWriter, r *http.Request) (*entra.Principal, string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		a.challenge(w, false)
		return nil, "", false
	}
	v := values[0]
	if len(values) > 1 || len(v) > maxAuthHeader {
		a.refuse(w, r, "malformed Authorization header")
		return nil, "", false
	}
	scheme, token, found := strings.Cut(v, " ")
	token = strings.TrimSpace(token)
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
		a.refuse(w, r, "not a bearer token")
		return nil, "", false
	}
	p, err := a.opts.Verifier.Verify(r.Context(), token)
	if errors.Is(err, entra.ErrUnavailable) {
		// No signing keys could ever be fetched: our outage, not a bad
		// token. A 401 would send clients off to sign in again for nothing.
		a.log.LogAttrs(r.Context(), slog.LevelError, "cannot verify tokens: signing keys unavailable", slog.String("err", err.Error()))
		oautherr.Write(w, oautherr.Unavailable("token verification is unavailable; try again shortly"))
		return nil, "", false
	}
	if err != nil {
		a.refuse(w, r, err.Error())
		return nil, "", false
	}
	return p, token, true
}

// refuse answers 401 invalid_token for a token presented and refused. It
// logs why at DEBUG only: anyone can send junk, so a warning here would be
// one per request of a flood; the verifier warns, within a budget, about
// the refusals that point at an attack or a misconfiguration.
func (a *api) refuse(w http.ResponseWriter, r *http.Request, reason string) {
	a.log.LogAttrs(r.Context(), slog.LevelDebug, "rejected token", slog.String("reason", reason))
	a.challenge(w, true)
}

// challenge writes the 401. Per RFC 6750 §3.1 a request with no token gets
// no error code; a request with a bad one gets invalid_token. Both name the
// metadata and the scope to ask for.
func (a *api) challenge(w http.ResponseWriter, presented bool) {
	c := `Bearer ` + a.challengeParams
	desc := "a bearer token is required"
	if presented {
		c = `Bearer error="` + oautherr.InvalidToken + `", ` + a.challengeParams
		desc = "the access token is not valid"
	}
	w.Header().Set("WWW-Authenticate", c)
	writeError(w, http.StatusUnauthorized, oautherr.InvalidToken, desc)
}

// quoted is v as an RFC 9110 quoted-string. Our URLs and scopes hold no
// quote or backslash (scope tokens cannot, RFC 6749 §3.3), but an
// operator's App ID URI is not checked for them.
func quoted(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// headers sets what every answer carries.
func (a *api) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a logged 500, so one bad request cannot take
// the process down.
func (a *api) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("path", r.URL.Path), slog.Any("panic", v))
				if a.opts.Telemetry != nil {
					a.opts.Telemetry.Exception(r.Context(), v, map[string]string{"path": r.URL.Path})
				}
				writeError(w, http.StatusInternalServerError, "internal_error", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// originOf returns scheme://host[:port] of a base URL.
func originOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	return u.Scheme + "://" + u.Host
}

// writeError answers with an OAuth-style JSON error body: the guards'
// refusals look like every other endpoint's.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	oautherr.Write(w, &oautherr.Error{Code: code, Description: desc, Status: status})
}
