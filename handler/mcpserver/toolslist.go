package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// tools/list is the hot path: clients call it often and mcp-go re-encodes
// every tool on every call. Its answer depends only on the caller's grants
// and on the protocol era (2026-07-28 results carry extra metadata), so the
// endpoint asks mcp-go once per (grants, era), keeps the bytes, and splices
// each request's id in. A request that is not the plain form - a cursor,
// unusual _meta, headers mcp-go would refuse - goes to mcp-go instead, so
// the shortcut can only ever answer what mcp-go would have answered.

// idSentinel stands in for the request id while the answer is made; it is
// cut out of the bytes afterwards.
const idSentinel = "mcpserver-pre-encoded-id-7c1e4b"

type listKey struct {
	grants  authz.Set
	version string // "" for the legacy (initialize) era
	gen     uint64 // the tool index's: an upstream's change makes new answers
}

// encodedList is mcp-go's answer to tools/list, split around the id.
type encodedList struct {
	ok             bool // false: mcp-go's answer could not be split; never shortcut
	status         int
	contentType    string
	prefix, suffix []byte
}

// listParams is the only params shape the shortcut takes.
type listParams struct {
	Meta json.RawMessage `json:"_meta"`
}

// listMeta is the only _meta shape the shortcut takes.
type listMeta struct {
	ProtocolVersion    json.RawMessage `json:"io.modelcontextprotocol/protocolVersion"`
	ClientCapabilities json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
	ClientInfo         json.RawMessage `json:"io.modelcontextprotocol/clientInfo"`
}

// serveToolsList answers a plain tools/list from the pre-encoded response
// and reports whether it did.
func (s *Server) serveToolsList(w http.ResponseWriter, r *http.Request, g authz.Set, env envelope) bool {
	version, ok := s.listEra(r.Header, env.Params)
	if !ok {
		return false
	}
	enc := s.encodedList(listKey{grants: g, version: version, gen: s.index().gen})
	if !enc.ok {
		return false
	}
	idJSON := rawID(env.ID)
	if idJSON == nil {
		return false
	}
	// One write: a separate write for the id and the tail would cost the
	// connection an extra syscall, and a fresh buffer per request would be
	// kilobytes of garbage, so buffers are reused.
	buf := s.bufs.Get().(*[]byte)
	out := append((*buf)[:0], enc.prefix...)
	out = append(out, idJSON...)
	out = append(out, enc.suffix...)
	h := w.Header()
	h.Set("Content-Type", enc.contentType)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(enc.status)
	_, _ = w.Write(out)
	*buf = out
	s.bufs.Put(buf)
	return true
}

// rawID returns the id as mcp-go will write it back: it decodes the id
// into a string or float64 and encodes that again. Small integers come back
// as they were sent, so they skip the round trip.
func rawID(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && len(raw) <= 15 && (raw[0] != '0' || len(raw) == 1) {
		digits := true
		for _, c := range raw {
			if c < '0' || c > '9' {
				digits = false
				break
			}
		}
		if digits {
			return raw
		}
	}
	id := validID(raw)
	if id == nil {
		return nil
	}
	b, err := json.Marshal(id)
	if err != nil {
		return nil
	}
	return b
}

// listEra decides whether a tools/list request has the plain form, and if
// so which era's answer it gets: "" for legacy, else the modern version.
func (s *Server) listEra(h http.Header, params json.RawMessage) (string, bool) {
	meta, ok := plainListMeta(params)
	if !ok {
		return "", false
	}
	if len(meta) == 0 || bytes.Equal(meta, []byte("null")) {
		// Legacy era: a missing header or any handshake-era version we
		// serve, and mcp-go's answer does not depend on which.
		v := h.Get(mcp.HeaderProtocolVersion)
		return "", v == "" || (s.supports(v) && !mcp.IsModernProtocol(v))
	}
	return s.modernListVersion(h, meta)
}

// plainListMeta returns the _meta of tools/list params that hold nothing
// else (none at all: no _meta); ok is false for a cursor or anything else
// mcp-go should judge.
func plainListMeta(params json.RawMessage) (json.RawMessage, bool) {
	p := bytes.TrimSpace(params)
	if len(p) == 0 || bytes.Equal(p, []byte("null")) || isEmptyObject(p) {
		return nil, true
	}
	var lp listParams
	if !decodeStrict(p, &lp) {
		return nil, false
	}
	return bytes.TrimSpace(lp.Meta), true
}

// modernListVersion returns the version of a 2026-07-28-era tools/list
// whose _meta and headers are the plain form: the version this server
// serves in both, the method header, no resumption, and a capabilities
// object mcp-go accepts.
func (s *Server) modernListVersion(h http.Header, meta json.RawMessage) (string, bool) {
	var m listMeta
	if !decodeStrict(meta, &m) {
		return "", false
	}
	var version string
	if json.Unmarshal(m.ProtocolVersion, &version) != nil || !mcp.IsModernProtocol(version) {
		return "", false
	}
	if h.Get(mcp.HeaderProtocolVersion) != version || !s.supports(version) {
		return "", false
	}
	if h.Get(mcp.HeaderLastEventID) != "" || h.Get(mcp.HeaderMethod) != string(mcp.MethodToolsList) {
		return "", false
	}
	caps := bytes.TrimSpace(m.ClientCapabilities)
	if len(caps) == 0 || caps[0] != '{' {
		return "", false
	}
	var c mcp.ClientCapabilities
	if json.Unmarshal(caps, &c) != nil {
		return "", false
	}
	return version, true
}

// isEmptyObject reports whether p is {} (with any white space inside), the
// params most clients send with tools/list.
func isEmptyObject(p []byte) bool {
	return len(p) >= 2 && p[0] == '{' && p[len(p)-1] == '}' && len(bytes.TrimSpace(p[1:len(p)-1])) == 0
}

// decodeStrict decodes one JSON object into v, refusing unknown fields.
func decodeStrict(data []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v) == nil && !dec.More()
}

// encodedList returns the pre-encoded answer for k, asking mcp-go for it
// the first time.
func (s *Server) encodedList(k listKey) *encodedList {
	if v, ok := s.lists.Load(k); ok {
		return v.(*encodedList)
	}
	enc := s.encodeList(k)
	v, _ := s.lists.LoadOrStore(k, enc)
	return v.(*encodedList)
}

// encodeList runs a canonical tools/list through mcp-go's own HTTP
// transport, as a caller with grants k.grants, and splits the answer.
func (s *Server) encodeList(k listKey) *encodedList {
	rec := newAnswerRecorder()
	s.transport.ServeHTTP(rec, canonicalListRequest(k))

	body := rec.body.Bytes()
	quoted := []byte(`"` + idSentinel + `"`)
	i := bytes.Index(body, quoted)
	if rec.status != http.StatusOK || i < 0 || bytes.Count(body, quoted) != 1 {
		s.log.Error("pre-encode tools/list: unexpected answer from mcp-go; serving it directly",
			"status", rec.status, "grants", s.policy.Names(k.grants), "version", k.version)
		return &encodedList{}
	}
	return &encodedList{
		ok:          true,
		status:      rec.status,
		contentType: rec.header.Get("Content-Type"),
		prefix:      bytes.Clone(body[:i]),
		suffix:      bytes.Clone(body[i+len(quoted):]),
	}
}

// canonicalListRequest is the plain tools/list for key k, carrying the
// sentinel id.
func canonicalListRequest(k listKey) *http.Request {
	var body string
	if k.version == "" {
		body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/list"}`, idSentinel)
	} else {
		body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/list","params":{"_meta":{%q:%q,%q:{}}}}`,
			idSentinel, mcp.MetaKeyProtocolVersion, k.version, mcp.MetaKeyClientCapabilities)
	}
	ctx := withGrants(context.Background(), k.grants)
	ctx = entra.NewContext(ctx, &entra.Principal{})
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: "/mcp"},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          "127.0.0.1",
		RemoteAddr:    "127.0.0.1:0",
		RequestURI:    "/mcp",
	}
	if k.version != "" {
		req.Header.Set(mcp.HeaderProtocolVersion, k.version)
		req.Header.Set(mcp.HeaderMethod, string(mcp.MethodToolsList))
	}
	return req.WithContext(ctx)
}

// answerRecorder keeps what mcp-go writes for a pre-encoding request, in
// memory; it flushes (a no-op) as the server's own writer does, so mcp-go
// answers it as it answers a real connection.
type answerRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newAnswerRecorder() *answerRecorder {
	return &answerRecorder{header: http.Header{}}
}

func (r *answerRecorder) Header() http.Header { return r.header }

// WriteHeader keeps the first status, as net/http does.
func (r *answerRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *answerRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (r *answerRecorder) Flush() {}
