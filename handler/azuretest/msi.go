// Package azuretest holds protocol-faithful local stand-ins for the Azure
// services the handler reaches through the Azure SDK: the App Service
// managed-identity endpoint and Key Vault's secrets API. They speak real
// HTTP (and TLS where Azure does) so that tests exercise azidentity and
// azsecrets unmodified, including Key Vault's challenge-then-bearer dance
// and its check that the vault's host matches the challenge's resource.
//
// They are for tests only and guard nothing.
package azuretest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of the managed-identity stand-in.
const (
	// DefaultTenantID is the tenant the stand-in's identities live in.
	DefaultTenantID = "5f0a7c2e-9b1d-4e3f-8a6b-0c1d2e3f4a5b"
	// MSIAPIVersion is the App Service identity protocol version azidentity
	// speaks (and the only one the stand-in accepts).
	MSIAPIVersion = "2019-08-01"
	// DefaultTokenLifetime is the lifetime of the stand-in's tokens. Real
	// managed-identity tokens live about a day.
	DefaultTokenLifetime = 24 * time.Hour
)

// Identity is a managed identity: its client (application) id, which
// tokens carry as appid, and its object id, which they carry as oid and
// sub (Azure Redis uses it as the user name).
type Identity struct {
	ClientID string
	ObjectID string
}

// NewIdentity returns an identity with random ids.
func NewIdentity() Identity {
	return Identity{ClientID: randomGUID(), ObjectID: randomGUID()}
}

// ManagedIdentityOptions configures a ManagedIdentity stand-in. The zero
// value is ready to use.
type ManagedIdentityOptions struct {
	// SystemAssigned is the identity a request without client_id gets;
	// random ids when empty.
	SystemAssigned Identity
	// UserAssigned are identities a request selects with client_id.
	UserAssigned []Identity
	// TenantID is put in the tokens' tid and iss; DefaultTenantID when
	// empty.
	TenantID string
	// Header is the secret the platform puts in IDENTITY_HEADER, which
	// every request must echo in X-IDENTITY-HEADER; random when empty.
	Header string
	// Lifetime of issued tokens; DefaultTokenLifetime when zero.
	Lifetime time.Duration
	// Now is the clock for token times; time.Now when nil.
	Now func() time.Time
	// Mint, when set, issues the access tokens in place of the stand-in
	// (for example an Entra stand-in's signed tokens, so they can serve as
	// federated client assertions). It is called with the identity, the
	// requested resource and the expiry the response will announce.
	Mint func(id Identity, resource string, expires time.Time) (string, error)
}

// TokenRequest is one request the stand-in answered with a token.
type TokenRequest struct {
	Resource string
	ClientID string // as requested; empty for the system-assigned identity
}

// ManagedIdentity is a running stand-in for the App Service / Functions
// managed-identity endpoint (IDENTITY_ENDPOINT, protocol version
// 2019-08-01). Like the real one it listens on plain HTTP on loopback;
// azidentity allows that because no bearer token is sent to it.
//
// azidentity (through MSAL's managedidentity package) reads
// IDENTITY_ENDPOINT and IDENTITY_HEADER from the process environment
// itself, so tests that build a ManagedIdentityCredential must set them
// there (t.Setenv with the values of Env).
type ManagedIdentity struct {
	opts     ManagedIdentityOptions
	signKey  []byte
	srv      *http.Server
	ln       net.Listener
	endpoint string

	mu       sync.Mutex
	requests []TokenRequest
	refused  int
	failing  int // HTTP status to answer every request with; 0 when healthy
}

// StartManagedIdentity starts the stand-in on a loopback port. Call Close
// when done.
func StartManagedIdentity(opts ManagedIdentityOptions) (*ManagedIdentity, error) {
	if opts.SystemAssigned == (Identity{}) {
		opts.SystemAssigned = NewIdentity()
	}
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if opts.Header == "" {
		opts.Header = randomHex(16)
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = DefaultTokenLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("azuretest: managed identity: listen: %w", err)
	}
	m := &ManagedIdentity{
		opts:     opts,
		signKey:  []byte(randomHex(32)),
		ln:       ln,
		endpoint: "http://" + ln.Addr().String() + "/msi/token",
	}
	m.srv = &http.Server{Handler: http.HandlerFunc(m.serveToken), ReadHeaderTimeout: 10 * time.Second}
	go m.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	return m, nil
}

// Close stops the stand-in.
func (m *ManagedIdentity) Close() error { return m.srv.Close() }

// Endpoint is the value of IDENTITY_ENDPOINT.
func (m *ManagedIdentity) Endpoint() string { return m.endpoint }

// Header is the value of IDENTITY_HEADER.
func (m *ManagedIdentity) Header() string { return m.opts.Header }

// Env returns the environment the platform gives a Functions app with a
// managed identity: IDENTITY_ENDPOINT and IDENTITY_HEADER.
func (m *ManagedIdentity) Env() map[string]string {
	return map[string]string{"IDENTITY_ENDPOINT": m.endpoint, "IDENTITY_HEADER": m.opts.Header}
}

// SystemAssigned returns the system-assigned identity.
func (m *ManagedIdentity) SystemAssigned() Identity { return m.opts.SystemAssigned }

// TenantID returns the identities' tenant.
func (m *ManagedIdentity) TenantID() string { return m.opts.TenantID }

// Requests returns the token requests answered so far, oldest first.
func (m *ManagedIdentity) Requests() []TokenRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]TokenRequest(nil), m.requests...)
}

// Refused counts requests refused for a missing or wrong
// X-IDENTITY-HEADER, a wrong api-version or an unknown identity.
func (m *ManagedIdentity) Refused() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused
}

// SetFailing makes every request fail with the given HTTP status (such
// as 500); 0 makes the stand-in healthy again.
func (m *ManagedIdentity) SetFailing(status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failing = status
}

// Claims are the claims of the stand-in's tokens, shaped like those of a
// real managed-identity token (v1 access token for an application).
type Claims struct {
	AppID      string `json:"appid"`
	ObjectID   string `json:"oid"`
	TenantID   string `json:"tid"`
	IDType     string `json:"idtyp"`
	Version    string `json:"ver"`
	AppIDACR   string `json:"appidacr"`
	IdentityRP string `json:"idp"`
	// Audience is the resource. Entra writes a single audience as a
	// string, so this field shadows RegisteredClaims' list.
	Audience string `json:"aud"`
	jwt.RegisteredClaims
}

// GetAudience implements jwt.Claims with the shadowing Audience.
func (c Claims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// Verify checks that token was issued by this stand-in (not by a Mint
// hook), is unexpired and is meant for resource, and returns its claims.
func (m *ManagedIdentity) Verify(token, resource string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return m.signKey, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(),
		jwt.WithAudience(resource), jwt.WithTimeFunc(m.opts.Now))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Accepts returns a function reporting whether a bearer token is one of
// this stand-in's tokens for resource: the check a resource such as the
// Key Vault stand-in makes.
func (m *ManagedIdentity) Accepts(resource string) func(token string) bool {
	return func(token string) bool {
		_, err := m.Verify(token, resource)
		return err == nil
	}
}

// serveToken answers GET IDENTITY_ENDPOINT?resource=R&api-version=2019-08-01[&client_id=C]
// as App Service does.
func (m *ManagedIdentity) serveToken(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	failing := m.failing
	m.mu.Unlock()
	if failing != 0 {
		writeMSIError(w, failing, "The managed identity endpoint is failing on purpose (azuretest).")
		return
	}
	if r.Method != http.MethodGet {
		writeMSIError(w, http.StatusMethodNotAllowed, "Only GET is supported.")
		return
	}
	resource, clientID, problem := m.readTokenRequest(r)
	if problem != "" {
		m.refuse(w, http.StatusBadRequest, problem)
		return
	}
	id, ok := m.identity(clientID)
	if !ok {
		m.refuse(w, http.StatusBadRequest, "Unable to load the proper Managed Identity.")
		return
	}
	token, exp, err := m.issue(id, resource)
	if err != nil {
		writeMSIError(w, http.StatusInternalServerError, "minting the token failed: "+err.Error())
		return
	}
	m.mu.Lock()
	m.requests = append(m.requests, TokenRequest{Resource: resource, ClientID: clientID})
	m.mu.Unlock()

	// expires_on is a string of Unix seconds, as App Service sends it
	// (MSAL also accepts a number and some date formats).
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]string{ //nolint:errcheck // the client went away
		"access_token": token,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    id.ClientID,
	})
}

// readTokenRequest reads the resource and client_id of a token request,
// or says what is wrong with it (the identity header, the api-version, a
// missing resource, an identity selector the stand-in does not know).
func (m *ManagedIdentity) readTokenRequest(r *http.Request) (resource, clientID, problem string) {
	// The header proves the caller runs inside the app (SSRF protection).
	got := r.Header.Get("X-IDENTITY-HEADER")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(m.opts.Header)) != 1 {
		return "", "", "The X-IDENTITY-HEADER header is missing or invalid."
	}
	q := r.URL.Query()
	if v := q.Get("api-version"); v != MSIAPIVersion {
		return "", "", fmt.Sprintf("The api-version %q is not supported; use %s.", v, MSIAPIVersion)
	}
	resource = q.Get("resource")
	if resource == "" {
		return "", "", "The resource query parameter is required."
	}
	if q.Get("principal_id") != "" || q.Get("mi_res_id") != "" || q.Get("object_id") != "" {
		return "", "", "The stand-in selects user-assigned identities by client_id only."
	}
	return resource, q.Get("client_id"), ""
}

// identity is the identity a request gets: the user-assigned one with
// clientID, or the system-assigned one when clientID is empty.
func (m *ManagedIdentity) identity(clientID string) (Identity, bool) {
	if clientID == "" {
		return m.opts.SystemAssigned, true
	}
	for _, ua := range m.opts.UserAssigned {
		if strings.EqualFold(ua.ClientID, clientID) {
			return ua, true
		}
	}
	return Identity{}, false
}

// issue mints a token for id and resource, with Options.Mint when set,
// expiring after the configured lifetime.
func (m *ManagedIdentity) issue(id Identity, resource string) (string, time.Time, error) {
	now := m.opts.Now()
	exp := now.Add(m.opts.Lifetime).Truncate(time.Second)
	if m.opts.Mint != nil {
		token, err := m.opts.Mint(id, resource, exp)
		return token, exp, err
	}
	token, err := m.mint(id, resource, now, exp)
	return token, exp, err
}

func (m *ManagedIdentity) refuse(w http.ResponseWriter, status int, msg string) {
	m.mu.Lock()
	m.refused++
	m.mu.Unlock()
	writeMSIError(w, status, msg)
}

func (m *ManagedIdentity) mint(id Identity, resource string, now, exp time.Time) (string, error) {
	c := Claims{
		AppID:      id.ClientID,
		ObjectID:   id.ObjectID,
		TenantID:   m.opts.TenantID,
		IDType:     "app",
		Version:    "1.0",
		AppIDACR:   "2",
		IdentityRP: "https://sts.windows.net/" + m.opts.TenantID + "/",
		Audience:   resource,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "https://sts.windows.net/" + m.opts.TenantID + "/",
			Subject:   id.ObjectID,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Minute)),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        randomHex(16),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(m.signKey)
}

func writeMSIError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"statusCode": status, "message": msg}) //nolint:errcheck // the client went away
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

func randomGUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:32]
}
