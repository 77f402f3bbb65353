// Package app assembles the handler from its configuration: verifier,
// stores, tools, MCP endpoint and HTTP front. main and the end-to-end tests
// build the same thing through it.
package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/httpapi"
	"github.com/entra-mcp/functions-mcp/handler/mcpserver"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oauthserver"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/redisauth"
	"github.com/entra-mcp/functions-mcp/handler/signin"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
	"github.com/entra-mcp/functions-mcp/handler/telemetry"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/upstream"
)

// Rate limits. Per client address (clientip.Key: an IPv4 address or an
// IPv6 /48) where nobody is known yet, per user where someone is. Each is
// counted in Redis across instances, and in process when Redis cannot.
const (
	// Sign-ins started (/auth/login, /oauth/authorize and its consent
	// form) per address, a minute: a person needs a few, an office a few
	// dozen.
	signInRate  = 30
	signInBurst = 30
	// Callbacks per address, a minute, before any code goes to Entra with
	// the app's credential.
	callbackRate  = 20
	callbackBurst = 10
	// Refused codes and refresh tokens per address, a minute: a
	// code-guessing loop gets nowhere, and good tokens cost nothing.
	failureRate  = 30
	failureBurst = 20
	// Refreshes per user, a minute: far above what a user's clients need,
	// even a fleet of agents signed in as one user.
	refreshRate  = 300
	refreshBurst = 150
	// The OAuth front's client-document lookups and revocations per
	// address, a second.
	oauthRate  = 10
	oauthBurst = 40
	// Registrations are stored (4 KiB at most) for a day until used, so
	// they are limited to 20 an hour per address; unused ones beyond the
	// registry's budget (oauthclients.DefaultMaxPending, 8 MiB at most)
	// evict the oldest.
	registerRate = 20
)

// Options are what the handler is built from.
type Options struct {
	Config  *config.Config
	Version string
	Logger  *slog.Logger
	// HTTPClient fetches the issuer's keys; nil uses the verifier's default.
	// Dev mode and tests pass one that trusts the stand-in's certificate.
	HTTPClient *http.Client
	// Redis is used instead of opening Config.Redis.URL when set.
	Redis redis.UniversalClient
	// Sealer seals sign-in state in Redis; nil uses
	// Config.Secrets.SealingKeys.
	// With Key Vault it is the secrets store, whose keys rotate.
	Sealer store.Sealer
	// MSALCredential authenticates the app to Entra; nil builds one from
	// Config.Secrets.ClientSecret.
	MSALCredential *confidential.Credential
	// AzureCredential gets tokens for Azure resources (Redis with
	// REDIS_AUTH=entra); the managed identity in Azure.
	AzureCredential azcore.TokenCredential
	// Telemetry receives requests, dependencies, events and exceptions;
	// nil or disabled sends nothing.
	Telemetry *telemetry.Client
	// Secrets reads header-authenticated upstreams' secrets (the Key
	// Vault store in Azure); nil reads them from
	// Config.Secrets.UpstreamHeaders.
	Secrets upstream.Secrets

	// pendingRegistrations overrides the budget of unused OAuth client
	// registrations (0: oauthclients.DefaultMaxPending). Tests only: they
	// fill a small budget with a few requests.
	pendingRegistrations int
	// metadataFetchTimeout overrides the cap on fetching an OAuth client's
	// metadata document (0: oauthclients.DefaultFetchTimeout). Tests only:
	// they need not wait seconds for a slow document server to be refused.
	metadataFetchTimeout time.Duration
}

// App is the assembled handler.
type App struct {
	Handler  http.Handler
	Verifier *entra.Verifier
	MCP      *mcpserver.Server
	SignIn   *signin.Service
	// OAuth is the authorization-server front; nil in entra mode.
	OAuth *oauthserver.Server
	// Upstreams are the upstream MCP servers fronted; nil when none are
	// configured.
	Upstreams *upstream.Federation
	clients   *oauthclients.Registry
	redis     redis.UniversalClient
	ownRedis  bool
	redisAuth *redisauth.Provider
}

// New builds the handler. It does not touch the network: keys are fetched
// on first use or by Warm, and Redis is dialled on first use, so start-up
// is fast and survives a Redis outage.
func New(opts Options) (*App, error) {
	b := newBuilder(opts)
	a := &App{}
	if err := b.build(a); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// builder holds what every part of the handler is built with.
type builder struct {
	opts    Options
	cfg     *config.Config
	log     *slog.Logger
	tel     *telemetry.Client // nil: no telemetry
	started time.Time
	// entraClient calls Entra (keys, MSAL), reported as a dependency.
	entraClient *http.Client
}

func newBuilder(opts Options) *builder {
	b := &builder{opts: opts, cfg: opts.Config, log: opts.Logger, tel: opts.Telemetry, started: time.Now()}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if !b.tel.Enabled() {
		b.tel = nil
	}
	b.entraClient = b.tracedClient(opts.HTTPClient, 30*time.Second, b.cfg.Entra.AuthorityHost, telemetry.TypeEntra)
	return b
}

// build assembles a, one part after another: each part is built from
// the ones before it.
func (b *builder) build(a *App) error {
	var err error
	if a.Verifier, err = b.verifier(); err != nil {
		return err
	}
	if err := b.redis(a); err != nil {
		return err
	}
	sealer, err := b.sealer()
	if err != nil {
		return err
	}
	cred, err := b.msalCredential()
	if err != nil {
		return err
	}
	sessions := b.sessions(a, sealer)
	if a.SignIn, err = b.signIn(a, sealer, sessions, cred); err != nil {
		return err
	}
	if a.MCP, err = b.mcp(a, sealer, cred); err != nil {
		return err
	}
	if b.cfg.OAuth.Mode != config.AuthModeEntra {
		if err := b.oauth(a, sealer, sessions); err != nil {
			return err
		}
	}
	a.Handler = b.handler(a)
	return nil
}

// verifier checks the access tokens of every request.
func (b *builder) verifier() (*entra.Verifier, error) {
	e := b.cfg.Entra
	v, err := entra.NewVerifier(entra.Config{
		AuthorityHost:  e.AuthorityHost,
		TenantID:       e.TenantID,
		ClientID:       e.ClientID,
		AppIDURI:       e.AppIDURI,
		AllowedTenants: e.AllowedTenants,
		TokenVersion:   e.TokenVersion,
		// App-only callers are opt in: a role the table marks for
		// applications turns them on.
		AcceptAppTokens: b.cfg.Roles.AcceptsApps(),
		HTTPClient:      b.entraClient,
		Logger:          b.log,
	})
	if err != nil {
		return nil, fmt.Errorf("build token verifier: %w", err)
	}
	return v, nil
}

// redis is the given client, or one opened from the configuration, whose
// commands are then dependencies in telemetry.
func (b *builder) redis(a *App) error {
	if b.opts.Redis != nil {
		a.redis = b.opts.Redis
		return nil
	}
	rdb, provider, err := openRedis(b.cfg.Redis, b.opts.AzureCredential, b.log)
	if err != nil {
		return err
	}
	if b.tel != nil {
		rdb.AddHook(b.tel.RedisHook(hostOf("redis://" + rdb.Options().Addr)))
	}
	a.redis, a.ownRedis, a.redisAuth = rdb, true, provider
	return nil
}

// sealer is the given one (the Key Vault store, whose keys rotate), else
// the keys from the environment.
func (b *builder) sealer() (store.Sealer, error) {
	if b.opts.Sealer != nil {
		return b.opts.Sealer, nil
	}
	if b.cfg.Secrets.SealingKeys == nil {
		return nil, fmt.Errorf("no sealing keys: set TOKEN_SEALING_KEYS or KEY_VAULT_URI")
	}
	return b.cfg.Secrets.SealingKeys, nil
}

// msalCredential is the given one, else the client secret from the
// environment.
func (b *builder) msalCredential() (confidential.Credential, error) {
	if b.opts.MSALCredential != nil {
		return *b.opts.MSALCredential, nil
	}
	cred, err := confidential.NewCredFromSecret(b.cfg.Secrets.ClientSecret)
	if err != nil {
		return cred, fmt.Errorf("build sign-in credential: %w", err)
	}
	return cred, nil
}

// limiter counts a rate limit in Redis.
func (b *builder) limiter(a *App, name string, rate int, per time.Duration, burst int) *ratelimit.Limiter {
	return ratelimit.New(a.redis, name, rate, per, burst, ratelimit.WithLogger(b.log))
}

// sessions keeps each user's MSAL cache, revocation epoch, remembered
// consent and completed sign-ins.
func (b *builder) sessions(a *App, sealer store.Sealer) *store.Sessions {
	return store.NewSessions(a.redis, sealer)
}

// records keeps one-time codes and refresh chains, with the configured
// grace for a rotated handle presented again.
func (b *builder) records(a *App, sealer store.Sealer) *grants.Records {
	var opts []grants.RecordsOption
	switch grace := b.cfg.SignIn.ReuseGrace; {
	case grace < 0:
		opts = append(opts, grants.WithReuseGrace(0))
	case grace > 0:
		opts = append(opts, grants.WithReuseGrace(grace))
	}
	return grants.NewRecords(a.redis, sealer, opts...)
}

// signIn serves /auth/*.
func (b *builder) signIn(a *App, sealer store.Sealer, sessions *store.Sessions, cred confidential.Credential) (*signin.Service, error) {
	s, err := signin.New(signin.Options{
		PublicBaseURL: b.cfg.Server.PublicBaseURL,
		Entra:         b.cfg.Entra,
		Credential:    cred,
		HTTPClient:    b.entraClient,
		Sessions:      sessions,
		Records:       b.records(a, sealer),
		Sealer:        sealer,
		IDTokens:      a.Verifier,
		Limits: signin.Limits{
			SignIn:   b.limiter(a, "signin", signInRate, time.Minute, signInBurst),
			Callback: b.limiter(a, "callback", callbackRate, time.Minute, callbackBurst),
			Failures: b.limiter(a, "refused", failureRate, time.Minute, failureBurst),
			Refresh:  b.limiter(a, "refresh", refreshRate, time.Minute, refreshBurst),
		},
		AllowedReturnURLs: b.cfg.SignIn.ReturnURLs,
		Logger:            b.log,
		Events:            eventsOf(b.tel),
	})
	if err != nil {
		return nil, fmt.Errorf("build sign-in: %w", err)
	}
	return s, nil
}

// onBehalfOf gets Graph tokens for my_profile on behalf of the caller.
func (b *builder) onBehalfOf(a *App, sealer store.Sealer, cred confidential.Credential) (*obo.Client, error) {
	e := b.cfg.Entra
	c, err := obo.New(obo.Options{
		Authority:   e.AuthorityHost + "/" + e.TenantID,
		ClientID:    e.ClientID,
		Credential:  cred,
		HTTPClient:  b.entraClient,
		PublicCloud: e.AuthorityHost == config.DefaultAuthorityHost,
		Redis:       a.redis,
		Ring:        sealer,
		Logger:      b.log,
	})
	if err != nil {
		return nil, fmt.Errorf("build on-behalf-of client: %w", err)
	}
	return c, nil
}

// mcp is the MCP endpoint with every tool, resource template and prompt.
func (b *builder) mcp(a *App, sealer store.Sealer, cred confidential.Credential) (*mcpserver.Server, error) {
	oboClient, err := b.onBehalfOf(a, sealer, cred)
	if err != nil {
		return nil, err
	}
	metrics := mcpserver.NewMetrics()
	limits := b.cfg.Limits
	deps := b.toolDeps(a, oboClient, metrics)
	var ups mcpserver.Upstreams
	if a.Upstreams, err = b.upstreams(oboClient); err != nil {
		return nil, err
	}
	if a.Upstreams != nil {
		ups = a.Upstreams
	}
	return mcpserver.New(mcpserver.Options{
		Upstreams: ups,
		Name:      "entra-mcp-functions",
		Version:   b.opts.Version,
		Tools:     tools.All(deps),
		Resources: tools.Resources(deps),
		Templates: tools.Templates(deps),
		Prompts:   tools.Prompts(deps),
		Roles:     b.cfg.Roles,
		Logger:    b.log,
		Metrics:   metrics,
		Events:    eventsOf(b.tel),
		Limiter: b.limiter(a, "tools", cmp.Or(limits.ToolCallsPerMinute, config.DefaultToolCallsPerMinute), time.Minute,
			cmp.Or(limits.ToolCallsBurst, config.DefaultToolCallsBurst)),
	})
}

// upstreams fronts the configured upstream MCP servers, each called with
// its own credential; nil when none are configured. Their calls are
// dependencies in telemetry.
func (b *builder) upstreams(oboClient *obo.Client) (*upstream.Federation, error) {
	ups := b.cfg.Upstreams
	if len(ups) == 0 {
		return nil, nil
	}
	client := b.opts.HTTPClient
	if b.tel != nil {
		kinds := map[string]string{}
		for _, u := range ups {
			kinds[hostOf(u.URL)] = telemetry.TypeUpstream
		}
		base := http.DefaultTransport
		if client != nil && client.Transport != nil {
			base = client.Transport
		}
		client = &http.Client{Transport: b.tel.Transport(base, kinds)}
	}
	var secrets upstream.Secrets = envSecrets(b.cfg.Secrets.UpstreamHeaders)
	if b.opts.Secrets != nil {
		secrets = b.opts.Secrets
	}
	f, err := upstream.New(upstream.Options{
		Upstreams:  ups,
		OnBehalfOf: oboClient,
		Identity:   b.opts.AzureCredential,
		Secrets:    secrets,
		HTTPClient: client,
		Logger:     b.log,
	})
	if err != nil {
		return nil, fmt.Errorf("build upstreams: %w", err)
	}
	return f, nil
}

// envSecrets are upstream header secrets read from the environment (no
// Key Vault).
type envSecrets config.SecretValues

func (e envSecrets) Secret(_ context.Context, name string) (string, error) {
	v, ok := e[name]
	if !ok {
		return "", fmt.Errorf("no value for secret %s in the environment", name)
	}
	return v, nil
}

// ForgetSecret: the environment does not change while the handler runs.
func (e envSecrets) ForgetSecret(string) {}

// StartUpstreams fetches, in the background, the tool lists of the
// upstreams listed with this server's own credential.
func (a *App) StartUpstreams() {
	if a.Upstreams != nil {
		a.Upstreams.Start()
	}
}

// toolDeps are the stores and clients the tools use.
func (b *builder) toolDeps(a *App, oboClient *obo.Client, metrics *mcpserver.Metrics) tools.Deps {
	var taskOpts []taskstore.Option
	if n := b.cfg.Limits.TaskBytesPerTenant; n > 0 {
		taskOpts = append(taskOpts, taskstore.WithMaxBytes(n))
	}
	g := b.cfg.Graph
	return tools.Deps{
		Tasks:    taskstore.New(a.redis, taskOpts...),
		Sessions: a.SignIn,
		Graph: &tools.Graph{
			Tokens:     oboClient,
			BaseURL:    g.BaseURL,
			Scope:      g.Scope,
			HTTPClient: b.tracedClient(b.opts.HTTPClient, 10*time.Second, g.BaseURL, telemetry.TypeGraph),
		},
		Version: b.opts.Version,
		Stats: func(ctx context.Context) any {
			return a.stats(ctx, b.started, b.opts.Version, metrics)
		},
	}
}

// oauth builds the authorization-server front of proxy mode.
func (b *builder) oauth(a *App, sealer store.Sealer, sessions *store.Sessions) error {
	var err error
	a.clients, err = oauthclients.New(oauthclients.Options{
		Redis:                   a.redis,
		AllowLoopback:           b.cfg.OAuth.AllowLoopbackClients,
		ExtraRedirectSchemes:    b.cfg.OAuth.ExtraRedirectSchemes,
		MaxPendingRegistrations: b.opts.pendingRegistrations,
		FetchTimeout:            b.opts.metadataFetchTimeout,
		Logger:                  b.log,
	})
	if err != nil {
		return fmt.Errorf("build OAuth client registry: %w", err)
	}
	base := b.cfg.Server.PublicBaseURL
	a.OAuth, err = oauthserver.New(oauthserver.Options{
		Issuer:        base,
		Resource:      base + httpapi.PathMCP,
		Scope:         b.cfg.Entra.Scope(),
		Clients:       a.clients,
		SignIn:        a.SignIn,
		Grants:        a.SignIn.Grants(),
		Consents:      sessions,
		Sealer:        sealer,
		Limiter:       b.limiter(a, "oauth", oauthRate, time.Second, oauthBurst),
		Registrations: b.limiter(a, "register", registerRate, time.Hour, registerRate),
		Logger:        b.log,
		Events:        eventsOf(b.tel),
	})
	if err != nil {
		return fmt.Errorf("build OAuth front: %w", err)
	}
	// The front's clients sign in through signin, which hands each
	// sign-in back to the front.
	a.SignIn.HandOffTo(a.OAuth)
	return nil
}

// handler is the HTTP front: routes and guards before every part. In
// entra mode (no OAuth front) Protected Resource Metadata names Entra.
func (b *builder) handler(a *App) http.Handler {
	authServer := b.cfg.Entra.Issuer()
	var front httpapi.OAuth
	if a.OAuth != nil {
		authServer, front = b.cfg.Server.PublicBaseURL, a.OAuth
	}
	return httpapi.New(httpapi.Options{
		PublicBaseURL:        b.cfg.Server.PublicBaseURL,
		AllowedOrigins:       b.cfg.Server.AllowedOrigins,
		AuthorizationServers: []string{authServer},
		OAuth:                front,
		Scopes:               []string{b.cfg.Entra.Scope()},
		Verifier:             a.Verifier,
		MCP:                  a.MCP,
		SignIn:               a.SignIn,
		Version:              b.opts.Version,
		Logger:               b.log,
		Telemetry:            telemetryOf(b.tel),
		ClientIP:             b.cfg.Server.ClientIP,
		Health:               (&health{redis: a.redis, verifier: a.Verifier, upstreams: a.Upstreams}).Check,
	})
}

// tracedClient is base (or a client with timeout when nil), reporting its
// calls to the host of target as dependencies of kind in telemetry.
func (b *builder) tracedClient(base *http.Client, timeout time.Duration, target, kind string) *http.Client {
	if b.tel == nil {
		return base
	}
	hc := &http.Client{Timeout: timeout}
	if base != nil {
		c := *base
		hc = &c
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = b.tel.Transport(rt, map[string]string{hostOf(target): kind})
	return hc
}

// events is what signin and mcpserver report custom events (and
// mcpserver exceptions) to.
type events interface {
	Event(ctx context.Context, name string, props map[string]string)
	Exception(ctx context.Context, v any, props map[string]string)
}

// eventsOf and telemetryOf keep a nil client out of the interfaces, so
// "no telemetry" is a nil check, not a call.
func eventsOf(tel *telemetry.Client) events {
	if tel == nil {
		return nil
	}
	return tel
}

func telemetryOf(tel *telemetry.Client) httpapi.Telemetry {
	if tel == nil {
		return nil
	}
	return tel
}

// hostOf returns the host:port of a URL, or the URL itself.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Host
}

// Close releases what New opened.
func (a *App) Close() {
	if a.Upstreams != nil {
		a.Upstreams.Close()
	}
	if a.clients != nil {
		a.clients.Close()
	}
	if a.ownRedis && a.redis != nil {
		_ = a.redis.Close()
	}
	if a.redisAuth != nil {
		_ = a.redisAuth.Close()
	}
}

// Stats is what server_stats reports.
type Stats struct {
	Version    string                    `json:"version"`
	GoVersion  string                    `json:"go_version"`
	Uptime     string                    `json:"uptime"`
	Goroutines int                       `json:"goroutines"`
	HeapBytes  uint64                    `json:"heap_bytes"`
	MCP        mcpserver.MetricsSnapshot `json:"mcp"`
	Keys       entra.VerifierStats       `json:"signing_keys"`
	Redis      RedisStats                `json:"redis"`
	// Upstreams are the upstream MCP servers' states.
	Upstreams []upstream.Health `json:"upstreams,omitempty"`
}

// RedisStats tells whether Redis answers.
type RedisStats struct {
	OK        bool    `json:"ok"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
}

func (a *App) stats(ctx context.Context, started time.Time, version string, m *mcpserver.Metrics) Stats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := Stats{
		Version:    version,
		GoVersion:  runtime.Version(),
		Uptime:     time.Since(started).Round(time.Second).String(),
		Goroutines: runtime.NumGoroutine(),
		HeapBytes:  ms.HeapAlloc,
		MCP:        m.Snapshot(),
		Keys:       a.Verifier.Stats(),
	}
	if a.Upstreams != nil {
		s.Upstreams = a.Upstreams.Health()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t := time.Now()
	if err := store.Ping(ctx, a.redis); err != nil {
		s.Redis = RedisStats{Error: "unavailable"}
	} else {
		s.Redis = RedisStats{OK: true, LatencyMS: float64(time.Since(t).Microseconds()) / 1000}
	}
	return s
}
