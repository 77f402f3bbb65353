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
	"github.com/entra-mcp/functions-mcp/handler/redisauth"
	"github.com/entra-mcp/functions-mcp/handler/signin"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/telemetry"
	"github.com/entra-mcp/functions-mcp/handler/tools"
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
	// tools/call per caller (tenant and object id), unless
	// TOOL_CALLS_PER_MINUTE and TOOL_CALLS_BURST say otherwise: five a
	// second sustained and a hundred at once is more than a person and an
	// agent working together make, and MCP requires a limit.
	toolCallsPerMinute = 300
	toolCallsBurst     = 100
)

// Options are what the handler is built from.
type Options struct {
	Config  *config.Config
	Version string
	Logger  *slog.Logger
	// HTTPClient fetches the issuer's keys; nil uses the verifier's default.
	// Dev mode and tests pass one that trusts the stand-in's certificate.
	HTTPClient *http.Client
	// Redis is used instead of opening Config.RedisURL when set.
	Redis redis.UniversalClient
	// Sealer seals sign-in state in Redis; nil uses Config.SealingKeys.
	// With Key Vault it is the secrets store, whose keys rotate.
	Sealer store.Sealer
	// MSALCredential authenticates the app to Entra; nil builds one from
	// Config.ClientSecret.
	MSALCredential *confidential.Credential
	// AzureCredential gets tokens for Azure resources (Redis with
	// REDIS_AUTH=entra); the managed identity in Azure.
	AzureCredential azcore.TokenCredential
	// Telemetry receives requests, dependencies, events and exceptions;
	// nil or disabled sends nothing.
	Telemetry *telemetry.Client

	// pendingRegistrations overrides the budget of unused OAuth client
	// registrations (0: oauthclients.DefaultMaxPending). Tests only: they
	// fill a small budget with a few requests.
	pendingRegistrations int
}

// App is the assembled handler.
type App struct {
	Handler  http.Handler
	Verifier *entra.Verifier
	MCP      *mcpserver.Server
	SignIn   *signin.Service
	// OAuth is the authorization-server front; nil in entra mode.
	OAuth     *oauthserver.Server
	clients   *oauthclients.Registry
	redis     redis.UniversalClient
	ownRedis  bool
	redisAuth *redisauth.Provider
}

// New builds the handler. It does not touch the network: keys are fetched
// on first use or by Warm, and Redis is dialled on first use, so start-up
// is fast and survives a Redis outage.
func New(opts Options) (*App, error) {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	started := time.Now()
	tel := opts.Telemetry
	if !tel.Enabled() {
		tel = nil
	}
	// Calls to Entra (keys, MSAL) are dependencies in telemetry.
	httpClient := opts.HTTPClient
	if tel != nil {
		base := http.DefaultTransport
		hc := &http.Client{Timeout: 30 * time.Second}
		if httpClient != nil {
			c := *httpClient
			hc = &c
			if c.Transport != nil {
				base = c.Transport
			}
		}
		hc.Transport = tel.Transport(base, map[string]string{hostOf(cfg.Entra.AuthorityHost): telemetry.TypeEntra})
		httpClient = hc
	}

	verifier, err := entra.NewVerifier(entra.Config{
		AuthorityHost:  cfg.Entra.AuthorityHost,
		TenantID:       cfg.Entra.TenantID,
		ClientID:       cfg.Entra.ClientID,
		AppIDURI:       cfg.Entra.AppIDURI,
		AllowedTenants: cfg.Entra.AllowedTenants,
		TokenVersion:   cfg.Entra.TokenVersion,
		HTTPClient:     httpClient,
		Logger:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("build token verifier: %w", err)
	}

	a := &App{Verifier: verifier, redis: opts.Redis}
	if a.redis == nil {
		rdb, provider, err := openRedis(cfg, opts.AzureCredential, log)
		if err != nil {
			return nil, err
		}
		a.redisAuth = provider
		if tel != nil {
			rdb.AddHook(tel.RedisHook(hostOf("redis://" + rdb.Options().Addr)))
		}
		a.redis, a.ownRedis = rdb, true
	}

	sealer := opts.Sealer
	if sealer == nil {
		if cfg.SealingKeys == nil {
			return nil, fmt.Errorf("no sealing keys: set TOKEN_SEALING_KEYS or KEY_VAULT_URI")
		}
		sealer = cfg.SealingKeys
	}
	var recordOpts []grants.RecordsOption
	switch {
	case cfg.ReuseGrace < 0:
		recordOpts = append(recordOpts, grants.WithReuseGrace(0))
	case cfg.ReuseGrace > 0:
		recordOpts = append(recordOpts, grants.WithReuseGrace(cfg.ReuseGrace))
	}
	sessions := store.NewSessions(a.redis, sealer)
	records := grants.NewRecords(a.redis, sealer, recordOpts...)
	limit := func(name string, rate int, per time.Duration, burst int) *store.Limiter {
		return store.NewLimiter(a.redis, name, rate, per, burst, store.WithLimiterLogger(log))
	}
	var cred confidential.Credential
	if opts.MSALCredential != nil {
		cred = *opts.MSALCredential
	} else if cred, err = confidential.NewCredFromSecret(cfg.ClientSecret); err != nil {
		a.Close()
		return nil, fmt.Errorf("build sign-in credential: %w", err)
	}
	a.SignIn, err = signin.New(signin.Options{
		PublicBaseURL: cfg.PublicBaseURL,
		Entra:         cfg.Entra,
		Credential:    cred,
		HTTPClient:    httpClient,
		Sessions:      sessions,
		Records:       records,
		Sealer:        sealer,
		IDTokens:      verifier,
		Limits: signin.Limits{
			SignIn:   limit("signin", signInRate, time.Minute, signInBurst),
			Callback: limit("callback", callbackRate, time.Minute, callbackBurst),
			Failures: limit("refused", failureRate, time.Minute, failureBurst),
			Refresh:  limit("refresh", refreshRate, time.Minute, refreshBurst),
		},
		AllowedReturnURLs: cfg.ReturnURLs,
		Logger:            log,
		Events:            eventsOf(tel),
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("build sign-in: %w", err)
	}

	oboClient, err := obo.New(obo.Options{
		Authority:   cfg.Entra.AuthorityHost + "/" + cfg.Entra.TenantID,
		ClientID:    cfg.Entra.ClientID,
		Credential:  cred,
		HTTPClient:  httpClient,
		PublicCloud: cfg.Entra.AuthorityHost == config.DefaultAuthorityHost,
		Redis:       a.redis,
		Ring:        sealer,
		Logger:      log,
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("build on-behalf-of client: %w", err)
	}

	metrics := mcpserver.NewMetrics()
	var taskOpts []store.TasksOption
	if cfg.TaskBytesPerTenant > 0 {
		taskOpts = append(taskOpts, store.WithMaxBytes(cfg.TaskBytesPerTenant))
	}
	deps := tools.Deps{
		Tasks:    store.NewTasks(a.redis, taskOpts...),
		Sessions: a.SignIn,
		Graph: &tools.Graph{
			Tokens:     oboClient,
			BaseURL:    cfg.GraphBaseURL,
			Scope:      cfg.GraphScope,
			HTTPClient: graphClient(opts.HTTPClient, tel, cfg.GraphBaseURL),
		},
		Version: opts.Version,
		Stats: func(ctx context.Context) any {
			return a.stats(ctx, started, opts.Version, metrics)
		},
	}
	a.MCP, err = mcpserver.New(mcpserver.Options{
		Name:    "entra-mcp-functions",
		Version: opts.Version,
		Tools:   tools.All(deps),
		RoleMap: cfg.RoleMap,
		Logger:  log,
		Metrics: metrics,
		Events:  eventsOf(tel),
		Limiter: limit("tools", cmp.Or(cfg.ToolCallsPerMinute, toolCallsPerMinute), time.Minute,
			cmp.Or(cfg.ToolCallsBurst, toolCallsBurst)),
	})
	if err != nil {
		a.Close()
		return nil, err
	}

	authServer := cfg.Entra.Issuer()
	var front httpapi.OAuth
	if cfg.AuthMode != config.AuthModeEntra {
		if err := a.buildOAuth(cfg, sealer, sessions, limit, opts.pendingRegistrations, log, eventsOf(tel)); err != nil {
			a.Close()
			return nil, err
		}
		authServer, front = cfg.PublicBaseURL, a.OAuth
	}

	a.Handler = httpapi.New(httpapi.Options{
		PublicBaseURL:        cfg.PublicBaseURL,
		AllowedOrigins:       cfg.AllowedOrigins,
		AuthorizationServers: []string{authServer},
		OAuth:                front,
		Scopes:               []string{cfg.Entra.Scope()},
		Verifier:             verifier,
		MCP:                  a.MCP,
		SignIn:               a.SignIn,
		Version:              opts.Version,
		Logger:               log,
		Telemetry:            telemetryOf(tel),
		ClientIP:             cfg.ClientIP,
		Health:               (&health{redis: a.redis, verifier: verifier}).Check,
	})
	return a, nil
}

// buildOAuth builds the authorization-server front of proxy mode.
func (a *App) buildOAuth(cfg *config.Config, sealer store.Sealer, sessions *store.Sessions, limit func(string, int, time.Duration, int) *store.Limiter, pendingRegistrations int, log *slog.Logger, ev events) error {
	var err error
	a.clients, err = oauthclients.New(oauthclients.Options{
		Redis:                   a.redis,
		AllowLoopback:           cfg.AllowLoopbackClients,
		ExtraRedirectSchemes:    cfg.ExtraRedirectSchemes,
		MaxPendingRegistrations: pendingRegistrations,
		Logger:                  log,
	})
	if err != nil {
		return fmt.Errorf("build OAuth client registry: %w", err)
	}
	a.OAuth, err = oauthserver.New(oauthserver.Options{
		Issuer:        cfg.PublicBaseURL,
		Resource:      cfg.PublicBaseURL + httpapi.PathMCP,
		Scope:         cfg.Entra.Scope(),
		Clients:       a.clients,
		SignIn:        a.SignIn,
		Grants:        a.SignIn.Grants(),
		Consents:      sessions,
		Sealer:        sealer,
		Limiter:       limit("oauth", oauthRate, time.Second, oauthBurst),
		Registrations: limit("register", registerRate, time.Hour, registerRate),
		Logger:        log,
		Events:        ev,
	})
	if err != nil {
		return fmt.Errorf("build OAuth front: %w", err)
	}
	// The front's clients sign in through signin, which hands each
	// sign-in back to the front.
	a.SignIn.HandOffTo(a.OAuth)
	return nil
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

// graphClient is the HTTP client for Microsoft Graph: the given one (dev
// mode's trusts the stand-in), reported as a Graph dependency.
func graphClient(base *http.Client, tel *telemetry.Client, graphURL string) *http.Client {
	hc := &http.Client{Timeout: 10 * time.Second}
	if base != nil {
		c := *base
		hc = &c
	}
	if tel != nil {
		rt := hc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		hc.Transport = tel.Transport(rt, map[string]string{hostOf(graphURL): telemetry.TypeGraph})
	}
	return hc
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
