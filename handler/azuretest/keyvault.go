package azuretest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/selfsigned"
)

// KeyVaultResource is Key Vault's resource (token audience) in the public
// cloud, named in its authentication challenge.
const KeyVaultResource = "https://vault.azure.net"

// Failure modes of the Key Vault stand-in.
const (
	// Healthy serves requests.
	Healthy = 0
	// Unavailable answers every request 503 ServiceUnavailable.
	Unavailable = 1
	// Closed closes every connection without answering.
	Closed = 2
)

// KeyVaultOptions configures a KeyVault stand-in. The zero value is ready
// to use.
type KeyVaultOptions struct {
	// Name is the vault's name: it is reached as https://<Name>.vault.azure.net.
	// "stand-in" when empty.
	Name string
	// TenantID is named in the challenge's authorization URL;
	// DefaultTenantID when empty.
	TenantID string
	// Accept reports whether a bearer token is good, typically
	// ManagedIdentity.Accepts(KeyVaultResource), which checks the token's
	// signature. Required: when nil every token is refused, as the real
	// vault refuses tokens it cannot verify.
	Accept func(token string) bool
	// PageSize is the most items a list page holds (Key Vault's
	// maxresults, at most 25); 25 when zero.
	PageSize int
	// Now is the clock for the versions' created and updated times;
	// time.Now when nil.
	Now func() time.Time
}

// VersionAttributes are the settable attributes of a secret version.
type VersionAttributes struct {
	Disabled    bool
	NotBefore   time.Time // zero: none
	Expires     time.Time // zero: none
	ContentType string
}

// Request is one request the Key Vault stand-in received.
type Request struct {
	Method     string
	Path       string
	APIVersion string
	// Authenticated tells whether it carried a bearer token the vault
	// accepted.
	Authenticated bool
	// Status is the HTTP status of the answer; 0 for a closed connection.
	Status int
}

// KeyVault is a running stand-in for Key Vault's secrets API over TLS,
// with a certificate valid for *.vault.azure.net. Clients reach it through
// HTTPClient, which maps the vault's host name to the stand-in's loopback
// address and trusts its certificate, so the host the SDK sees, the TLS
// server name and the challenge check are those of a real vault.
//
// It serves GET /secrets/{name}[/{version}] and GET
// /secrets/{name}/versions (paged through nextLink) with Key Vault's
// shapes and errors, and the challenge: a request without an acceptable
// bearer token gets 401 with WWW-Authenticate naming the tenant's
// authority and the vault resource.
type KeyVault struct {
	opts   KeyVaultOptions
	host   string // <name>.vault.azure.net
	srv    *httptest.Server
	pool   *x509.CertPool
	client *http.Client

	mu      sync.Mutex
	secrets map[string][]*version // oldest first
	lastAt  time.Time             // created time of the newest version
	mode    int
	log     []Request
}

type version struct {
	id      string
	value   string
	attrs   VersionAttributes
	created time.Time
	updated time.Time
}

var vaultNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)

// StartKeyVault starts the stand-in on a loopback port. Call Close when
// done.
func StartKeyVault(opts KeyVaultOptions) (*KeyVault, error) {
	if opts.Name == "" {
		opts.Name = "stand-in"
	}
	if !vaultNameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("azuretest: key vault: %q is not a vault name", opts.Name)
	}
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if opts.PageSize <= 0 || opts.PageSize > 25 {
		opts.PageSize = 25
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cert, leaf, err := vaultCertificate()
	if err != nil {
		return nil, err
	}
	kv := &KeyVault{
		opts:    opts,
		host:    strings.ToLower(opts.Name) + ".vault.azure.net",
		pool:    x509.NewCertPool(),
		secrets: map[string][]*version{},
	}
	kv.pool.AddCert(leaf)
	kv.srv = httptest.NewUnstartedServer(http.HandlerFunc(kv.serve))
	kv.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	kv.srv.StartTLS()
	kv.client = &http.Client{Transport: kv.Transport(), Timeout: 30 * time.Second}
	return kv, nil
}

// Close stops the stand-in.
func (kv *KeyVault) Close() { kv.srv.Close() }

// URL is the vault URI, https://<name>.vault.azure.net.
func (kv *KeyVault) URL() string { return "https://" + kv.host }

// Addr is the loopback address the stand-in listens on.
func (kv *KeyVault) Addr() string { return kv.srv.Listener.Addr().String() }

// CertPool holds the stand-in's certificate.
func (kv *KeyVault) CertPool() *x509.CertPool { return kv.pool.Clone() }

// Transport returns a new transport that dials the stand-in for the
// vault's host on port 443, refuses every other address, and trusts the
// stand-in's certificate. The TLS server name stays the vault's host.
func (kv *KeyVault) Transport() *http.Transport {
	var d net.Dialer
	target := kv.host + ":443"
	addr := kv.Addr()
	return &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if !strings.EqualFold(a, target) {
				// Nothing in a test should reach a real Azure host.
				return nil, fmt.Errorf("azuretest: dial %s: only %s is reachable", a, target)
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: kv.pool.Clone(), MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// HTTPClient returns a client using Transport, suitable for
// azcore.ClientOptions.Transport.
func (kv *KeyVault) HTTPClient() *http.Client { return kv.client }

// SetSecret adds a new, enabled version holding value to the secret name
// (creating the secret) and returns the version id.
func (kv *KeyVault) SetSecret(name, value string) string {
	return kv.SetSecretVersion(name, value, VersionAttributes{})
}

// SetSecretVersion adds a new version with the given attributes and
// returns its id. Key Vault stamps times in whole seconds; the stand-in
// spaces versions at least a second apart so that their created times
// order them unambiguously, as they would in a real vault written by
// people.
func (kv *KeyVault) SetSecretVersion(name, value string, attrs VersionAttributes) string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	t := kv.opts.Now().UTC().Truncate(time.Second)
	if !t.After(kv.lastAt) {
		t = kv.lastAt.Add(time.Second)
	}
	kv.lastAt = t
	v := &version{id: randomHex(16), value: value, attrs: attrs, created: t, updated: t}
	kv.secrets[name] = append(kv.secrets[name], v)
	return v.id
}

// SetEnabled enables or disables a version. It reports false when there
// is no such version.
func (kv *KeyVault) SetEnabled(name, versionID string, enabled bool) bool {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	for _, v := range kv.secrets[name] {
		if v.id == versionID {
			v.attrs.Disabled = !enabled
			v.updated = kv.opts.Now().UTC().Truncate(time.Second)
			return true
		}
	}
	return false
}

// SetMode sets the failure mode: Healthy, Unavailable or Closed.
func (kv *KeyVault) SetMode(mode int) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.mode = mode
}

// Requests returns the requests received so far, oldest first.
func (kv *KeyVault) Requests() []Request {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return append([]Request(nil), kv.log...)
}

// RequestCount is the number of requests received so far.
func (kv *KeyVault) RequestCount() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return len(kv.log)
}

func (kv *KeyVault) serve(w http.ResponseWriter, r *http.Request) {
	req := Request{Method: r.Method, Path: r.URL.Path, APIVersion: r.URL.Query().Get("api-version")}
	// Count the request before answering: once the answer (or a closed
	// connection) is out, the client may ask for the count.
	kv.mu.Lock()
	i := len(kv.log)
	kv.log = append(kv.log, req)
	kv.mu.Unlock()
	kv.handle(&loggingWriter{ResponseWriter: w, kv: kv, i: i, req: &req}, r, &req)
}

// loggingWriter completes a request's log entry just before the answer
// goes out, so that the log is whole by the time the client has it.
type loggingWriter struct {
	http.ResponseWriter
	kv  *KeyVault
	i   int
	req *Request
}

func (lw *loggingWriter) WriteHeader(status int) {
	lw.req.Status = status
	lw.kv.mu.Lock()
	lw.kv.log[lw.i] = *lw.req
	lw.kv.mu.Unlock()
	lw.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (Closed mode).
func (lw *loggingWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

// handle answers r and returns the status it sent (0 for a closed
// connection). It fills in req.Authenticated before answering.
func (kv *KeyVault) handle(w http.ResponseWriter, r *http.Request, req *Request) int {
	if status, failed := kv.failure(w); failed {
		return status
	}
	if status, refused := kv.refuse(w, r, req); refused {
		return status
	}
	req.Authenticated = true
	if r.Method != http.MethodGet {
		return kvError(w, http.StatusMethodNotAllowed, "BadParameter", "The stand-in serves only GET.", "")
	}
	return kv.route(w, r)
}

// failure answers as the vault's failure mode says, and reports whether
// there was one.
func (kv *KeyVault) failure(w http.ResponseWriter) (status int, failed bool) {
	kv.mu.Lock()
	mode := kv.mode
	kv.mu.Unlock()
	switch mode {
	case Unavailable:
		return kvError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "The service is unavailable (azuretest).", ""), true
	case Closed:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return 0, true
		}
		panic(http.ErrAbortHandler) // closes the connection where hijacking is impossible (HTTP/2)
	}
	return 0, false
}

// refuse answers a request for another host, without an api-version or
// without an accepted bearer token (with the challenge), and reports
// whether it did.
func (kv *KeyVault) refuse(w http.ResponseWriter, r *http.Request, req *Request) (status int, refused bool) {
	if r.Host != kv.host && r.Host != kv.host+":443" {
		// A client that ignored the vault's name would not pass the SDK's
		// challenge check against a real vault either.
		return kvError(w, http.StatusBadRequest, "BadParameter", "Unknown host "+r.Host+".", ""), true
	}
	if req.APIVersion == "" {
		return kvError(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.", ""), true
	}
	token, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if hasBearer && token != "" && kv.accept(token) {
		return 0, false
	}
	// The challenge tells the client which authority and resource to get
	// a token for.
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="%s"`,
		kv.opts.TenantID, KeyVaultResource))
	msg := "AKV10000: Request is missing a Bearer or PoP token."
	if hasBearer {
		msg = "AKV10032: Invalid issuer or token."
	}
	return kvError(w, http.StatusUnauthorized, "Unauthorized", msg, ""), true
}

// route serves /secrets/{name}[/], /secrets/{name}/{version} and
// /secrets/{name}/versions.
func (kv *KeyVault) route(w http.ResponseWriter, r *http.Request) int {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) == 3 && parts[2] == "" {
		parts = parts[:2] // /secrets/{name}/ means the latest version
	}
	if parts[0] != "secrets" || len(parts) < 2 || len(parts) > 3 || parts[1] == "" {
		return kvError(w, http.StatusNotFound, "NotFound", "No route for "+r.URL.Path+".", "")
	}
	name := parts[1]
	switch {
	case len(parts) == 3 && parts[2] == "versions":
		return kv.listVersions(w, r, name)
	case len(parts) == 3:
		return kv.getSecret(w, name, parts[2])
	default:
		return kv.getSecret(w, name, "")
	}
}

func (kv *KeyVault) accept(token string) bool {
	return kv.opts.Accept != nil && kv.opts.Accept(token)
}

func (kv *KeyVault) getSecret(w http.ResponseWriter, name, versionID string) int {
	kv.mu.Lock()
	versions := kv.secrets[name]
	var v *version
	if versionID == "" && len(versions) > 0 {
		v = versions[len(versions)-1]
	}
	for _, c := range versions {
		if versionID != "" && c.id == versionID {
			v = c
		}
	}
	var body map[string]any
	if v != nil {
		body = kv.bundle(name, v, true)
	}
	kv.mu.Unlock()

	if v == nil {
		what := name
		if versionID != "" {
			what += "/" + versionID
		}
		return kvError(w, http.StatusNotFound, "SecretNotFound",
			fmt.Sprintf("A secret with (name/id) %s was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", what), "")
	}
	if v.attrs.Disabled {
		// Key Vault refuses disabled versions but serves expired and
		// not-yet-valid ones: the reader must check exp and nbf.
		return kvError(w, http.StatusForbidden, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
	}
	return writeJSON(w, http.StatusOK, body)
}

func (kv *KeyVault) listVersions(w http.ResponseWriter, r *http.Request, name string) int {
	q := r.URL.Query()
	size := kv.opts.PageSize
	if m := q.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > 25 {
			return kvError(w, http.StatusBadRequest, "BadParameter", "Invalid maxresults: must be between 1 and 25.", "")
		}
		size = n
	}
	skip := 0
	if s := q.Get("$skiptoken"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return kvError(w, http.StatusBadRequest, "BadParameter", "Invalid $skiptoken.", "")
		}
		skip = n
	}

	kv.mu.Lock()
	// Key Vault promises no order; the stand-in lists by version id, which
	// is random, so readers must sort by time themselves.
	versions := append([]*version(nil), kv.secrets[name]...)
	sort.Slice(versions, func(i, j int) bool { return versions[i].id < versions[j].id })
	items := []map[string]any{}
	for i := skip; i < len(versions) && i < skip+size; i++ {
		items = append(items, kv.bundle(name, versions[i], false))
	}
	kv.mu.Unlock()

	// Listing a secret that does not exist gives an empty list, not 404.
	body := map[string]any{"value": items, "nextLink": nil}
	if skip+size < len(versions) {
		next := url.Values{}
		next.Set("api-version", q.Get("api-version"))
		next.Set("maxresults", strconv.Itoa(size))
		next.Set("$skiptoken", strconv.Itoa(skip+size))
		body["nextLink"] = kv.URL() + "/secrets/" + url.PathEscape(name) + "/versions?" + next.Encode()
	}
	return writeJSON(w, http.StatusOK, body)
}

// bundle renders a version as Key Vault does: a SecretBundle with the
// value, or a SecretItem (in lists) without it. Call with kv.mu held.
func (kv *KeyVault) bundle(name string, v *version, withValue bool) map[string]any {
	attrs := map[string]any{
		"enabled":         !v.attrs.Disabled,
		"created":         v.created.Unix(),
		"updated":         v.updated.Unix(),
		"recoveryLevel":   "Recoverable+Purgeable",
		"recoverableDays": 90,
	}
	if !v.attrs.NotBefore.IsZero() {
		attrs["nbf"] = v.attrs.NotBefore.Unix()
	}
	if !v.attrs.Expires.IsZero() {
		attrs["exp"] = v.attrs.Expires.Unix()
	}
	b := map[string]any{
		"id":         kv.URL() + "/secrets/" + name + "/" + v.id,
		"attributes": attrs,
		"tags":       map[string]string{},
	}
	if v.attrs.ContentType != "" {
		b["contentType"] = v.attrs.ContentType
	}
	if withValue {
		b["value"] = v.value
	}
	return b
}

func kvError(w http.ResponseWriter, status int, code, msg, inner string) int {
	e := map[string]any{"code": code, "message": msg}
	if inner != "" {
		e["innererror"] = map[string]any{"code": inner}
	}
	return writeJSON(w, status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
	return status
}

// vaultCertificate makes a self-signed certificate for *.vault.azure.net.
// It is its own root: clients trust exactly this certificate.
func vaultCertificate() (tls.Certificate, *x509.Certificate, error) {
	cert, leaf, err := selfsigned.New(selfsigned.Names{
		CommonName: "*.vault.azure.net",
		DNS:        []string{"*.vault.azure.net", "vault.azure.net"},
	}, 24*time.Hour)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("azuretest: key vault certificate: %w", err)
	}
	return cert, leaf, nil
}
