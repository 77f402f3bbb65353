package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// envelope is the part of a JSON-RPC message the endpoint checks before
// mcp-go sees it.
type envelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// ServeHTTP serves POST /mcp for a caller whose principal is in the request
// context. Method, content type, body size and authentication are the HTTP
// layer's job; the body must already be capped (http.MaxBytesReader).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.metrics.requests.Add(1)
	p := entra.FromContext(r.Context())
	if p == nil {
		// Never reached through the HTTP layer; refuse rather than serve an
		// anonymous caller.
		writeRPCError(w, http.StatusUnauthorized, nil, mcp.INVALID_REQUEST, "unauthenticated")
		return
	}

	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.metrics.badRequests.Add(1)
			writeRPCError(w, http.StatusRequestEntityTooLarge, nil, mcp.INVALID_REQUEST, "request body too large")
			return
		}
		s.metrics.badRequests.Add(1)
		writeRPCError(w, http.StatusBadRequest, nil, mcp.PARSE_ERROR, "could not read request body")
		return
	}

	env, ok := s.checkEnvelope(w, r, body)
	if !ok || !s.checkVersion(w, r, env) {
		s.metrics.badRequests.Add(1)
		return
	}

	g := s.policy.Grants(p.Roles, p.Kind == entra.CallerApp)
	ctx := withGrants(r.Context(), g)

	if env.Method != nil {
		var done bool
		if w, ctx, done = s.byMethod(ctx, w, r, p, g, env, body); done {
			return
		}
	}

	r2 := r.WithContext(ctx)
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	s.transport.ServeHTTP(w, r2)
}

// byMethod does what the endpoint does itself before mcp-go sees a request
// of env's method: answer tools/list from the pre-encoded lists, fetch the
// upstreams' lists, audit refusals mcp-go makes silently, decide reads.
// done: it answered already. It returns the writer and context mcp-go gets.
func (s *Server) byMethod(ctx context.Context, w http.ResponseWriter, r *http.Request, p *entra.Principal, g authz.Set, env envelope, body []byte) (http.ResponseWriter, context.Context, bool) {
	switch *env.Method {
	case string(mcp.MethodToolsList):
		s.prepareUpstreams(ctx, "")
		if s.serveToolsList(w, r, g, env) {
			s.metrics.listFast.Add(1)
			return w, ctx, true
		}
		s.metrics.listSlow.Add(1)
	case string(mcp.MethodToolsCall):
		name, named := callName(env.Params)
		if s.upstreams != nil && strings.Contains(name, ".") {
			s.prepareUpstreams(ctx, name) // our own tools have no '.'
		}
		if named {
			s.noteDeniedCall(ctx, p, g, name)
		}
		if s.refuseMissingClientCapability(ctx, w, r, p, g, env) {
			s.metrics.badRequests.Add(1)
			return w, ctx, true
		}
	case string(mcp.MethodResourcesList), string(mcp.MethodResourcesTemplatesList), string(mcp.MethodPromptsList):
		s.prepareUpstreams(ctx, "")
	case string(mcp.MethodPromptsGet):
		s.prepareUpstreams(ctx, "")
		s.noteDeniedPrompt(ctx, p, g, body)
	case string(mcp.MethodResourcesRead):
		s.prepareUpstreams(ctx, "")
		ctx, ok := s.serveRead(ctx, w, r, body, p, g)
		return w, ctx, !ok
	case string(mcp.MethodSubscriptionsListen):
		aw := newAckWatcher(w)
		return aw, context.WithValue(ctx, ackWrittenKey{}, aw.written()), false
	}
	return w, ctx, false
}

// checkEnvelope rejects what is not one well-formed JSON-RPC 2.0 message,
// with a 4xx and a JSON-RPC error body, so mcp-go only ever sees
// well-formed input.
func (s *Server) checkEnvelope(w http.ResponseWriter, r *http.Request, body []byte) (envelope, bool) {
	env, bad := decodeEnvelope(body)
	if bad == nil {
		bad = checkMessage(env)
	}
	if bad != nil {
		writeRPCError(w, http.StatusBadRequest, bad.id, bad.code, bad.msg)
		return env, false
	}
	return env, true
}

// envelopeError says why a body is not one well-formed JSON-RPC message,
// with the id to echo (nil when there is none to trust).
type envelopeError struct {
	id   any
	code int
	msg  string
}

// decodeEnvelope decodes one JSON-RPC message object: not an empty body,
// a batch, invalid JSON or another JSON value.
func decodeEnvelope(body []byte) (envelope, *envelopeError) {
	var env envelope
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return env, &envelopeError{nil, mcp.PARSE_ERROR, "empty request body"}
	}
	if trimmed[0] == '[' {
		return env, &envelopeError{nil, mcp.INVALID_REQUEST, "batch requests are not supported"}
	}
	if err := json.Unmarshal(body, &env); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return env, &envelopeError{nil, mcp.PARSE_ERROR, "request body is not valid JSON"}
		}
		return env, &envelopeError{nil, mcp.INVALID_REQUEST, "request is not a JSON-RPC message object"}
	}
	return env, nil
}

// checkMessage checks a decoded message's members: the version, the id's
// type, and a request's method and params or a response's result or error.
func checkMessage(env envelope) *envelopeError {
	hasID := len(bytes.TrimSpace(env.ID)) > 0
	if env.JSONRPC != mcp.JSONRPC_VERSION {
		return &envelopeError{validID(env.ID), mcp.INVALID_REQUEST, `jsonrpc must be "2.0"`}
	}
	if hasID && !plainID(env.ID) {
		return &envelopeError{nil, mcp.INVALID_REQUEST, "id must be a string or a number"}
	}
	if env.Method == nil {
		// A response from the client. A stateless server sends no requests,
		// but mcp-go answers these (202) itself.
		if !hasID || (len(env.Result) == 0 && len(env.Error) == 0) {
			return &envelopeError{validID(env.ID), mcp.INVALID_REQUEST, "message has no method"}
		}
		return nil
	}
	if *env.Method == "" || len(*env.Method) > 128 {
		return &envelopeError{validID(env.ID), mcp.INVALID_REQUEST, "method must be a non-empty string"}
	}
	if p := bytes.TrimSpace(env.Params); len(p) > 0 && p[0] != '{' && !bytes.Equal(p, []byte("null")) {
		return &envelopeError{validID(env.ID), mcp.INVALID_REQUEST, "params must be an object"}
	}
	return nil
}

// plainID reports whether a present id is a string or a number. It is
// decoded only to be echoed in an error: on the hot path its first byte
// says enough (the body is valid JSON by now).
func plainID(raw json.RawMessage) bool {
	c := bytes.TrimSpace(raw)[0]
	return c == '"' || c == '-' || ('0' <= c && c <= '9')
}

// validID returns the id as mcp-go will echo it (a string or a float64), or
// nil when absent or not a string or number.
func validID(raw json.RawMessage) any {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	switch v.(type) {
	case string, float64:
		return v
	}
	return nil
}

// noteDeniedCall counts and logs a tools/call for a tool the caller may not
// use (or that does not exist). mcp-go's filter refuses it; this only makes
// sure the refusal leaves its audit line, since denied calls never reach a
// tool handler.
func (s *Server) noteDeniedCall(ctx context.Context, p *entra.Principal, g authz.Set, name string) {
	need, known := s.index().needs[name]
	if g.Allows(need) {
		return
	}
	outcome := "forbidden"
	if !known {
		outcome = "unknown_tool"
	}
	s.metrics.denied.Add(1)
	s.audit(ctx, p, name, false, outcome, 0)
}

// callName is the tool a tools/call names; false when its params do not
// decode (mcp-go answers those itself).
func callName(params json.RawMessage) (string, bool) {
	var call struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(params, &call) != nil {
		return "", false
	}
	return call.Name, true
}

// writeRPCError answers with a JSON-RPC error object and an HTTP status.
func writeRPCError(w http.ResponseWriter, status int, id any, code int, msg string) {
	writeRPC(w, status, mcp.NewJSONRPCError(mcp.NewRequestId(id), code, msg, nil))
}

// writeRPC answers with a JSON-RPC error response and an HTTP status.
func writeRPC(w http.ResponseWriter, status int, resp mcp.JSONRPCError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}
