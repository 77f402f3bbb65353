// Package config reads the handler's settings from the environment.
//
// Every problem is reported as an error that names the setting, so the
// process can exit with one clear line.
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// Config is the handler's configuration in production mode.
type Config struct {
	// Port is FUNCTIONS_CUSTOMHANDLER_PORT: the Functions host proxies to
	// 127.0.0.1 on this port.
	Port int

	// PublicBaseURL is the address clients use, without a trailing slash:
	// PUBLIC_BASE_URL, else https://$WEBSITE_HOSTNAME. Never taken from
	// request headers.
	PublicBaseURL string

	Entra Entra

	// RedisURL is REDIS_URL (redis:// or rediss://).
	RedisURL string

	// RoleMap maps App Roles to grants (ROLE_MAP, JSON), default
	// authz.DefaultRoleMap.
	RoleMap authz.RoleMap

	// ClientAuth is how MSAL authenticates the app (ENTRA_CLIENT_AUTH):
	// "secret" (default) or "managed-identity" (a federated credential
	// trusting the managed identity: no secret at all).
	ClientAuth string

	// ClientSecret is ENTRA_CLIENT_SECRET, the app registration's secret
	// MSAL signs in with, when ClientAuth is "secret" and there is no Key
	// Vault. Never logged.
	ClientSecret string

	// SealingKeys is TOKEN_SEALING_KEYS: the key ring that seals tokens in
	// Redis, newest key first. Nil when the keys come from Key Vault.
	SealingKeys *seal.Ring

	// KeyVault names where secrets come from in Azure; empty URI: from the
	// environment.
	KeyVault KeyVault

	// RedisAuth is REDIS_AUTH: "" (credentials in REDIS_URL, if any) or
	// "entra" (the managed identity's token, no access keys).
	RedisAuth string

	// RedisUsername is REDIS_USERNAME: with REDIS_AUTH=entra, the Redis user
	// to sign in as, the managed identity's object (principal) id. Empty:
	// read from the identity's own token.
	RedisUsername string

	// Telemetry: APPLICATIONINSIGHTS_CONNECTION_STRING and
	// APPLICATIONINSIGHTS_AUTHENTICATION_STRING; empty turns telemetry off.
	AppInsightsConnectionString string
	AppInsightsAuthentication   string

	// Graph is where my_profile reads the user's profile, on behalf of the
	// user: GRAPH_BASE_URL and GRAPH_SCOPE.
	GraphBaseURL string
	GraphScope   string

	// ReturnURLs are the addresses /auth/login may send a one-time code to
	// (AUTH_ALLOWED_RETURN_URLS, comma-separated, compared exactly).
	ReturnURLs []string

	// AllowedOrigins are browser origins, besides the public base URL's own,
	// that may call /mcp (MCP_ALLOWED_ORIGINS, comma-separated).
	AllowedOrigins []string

	LogLevel slog.Level

	// AuthMode is MCP_AUTH_MODE: AuthModeProxy (default) or AuthModeEntra.
	AuthMode string

	// ExtraRedirectSchemes are custom URI schemes without a dot that OAuth
	// clients may register redirect URIs with (OAUTH_EXTRA_REDIRECT_SCHEMES,
	// comma-separated, such as "cursor"): an operator's exception to RFC
	// 8252 §7.1, which wants reverse domain names.
	ExtraRedirectSchemes []string

	// ClientIP says which address per-address rate limits count by
	// (CLIENT_IP_HEADER): by default X-Forwarded-For as the Functions host
	// sets it; the zero Policy is the TCP peer.
	ClientIP clientip.Policy

	// ReuseGrace is REFRESH_REUSE_GRACE: how long a rotated refresh token
	// presented again gets a successor instead of revoking its chain (a
	// client whose reply was lost retries). 0 means the default
	// (store.DefaultReuseGrace), negative means none.
	ReuseGrace time.Duration

	// ToolCallsPerMinute and ToolCallsBurst limit each caller's tools/call
	// (TOOL_CALLS_PER_MINUTE, TOOL_CALLS_BURST); 0 (unset) means the
	// defaults the app sets.
	ToolCallsPerMinute int
	ToolCallsBurst     int

	// TaskBytesPerTenant is each tenant's task storage budget in bytes
	// (TASKS_MAX_BYTES_PER_TENANT); 0 (unset) means the task store's
	// default.
	TaskBytesPerTenant int64

	// AllowLoopbackClients lets OAuth clients' metadata documents be
	// fetched from loopback addresses. Dev mode sets it; no setting does,
	// so a deployment can never turn it on.
	AllowLoopbackClients bool
}

// Authorization modes (MCP_AUTH_MODE).
const (
	// AuthModeProxy: Protected Resource Metadata names this server as the
	// authorization server, and its OAuth front (client registration,
	// consent, PKCE) signs people in with Entra ID for any MCP client.
	AuthModeProxy = "proxy"
	// AuthModeEntra: Protected Resource Metadata names the Entra issuer;
	// clients with built-in Entra support sign in there directly.
	AuthModeEntra = "entra"
)

// schemeRE is an RFC 3986 scheme, in lower case.
var schemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)

// ParseRedirectSchemes reads OAUTH_EXTRA_REDIRECT_SCHEMES: lower-case
// custom schemes, never http or https.
func ParseRedirectSchemes(v string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(v, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !schemeRE.MatchString(sc) || sc == "http" || sc == "https" || len(sc) > 64 {
			return nil, fmt.Errorf("OAUTH_EXTRA_REDIRECT_SCHEMES: %q must be a lower-case custom URI scheme such as cursor (not http or https)", sc)
		}
		out = append(out, sc)
	}
	return out, nil
}

// ParseAuthMode reads MCP_AUTH_MODE: proxy (default) or entra.
func ParseAuthMode(v string) (string, error) {
	switch v = strings.TrimSpace(v); v {
	case "":
		return AuthModeProxy, nil
	case AuthModeProxy, AuthModeEntra:
		return v, nil
	}
	return "", fmt.Errorf("MCP_AUTH_MODE: %q must be proxy or entra", v)
}

// KeyVault locates the handler's secrets in Azure Key Vault.
type KeyVault struct {
	URI              string // KEY_VAULT_URI
	ClientSecretName string // KEY_VAULT_CLIENT_SECRET_NAME
	SealingKeyName   string // KEY_VAULT_SEALING_KEY_NAME
}

// Defaults for settings with one.
const (
	DefaultClientSecretName = "entra-client-secret"
	DefaultSealingKeyName   = "token-sealing-key"
	DefaultGraphBaseURL     = "https://graph.microsoft.com"
	DefaultGraphScope       = "https://graph.microsoft.com/User.Read"
)

// Entra is the app registration the handler accepts tokens for.
type Entra struct {
	TenantID       string   // ENTRA_TENANT_ID
	ClientID       string   // ENTRA_CLIENT_ID
	AuthorityHost  string   // ENTRA_AUTHORITY_HOST, no trailing slash
	AllowedTenants []string // ENTRA_ALLOWED_TENANTS, default [TenantID]
	TokenVersion   int      // ENTRA_TOKEN_VERSION, 2 or 1
	AppIDURI       string   // ENTRA_APP_ID_URI, default api://<ClientID>
}

// Scope is the delegated scope clients request for this API.
func (e Entra) Scope() string { return e.AppIDURI + "/access_as_user" }

// Issuer is the tenant's Entra v2 issuer, named in Protected Resource
// Metadata as the authorization server.
func (e Entra) Issuer() string { return e.AuthorityHost + "/" + e.TenantID + "/v2.0" }

// DefaultAuthorityHost is Entra ID in the public cloud.
const DefaultAuthorityHost = "https://login.microsoftonline.com"

// Load reads the production configuration through getenv (os.Getenv in
// main, a map in tests).
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{}
	var err error

	portText := strings.TrimSpace(getenv("FUNCTIONS_CUSTOMHANDLER_PORT"))
	if portText == "" {
		return nil, fmt.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT: required (set by the Functions host; run locally without it with go run ./handler/dev)")
	}
	c.Port, err = strconv.Atoi(portText)
	if err != nil || c.Port < 1 || c.Port > 65535 {
		return nil, fmt.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT: %q is not a port number", portText)
	}

	if getenv("AZURE_CLIENT_SECRET") != "" {
		// azidentity would pick it (EnvironmentCredential) over the managed
		// identity for Key Vault, Redis and telemetry: refused in every
		// mode, even where nothing uses azidentity yet.
		return nil, fmt.Errorf("AZURE_CLIENT_SECRET: must not be set; the handler reaches Azure with its managed identity (the app registration's secret is ENTRA_CLIENT_SECRET)")
	}
	if c.PublicBaseURL, err = publicBaseURL(getenv); err != nil {
		return nil, err
	}
	if c.Entra, err = loadEntra(getenv); err != nil {
		return nil, err
	}

	c.RedisURL = strings.TrimSpace(getenv("REDIS_URL"))
	if c.RedisURL == "" {
		return nil, fmt.Errorf("REDIS_URL: required (redis://host:port/db, or rediss:// for TLS)")
	}
	if err := CheckRedisURL(c.RedisURL); err != nil {
		return nil, err
	}

	if err := loadSecrets(c, getenv); err != nil {
		return nil, err
	}
	if err := loadAzure(c, getenv); err != nil {
		return nil, err
	}
	if err := LoadChoices(c, getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadChoices reads into c the settings that say how the handler behaves
// rather than where its parts are: return URLs, role map, allowed origins,
// log level, authorization mode, redirect schemes, client address, reuse
// grace and limits. Production (Load) and dev mode read them the same way,
// so whatever can be set in Azure can be tried locally.
func LoadChoices(c *Config, getenv func(string) string) error {
	var err error
	if c.ReturnURLs, err = ParseReturnURLs(getenv("AUTH_ALLOWED_RETURN_URLS")); err != nil {
		return err
	}
	if c.RoleMap, err = loadRoleMap(getenv("ROLE_MAP")); err != nil {
		return err
	}
	if c.AllowedOrigins, err = loadOrigins(getenv("MCP_ALLOWED_ORIGINS")); err != nil {
		return err
	}
	if c.LogLevel, err = ParseLogLevel(getenv("LOG_LEVEL")); err != nil {
		return err
	}
	if c.AuthMode, err = ParseAuthMode(getenv("MCP_AUTH_MODE")); err != nil {
		return err
	}
	if c.ExtraRedirectSchemes, err = ParseRedirectSchemes(getenv("OAUTH_EXTRA_REDIRECT_SCHEMES")); err != nil {
		return err
	}
	if c.ClientIP, err = clientip.ParsePolicy(getenv("CLIENT_IP_HEADER")); err != nil {
		return fmt.Errorf("CLIENT_IP_HEADER: %w", err)
	}
	if c.ReuseGrace, err = ParseReuseGrace(getenv("REFRESH_REUSE_GRACE")); err != nil {
		return err
	}
	return loadLimits(c, getenv)
}

// Bounds of the limit settings: a typo of a few digits should stop
// start-up rather than turn a limit off or make it useless.
const (
	MaxToolCallsPerMinute = 60000 // 1,000 a second per caller
	MaxToolCallsBurst     = 10000
	MinTaskBytes          = 64 << 10 // a few maximal tasks
	MaxTaskBytes          = 1 << 30
)

// loadLimits reads the per-caller tool-call limit and the per-tenant task
// budget. Unset settings stay 0, the defaults.
func loadLimits(c *Config, getenv func(string) string) error {
	var err error
	if c.ToolCallsPerMinute, err = parseCount("TOOL_CALLS_PER_MINUTE", getenv("TOOL_CALLS_PER_MINUTE"), 1, MaxToolCallsPerMinute); err != nil {
		return err
	}
	if c.ToolCallsBurst, err = parseCount("TOOL_CALLS_BURST", getenv("TOOL_CALLS_BURST"), 1, MaxToolCallsBurst); err != nil {
		return err
	}
	n, err := parseCount("TASKS_MAX_BYTES_PER_TENANT", getenv("TASKS_MAX_BYTES_PER_TENANT"), MinTaskBytes, MaxTaskBytes)
	c.TaskBytesPerTenant = int64(n)
	return err
}

// parseCount reads the setting name: empty is 0 (the default), else a
// whole number in decimal digits from lo to hi.
func parseCount(name, v string, lo, hi int) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || strings.TrimLeft(v, "0123456789") != "" || n < lo || n > hi {
		return 0, fmt.Errorf("%s: %q must be a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// maxReuseGrace bounds REFRESH_REUSE_GRACE: a grace is for a lost reply
// and its retry, not a second life for stolen refresh tokens.
const maxReuseGrace = 5 * time.Minute

// ParseReuseGrace reads REFRESH_REUSE_GRACE: a duration such as 30s (at
// most 5m), or 0 for none. Empty means the default (returned as 0).
func ParseReuseGrace(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if v == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 || d > maxReuseGrace {
		return 0, fmt.Errorf("REFRESH_REUSE_GRACE: %q must be a duration from 0 (none) to 5m, such as 30s", v)
	}
	if d == 0 {
		return -1, nil
	}
	return d, nil
}

// loadSecrets reads how the app authenticates to Entra and where its
// secrets come from: Key Vault when KEY_VAULT_URI is set, else the
// environment.
func loadSecrets(c *Config, getenv func(string) string) error {
	switch c.ClientAuth = strings.TrimSpace(getenv("ENTRA_CLIENT_AUTH")); c.ClientAuth {
	case "":
		c.ClientAuth = "secret"
	case "secret", "managed-identity":
	default:
		return fmt.Errorf("ENTRA_CLIENT_AUTH: %q must be secret or managed-identity", c.ClientAuth)
	}
	c.KeyVault = KeyVault{
		URI:              strings.TrimSpace(getenv("KEY_VAULT_URI")),
		ClientSecretName: orDefault(getenv("KEY_VAULT_CLIENT_SECRET_NAME"), DefaultClientSecretName),
		SealingKeyName:   orDefault(getenv("KEY_VAULT_SEALING_KEY_NAME"), DefaultSealingKeyName),
	}
	if c.KeyVault.URI != "" {
		u, err := url.Parse(c.KeyVault.URI)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("KEY_VAULT_URI: %q must look like https://<name>.vault.azure.net/", c.KeyVault.URI)
		}
		for name, v := range map[string]string{"KEY_VAULT_CLIENT_SECRET_NAME": c.KeyVault.ClientSecretName, "KEY_VAULT_SEALING_KEY_NAME": c.KeyVault.SealingKeyName} {
			if !secretNameRE.MatchString(v) {
				return fmt.Errorf("%s: %q is not a Key Vault secret name (1-127 letters, digits and dashes)", name, v)
			}
		}
		return nil // the values come from Key Vault at start-up
	}
	c.ClientSecret = getenv("ENTRA_CLIENT_SECRET")
	if c.ClientAuth == "secret" && strings.TrimSpace(c.ClientSecret) == "" {
		return fmt.Errorf("ENTRA_CLIENT_SECRET: required (a client secret of the app registration, for sign-in), or set KEY_VAULT_URI or ENTRA_CLIENT_AUTH=managed-identity")
	}
	if strings.TrimSpace(getenv("TOKEN_SEALING_KEYS")) == "" {
		return fmt.Errorf("TOKEN_SEALING_KEYS: required (comma-separated base64 32-byte keys, newest first), or set KEY_VAULT_URI")
	}
	var err error
	if c.SealingKeys, err = seal.ParseKeys(getenv("TOKEN_SEALING_KEYS")); err != nil {
		// The error never holds key material.
		return fmt.Errorf("TOKEN_SEALING_KEYS: %w", err)
	}
	return nil
}

var secretNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// loadAzure reads the settings of the Azure services around the handler.
func loadAzure(c *Config, getenv func(string) string) error {
	switch c.RedisAuth = strings.TrimSpace(getenv("REDIS_AUTH")); c.RedisAuth {
	case "", "entra":
	default:
		return fmt.Errorf("REDIS_AUTH: %q must be empty or entra", c.RedisAuth)
	}
	if c.RedisAuth == "entra" && strings.HasPrefix(c.RedisURL, "redis://") {
		return fmt.Errorf("REDIS_AUTH: entra sends a token as the password, which needs TLS: use a rediss:// REDIS_URL")
	}
	c.RedisUsername = strings.ToLower(strings.TrimSpace(getenv("REDIS_USERNAME")))
	if c.RedisUsername != "" && (c.RedisAuth != "entra" || !valid.GUID(c.RedisUsername)) {
		return fmt.Errorf("REDIS_USERNAME: %q must be the managed identity's object id (a GUID), with REDIS_AUTH=entra", c.RedisUsername)
	}
	c.AppInsightsConnectionString = strings.TrimSpace(getenv("APPLICATIONINSIGHTS_CONNECTION_STRING"))
	c.AppInsightsAuthentication = strings.TrimSpace(getenv("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"))

	c.GraphBaseURL = strings.TrimRight(orDefault(getenv("GRAPH_BASE_URL"), DefaultGraphBaseURL), "/")
	u, err := url.Parse(c.GraphBaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && valid.LoopbackHost(u.Hostname()))) {
		return fmt.Errorf("GRAPH_BASE_URL: %q must be an https URL such as %s", c.GraphBaseURL, DefaultGraphBaseURL)
	}
	c.GraphScope = orDefault(getenv("GRAPH_SCOPE"), DefaultGraphScope)
	return nil
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	return def
}

func publicBaseURL(getenv func(string) string) (string, error) {
	if v := strings.TrimSpace(getenv("PUBLIC_BASE_URL")); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Trim(u.Path, "/") != "" {
			return "", fmt.Errorf("PUBLIC_BASE_URL: %q must be an absolute http(s) URL with no path, query or fragment", v)
		}
		if u.Scheme == "http" && !valid.LoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("PUBLIC_BASE_URL: %q must use https unless the host is loopback", v)
		}
		return u.Scheme + "://" + u.Host, nil
	}
	if h := strings.TrimSpace(getenv("WEBSITE_HOSTNAME")); h != "" {
		if strings.ContainsAny(h, "/?#@ ") {
			return "", fmt.Errorf("WEBSITE_HOSTNAME: %q is not a host name", h)
		}
		return "https://" + h, nil
	}
	return "", fmt.Errorf("PUBLIC_BASE_URL: required when WEBSITE_HOSTNAME is not set (e.g. http://localhost:7071 for func start)")
}

// parseAllowedTenants reads ENTRA_ALLOWED_TENANTS: comma-separated tenant
// ids, lower-cased. Empty returns nil: the app's own tenant only.
func parseAllowedTenants(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		if !valid.GUID(t) {
			return nil, fmt.Errorf("ENTRA_ALLOWED_TENANTS: %q is not a tenant id (GUID)", t)
		}
		out = append(out, t)
	}
	return out, nil
}

func loadEntra(getenv func(string) string) (Entra, error) {
	e := Entra{
		TenantID: strings.TrimSpace(getenv("ENTRA_TENANT_ID")),
		ClientID: strings.TrimSpace(getenv("ENTRA_CLIENT_ID")),
	}
	if e.TenantID == "" {
		return e, fmt.Errorf("ENTRA_TENANT_ID: required (the directory (tenant) id of the app registration)")
	}
	if !valid.GUID(e.TenantID) {
		return e, fmt.Errorf("ENTRA_TENANT_ID: %q is not a tenant id (GUID)", e.TenantID)
	}
	if e.ClientID == "" {
		return e, fmt.Errorf("ENTRA_CLIENT_ID: required (the application (client) id of the API's app registration)")
	}
	if !valid.GUID(e.ClientID) {
		return e, fmt.Errorf("ENTRA_CLIENT_ID: %q is not a client id (GUID)", e.ClientID)
	}
	e.TenantID = strings.ToLower(e.TenantID)
	e.ClientID = strings.ToLower(e.ClientID)

	var err error
	if e.AuthorityHost, err = authorityHost(getenv("ENTRA_AUTHORITY_HOST")); err != nil {
		return e, err
	}

	if e.AllowedTenants, err = parseAllowedTenants(getenv("ENTRA_ALLOWED_TENANTS")); err != nil {
		return e, err
	}
	if e.AllowedTenants == nil {
		e.AllowedTenants = []string{e.TenantID}
	}

	e.TokenVersion = 2
	switch v := strings.TrimSpace(getenv("ENTRA_TOKEN_VERSION")); v {
	case "", "2":
	case "1":
		e.TokenVersion = 1
	default:
		return e, fmt.Errorf("ENTRA_TOKEN_VERSION: %q must be 1 or 2", v)
	}

	e.AppIDURI = "api://" + e.ClientID
	if v := strings.TrimSpace(getenv("ENTRA_APP_ID_URI")); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || strings.HasSuffix(v, "/") || u.RawQuery != "" || u.Fragment != "" {
			return e, fmt.Errorf("ENTRA_APP_ID_URI: %q must be an absolute URI without a trailing slash", v)
		}
		e.AppIDURI = v
	}
	return e, nil
}

func authorityHost(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultAuthorityHost, nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("ENTRA_AUTHORITY_HOST: %q must be a URL like %s", v, DefaultAuthorityHost)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !valid.LoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("ENTRA_AUTHORITY_HOST: %q: plain http is accepted only for a loopback host", v)
		}
	default:
		return "", fmt.Errorf("ENTRA_AUTHORITY_HOST: %q must use https", v)
	}
	return u.Scheme + "://" + u.Host, nil
}

// CheckRedisURL reports whether u is a Redis URL the handler can use.
func CheckRedisURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "redis" && p.Scheme != "rediss") || p.Host == "" {
		// The URL may hold a password: never echo it.
		return fmt.Errorf("REDIS_URL: must look like redis://host:port/db or rediss://host:port/db")
	}
	return nil
}

func loadRoleMap(v string) (authz.RoleMap, error) {
	if strings.TrimSpace(v) == "" {
		return authz.DefaultRoleMap(), nil
	}
	m, err := authz.ParseRoleMap(v)
	if err != nil {
		return nil, fmt.Errorf("ROLE_MAP: %w", err)
	}
	return m, nil
}

func loadOrigins(v string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return nil, fmt.Errorf("MCP_ALLOWED_ORIGINS: %q is not an origin like https://example.com", o)
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	return out, nil
}

// ParseReturnURLs reads AUTH_ALLOWED_RETURN_URLS: absolute https URLs (http
// only for loopback hosts, where native apps listen), no fragments.
func ParseReturnURLs(v string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(v, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil ||
			(u.Scheme != "https" && !(u.Scheme == "http" && valid.LoopbackHost(u.Hostname()))) {
			return nil, fmt.Errorf("AUTH_ALLOWED_RETURN_URLS: %q must be an https URL (http only for loopback) without a fragment", raw)
		}
		out = append(out, raw)
	}
	return out, nil
}

// ParseLogLevel reads LOG_LEVEL: debug, info (default), warn or error.
func ParseLogLevel(v string) (slog.Level, error) {
	var l slog.Level
	if strings.TrimSpace(v) == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(strings.TrimSpace(v))); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL: %q must be debug, info, warn or error", v)
	}
	return l, nil
}
