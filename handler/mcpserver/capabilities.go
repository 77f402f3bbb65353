package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// From 2026-07-28 a client declares its capabilities on every request, and
// a server that needs one the request does not declare MUST answer
// MissingRequiredClientCapabilityError (-32021, HTTP 400) naming it in
// data.requiredCapabilities. mcp-go v1.2.1 has no way for a tool to give
// that answer (every handler error becomes -32603), so the endpoint gives
// it before mcp-go sees the call, for tools that declare ClientNeeds.

// callParams is the part of a tools/call's params the check reads.
type callParams struct {
	Name string `json:"name"`
	Meta struct {
		ProtocolVersion    string                     `json:"io.modelcontextprotocol/protocolVersion"`
		ClientCapabilities map[string]json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
	} `json:"_meta"`
}

// refuseMissingClientCapability answers a 2026-07-28 tools/call with 400
// and -32021 when the tool needs a client capability the request does not
// declare, and reports whether it did. What it cannot vouch for (a tool
// the caller may not use, a request mcp-go would refuse for its version,
// headers or _meta) it leaves to mcp-go, so it never answers a request
// that mcp-go would have answered with another error.
func (s *Server) refuseMissingClientCapability(ctx context.Context, w http.ResponseWriter, r *http.Request,
	p *entra.Principal, g authz.Set, env envelope) bool {
	call, needs, ok := s.capabilityCall(r, g, env)
	if !ok {
		return false
	}
	missing, ok := missingCapabilities(needs, call.Meta.ClientCapabilities)
	if !ok || len(missing) == 0 {
		return false
	}
	required := make(map[string]struct{}, len(missing))
	for _, c := range missing {
		required[c] = struct{}{}
	}
	s.audit(ctx, p, call.Name, true, outcomeMissingCapability, 0)
	writeRPC(w, http.StatusBadRequest, mcp.NewJSONRPCError(mcp.NewRequestId(validID(env.ID)), mcp.MISSING_REQUIRED_CLIENT_CAPABILITY,
		"missing required client capability: "+strings.Join(missing, ", "),
		map[string]any{"requiredCapabilities": required}))
	return true
}

// capabilityCall decodes a tools/call this check may judge, and the client
// capabilities its tool needs: a tool the caller may use, on a modern
// version this server serves, with the headers and _meta mcp-go accepts.
func (s *Server) capabilityCall(r *http.Request, g authz.Set, env envelope) (callParams, []string, bool) {
	var call callParams
	if len(s.clientNeeds) == 0 {
		return call, nil, false // no tool needs one (the production build): no second decode
	}
	if json.Unmarshal(env.Params, &call) != nil {
		return call, nil, false
	}
	needs := s.clientNeeds[call.Name]
	if len(needs) == 0 || !g.Allows(s.index().needs[call.Name]) {
		return call, nil, false
	}
	v := call.Meta.ProtocolVersion
	if !mcp.IsModernProtocol(v) || !s.supports(v) || r.Header.Get(mcp.HeaderProtocolVersion) != v || call.Meta.ClientCapabilities == nil {
		return call, nil, false
	}
	if mcp.ValidateStandardHeaders(r.Header.Get, v, mcp.MethodToolsCall, env.Params) != nil {
		return call, nil, false
	}
	return call, needs, true
}

// missingCapabilities returns, sorted, the needed capabilities the request
// does not declare. ok is false when a declaration is not a capability
// object: mcp-go refuses that _meta itself.
func missingCapabilities(needs []string, declared map[string]json.RawMessage) (missing []string, ok bool) {
	for _, c := range needs {
		raw := bytes.TrimSpace(declared[c])
		switch {
		case len(raw) > 0 && raw[0] == '{':
			// declared
		case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
			missing = append(missing, c)
		default:
			return nil, false
		}
	}
	slices.Sort(missing)
	return missing, true
}
