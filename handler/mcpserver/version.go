package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/mark3labs/mcp-go/mcp"
)

// ProtocolVersions are the MCP revisions the endpoint serves, newest first.
// It is the one list: server/discover advertises it, a request naming any
// other version is refused with it, and initialize negotiates only its
// handshake-era entries.
func ProtocolVersions() []string {
	return []string{mcp.ProtocolVersion20260728, mcp.ProtocolVersion20251125, mcp.ProtocolVersion20250618}
}

// newestHandshakeVersion is the newest of versions that initialize can
// negotiate: the handshake was removed in 2026-07-28, so later revisions are
// reached without it. "" when there is none.
func newestHandshakeVersion(versions []string) string {
	for _, v := range versions {
		if !mcp.IsModernProtocol(v) {
			return v
		}
	}
	return ""
}

// maxVersionLen caps a protocol version we will read and echo back. Ours
// are ten characters; the cap only keeps junk out of answers.
const maxVersionLen = 64

// wellFormedVersion reports whether v can be a protocol version at all:
// 1 to maxVersionLen visible ASCII characters. Any such string that we do
// not serve is an unsupported version, not a malformed one: the spec's own
// example of an unknown version is 1900-01-01, and the conformance suite
// probes with v999.0.0.
func wellFormedVersion(v string) bool {
	if v == "" || len(v) > maxVersionLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Server) supports(v string) bool { return slices.Contains(s.versions, v) }

// checkVersion applies the protocol-version rules before mcp-go sees the
// request, so every version we do not serve gets the same answer whatever
// its era, and mcp-go only ever sees versions we serve:
//
//   - an MCP-Protocol-Version header that is not one well-formed value, or
//     that is missing or differs beside a protocolVersion in _meta, is a
//     header error: 400, -32020;
//   - a protocolVersion in _meta that is not a non-empty string is invalid
//     params: 400, -32602;
//   - a version we do not serve, in a 2026-07-28-style request or in the
//     header of a handshake-era request, is 400, -32022, with the versions
//     we serve in data.supported, so a client can retry with one of them;
//   - a handshake-era initialize negotiates in its body instead (see
//     negotiateInitialize), and a request without the header is left to
//     mcp-go, as before.
//
// It writes the error and returns false when the request is refused.
func (s *Server) checkVersion(w http.ResponseWriter, r *http.Request, env envelope) bool {
	fail := func(code int, msg string) bool {
		writeRPCError(w, http.StatusBadRequest, replyID(env), code, msg)
		return false
	}
	values := r.Header.Values(mcp.HeaderProtocolVersion)
	if len(values) > 1 {
		return fail(mcp.HEADER_MISMATCH, "MCP-Protocol-Version header must be sent once")
	}
	header, hasHeader := "", len(values) == 1
	if hasHeader {
		header = values[0]
		if !wellFormedVersion(header) {
			return fail(mcp.HEADER_MISMATCH, "MCP-Protocol-Version header is malformed")
		}
	}

	metaVersion, inMeta, ok := metaProtocolVersion(env.Params)
	if !ok {
		return fail(mcp.INVALID_PARAMS, "_meta "+mcp.MetaKeyProtocolVersion+" must be a non-empty string")
	}
	if inMeta && !hasHeader {
		return fail(mcp.HEADER_MISMATCH, "MCP-Protocol-Version header is required with _meta "+mcp.MetaKeyProtocolVersion)
	}
	if inMeta && header != metaVersion {
		return fail(mcp.HEADER_MISMATCH, "MCP-Protocol-Version header does not match _meta "+mcp.MetaKeyProtocolVersion)
	}

	// A handshake-era initialize negotiates in its body; its header is not a
	// claim (mcp-go and the TypeScript SDK check it only after initialize).
	negotiates := !inMeta && env.Method != nil && *env.Method == string(mcp.MethodInitialize)
	if hasHeader && !negotiates && !s.supports(header) {
		resp := mcp.UnsupportedProtocolVersionError{Version: header, Supported: s.versions}.JSONRPCError()
		resp.ID = mcp.NewRequestId(replyID(env))
		writeRPC(w, http.StatusBadRequest, resp)
		return false
	}
	return true
}

// replyID is the id an error about env echoes: the request's, or none for
// a client's response, which the error does not answer. Decoded only when
// an error is written, to keep it off the hot path.
func replyID(env envelope) any {
	if env.Method == nil {
		return nil
	}
	return validID(env.ID)
}

// metaProtocolVersion returns the protocolVersion in params._meta, whether
// the key is there, and (ok) false when it is there but not a non-empty
// string.
// Params whose _meta is not an object are left to mcp-go; the key is
// matched exactly, as mcp-go matches it.
func metaProtocolVersion(params json.RawMessage) (string, bool, bool) {
	p := bytes.TrimSpace(params)
	// Most params (tools/list's {}) cannot hold a _meta key: it needs an
	// underscore, or a backslash to escape one. Skipping the decode then
	// keeps the hot path as fast as before.
	if len(p) == 0 || p[0] != '{' || !bytes.ContainsAny(p, `_\`) {
		return "", false, true
	}
	var wrapper struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(p, &wrapper) != nil {
		return "", false, true
	}
	raw, present := wrapper.Meta[mcp.MetaKeyProtocolVersion]
	if !present {
		return "", false, true
	}
	var version string
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &version) != nil || version == "" {
		return "", true, false
	}
	return version, true, true
}

// negotiateInitialize is mcp-go's before-initialize hook. mcp-go echoes any
// revision it knows (2024-11-05 and 2025-03-26 too, though we refuse the
// batching 2025-03-26 requires) and has no option to restrict that, so the
// requested version is replaced by our newest handshake version unless we
// serve it; mcp-go then answers that, as the lifecycle asks of a server
// that does not support the requested version.
func (s *Server) negotiateInitialize(_ context.Context, _ any, req *mcp.InitializeRequest) {
	if v := req.Params.ProtocolVersion; !s.supports(v) || mcp.IsModernProtocol(v) {
		req.Params.ProtocolVersion = s.handshake
	}
}
