package devidp

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
)

// aadError is an error as Entra reports it: an OAuth error code ("error"),
// an AADSTS number and its message. The token endpoint sends it as JSON; the
// authorize endpoint either redirects with it or shows it on a page.
type aadError struct {
	status  int    // HTTP status at the token endpoint
	code    string // OAuth error code, such as invalid_grant
	number  int    // AADSTS number
	message string // text after "AADSTS<number>: "
}

// newAADError builds an aadError whose message is formatted from format.
func newAADError(status int, code string, number int, format string, args ...any) *aadError {
	return &aadError{status: status, code: code, number: number, message: fmt.Sprintf(format, args...)}
}

// missingParam is Entra's error for a required parameter that is absent.
func missingParam(name string) *aadError {
	return newAADError(http.StatusBadRequest, "invalid_request", 900144,
		"The request body must contain the following parameter: '%s'.", name)
}

// Error returns "AADSTS<number>: <message>".
func (e *aadError) Error() string { return "AADSTS" + strconv.Itoa(e.number) + ": " + e.message }

// errorDetails are the per-response parts of an Entra error: Entra appends
// them to every error_description, and clients that show the description
// raw must cope with them.
type errorDetails struct {
	traceID, correlationID, timestamp string
}

// details makes the trace id, correlation id (echoing MSAL's
// client-request-id header when it is a UUID, as Entra does) and timestamp of
// an error response.
func (s *Server) details(r *http.Request) errorDetails {
	corr := r.Header.Get("client-request-id")
	if !uuidPattern.MatchString(corr) {
		corr = newUUID()
	}
	return errorDetails{traceID: newUUID(), correlationID: corr, timestamp: s.now().UTC().Format("2006-01-02 15:04:05Z")}
}

// description is the error_description Entra sends: the AADSTS message, then
// trace id, correlation id and timestamp on their own lines.
func (e *aadError) description(d errorDetails) string {
	return e.Error() + "\r\nTrace ID: " + d.traceID + "\r\nCorrelation ID: " + d.correlationID + "\r\nTimestamp: " + d.timestamp
}

// errorURI is the error_uri Entra adds, pointing at its error lookup page.
func (s *Server) errorURI(e *aadError) string {
	return s.host + "/error?code=" + strconv.Itoa(e.number)
}

// writeTokenError sends e as the token endpoint does: JSON with Entra's
// fields, never cached.
func (s *Server) writeTokenError(w http.ResponseWriter, r *http.Request, e *aadError) {
	writeNoStoreJSON(w, e.status, s.tokenErrorBody(r, e))
}

// tokenErrorBody is the token endpoint's JSON error with Entra's fields.
func (s *Server) tokenErrorBody(r *http.Request, e *aadError) map[string]any {
	d := s.details(r)
	return map[string]any{
		"error":             e.code,
		"error_description": e.description(d),
		"error_codes":       []int{e.number},
		"timestamp":         d.timestamp,
		"trace_id":          d.traceID,
		"correlation_id":    d.correlationID,
		"error_uri":         s.errorURI(e),
	}
}

// writeNoStoreJSON writes v as JSON with the headers RFC 6749 §5.1 requires
// of token responses.
func writeNoStoreJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// newUUID returns a random (version 4) UUID, the shape of Entra's trace,
// correlation and session ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// counter counts events by name.
type counter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *counter) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[name]++
}

func (c *counter) get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}
