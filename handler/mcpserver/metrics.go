package mcpserver

import (
	"strings"
	"sync/atomic"
)

// Metrics counts what the endpoint did since start. server_stats reports it.
type Metrics struct {
	requests      atomic.Int64
	listFast      atomic.Int64
	listSlow      atomic.Int64
	denied        atomic.Int64
	badRequests   atomic.Int64
	perTool       map[string]*toolCounters // set once by New before serving
	toolErrors    atomic.Int64
	internalFails atomic.Int64
	rateLimited   atomic.Int64
	upstreamFails atomic.Int64
}

type toolCounters struct {
	calls  atomic.Int64
	errors atomic.Int64
}

// NewMetrics returns an empty set of counters.
func NewMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) addTools(names []string) {
	m.perTool = make(map[string]*toolCounters, len(names))
	for _, n := range names {
		m.perTool[n] = &toolCounters{}
	}
}

func (m *Metrics) toolCall(name, outcome string) {
	// Upstream tools come and go, so only our own are counted one by one;
	// the others count in the totals alone.
	var uncounted toolCounters
	c := m.perTool[name]
	if c == nil {
		c = &uncounted
	}
	c.calls.Add(1)
	switch {
	case outcome == "ok":
	case outcome == outcomeLimited:
		m.rateLimited.Add(1)
	case outcome == "tool_error" || outcome == outcomeRefused:
		// The caller's doing, not the server's.
		c.errors.Add(1)
		m.toolErrors.Add(1)
	case strings.HasPrefix(outcome, outcomeUpstreamPrefix):
		// An upstream MCP server's (or its credential's) doing.
		c.errors.Add(1)
		m.upstreamFails.Add(1)
	default:
		c.errors.Add(1)
		m.internalFails.Add(1)
	}
}

// outcomeUpstreamPrefix starts the outcomes of forwarded calls that failed
// upstream (upstream.Outcome*).
const outcomeUpstreamPrefix = "upstream_"

// MetricsSnapshot is a point-in-time copy of the counters.
type MetricsSnapshot struct {
	Requests       int64 `json:"requests"`
	ToolsListFast  int64 `json:"tools_list_pre_encoded"`
	ToolsListSlow  int64 `json:"tools_list_mcp_go"`
	DeniedCalls    int64 `json:"denied_calls"`
	BadRequests    int64 `json:"bad_requests"`
	ToolErrors     int64 `json:"tool_errors"`
	InternalErrors int64 `json:"internal_errors"`
	RateLimited    int64 `json:"rate_limited_calls"`
	// UpstreamFailures counts forwarded calls that failed upstream (or
	// getting its credential): unreachable, timed out, refused, busy.
	UpstreamFailures int64                   `json:"upstream_failures"`
	Tools            map[string]ToolSnapshot `json:"tools"`
}

// ToolSnapshot counts one tool's calls.
type ToolSnapshot struct {
	Calls  int64 `json:"calls"`
	Errors int64 `json:"errors"`
}

// Snapshot copies the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	s := MetricsSnapshot{
		Requests:         m.requests.Load(),
		ToolsListFast:    m.listFast.Load(),
		ToolsListSlow:    m.listSlow.Load(),
		DeniedCalls:      m.denied.Load(),
		BadRequests:      m.badRequests.Load(),
		ToolErrors:       m.toolErrors.Load(),
		InternalErrors:   m.internalFails.Load(),
		RateLimited:      m.rateLimited.Load(),
		UpstreamFailures: m.upstreamFails.Load(),
		Tools:            make(map[string]ToolSnapshot, len(m.perTool)),
	}
	for n, c := range m.perTool {
		s.Tools[n] = ToolSnapshot{Calls: c.calls.Load(), Errors: c.errors.Load()}
	}
	return s
}
