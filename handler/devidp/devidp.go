// Package devidp is a local stand-in for Microsoft Entra ID.
//
// It serves the parts of Entra that a resource server touches — OpenID
// discovery (v1 and v2) and the signing-key set — over HTTPS on a loopback
// port, and mints access tokens shaped like Entra's. Dev mode uses it so that a
// newcomer can run the server without an Azure account, and tests use it as a
// real issuer reached over real HTTP.
//
// For sign-in it also serves what MSAL Go's confidential client uses: the v2
// authorize page (the demo users as buttons), and the v2 token endpoint with
// the authorization_code and refresh_token grants, client secrets and
// federated client assertions, and Entra-shaped responses and errors. The
// token endpoint also serves the on-behalf-of grant (tokens for Graph and
// for the downstream web APIs of Options.APIs), and the client_credentials
// grant, which gives the applications in Options.Apps (agents, managed
// identities) app-only tokens for the API and for Options.APIs.
//
// It serves HTTPS with a certificate made at start because MSAL refuses
// non-https authorities; clients trust it through CertPool, HTTPClient, or
// CertPEM (a child process can point SSL_CERT_FILE at that file). A browser
// would warn about that certificate, so the authorize page is also served over
// plain HTTP on a second loopback port, and discovery's
// authorization_endpoint names that one (AuthorizeURL).
//
// It is not a security boundary: anyone who can reach the port can read the
// public keys, and anyone holding the Server can mint tokens.
package devidp

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Fixed identifiers used when Options leaves them empty, so that dev-mode
// configuration and tests can name them without asking the server.
const (
	// DefaultTenantID is the dev tenant.
	DefaultTenantID = "7d1a5b4e-0c2f-4e8a-9b3d-6f1e2a3c4d5e"
	// DefaultClientID is the client id of the protected API (the audience).
	DefaultClientID = "3f6c2a1b-8d4e-4f7a-a9c0-1b2d3e4f5a6b"
	// DefaultClientAppID is the client application a minted token is issued
	// to (its azp or appid claim), such as an MCP client.
	DefaultClientAppID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	// DefaultClientSecret is the API application's client secret. It is
	// public on purpose: the stand-in guards nothing.
	DefaultClientSecret = "devidp-dev-secret-not-for-production"
	// DefaultAccessTokenLifetime is the lifetime of access tokens from the
	// token endpoint.
	DefaultAccessTokenLifetime = time.Hour
)

// Options configures a Server. The zero value is ready to use.
type Options struct {
	// TenantID is the home tenant; DefaultTenantID when empty.
	TenantID string
	// ClientID is the API application's client id; DefaultClientID when empty.
	ClientID string
	// ClientSecret is the API application's client secret, which the token
	// endpoint requires (or a federated assertion); DefaultClientSecret when
	// empty.
	ClientSecret string
	// RedirectURIs are the application's registered redirect URIs. The
	// authorize and token endpoints accept only these, compared exactly, as
	// Entra does. Empty means none is registered and every sign-in fails
	// with AADSTS50011: there is no "any loopback" fallback, so a wrong
	// callback URL shows up in dev mode, not first in Azure.
	RedirectURIs []string
	// FederatedCredentials are the application's federated identity
	// credentials, the secretless alternative to ClientSecret.
	FederatedCredentials []FederatedCredential
	// Users are the people on the sign-in page and in the directory;
	// DemoUsers() (one per role of the default role table) when empty.
	Users []User
	// Apps are the other applications registered in the tenant that call
	// the API as themselves: they get app-only access tokens for it from
	// the token endpoint's client_credentials grant. None by default.
	Apps []App
	// APIs are the downstream web APIs registered in the tenant besides
	// Microsoft Graph, which is built in: the API gets on-behalf-of tokens
	// for them, and Options.Apps get app-only tokens. None by default.
	APIs []API
	// AccessTokenVersion is the version of the access tokens issued for the
	// API, as its registration's requestedAccessTokenVersion sets it: 2
	// (the default, when zero) or 1. Entra issues the version the resource
	// asks for whichever endpoint is used, so it applies to the token
	// endpoint's user and app-only tokens alike, and is the default of Mint
	// and MintApp.
	AccessTokenVersion int
	// IDTypClaim is the API's optional access-token claim idtyp: when set,
	// app-only tokens carry idtyp "app". Entra adds it to app-only tokens
	// only, and only when the resource configures it.
	IDTypClaim bool
	// AccessTokenLifetime is the lifetime of access tokens from the token
	// endpoint; DefaultAccessTokenLifetime when zero. MSAL treats a cached
	// token expiring within five minutes as expired, so a lifetime under
	// five minutes makes every AcquireTokenSilent redeem the refresh token.
	AccessTokenLifetime time.Duration
	// SingleUseRefreshTokens makes each refresh token work once. Entra's
	// keep working after use; tests turn this on to prove that the newest
	// refresh token is always the one kept.
	SingleUseRefreshTokens bool
	// Addr is the TCP address of the HTTPS listener; "127.0.0.1:0" when
	// empty.
	Addr string
	// AuthorizeAddr is the TCP address of the plain-HTTP listener for the
	// authorize page; "127.0.0.1:0" when empty. Keep it on loopback.
	AuthorizeAddr string
	// SigningKey is the first signing key; a new RSA-2048 key when nil.
	// Tests that start many stand-ins pass one key to all of them: making
	// a key costs about 100 ms of CPU, more than most tests.
	SigningKey *rsa.PrivateKey
	// Now is the clock used for token times; time.Now when nil. The TLS
	// certificate always uses the real clock so that TLS keeps working when a
	// test moves this one.
	Now func() time.Time
}

// Server is a running Entra stand-in. Its methods are safe for concurrent use.
type Server struct {
	tenantID string
	clientID string
	now      func() time.Time

	certPEM  []byte
	certPool *x509.CertPool
	ln       net.Listener
	srv      *http.Server
	host     string // "https://127.0.0.1:PORT"

	authSrv  *http.Server
	authHost string // "http://127.0.0.1:PORT", the authorize page's listener

	clientSecret string
	redirectURIs []string
	federated    []FederatedCredential
	atLifetime   time.Duration
	users        []User
	atVersion    int             // 1 or 2
	apps         map[string]*App // by client id; read-only after Start
	idtyp        bool
	downstreams  []*downstream // Graph, then Options.APIs; read-only after Start

	keys   keyRing
	grants grantStore

	jwksFailing atomic.Bool
	jwksFetches atomic.Int64

	tokenFailing  atomic.Bool
	tokenRequests counter

	obo oboState // on-behalf-of consent and the Graph stand-in (obo.go, graph.go)
}

// setDefaults fills in what Options left empty.
func (s *Server) setDefaults() {
	if len(s.users) == 0 {
		s.users = DemoUsers()
	}
	if s.clientSecret == "" {
		s.clientSecret = DefaultClientSecret
	}
	if s.atLifetime <= 0 {
		s.atLifetime = DefaultAccessTokenLifetime
	}
	if s.tenantID == "" {
		s.tenantID = DefaultTenantID
	}
	if s.clientID == "" {
		s.clientID = DefaultClientID
	}
	if s.now == nil {
		s.now = time.Now
	}
}

// Start generates a signing key and a TLS certificate, and starts serving
// HTTPS on opts.Addr. Call Close when done.
func Start(opts Options) (*Server, error) {
	s := &Server{
		tenantID: opts.TenantID,
		clientID: opts.ClientID,
		now:      opts.Now,

		clientSecret: opts.ClientSecret,
		redirectURIs: append([]string(nil), opts.RedirectURIs...),
		federated:    append([]FederatedCredential(nil), opts.FederatedCredentials...),
		atLifetime:   opts.AccessTokenLifetime,
		users:        append([]User(nil), opts.Users...),
		atVersion:    opts.AccessTokenVersion,
		idtyp:        opts.IDTypClaim,
	}
	s.grants.singleUse = opts.SingleUseRefreshTokens
	s.setDefaults()
	switch s.atVersion {
	case 0:
		s.atVersion = 2
	case 1, 2:
	default:
		return nil, fmt.Errorf("devidp: access token version %d: want 1 or 2", opts.AccessTokenVersion)
	}
	apps, err := s.registerApps(opts.Apps)
	if err != nil {
		return nil, err
	}
	s.apps = apps
	if s.downstreams, err = s.registerAPIs(opts.APIs); err != nil {
		return nil, err
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	authAddr := opts.AuthorizeAddr
	if authAddr == "" {
		authAddr = "127.0.0.1:0"
	}

	if _, err := s.keys.rotate(opts.SigningKey); err != nil {
		return nil, fmt.Errorf("devidp: generating signing key: %w", err)
	}
	cert, certPEM, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("devidp: generating TLS certificate: %w", err)
	}
	s.certPEM = certPEM
	s.certPool = x509.NewCertPool()
	s.certPool.AppendCertsFromPEM(certPEM)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devidp: listening on %s: %w", addr, err)
	}
	authLn, err := net.Listen("tcp", authAddr)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("devidp: listening on %s: %w", authAddr, err)
	}
	s.ln = ln
	s.host = "https://" + ln.Addr().String()
	s.authHost = "http://" + authLn.Addr().String()
	s.authSrv = &http.Server{
		Handler:           s.authorizeRoutes(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		// As for ServeTLS below.
		_ = s.authSrv.Serve(authLn)
	}()
	s.srv = &http.Server{
		Handler:           s.routes(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		// ServeTLS returns ErrServerClosed after Close; any other error
		// means the listener broke, which requests will surface anyway.
		_ = s.srv.ServeTLS(ln, "", "")
	}()
	return s, nil
}

// Close stops the server and closes its listeners.
func (s *Server) Close() error {
	var errs []error
	for _, srv := range []*http.Server{s.srv, s.authSrv} {
		if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("devidp: closing server: %w", err)
	}
	return nil
}

// AuthorityHost is the scheme and host of the stand-in, like
// "https://login.microsoftonline.com": "https://127.0.0.1:PORT".
func (s *Server) AuthorityHost() string { return s.host }

// Issuer is the v2 issuer of the home tenant: AuthorityHost()/<tid>/v2.0.
func (s *Server) Issuer() string { return s.issuerV2(s.tenantID) }

// Authority is the authority URL of the home tenant as MSAL takes it:
// AuthorityHost()/<tid>.
func (s *Server) Authority() string { return s.host + "/" + s.tenantID }

// TenantID is the home tenant id.
func (s *Server) TenantID() string { return s.tenantID }

// ClientID is the API application's client id, the audience of v2 tokens.
func (s *Server) ClientID() string { return s.clientID }

// ClientSecret is the API application's client secret.
func (s *Server) ClientSecret() string { return s.clientSecret }

// Scope is the API's delegated scope in the form a client requests it:
// "api://<client id>/access_as_user".
func (s *Server) Scope() string { return s.appIDURI() + "/" + ScopeName }

// AuthorizeURL is the home tenant's authorize endpoint on the plain-HTTP
// listener, as discovery's authorization_endpoint names it:
// "http://127.0.0.1:PORT/<tid>/oauth2/v2.0/authorize".
func (s *Server) AuthorizeURL() string { return s.authHost + "/" + s.tenantID + authorizePath }

// TokenURL is the home tenant's token endpoint:
// AuthorityHost()/<tid>/oauth2/v2.0/token.
func (s *Server) TokenURL() string { return s.host + "/" + s.tenantID + tokenPath }

// CertPEM is the server's self-signed TLS certificate in PEM form.
func (s *Server) CertPEM() []byte { return append([]byte(nil), s.certPEM...) }

// CertPool is a pool holding only the server's TLS certificate.
func (s *Server) CertPool() *x509.CertPool { return s.certPool.Clone() }

// HTTPClient returns a new client that trusts only this server's certificate.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		},
	}
}

// SetJWKSFailing makes the key-set endpoint answer 503 while failing is true,
// to simulate an outage.
func (s *Server) SetJWKSFailing(failing bool) { s.jwksFailing.Store(failing) }

// JWKSFetches is the number of requests the key-set endpoints have received,
// including those answered 503.
func (s *Server) JWKSFetches() int64 { return s.jwksFetches.Load() }

func (s *Server) issuerV2(tenant string) string { return s.host + "/" + tenant + "/v2.0" }
func (s *Server) issuerV1(tenant string) string { return s.host + "/" + tenant + "/" }
