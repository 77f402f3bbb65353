// Package app assembles the handler from its configuration: verifier,
// stores, tools, MCP endpoint and HTTP front. main and the end-to-end tests
// build the same thing through it.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/httpapi"
	"github.com/entra-mcp/functions-mcp/handler/mcpserver"
	"github.com/entra-mcp/functions-mcp/handler/signin"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Rate limit of /auth/exchange and /auth/refresh per client address: a
// person or script needs a handful; a code-guessing loop gets nowhere.
const (
	authRate  = 5
	authBurst = 10
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
}

// App is the assembled handler.
type App struct {
	Handler  http.Handler
	Verifier *entra.Verifier
	MCP      *mcpserver.Server
	SignIn   *signin.Service
	redis    redis.UniversalClient
	ownRedis bool
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

	verifier, err := entra.NewVerifier(entra.Config{
		AuthorityHost:  cfg.Entra.AuthorityHost,
		TenantID:       cfg.Entra.TenantID,
		ClientID:       cfg.Entra.ClientID,
		AppIDURI:       cfg.Entra.AppIDURI,
		AllowedTenants: cfg.Entra.AllowedTenants,
		TokenVersion:   cfg.Entra.TokenVersion,
		HTTPClient:     opts.HTTPClient,
		Logger:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("build token verifier: %w", err)
	}

	a := &App{Verifier: verifier, redis: opts.Redis}
	if a.redis == nil {
		rdb, err := store.Open(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("open redis: %w", err)
		}
		a.redis, a.ownRedis = rdb, true
	}

	sessions := store.NewSessions(a.redis, cfg.SealingKeys)
	cred, err := confidential.NewCredFromSecret(cfg.ClientSecret)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("build sign-in credential: %w", err)
	}
	a.SignIn, err = signin.New(signin.Options{
		PublicBaseURL:     cfg.PublicBaseURL,
		Entra:             cfg.Entra,
		Credential:        cred,
		HTTPClient:        opts.HTTPClient,
		Sessions:          sessions,
		Limiter:           store.NewLimiter(a.redis, "auth", authRate, time.Second, authBurst),
		AllowedReturnURLs: cfg.ReturnURLs,
		Logger:            log,
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("build sign-in: %w", err)
	}

	metrics := mcpserver.NewMetrics()
	deps := tools.Deps{
		Tasks:    store.NewTasks(a.redis),
		Sessions: a.SignIn,
		Version:  opts.Version,
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
	})
	if err != nil {
		a.Close()
		return nil, err
	}

	a.Handler = httpapi.New(httpapi.Options{
		PublicBaseURL:        cfg.PublicBaseURL,
		AllowedOrigins:       cfg.AllowedOrigins,
		AuthorizationServers: []string{cfg.Entra.Issuer()},
		Scopes:               []string{cfg.Entra.Scope()},
		Verifier:             verifier,
		MCP:                  a.MCP,
		SignIn:               a.SignIn,
		Version:              opts.Version,
		Logger:               log,
	})
	return a, nil
}

// Close releases what New opened.
func (a *App) Close() {
	if a.ownRedis && a.redis != nil {
		_ = a.redis.Close()
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
