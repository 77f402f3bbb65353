package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/valid"
	"github.com/microsoft/ApplicationInsights-Go/appinsights/contracts"
)

// InvocationIDHeader is set by the Functions host on every request it
// proxies to a custom handler (azure-functions-host,
// DefaultHttpWorkerService.AddProxyingHeaders). Its value is the
// invocation id that the host's own logs carry.
const InvocationIDHeader = "X-Azure-Functions-InvocationId"

// operation is one incoming request's place in a W3C trace. Application
// Insights' operation_Id is the trace id; the request's id is its span id,
// and items recorded while serving it name that span as their parent.
type operation struct {
	traceID      string // 32 lowercase hex
	parentID     string // the caller's span (traceparent parent-id); "" at a root
	spanID       string // this request's id: 16 lowercase hex
	invocationID string // the Functions invocation id, if the host sent one
}

type ctxKey struct{}

func operationFrom(ctx context.Context) *operation {
	op, _ := ctx.Value(ctxKey{}).(*operation)
	return op
}

// tags returns fresh context tags for one item of this operation.
func (op *operation) tags(parent string) contracts.ContextTags {
	t := make(contracts.ContextTags, 3)
	t.Operation().SetId(op.traceID)
	if parent != "" {
		t.Operation().SetParentId(parent)
	}
	return t
}

// childTags tags an item recorded under ctx: part of ctx's request if any,
// else an operation of its own.
func childTags(ctx context.Context) contracts.ContextTags {
	if op := operationFrom(ctx); op != nil {
		return op.tags(op.spanID)
	}
	return (&operation{traceID: newTraceID()}).tags("")
}

// incoming builds the operation for a request: from its traceparent, else
// from the Functions invocation id (a GUID is 32 hex digits, a valid trace
// id, and the host's logs can then be joined on it), else a new trace.
func incoming(r *http.Request) *operation {
	op := &operation{spanID: newSpanID()}
	if tid, pid, ok := parseTraceparent(r.Header.Get("traceparent")); ok {
		op.traceID, op.parentID = tid, pid
	}
	if inv := r.Header.Get(InvocationIDHeader); valid.GUID(inv) {
		op.invocationID = strings.ToLower(inv)
		if op.traceID == "" {
			op.traceID = strings.ReplaceAll(op.invocationID, "-", "")
			if isZero(op.traceID) {
				op.traceID = ""
			}
		}
	}
	if op.traceID == "" {
		op.traceID = newTraceID()
	}
	return op
}

// parseTraceparent parses a W3C traceparent header:
// version "-" trace-id "-" parent-id "-" flags, all lowercase hex. Version
// ff is invalid; later versions may append fields after a "-".
func parseTraceparent(h string) (traceID, parentID string, ok bool) {
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return "", "", false
	}
	version, tid, pid, flags := h[:2], h[3:35], h[36:52], h[53:55]
	if !knownVersion(version, h[55:]) || !lowerHex(flags) || !validID(tid) || !validID(pid) {
		return "", "", false
	}
	return tid, pid, true
}

// knownVersion reports whether version is one a traceparent may have,
// with rest (what follows the flags) as that version allows: nothing for
// 00, else nothing or "-" and more fields.
func knownVersion(version, rest string) bool {
	if !lowerHex(version) || version == "ff" {
		return false
	}
	if version == "00" {
		return rest == ""
	}
	return rest == "" || rest[0] == '-'
}

// validID reports whether id is lowercase hex and not all zeros.
func validID(id string) bool { return lowerHex(id) && !isZero(id) }

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isZero(s string) bool { return strings.Trim(s, "0") == "" }

// newTraceID and newSpanID make random W3C ids from crypto/rand, the one
// source of randomness this code base uses: ids only need to be unique,
// but one rule is easier to keep than two.
func newTraceID() string {
	var b [16]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		if b != [16]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

func newSpanID() string {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if b != [8]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

// Middleware records one request item per HTTP call and puts the request's
// operation in its context, so Dependency, Event and Exception calls made
// with r.Context() are correlated with it. Mount it outermost (outside the
// panic recoverer, so a recovered panic is recorded as the 500 it became).
//
// The item's name is "<METHOD> <route>", the route being the ServeMux
// pattern that served the request (so "/" for everything unrouted, which
// keeps scanners from minting names); without one it is the path. This
// works when the handlers between Middleware and the ServeMux pass the
// request on as they got it. Queries are never recorded.
//
// A disabled client returns next itself: no cost at all.
func (c *Client) Middleware(next http.Handler) http.Handler {
	if !c.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		op := incoming(r)
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, op))
		sw := &statusWriter{ResponseWriter: w}
		returned := false
		defer func() {
			status := sw.status
			switch {
			case !returned:
				status = http.StatusInternalServerError // a panic is passing through
			case status == 0:
				status = http.StatusOK // nothing written: net/http sends 200
			}
			c.request(op, RequestItem{
				Name:       r.Method + " " + route(r),
				URL:        c.requestURL(r),
				Start:      start,
				Duration:   time.Since(start),
				StatusCode: status,
				// As the SDK does: 401 is the normal first step of bearer
				// auth (the MCP discovery flow), not a failure.
				Success: status < 400 || status == http.StatusUnauthorized,
			})
		}()
		next.ServeHTTP(sw, r)
		returned = true
	})
}

// route is the ServeMux pattern without its method or host, else the path.
func route(r *http.Request) string {
	p := r.Pattern
	if p == "" {
		return r.URL.Path
	}
	if _, after, ok := strings.Cut(p, " "); ok {
		p = strings.TrimLeft(after, " ")
	}
	if i := strings.IndexByte(p, '/'); i > 0 {
		p = p[i:] // "host/path" patterns
	}
	return p
}

// requestURL is the public URL of the request, without its query: the Host
// header behind the Functions host is a loopback address.
func (c *Client) requestURL(r *http.Request) string {
	if c.baseURL != "" {
		return strings.TrimRight(c.baseURL, "/") + r.URL.EscapedPath()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// statusWriter remembers the status code. It keeps http.Flusher working
// (streamed answers) and unwraps for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx are interim answers
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
