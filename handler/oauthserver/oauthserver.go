// Package oauthserver is the OAuth 2.1 authorization server that MCP
// clients find through Protected Resource Metadata when MCP_AUTH_MODE is
// proxy. Entra ID cannot register MCP clients (neither Client ID Metadata
// Documents nor RFC 7591), so this thin front does: it knows clients
// (package oauthclients), asks the user to approve each one and remembers
// the approval per browser, hands the sign-in with Entra to package signin
// (which comes back to Continue), and gives the client our one-time code
// (package grants), redeemable with the client's PKCE verifier for the
// Entra access token of our API and a rotating refresh handle. Everything
// about OAuth clients is here; its dependencies are the small interfaces
// below.
//
// The consent page exists because every client ends up with tokens from one
// Entra app: without it, Entra's remembered consent for our app would let
// any client that registers a redirect URI of its own get a user's token
// (the confused-deputy rule of the MCP security guidance).
//
// Endpoints: RFC 8414 metadata, RFC 7591 registration, authorization with
// RFC 9207's iss, token (authorization_code and refresh_token, public
// clients only) and RFC 7009 revocation.
package oauthserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/webpage"
)

// Paths of the endpoints.
const (
	// PathMetadata is the only discovery document. There is none at
	// /.well-known/openid-configuration: this server issues no ID tokens
	// (the access tokens are Entra's), so an OpenID Provider
	// Configuration would claim what it is not, and MCP clients try RFC
	// 8414's path first.
	PathMetadata  = "/.well-known/oauth-authorization-server"
	PathAuthorize = "/oauth/authorize"
	PathToken     = "/oauth/token"
	PathRegister  = "/oauth/register"
	PathRevoke    = "/oauth/revoke"
)

// maxFormBody caps token, revocation and consent bodies: a few short fields.
const maxFormBody = 8 << 10

// Options configure the server. All are required but Logger.
type Options struct {
	// Issuer is our public base URL: the issuer in the metadata, the iss
	// sent back to clients, and the only Origin the consent form accepts.
	Issuer string
	// Resource is the MCP endpoint's URL; a client's RFC 8707 resource
	// parameter must name it. It is not forwarded to Entra, which refuses
	// resource next to scopes.
	Resource string
	// Scope is the API scope clients are granted (and the Entra scope the
	// sign-in asks for).
	Scope   string
	Clients Clients
	SignIn  SignIn
	Grants  Grants
	// Consents remembers the clients a user approved, per browser.
	Consents Consents
	// Sealer seals authorization requests into their consent forms.
	Sealer store.Sealer
	// Limiter counts client-document lookups and revocations per client
	// address. Authorization and consent requests count against the
	// sign-in service's budget, and token requests against the grants'
	// budget of refused requests.
	Limiter httpx.Limiter
	// Registrations counts registrations per client address: each one is
	// stored in Redis, and anyone may register. There is no limit on all
	// of them together, which one actor could spend for everyone: the
	// registry keeps a budget of unused registrations that evicts the
	// oldest instead.
	Registrations httpx.Limiter
	Logger        *slog.Logger
	// Events receives a custom event per registration, consent decision
	// and token grant (client ids only); nil sends none.
	Events Events
}

// Clients knows the OAuth clients (an *oauthclients.Registry).
type Clients interface {
	// Lookup returns the client clientID names; requester is the client
	// address, for the fetcher's limits. A refusal is an *oautherr.Error.
	Lookup(ctx context.Context, clientID, requester string) (oauthclients.Client, error)
	// Register registers a client from an RFC 7591 request body.
	Register(ctx context.Context, body []byte) (oauthclients.Client, error)
	// Confirm records that a client is in use, by user ("<tid>.<oid>").
	Confirm(ctx context.Context, c oauthclients.Client, user string) error
}

// SignIn signs users in with Entra (a *signin.Service, whose Continuation
// this server is).
type SignIn interface {
	// AllowSignIn counts the start of a sign-in against the client
	// address's budget; over it, it has answered.
	AllowSignIn(w http.ResponseWriter, r *http.Request) bool
	// StartFor sends the browser to Entra; the callback hands handoff to
	// Continue.
	StartFor(w http.ResponseWriter, r *http.Request, handoff json.RawMessage)
	// FitsInCookie reports whether a sign-in with handoff fits in its cookie.
	FitsInCookie(handoff json.RawMessage) bool
	// AuthorizeOrigin is the origin StartFor sends browsers to.
	AuthorizeOrigin(ctx context.Context) (string, error)
}

// Grants issues and redeems codes and refresh handles (a *grants.Service).
type Grants interface {
	NewCode(ctx context.Context, rec grants.CodeRecord) (string, error)
	RedeemCode(ctx context.Context, code string, check func(grants.CodeRecord) string, refresh bool) (grants.Tokens, error)
	Refresh(ctx context.Context, handle, clientID string) (grants.Tokens, error)
	Revoke(ctx context.Context, handle, clientID string) error
	// Answer answers a failed grant.
	Answer(w http.ResponseWriter, r *http.Request, doing string, err error, retryHint string)
	RefreshRetryHint() string
}

// Consents remembers approvals per browser (a *store.Sessions).
type Consents interface {
	RememberConsent(ctx context.Context, browserID, subject, tid, oid string, ttl time.Duration) error
	ConsentedUser(ctx context.Context, browserID, subject string) (string, error)
}

// Events records custom events (Application Insights in Azure).
type Events interface {
	Event(ctx context.Context, name string, props map[string]string)
}

// event records one custom event, if anyone listens.
func (s *Server) event(ctx context.Context, name string, props map[string]string) {
	if s.opts.Events != nil {
		s.opts.Events.Event(ctx, name, props)
	}
}

// Server serves the endpoints.
type Server struct {
	opts     Options
	origin   string
	resource string // Options.Resource in canonical form
	metadata []byte
	log      *slog.Logger
	// bindCookie binds a consent page to the browser it was shown in.
	// Strict: only our own page posts the form.
	bindCookie webpage.BrowserCookie
	// consentCookie identifies the browser approvals are remembered in.
	// Lax: it must come along on the client's navigation to
	// /oauth/authorize.
	consentCookie webpage.BrowserCookie
}

// complete reports whether every required option is set.
func (o Options) complete() bool {
	return o.Clients != nil && o.SignIn != nil && o.Grants != nil && o.Consents != nil && o.Sealer != nil &&
		o.Limiter != nil && o.Registrations != nil
}

// New builds the server.
func New(opts Options) (*Server, error) {
	if !opts.complete() {
		return nil, errors.New("oauthserver: clients, sign-in, grants, consents, sealer and limiters are required")
	}
	u, err := url.Parse(opts.Issuer)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oauthserver: issuer %q must be a base URL without path, query or fragment", opts.Issuer)
	}
	resource, ok := canonicalResource(opts.Resource)
	if !ok {
		return nil, fmt.Errorf("oauthserver: resource %q must be an absolute URL without query or fragment", opts.Resource)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		origin:   u.Scheme + "://" + u.Host,
		resource: resource,
		log:      opts.Logger,
		bindCookie: webpage.BrowserCookie{Name: "mcp-authorize", Secure: u.Scheme == "https",
			SameSite: http.SameSiteStrictMode},
		consentCookie: webpage.BrowserCookie{Name: "mcp-consent", Secure: u.Scheme == "https", SameSite: http.SameSiteLaxMode},
	}
	s.metadata, err = json.Marshal(s.newMetadata())
	if err != nil {
		return nil, fmt.Errorf("oauthserver: encode metadata: %w", err)
	}
	return s, nil
}

// metadata is the RFC 8414 document.
type metadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

func (s *Server) newMetadata() metadata {
	iss := s.opts.Issuer
	return metadata{
		Issuer:                                     iss,
		AuthorizationEndpoint:                      iss + PathAuthorize,
		TokenEndpoint:                              iss + PathToken,
		RegistrationEndpoint:                       iss + PathRegister,
		RevocationEndpoint:                         iss + PathRevoke,
		ScopesSupported:                            []string{s.opts.Scope},
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethodsSupported:          []string{"none"},
		RevocationEndpointAuthMethodsSupported:     []string{"none"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		ClientIDMetadataDocumentSupported:          true,
		AuthorizationResponseIssParameterSupported: true,
	}
}

// Metadata serves the RFC 8414 document: GET /.well-known/oauth-authorization-server.
func (s *Server) Metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(s.metadata)
}

// Register registers a public client: POST /oauth/register (RFC 7591).
func (s *Server) Register(w http.ResponseWriter, r *http.Request) {
	body, refusal := httpx.Body{MediaType: "application/json", Max: oauthclients.MaxRegistrationBytes,
		Code: oautherr.InvalidClientMetadata}.Read(w, r)
	if refusal != nil {
		oautherr.Write(w, refusal)
		return
	}
	if !httpx.Allow(w, r, s.opts.Registrations) {
		return
	}
	c, err := s.opts.Clients.Register(r.Context(), body)
	if err != nil {
		var ce *oautherr.Error
		if errors.As(err, &ce) {
			oautherr.Write(w, ce)
			return
		}
		s.unavailable(w, r, "register client", err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "client registered", slog.String("client_id", c.ClientID),
		slog.String("client_name", c.ClientName))
	s.event(r.Context(), "oauth.register", map[string]string{"client_id": c.ClientID})
	httpx.WriteJSON(w, http.StatusCreated, c)
}

// formBody is what the token and revocation endpoints accept.
var formBody = httpx.Body{MediaType: "application/x-www-form-urlencoded", Max: maxFormBody, WrongTypeStatus: http.StatusBadRequest}

// readForm reads an application/x-www-form-urlencoded body strictly: size
// capped, no parameter twice (RFC 6749 §3.1) but resource. On failure it
// has answered.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	body, refusal := formBody.Read(w, r)
	if refusal != nil {
		oautherr.Write(w, refusal)
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, "the body is not valid form encoding"))
		return nil, false
	}
	if k := repeated(form); k != "" {
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, k+" appears more than once"))
		return nil, false
	}
	return form, true
}

// repeated returns a parameter given more than once, or "". resource is
// the exception: RFC 8707 §2 lets a client name several, and checkResource
// decides about them.
func repeated(v url.Values) string {
	for k, vs := range v {
		if len(vs) > 1 && k != "resource" {
			return k
		}
	}
	return ""
}

// unavailable answers 503 for an outage and logs what was being done.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, doing string, err error) {
	s.unavailableHint(w, r, doing, err, "the authorization server is unavailable; try again shortly")
}

// unavailableHint is unavailable whose description says what the client
// may safely do about a request whose outcome is unknown.
func (s *Server) unavailableHint(w http.ResponseWriter, r *http.Request, doing string, err error, hint string) {
	s.log.LogAttrs(r.Context(), slog.LevelError, doing+" failed", slog.String("err", err.Error()))
	oautherr.Write(w, oautherr.Unavailable(hint))
}

// grantedScope checks a requested scope and returns what is granted: the
// API scope, whatever was asked. OpenID Connect's scopes are accepted and
// ignored (the client gets no ID token); anything else is invalid_scope.
func (s *Server) grantedScope(requested string) (string, bool) {
	for _, sc := range strings.Fields(requested) {
		switch sc {
		case s.opts.Scope, "openid", "profile", "email", "offline_access":
		default:
			return "", false
		}
	}
	return s.opts.Scope, true
}
