// Package upstream fronts other MCP servers: their tools are listed and
// called through this server's endpoint, behind the same Entra sign-in,
// permission filter, rate limit and audit, and each upstream is called
// with a credential of its own (on-behalf-of the caller, this server's
// managed identity, a secret header, or none), never the caller's token.
//
// Each upstream's tool list is fetched, kept, and fetched again in the
// background once it is older than its TTL; when an upstream is down the
// last good list is served, and its tools fail cleanly. Its tools appear
// under its name's prefix (devops.list_items), each needing the permission
// the first matching rule of its configuration names; tools no rule
// matches are never shown or callable.
//
// Calls go through a per-upstream gate (a cap on calls in flight and a
// circuit breaker) and a per-user connection, so an upstream that keeps
// sessions keeps one per person and no caller reaches another's.
package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Options configure a Federation.
type Options struct {
	Upstreams []config.Upstream
	// OnBehalfOf exchanges callers' tokens (on-behalf-of upstreams).
	OnBehalfOf OnBehalfOf
	// Identity is this server's managed identity (managed-identity
	// upstreams).
	Identity azcore.TokenCredential
	// Secrets holds header values (header upstreams).
	Secrets Secrets
	// HTTPClient carries the calls; its transport is used (wrapped with
	// each upstream's answer cap), its timeout is not: each upstream has
	// its own. http.DefaultTransport when nil.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Federation is every configured upstream. It is safe for concurrent use.
type Federation struct {
	servers []*server
	log     *slog.Logger
	ctx     context.Context // ends background fetches on Close
	cancel  context.CancelFunc

	mu   sync.Mutex // serialises rebuilding the merged list
	gen  atomic.Uint64
	list atomic.Pointer[tools.Components]
}

// New builds the federation. It does not touch the network: lists are
// fetched by Start and on demand.
func New(opts Options) (*Federation, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	base := http.DefaultTransport
	if opts.HTTPClient != nil && opts.HTTPClient.Transport != nil {
		base = opts.HTTPClient.Transport
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Federation{log: opts.Logger, ctx: ctx, cancel: cancel}
	f.list.Store(&tools.Components{})
	for _, u := range opts.Upstreams {
		s, err := newServer(u, opts, base, f)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
		f.servers = append(f.servers, s)
	}
	return f, nil
}

// Start fetches, in the background, the lists of the upstreams this
// server lists with its own credential; on-behalf-of upstreams are listed
// with the first user who may use them.
func (f *Federation) Start() {
	for _, s := range f.servers {
		if !s.auth.perUser() {
			s.refresh(f.ctx)
		}
	}
}

// Close stops background fetches and ends every upstream session.
func (f *Federation) Close() {
	f.cancel()
	for _, s := range f.servers {
		s.pool.closeAll()
	}
}

// Components returns every upstream tool, resource, resource template and
// prompt the lists now hold, and a number that changes whenever they do.
func (f *Federation) Components() (uint64, tools.Components) {
	// gen is read first: a change stores the list before bumping gen, so
	// this list is at least as new as the number says.
	g := f.gen.Load()
	return g, *f.list.Load()
}

// Offers reports whether any upstream's configuration has rules for
// resources, and for prompts: the endpoint then offers them from the start.
func (f *Federation) Offers() (resources, prompts bool) {
	for _, s := range f.servers {
		resources = resources || len(s.cfg.Resources) > 0
		prompts = prompts || len(s.cfg.Prompts) > 0
	}
	return resources, prompts
}

// Generation is the number Tools returns, without the list.
func (f *Federation) Generation() uint64 { return f.gen.Load() }

// Prepare makes sure the lists a request needs are there: for a tools/list
// (tool ""), every upstream's; for a tools/call, the named tool's upstream.
// A list never fetched is fetched now, as the caller in ctx where the
// upstream is called on behalf of users, and waited for until ctx ends or
// the upstream's timeout; a list past its TTL is fetched again in the
// background while the old one keeps being served.
// The fetches all start first and are waited for together, so never-listed
// upstreams cost the longest wait, not the sum of them.
func (f *Federation) Prepare(ctx context.Context, tool string) {
	type pending struct {
		first <-chan struct{}
		until time.Time
	}
	start := time.Now()
	var waits []pending
	for _, s := range f.servers {
		if tool != "" && !strings.HasPrefix(tool, s.cfg.Name+".") {
			continue
		}
		if first, wait := s.prepare(ctx); first != nil {
			waits = append(waits, pending{first, start.Add(wait)})
		}
	}
	for _, w := range waits {
		timer := time.NewTimer(time.Until(w.until))
		select {
		case <-w.first:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// changed rebuilds the merged list after an upstream's list changed.
func (f *Federation) changed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all tools.Components
	for _, s := range f.servers {
		l := s.listed()
		all.Tools = append(all.Tools, l.Tools...)
		all.Resources = append(all.Resources, l.Resources...)
		all.Templates = append(all.Templates, l.Templates...)
		all.Prompts = append(all.Prompts, l.Prompts...)
	}
	f.list.Store(&all)
	f.gen.Add(1)
}

// Health is one upstream's state, for server_stats and /health.
type Health struct {
	Name string `json:"name"`
	Auth string `json:"auth"`
	// Tools, Resources and Prompts count what of it is served (what a
	// rule permits); Resources counts templates too.
	Tools     int `json:"tools"`
	Resources int `json:"resources"`
	Prompts   int `json:"prompts"`
	// ListedAt is when its list was last fetched; zero: never.
	ListedAt time.Time `json:"listedAt,omitzero"`
	// ListError says why the last fetch failed, in our words; empty after
	// a success.
	ListError string `json:"listError,omitempty"`
	Breaker   string `json:"breaker"`
	InFlight  int    `json:"inFlight"`
	Sessions  int    `json:"sessions"`
	// Healthy: listed at least once, the last fetch worked and the breaker
	// is closed.
	Healthy bool `json:"healthy"`
}

// Health reports every upstream, in configuration order.
func (f *Federation) Health() []Health {
	out := make([]Health, 0, len(f.servers))
	for _, s := range f.servers {
		out = append(out, s.health())
	}
	return out
}

// health reports s.
func (s *server) health() Health {
	s.mu.Lock()
	l := s.listing
	h := Health{Name: s.cfg.Name, Auth: string(s.cfg.Auth.Mode), Tools: len(l.Tools), Resources: len(l.Resources) + len(l.Templates),
		Prompts: len(l.Prompts), ListedAt: s.listedAt}
	if s.listErr != nil {
		h.ListError = describe(s.listErr)
	}
	s.mu.Unlock()
	h.Breaker = s.gate.state()
	h.InFlight = s.gate.inFlight()
	h.Sessions = s.pool.size()
	h.Healthy = !h.ListedAt.IsZero() && h.ListError == "" && h.Breaker == "closed"
	return h
}
