// Package config reads the handler's settings from the environment: it is
// their one reader, every setting is read once, here, and the rest of the
// handler gets typed values grouped by concern.
//
// Every problem is reported as an error that names the setting, so the
// process can exit with one clear line.
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
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
	Server    Server
	Entra     Entra
	Secrets   Secrets
	Identity  Identity
	Redis     Redis
	Telemetry Telemetry
	Graph     Graph
	OAuth     OAuth
	SignIn    SignIn
	Limits    Limits

	// Roles is the role table: authz.DefaultTable (roles.json), its
	// role-to-permission mapping replaced by ROLE_MAP when that is set.
	Roles authz.Table

	// Upstreams are the MCP servers fronted here (MCP_UPSTREAMS, else the
	// shipped upstreams.json); none when neither is there.
	Upstreams []Upstream
}

// Server is where the handler listens and who may call it.
type Server struct {
	// Port is FUNCTIONS_CUSTOMHANDLER_PORT: the Functions host proxies to
	// 127.0.0.1 on this port.
	Port int

	// PublicBaseURL is the address clients use, without a trailing slash:
	// PUBLIC_BASE_URL, else https://$WEBSITE_HOSTNAME. Never taken from
	// request headers.
	PublicBaseURL string

	// AllowedOrigins are browser origins, besides the public base URL's own,
	// that may call /mcp (MCP_ALLOWED_ORIGINS, comma-separated).
	AllowedOrigins []string

	// ClientIP says which address per-address rate limits count by
	// (CLIENT_IP_HEADER): by default X-Forwarded-For as the Functions host
	// sets it; the zero Policy is the TCP peer.
	ClientIP clientip.Policy

	// LogLevel is LOG_LEVEL.
	LogLevel slog.Level
}

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

// Secrets are how the app registration proves itself to Entra and what
// seals tokens in Redis: from Key Vault when KeyVault.URI is set, else from
// the environment.
type Secrets struct {
	// ClientAuth is how MSAL authenticates the app (ENTRA_CLIENT_AUTH).
	ClientAuth ClientAuth

	// ClientSecret is ENTRA_CLIENT_SECRET, the app registration's secret
	// MSAL signs in with, when ClientAuth is ClientAuthSecret and there is
	// no Key Vault. Never logged.
	ClientSecret string

	// SealingKeys is TOKEN_SEALING_KEYS: the key ring that seals tokens in
	// Redis, newest key first. Nil when the keys come from Key Vault.
	SealingKeys *seal.Ring

	// KeyVault names where secrets come from in Azure; empty URI: from the
	// environment.
	KeyVault KeyVault

	// UpstreamHeaders are the values of header-authenticated upstreams'
	// secrets, by secret name, read from the environment variables of
	// those names when there is no Key Vault (with one, they are read
	// from it when first used). Never logged.
	UpstreamHeaders SecretValues
}

// SecretValues are secret values by name; they print as their names only.
type SecretValues map[string]string

// String names the secrets without their values.
func (v SecretValues) String() string {
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	slices.Sort(names)
	return "secrets(" + strings.Join(names, ", ") + ")"
}

// GoString is String, so %#v does not print values either.
func (v SecretValues) GoString() string { return v.String() }

// UpstreamHeaderSecrets reads, from the environment, the value of every
// header-authenticated upstream's secret: the variable SecretEnvName
// names. A missing one is an error naming it.
func UpstreamHeaderSecrets(ups []Upstream, getenv func(string) string) (SecretValues, error) {
	out := SecretValues{}
	for _, u := range ups {
		if u.Auth.Mode != UpstreamHeader {
			continue
		}
		env := SecretEnvName(u.Auth.Secret)
		v := strings.TrimSpace(getenv(env))
		if v == "" {
			return nil, fmt.Errorf("MCP_UPSTREAMS: upstream %q: its header's secret %s: without KEY_VAULT_URI, set the environment variable %s to its value", u.Name, u.Auth.Secret, env)
		}
		out[u.Auth.Secret] = v
	}
	return out, nil
}

// KeyVault locates the handler's secrets in Azure Key Vault.
type KeyVault struct {
	URI              string // KEY_VAULT_URI
	ClientSecretName string // KEY_VAULT_CLIENT_SECRET_NAME
	SealingKeyName   string // KEY_VAULT_SEALING_KEY_NAME
}

// Identity is the managed identity the handler reaches Azure resources
// with (Key Vault, Redis, telemetry, the secretless sign-in assertion).
type Identity struct {
	// Managed is set when the platform offers a managed-identity endpoint
	// (IDENTITY_ENDPOINT or MSI_ENDPOINT, as App Service and Functions
	// do); else the local fallback, the developer's Azure CLI login, is
	// used.
	Managed bool
	// ClientID is AZURE_CLIENT_ID: the user-assigned identity's client id;
	// empty means the system-assigned identity.
	ClientID string
}

// Redis is where tokens, sign-in state and tasks are kept.
type Redis struct {
	// URL is REDIS_URL (redis:// or rediss://). It may hold a password:
	// never logged.
	URL string
	// Auth is REDIS_AUTH: how the handler signs in to Redis.
	Auth RedisAuth
	// Username is REDIS_USERNAME: with RedisAuthEntra, the Redis user to
	// sign in as, the managed identity's object (principal) id. Empty:
	// read from the identity's own token.
	Username string
}

// Telemetry is where Application Insights items go; an empty
// ConnectionString turns telemetry off.
type Telemetry struct {
	ConnectionString string // APPLICATIONINSIGHTS_CONNECTION_STRING
	Authentication   string // APPLICATIONINSIGHTS_AUTHENTICATION_STRING
	// RoleName is WEBSITE_SITE_NAME, the cloud role items are reported
	// under.
	RoleName string
}

// AADAuthentication reports whether telemetry is sent with an Entra token
// (which needs the managed identity).
func (t Telemetry) AADAuthentication() bool {
	return t.ConnectionString != "" && t.Authentication != ""
}

// Graph is where my_profile reads the user's profile, on behalf of the
// user.
type Graph struct {
	BaseURL string // GRAPH_BASE_URL, no trailing slash
	Scope   string // GRAPH_SCOPE
}

// OAuth is how MCP clients get tokens.
type OAuth struct {
	// Mode is MCP_AUTH_MODE.
	Mode AuthMode

	// ExtraRedirectSchemes are custom URI schemes without a dot that OAuth
	// clients may register redirect URIs with (OAUTH_EXTRA_REDIRECT_SCHEMES,
	// comma-separated, such as "cursor"): an operator's exception to RFC
	// 8252 §7.1, which wants reverse domain names.
	ExtraRedirectSchemes []string

	// AllowLoopbackClients lets OAuth clients' metadata documents be
	// fetched from loopback addresses. Dev mode sets it; no setting does,
	// so a deployment can never turn it on.
	AllowLoopbackClients bool
}

// SignIn is how /auth/* hands out and renews sessions.
type SignIn struct {
	// ReturnURLs are the addresses /auth/login may send a one-time code to
	// (AUTH_ALLOWED_RETURN_URLS, comma-separated, compared exactly).
	ReturnURLs []string

	// ReuseGrace is REFRESH_REUSE_GRACE: how long a rotated refresh token
	// presented again gets a successor instead of revoking its chain (a
	// client whose reply was lost retries). 0 means the default
	// (grants.DefaultReuseGrace), negative means none.
	ReuseGrace time.Duration
}

// Limits bound what one caller or tenant may use.
type Limits struct {
	// ToolCallsPerMinute and ToolCallsBurst limit each caller's tools/call
	// (TOOL_CALLS_PER_MINUTE, TOOL_CALLS_BURST); 0 (unset) means
	// DefaultToolCallsPerMinute and DefaultToolCallsBurst.
	ToolCallsPerMinute int
	ToolCallsBurst     int

	// TaskBytesPerTenant is each tenant's task storage budget in bytes
	// (TASKS_MAX_BYTES_PER_TENANT); 0 (unset) means the task store's
	// default.
	TaskBytesPerTenant int64
}

// Load reads the production configuration through getenv (os.Getenv in
// main, a map in tests).
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{}
	var err error
	if c.Server.Port, err = loadPort(getenv("FUNCTIONS_CUSTOMHANDLER_PORT")); err != nil {
		return nil, err
	}
	if c.Identity, err = loadIdentity(getenv); err != nil {
		return nil, err
	}
	if c.Server.PublicBaseURL, err = publicBaseURL(getenv); err != nil {
		return nil, err
	}
	if c.Entra, err = loadEntra(getenv); err != nil {
		return nil, err
	}
	if c.Redis, err = loadRedis(getenv); err != nil {
		return nil, err
	}
	if c.Secrets, err = loadSecrets(getenv); err != nil {
		return nil, err
	}
	c.Telemetry = Telemetry{
		ConnectionString: strings.TrimSpace(getenv("APPLICATIONINSIGHTS_CONNECTION_STRING")),
		Authentication:   strings.TrimSpace(getenv("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")),
		RoleName:         strings.TrimSpace(getenv("WEBSITE_SITE_NAME")),
	}
	if c.Graph, err = loadGraph(getenv); err != nil {
		return nil, err
	}
	if err := LoadChoices(c, getenv); err != nil {
		return nil, err
	}
	if c.Secrets.KeyVault.URI == "" {
		if c.Secrets.UpstreamHeaders, err = UpstreamHeaderSecrets(c.Upstreams, getenv); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func loadPort(v string) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, fmt.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT: required (set by the Functions host; run locally without it with go run ./handler/dev)")
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT: %q is not a port number", v)
	}
	return port, nil
}

// loadIdentity reads which managed identity reaches Azure.
func loadIdentity(getenv func(string) string) (Identity, error) {
	if getenv("AZURE_CLIENT_SECRET") != "" {
		// azidentity would pick it (EnvironmentCredential) over the managed
		// identity for Key Vault, Redis and telemetry: refused in every
		// mode, even where nothing uses azidentity yet.
		return Identity{}, fmt.Errorf("AZURE_CLIENT_SECRET: must not be set; the handler reaches Azure with its managed identity (the app registration's secret is ENTRA_CLIENT_SECRET)")
	}
	return Identity{
		Managed:  strings.TrimSpace(getenv("IDENTITY_ENDPOINT")) != "" || strings.TrimSpace(getenv("MSI_ENDPOINT")) != "",
		ClientID: strings.TrimSpace(getenv("AZURE_CLIENT_ID")),
	}, nil
}

// LoadChoices reads into c the settings that say how the handler behaves
// rather than where its parts are: return URLs, role map, allowed origins,
// log level, authorization mode, redirect schemes, client address, reuse
// grace, limits and upstream MCP servers. Production (Load) and dev mode read them the same way,
// so whatever can be set in Azure can be tried locally.
func LoadChoices(c *Config, getenv func(string) string) error {
	var err error
	if c.SignIn, err = loadSignIn(getenv); err != nil {
		return err
	}
	if c.Roles, err = Roles(getenv); err != nil {
		return err
	}
	if c.Upstreams, err = loadUpstreams(getenv, c.Roles); err != nil {
		return err
	}
	if err := loadServerChoices(&c.Server, getenv); err != nil {
		return err
	}
	if c.OAuth.Mode, err = ParseAuthMode(getenv("MCP_AUTH_MODE")); err != nil {
		return err
	}
	if c.OAuth.ExtraRedirectSchemes, err = ParseRedirectSchemes(getenv("OAUTH_EXTRA_REDIRECT_SCHEMES")); err != nil {
		return err
	}
	c.Limits, err = loadLimits(getenv)
	return err
}

// loadServerChoices reads the operator's choices about callers: origins,
// the client address and the log level.
func loadServerChoices(s *Server, getenv func(string) string) error {
	var err error
	if s.AllowedOrigins, err = loadOrigins(getenv("MCP_ALLOWED_ORIGINS")); err != nil {
		return err
	}
	if s.LogLevel, err = ParseLogLevel(getenv("LOG_LEVEL")); err != nil {
		return err
	}
	if s.ClientIP, err = clientip.ParsePolicy(getenv("CLIENT_IP_HEADER")); err != nil {
		return fmt.Errorf("CLIENT_IP_HEADER: %w", err)
	}
	return nil
}

func loadSignIn(getenv func(string) string) (SignIn, error) {
	var s SignIn
	var err error
	if s.ReturnURLs, err = ParseReturnURLs(getenv("AUTH_ALLOWED_RETURN_URLS")); err != nil {
		return s, err
	}
	s.ReuseGrace, err = ParseReuseGrace(getenv("REFRESH_REUSE_GRACE"))
	return s, err
}

// Defaults of TOOL_CALLS_PER_MINUTE and TOOL_CALLS_BURST: five a second
// sustained and a hundred at once is more than a person and an agent
// working together make, and MCP requires a limit.
const (
	DefaultToolCallsPerMinute = 300
	DefaultToolCallsBurst     = 100
)

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
func loadLimits(getenv func(string) string) (Limits, error) {
	var l Limits
	var err error
	if l.ToolCallsPerMinute, err = parseCount("TOOL_CALLS_PER_MINUTE", getenv("TOOL_CALLS_PER_MINUTE"), 1, MaxToolCallsPerMinute); err != nil {
		return l, err
	}
	if l.ToolCallsBurst, err = parseCount("TOOL_CALLS_BURST", getenv("TOOL_CALLS_BURST"), 1, MaxToolCallsBurst); err != nil {
		return l, err
	}
	n, err := parseCount("TASKS_MAX_BYTES_PER_TENANT", getenv("TASKS_MAX_BYTES_PER_TENANT"), MinTaskBytes, MaxTaskBytes)
	l.TaskBytesPerTenant = int64(n)
	return l, err
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

// loadRedis reads where Redis is and how the handler signs in to it.
func loadRedis(getenv func(string) string) (Redis, error) {
	r := Redis{URL: strings.TrimSpace(getenv("REDIS_URL"))}
	if r.URL == "" {
		return r, fmt.Errorf("REDIS_URL: required (redis://host:port/db, or rediss:// for TLS)")
	}
	if err := CheckRedisURL(r.URL); err != nil {
		return r, err
	}
	var err error
	if r.Auth, err = parseRedisAuth(getenv("REDIS_AUTH")); err != nil {
		return r, err
	}
	if r.Auth == RedisAuthEntra && strings.HasPrefix(r.URL, "redis://") {
		return r, fmt.Errorf("REDIS_AUTH: entra sends a token as the password, which needs TLS: use a rediss:// REDIS_URL")
	}
	r.Username = strings.ToLower(strings.TrimSpace(getenv("REDIS_USERNAME")))
	if r.Username != "" && (r.Auth != RedisAuthEntra || !valid.GUID(r.Username)) {
		return r, fmt.Errorf("REDIS_USERNAME: %q must be the managed identity's object id (a GUID), with REDIS_AUTH=entra", r.Username)
	}
	return r, nil
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

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	return def
}

// Roles is the role table: authz.DefaultTable, with its role-to-permission
// mapping replaced by ROLE_MAP when that is set. Dev mode reads it before
// the rest, to make a demo user per role.
func Roles(getenv func(string) string) (authz.Table, error) {
	v := getenv("ROLE_MAP")
	t := authz.DefaultTable()
	if strings.TrimSpace(v) == "" {
		return t, nil
	}
	t, err := t.WithRoleMap(v)
	if err != nil {
		return authz.Table{}, fmt.Errorf("ROLE_MAP: %w", err)
	}
	return t, nil
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
