// Package mcpserver is the MCP endpoint: an mcp-go server in stateless
// streamable-HTTP mode whose tools are shown and run only for callers whose
// grants hold each tool's need.
//
// The endpoint expects the caller's verified principal in the request
// context (the HTTP layer's bearer guard puts it there). It checks the
// JSON-RPC envelope itself so that malformed input gets a 4xx JSON answer,
// answers tools/list from responses pre-encoded per grant set and protocol
// era, and hands every other message to mcp-go, whose tool filter is the
// enforcement point on tools/call.
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Options configure a Server.
type Options struct {
	Name    string // server name reported to clients
	Version string
	Tools   []tools.Tool
	// Resources, Templates and Prompts are the resources, resource
	// templates and prompts, shown and served by the tools' permission rule.
	Resources []tools.Resource
	Templates []tools.ResourceTemplate
	Prompts   []tools.Prompt
	// Roles is the role table that turns callers' App Roles into
	// permissions; authz.DefaultTable when it has no roles.
	Roles  authz.Table
	Logger *slog.Logger
	// Metrics receives the endpoint's counters; nil makes a private set.
	Metrics *Metrics
	// Events receives a custom event per tool call (tool.allowed,
	// tool.denied); nil sends none.
	Events Events
	// Upstreams are other MCP servers' tools, served beside these; nil:
	// none.
	Upstreams Upstreams
	// Limiter limits tools/call per caller (tenant and object id), after
	// the caller's right to the tool is checked; nil: no limit. Logging
	// refusals is the limiter's: *ratelimit.Limiter with a logger warns once
	// per caller per window.
	Limiter Limiter
}

// Limiter counts one call for a key and says whether it is within the
// limit, and if not, how long until the next one would be; *ratelimit.Limiter
// is one.
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Events records custom events and exceptions (Application Insights in
// Azure).
type Events interface {
	Event(ctx context.Context, name string, props map[string]string)
	Exception(ctx context.Context, v any, props map[string]string)
}

// Server is the MCP endpoint. It is safe for concurrent use; nothing about
// one request is kept on it.
type Server struct {
	mcp       *server.MCPServer
	transport *server.StreamableHTTPServer
	policy    *authz.Policy
	tools     atomic.Pointer[toolIndex] // the tools served now, ours and the upstreams'
	local     map[string]bool           // our own tools' names; read-only after New
	// localComponents are our own resources, templates and prompts;
	// read-only after New.
	localComponents componentSet
	upstreams       Upstreams  // nil: none
	syncMu          sync.Mutex // held while the upstreams' tools are synchronised
	versions        []string   // ProtocolVersions(); read-only
	handshake       string     // what initialize answers a version we do not serve
	log             *slog.Logger
	metrics         *Metrics
	events          Events
	limiter         Limiter
	downSince       atomic.Int64 // when a failing limiter was last logged (Unix ns)
	lists           sync.Map     // listKey -> *encodedList
	bufs            sync.Pool    // *[]byte for tools/list answers

	// clientNeeds: tool name -> the client capabilities it relies on, for
	// the tools that have any; read-only after New.
	clientNeeds map[string][]string

	// offersResources and offersPrompts: the endpoint has resources or
	// prompts of its own, or upstreams configured to bring some.
	offersResources, offersPrompts bool
	unknown                        http.Handler // an mcp-go endpoint with no resources: its answer to any read is "not found"
}

// clientCapabilities are the names a tool's ClientNeeds may use.
var clientCapabilities = []string{tools.ClientSampling, tools.ClientElicitation, tools.ClientRoots}

// New builds the endpoint. It fails when a tool is declared twice, declares
// no need (a tool visible to nobody is almost certainly a mistake) or needs
// a client capability that does not exist.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if len(opts.Roles.Roles) == 0 {
		opts.Roles = authz.DefaultTable()
	}
	policy, err := authz.NewPolicy(opts.Roles, declaredPermissions(opts)...)
	if err != nil {
		return nil, fmt.Errorf("build MCP server: %w", err)
	}
	s := &Server{
		policy:    policy,
		local:     make(map[string]bool, len(opts.Tools)),
		upstreams: opts.Upstreams,
		versions:  ProtocolVersions(),
		log:       opts.Logger,
		metrics:   opts.Metrics,
		events:    opts.Events,
		limiter:   opts.Limiter,
	}
	s.bufs.New = func() any { return new([]byte) }
	s.clientNeeds = make(map[string][]string)
	if s.handshake = newestHandshakeVersion(s.versions); s.handshake == "" {
		return nil, errors.New("build MCP server: no protocol version that initialize can negotiate")
	}
	idx, err := s.addTools(opts.Tools, policy, opts.Logger)
	if err != nil {
		return nil, err
	}
	s.metrics.addTools(idx.names)

	hooks := &server.Hooks{}
	hooks.AddAfterSubscriptionsListen(waitForListenAck)
	serverOpts := []server.ServerOption{
		server.WithToolCapabilities(false),
		server.WithToolFilter(s.filter),
		server.WithRecovery(),
		server.WithHooks(hooks),
	}
	componentOpts, err := s.addComponents(opts, idx, policy, hooks)
	if err != nil {
		return nil, fmt.Errorf("build MCP server: %w", err)
	}
	s.localComponents = idx.componentSet.clone()
	s.tools.Store(idx)
	serverOpts = append(serverOpts, componentOpts...)
	serverOpts = append(serverOpts, fixtureOptions()...)
	s.mcp = server.NewMCPServer(opts.Name, opts.Version, serverOpts...)
	// Added to whatever hooks the options left, so a fixture's hooks and
	// this one cannot replace each other.
	s.mcp.GetHooks().AddBeforeInitialize(s.negotiateInitialize)
	for _, t := range opts.Tools {
		s.mcp.AddTool(t.Def, s.adapt(t))
	}
	s.registerComponents(idx)
	registerFixtures(s.mcp)

	s.transport = s.streamable(s.mcp, opts.Logger)
	if s.offersResources {
		none := server.NewMCPServer(opts.Name, opts.Version, append([]server.ServerOption{server.WithResourceCapabilities(false, false)}, fixtureOptions()...)...)
		s.unknown = s.streamable(none, opts.Logger)
	}
	return s, nil
}

// declaredPermissions are the permissions every tool, resource and prompt
// of opts needs, for the policy to give each a bit.
func declaredPermissions(opts Options) []string {
	var out []string
	for _, t := range opts.Tools {
		out = append(out, t.Permissions...)
	}
	for _, r := range opts.Resources {
		out = append(out, r.Permissions...)
	}
	for _, t := range opts.Templates {
		out = append(out, t.Permissions...)
	}
	for _, p := range opts.Prompts {
		out = append(out, p.Permissions...)
	}
	return out
}

// addTools records each tool's permissions and client needs, refusing
// duplicates, tools with no permission and unknown capabilities, and
// returns the first tool index.
func (s *Server) addTools(ts []tools.Tool, policy *authz.Policy, log *slog.Logger) (*toolIndex, error) {
	idx := newIndex()
	for _, t := range ts {
		if s.local[t.Def.Name] {
			return nil, fmt.Errorf("build MCP server: tool %q declared twice", t.Def.Name)
		}
		if len(t.Permissions) == 0 {
			return nil, fmt.Errorf("build MCP server: tool %q declares no permission", t.Def.Name)
		}
		need, err := policy.Need(t.Permissions)
		if err != nil {
			return nil, fmt.Errorf("build MCP server: tool %q: %w", t.Def.Name, err)
		}
		if !policy.Granted(need) {
			// Deliberate when a ROLE_MAP leaves a tool out; a typo otherwise.
			log.Warn("mcpserver: no role grants what this tool needs, so nobody can see it",
				slog.String("tool", t.Def.Name), slog.Any("permissions", t.Permissions))
		}
		for _, c := range t.ClientNeeds {
			if !slices.Contains(clientCapabilities, c) {
				return nil, fmt.Errorf("build MCP server: tool %q needs unknown client capability %q", t.Def.Name, c)
			}
		}
		idx.needs[t.Def.Name] = need
		if len(t.ClientNeeds) > 0 {
			s.clientNeeds[t.Def.Name] = t.ClientNeeds
		}
		s.local[t.Def.Name] = true
		idx.names = append(idx.names, t.Def.Name)
	}
	sort.Strings(idx.names)
	return idx, nil
}

// streamable is m behind mcp-go's streamable HTTP transport, as the
// endpoint serves it.
func (s *Server) streamable(m *server.MCPServer, log *slog.Logger) *server.StreamableHTTPServer {
	return server.NewStreamableHTTPServer(m,
		server.WithStateLess(true),
		// A stateless endpoint has nothing to stream, and an open GET stream
		// would hold a Functions execution.
		server.WithDisableStreaming(true),
		// Behind the Functions proxy every request has Host 127.0.0.1:<port>;
		// the HTTP layer checks Origin against the public host instead.
		server.WithDisableLocalhostProtection(true),
		server.WithStreamableHTTPProtocolVersions(s.versions...),
		server.WithStreamableHTTPLogger(log),
	)
}

// listenAckWait is how long a subscriptions/listen answer waits for its
// acknowledgement to be written. mcp-go v1.2.1's streamable HTTP transport
// can take a notification off its queue and then drop it when the
// response is written first (mcp-go PR #969 describes the race). A listen
// stream with nothing to deliver (in production every one: the endpoint
// offers no list_changed and no resource subscriptions) ends as soon as it
// is acknowledged, so without the pause about one in six lost its first
// message, the acknowledgement the protocol requires.
//
// The pause ends as soon as the acknowledgement has gone through our
// response writer (ackWatcher); listenAckWait is only how long it waits at
// most. A fixed pause was not enough: under load the notification
// goroutine could take longer than 100 ms, and the acknowledgement was lost
// again.
const listenAckWait = 2 * time.Second

// waitForListenAck is an mcp-go hook that runs after subscriptions/listen
// has queued its acknowledgement and before the result is written.
func waitForListenAck(ctx context.Context, _ any, _ *mcp.SubscriptionsListenRequest, _ *mcp.SubscriptionsListenResult) {
	written, _ := ctx.Value(ackWrittenKey{}).(<-chan struct{})
	select {
	case <-written: // nil (no watcher) blocks: then the wait is the cap
	case <-time.After(listenAckWait):
	case <-ctx.Done():
	}
}

type grantsKey struct{}

// withGrants records the caller's grants for the tool filter.
func withGrants(ctx context.Context, g authz.Set) context.Context {
	return context.WithValue(ctx, grantsKey{}, g)
}

// grantsFrom returns the grants recorded in ctx; none when absent, so a
// request that skipped the HTTP guard sees no tools.
func grantsFrom(ctx context.Context) authz.Set {
	g, _ := ctx.Value(grantsKey{}).(authz.Set)
	return g
}

// filter is mcp-go's tool filter: it runs for tools/list and, with the one
// requested tool, for tools/call, so it is the enforcement point.
func (s *Server) filter(ctx context.Context, candidates []mcp.Tool) []mcp.Tool {
	g := grantsFrom(ctx)
	needs := s.index().needs
	out := candidates[:0:0]
	for _, t := range candidates {
		if g.Allows(needs[t.Name]) {
			out = append(out, t)
		}
	}
	return out
}

// allowedNames lists the tools a caller with grants g may use, sorted.
func (s *Server) allowedNames(g authz.Set) []string {
	var out []string
	idx := s.index()
	for _, n := range idx.names {
		if g.Allows(idx.needs[n]) {
			out = append(out, n)
		}
	}
	return out
}

// adapt turns a tools.Tool into an mcp-go handler that builds the Call,
// maps failures to tool errors and writes the audit line.
func (s *Server) adapt(t tools.Tool) server.ToolHandlerFunc {
	name := t.Def.Name
	upstream := slog.String("upstream", t.Upstream)
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		p := entra.FromContext(ctx)
		g := grantsFrom(ctx)
		if p == nil || !g.Allows(s.index().needs[name]) {
			// The filter already refused this; answering like an unknown
			// tool keeps the two indistinguishable if it ever did not.
			s.audit(ctx, p, name, false, "denied", time.Since(start), upstream)
			return nil, fmt.Errorf("tool '%s' not found: %w", name, server.ErrToolNotFound)
		}
		if limited := s.limit(ctx, p); limited != nil {
			s.metrics.toolCall(name, outcomeLimited)
			s.audit(ctx, p, name, true, outcomeLimited, time.Since(start), upstream)
			return limited, nil
		}
		res, err := s.run(ctx, t, tools.Call{
			Principal:    p,
			Grants:       s.policy.Names(g),
			Request:      req,
			AllowedTools: func() []string { return s.allowedNames(g) },
		})
		var refused *tools.RequestError
		if errors.As(err, &refused) {
			// mcp-go v1.2.1 answers every handler error with -32603 and
			// the error's text: the tool wrote that text for the client.
			s.metrics.toolCall(name, outcomeRefused)
			s.audit(ctx, p, name, true, outcomeRefused, time.Since(start), upstream)
			return nil, refused
		}
		outcome := "ok"
		var failed *tools.Failure
		switch {
		case errors.As(err, &failed):
			outcome = failed.Outcome
			s.log.LogAttrs(ctx, slog.LevelWarn, "tool failed", slog.String("tool", name), slog.String("upstream", t.Upstream),
				slog.String("outcome", outcome), slog.String("err", logText(failed.Err)))
			res = mcp.NewToolResultError(failed.Text)
		case err != nil && errors.Is(err, outage.ErrUnavailable):
			outcome = "unavailable"
			s.log.LogAttrs(ctx, slog.LevelWarn, "tool failed: a service it needs is unavailable", slog.String("tool", name),
				slog.String("dependency", outage.Dependency(err)), slog.String("err", err.Error()))
			// For a write, a lost reply is not a failure: the message says
			// whether the change may have happened and how to retry safely.
			res = mcp.NewToolResultError(t.UnavailableText())
		case err != nil:
			outcome = "error"
			s.log.LogAttrs(ctx, slog.LevelError, "tool failed", slog.String("tool", name), slog.String("err", err.Error()))
			res = mcp.NewToolResultError("The tool failed with an internal error.")
		case res == nil:
			outcome = "error"
			s.log.LogAttrs(ctx, slog.LevelError, "tool returned no result", slog.String("tool", name))
			res = mcp.NewToolResultError("The tool failed with an internal error.")
		case res.IsError:
			outcome = "tool_error"
		}
		s.metrics.toolCall(name, outcome)
		s.audit(ctx, p, name, true, outcome, time.Since(start), upstream)
		return res, nil
	}
}

// logText is err's text for a log line, cut to a sane length: an upstream's
// error can quote its answer.
func logText(err error) string {
	if err == nil {
		return ""
	}
	const max = 512
	if t := err.Error(); len(t) > max {
		return t[:max] + "…"
	}
	return err.Error()
}

// Audit outcomes of calls that did not get a tool result.
const (
	outcomeLimited = "rate_limited" // refused by the limiter
	outcomeRefused = "refused"      // the tool refused the request (tools.RequestError)
	// a 2026-07-28 call without a client capability the tool needs
	outcomeMissingCapability = "missing_client_capability"
)

// limit counts the call against its caller's budget. Over it, it returns
// the tool error to answer with: when to retry, in the text for people and
// models and in _meta.retryAfterSeconds for programs. A limiter that fails
// lets the call through (*ratelimit.Limiter never does: it counts in process
// when Redis cannot): one outage must not stop every tool, including those
// that do not use Redis.
func (s *Server) limit(ctx context.Context, p *entra.Principal) *mcp.CallToolResult {
	if s.limiter == nil {
		return nil
	}
	ok, retry, err := s.limiter.Allow(ctx, p.TenantID+"."+p.ObjectID)
	if err != nil {
		s.limiterFailed(ctx, err)
		return nil
	}
	if ok {
		return nil
	}
	secs := max(1, int64(math.Ceil(retry.Seconds())))
	res := mcp.NewToolResultError(fmt.Sprintf("Too many tool calls: retry in %d seconds.", secs))
	res.Meta = mcp.NewMetaFromMap(map[string]any{"retryAfterSeconds": secs})
	return res
}

// limiterFailed logs a failing limiter at most once a minute.
func (s *Server) limiterFailed(ctx context.Context, err error) {
	now, last := time.Now().UnixNano(), s.downSince.Load()
	if now-last < int64(time.Minute) || !s.downSince.CompareAndSwap(last, now) {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "tool-call rate limit failed: calls are let through unlimited",
		slog.String("err", err.Error()))
}

// run calls the tool, turning a panic into an error so one bad tool cannot
// take the process down or leave the caller without an answer.
func (s *Server) run(ctx context.Context, t tools.Tool, call tools.Call) (res *mcp.CallToolResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("run tool %s: panic: %v", t.Def.Name, r)
			if s.events != nil {
				s.events.Exception(ctx, r, map[string]string{"tool": t.Def.Name})
			}
		}
	}()
	return t.Run(ctx, call)
}

// audit writes the one structured line every tool call gets. The tool name
// of a denied call is caller input, so it is cut to a sane length.
func (s *Server) audit(ctx context.Context, p *entra.Principal, tool string, allowed bool, outcome string, d time.Duration, extra ...slog.Attr) {
	if len(tool) > 64 {
		tool = tool[:64]
	}
	var tid, oid, kind, appID string
	if p != nil {
		tid, oid, kind, appID = p.TenantID, p.ObjectID, string(p.Kind), p.AppID
	}
	attrs := append([]slog.Attr{
		slog.String("tid", tid),
		slog.String("oid", oid),
		slog.String("caller", kind),
		slog.String("app_id", appID),
		slog.String("tool", tool),
		slog.Bool("allowed", allowed),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("outcome", outcome),
	}, extra...)
	s.log.LogAttrs(ctx, slog.LevelInfo, "tool call", attrs...)
	if s.events != nil {
		name := "tool.allowed"
		if !allowed {
			name = "tool.denied"
		}
		props := map[string]string{"tid": tid, "oid": oid, "caller": kind, "app_id": appID, "tool": tool, "outcome": outcome}
		for _, a := range extra {
			if v := a.Value.String(); v != "" {
				props[a.Key] = v
			}
		}
		s.events.Event(ctx, name, props)
	}
}
