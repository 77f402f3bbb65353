package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Outcomes of forwarded calls that failed, as the audit line records them.
const (
	OutcomeNeedsUser        = "upstream_needs_user"       // on-behalf-of, called by an app
	OutcomeExchangeRefused  = "upstream_exchange_refused" // Entra refused the on-behalf-of exchange
	OutcomeNoCredential     = "upstream_no_credential"    // Entra, the identity or Key Vault did not answer
	OutcomeBusy             = "upstream_busy"             // its cap of calls in flight
	OutcomeBreakerOpen      = "upstream_breaker_open"
	OutcomeUnreachable      = "upstream_unreachable"
	OutcomeTimeout          = "upstream_timeout"
	OutcomeTokenRefused     = "upstream_token_refused"   // 401 or 403
	OutcomeUnavailable      = "upstream_unavailable"     // 5xx or 429
	OutcomeBadAnswer        = "upstream_bad_answer"      // not MCP, or over the size cap
	OutcomeRequestRefused   = "upstream_request_refused" // another 4xx: it (or its gateway) refused the request
	OutcomeUpstreamRPCError = "upstream_error"           // a JSON-RPC error
)

// kinds of callError, each an outcome.
type kind string

const (
	kindUnreachable kind = OutcomeUnreachable
	kindTimeout     kind = OutcomeTimeout
	kindRefused     kind = OutcomeTokenRefused
	kindUnavailable kind = OutcomeUnavailable
	kindBadAnswer   kind = OutcomeBadAnswer
	kindTooLarge    kind = "too_large"
	kindRejected    kind = OutcomeRequestRefused
	kindRPC         kind = OutcomeUpstreamRPCError
)

// callError is a failed exchange with an upstream, classified.
type callError struct {
	kind   kind
	status int  // HTTP status, when there was one
	sent   bool // the request may have reached the upstream
	rpc    *rpcError
	err    error
}

func (e *callError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %v", e.kind, e.status, e.err)
}

func (e *callError) Unwrap() error { return e.err }

// answered reports whether the upstream itself answered, which keeps the
// breaker closed: a refusal, an error of its own, a 4xx for the request or
// an answer larger than we take (which a caller can ask for) is not an
// outage.
func (e *callError) answered() bool {
	switch e.kind {
	case kindRefused, kindRPC, kindRejected, kindTooLarge:
		return true
	}
	return false
}

// classify names what went wrong in an exchange, from the error and what
// the wire showed. ctx is the call's context, whose deadline is the
// upstream's timeout.
func classify(ctx context.Context, err error, x *exchange) *callError {
	status, tooBig, started := x.snapshot()
	e := &callError{status: status, sent: started && !dialFailed(err), err: err}
	var rpc *rpcError
	var authErr *transport.AuthorizationRequiredError
	switch {
	case errors.As(err, &rpc):
		e.kind, e.rpc = kindRPC, rpc
	case tooBig || errors.Is(err, errTooLarge):
		e.kind = kindTooLarge
	case errors.As(err, &authErr):
		e.kind = kindRefused
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		e.kind = kindTimeout
	default:
		e.kind = byStatus(status, !e.sent || isNetError(err))
	}
	return e
}

// byStatus classifies a failed exchange by its last HTTP status; unreached
// is set when nothing usable came back from the network.
func byStatus(status int, unreached bool) kind {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return kindRefused
	case status >= 500 || status == http.StatusTooManyRequests:
		return kindUnavailable
	case status >= 400 && status != http.StatusNotFound && status != http.StatusRequestTimeout:
		// A 404 is a session the upstream forgot (mcp-go retried it);
		// others refuse this request, which the caller made.
		return kindRejected
	case unreached:
		return kindUnreachable
	}
	return kindBadAnswer
}

// scrub takes out of a classified error what must reach neither the
// caller nor a log line: the credential, should the upstream quote it
// back, and the raw bodies of error answers, which mcp-go puts into its
// errors. Only the text is kept; classification is done.
func (e *callError) scrub(c credential) {
	if e.rpc != nil {
		e.rpc = &rpcError{Code: e.rpc.Code, Message: redact(e.rpc.Message, c)}
	}
	if e.err != nil {
		e.err = errors.New(redact(withoutBody(e.err.Error()), c))
	}
}

// errorBody matches where mcp-go's errors quote an answer.
var errorBody = regexp.MustCompile(`(?s)(failed with status \d+|should contain RPC id): .*`)

func withoutBody(text string) string {
	return errorBody.ReplaceAllString(text, "$1 (answer not logged)")
}

// redact replaces the credential's value (and a bearer token's token) in
// text.
func redact(text string, c credential) string {
	for _, v := range []string{c.value, strings.TrimPrefix(c.value, "Bearer ")} {
		if len(v) >= 8 {
			text = strings.ReplaceAll(text, v, "[redacted]")
		}
	}
	return text
}

// dialFailed reports whether the connection was never made, so the
// request cannot have reached the upstream.
func dialFailed(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// describe says what went wrong in our words, for logs and health: never
// the upstream's body.
func describe(err error) string {
	var ce *callError
	switch {
	case errors.As(err, &ce) && ce.rpc != nil:
		return fmt.Sprintf("JSON-RPC error %d", ce.rpc.Code)
	case errors.As(err, &ce) && ce.status != 0:
		return fmt.Sprintf("%s (HTTP %d)", ce.kind, ce.status)
	case errors.As(err, &ce):
		return string(ce.kind)
	case errors.Is(err, errNeedsUser):
		return "needs a signed-in user"
	}
	var consent *obo.ConsentError
	if errors.As(err, &consent) {
		return "Entra refused the on-behalf-of exchange"
	}
	if errors.Is(err, outage.ErrUnavailable) {
		return "a credential service is unavailable"
	}
	return "credential: " + cut(err.Error(), 200)
}

// forwardTool runs a tool as a tools/call to the upstream's tool name.
func (s *server) forwardTool(name string, hints mcp.ToolAnnotation) tools.Handler {
	return func(ctx context.Context, call tools.Call) (*mcp.CallToolResult, error) {
		params := map[string]any{"name": name}
		if args := call.Request.GetRawArguments(); args != nil {
			params["arguments"] = args
		}
		raw, err := s.do(ctx, call.Principal, string(mcp.MethodToolsCall), params, hints)
		if err != nil {
			return nil, err
		}
		res, err := mcp.ParseCallToolResult(&raw)
		if err != nil {
			return nil, s.failure(OutcomeBadAnswer, "answered with something that is not a tool result.", &callError{kind: kindBadAnswer, err: err})
		}
		// Only what MCP defines is relayed: content, structured content and
		// whether it is an error; the upstream's _meta stays there.
		return &mcp.CallToolResult{Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}, nil
	}
}

// do sends one request to the upstream as the caller p and returns its
// result, or a *tools.Failure saying what went wrong in words the caller
// can act on. hints say whether a call that may have reached the upstream
// is safe to repeat.
func (s *server) do(ctx context.Context, p *entra.Principal, method string, params any, hints mcp.ToolAnnotation) (json.RawMessage, error) {
	if p == nil {
		return nil, errors.New("upstream: no principal")
	}
	if s.auth.perUser() && p.Kind == entra.CallerApp {
		return nil, s.failure(OutcomeNeedsUser, "is called on behalf of a signed-in person (on-behalf-of), and this call comes from an "+
			"application acting as itself (an app-only token). Call it with a token a user signed in for.", errNeedsUser)
	}
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.cfg.Timeout))
	defer cancel()
	// The credential first: minting it (an on-behalf-of exchange with
	// Entra) is no call to the upstream and must not hold one of its slots.
	cred, err := s.auth.credential(ctx)
	if err != nil {
		return nil, s.credentialFailure(err)
	}
	done, wait, err := s.gate.enter(ctx)
	if err != nil {
		return nil, s.notAdmitted(err, wait)
	}
	key := p.TenantID + "." + p.ObjectID
	c, release, err := s.pool.get(key)
	if err != nil {
		done(abandoned)
		return nil, err
	}
	defer release()
	cctx, x := withExchange(withCredential(ctx, cred))
	raw, err := c.call(cctx, method, params)
	if err == nil {
		done(answered)
		return raw, nil
	}
	ce := classify(ctx, err, x)
	ce.scrub(cred)
	done(verdictOf(caller, ce))
	if ce.kind != kindRPC {
		// A broken or refused session starts afresh next time.
		s.pool.drop(key, c)
	}
	if ce.kind == kindRefused && ce.status == http.StatusUnauthorized {
		s.auth.refused(ctx)
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("upstream %s: %w", s.cfg.Name, ctx.Err()) // the caller went away
	}
	return nil, s.callFailure(ce, hints)
}

// verdictOf is what a failed exchange tells the breaker.
func verdictOf(caller context.Context, ce *callError) verdict {
	switch {
	case caller.Err() != nil:
		return abandoned // the caller went away, or its own deadline passed
	case ce.answered():
		return answered
	}
	return failed
}

// notAdmitted explains a call the gate did not let through.
func (s *server) notAdmitted(err error, wait time.Duration) error {
	switch {
	case errors.Is(err, errOpen):
		secs := int(math.Ceil(wait.Seconds()))
		return s.failure(OutcomeBreakerOpen, fmt.Sprintf("failed repeatedly, so calls to it are paused; try again in %d seconds.", secs), err)
	case errors.Is(err, errBusy):
		return s.failure(OutcomeBusy, fmt.Sprintf("has had %d calls in flight from this server, its limit, for %s; nothing was sent. Try again in a moment.", s.cfg.MaxConcurrent, s.gate.wait), err)
	}
	return fmt.Errorf("upstream %s: %w", s.cfg.Name, err) // the caller went away
}

// credentialFailure explains why no credential could be had for the call.
func (s *server) credentialFailure(err error) error {
	var consent *obo.ConsentError
	switch {
	case errors.Is(err, errNeedsUser):
		return s.failure(OutcomeNeedsUser, "is called on behalf of a signed-in person, and this call has none.", err)
	case errors.As(err, &consent):
		return s.failure(OutcomeExchangeRefused, "could not be called: Entra ID refused to issue a token for it on your behalf. "+
			consent.UserMessage()+" Nothing was sent to it.", err)
	}
	return s.failure(OutcomeNoCredential, "could not be called: the service that issues its credential did not answer. Nothing was sent to it; try again in a moment.", err)
}

// callFailure explains a failed exchange.
func (s *server) callFailure(ce *callError, hints mcp.ToolAnnotation) error {
	switch ce.kind {
	case kindRPC:
		return s.failure(OutcomeUpstreamRPCError, fmt.Sprintf("answered with an error (%d): %s", ce.rpc.Code, cut(printable(ce.rpc.Message), 300)), ce)
	case kindRefused:
		return s.failure(OutcomeTokenRefused, fmt.Sprintf("refused the credential this server sent it (HTTP %d). An administrator should check that it accepts tokens for the "+
			"audience and permissions its configuration names.", ce.status), ce)
	case kindTooLarge:
		return s.failure(OutcomeBadAnswer, fmt.Sprintf("answered with more than %d bytes, its limit here. ", s.cfg.MaxResponseBytes)+outcomeUnknown(hints), ce)
	case kindRejected:
		return s.failure(OutcomeRequestRefused, fmt.Sprintf("refused the request (HTTP %d): check the arguments; if they are right, an administrator should look at it. ", ce.status)+
			outcomeUnknown(hints), ce)
	case kindTimeout:
		return s.failure(OutcomeTimeout, fmt.Sprintf("did not answer within %s. ", time.Duration(s.cfg.Timeout))+outcomeUnknown(hints), ce)
	case kindUnavailable:
		return s.failure(OutcomeUnavailable, fmt.Sprintf("is unavailable (HTTP %d). ", ce.status)+outcomeUnknown(hints), ce)
	case kindUnreachable:
		if !ce.sent {
			return s.failure(OutcomeUnreachable, "could not be reached. The call did not reach it, so nothing was changed; try again later.", ce)
		}
		return s.failure(OutcomeUnreachable, "could not be reached. "+outcomeUnknown(hints), ce)
	}
	return s.failure(OutcomeBadAnswer, "answered with something that is not MCP. "+outcomeUnknown(hints), ce)
}

// outcomeUnknown tells the caller what a call that may have reached the
// upstream means for trying again: a lost reply is not a failure.
func outcomeUnknown(h mcp.ToolAnnotation) string {
	switch {
	case h.ReadOnlyHint != nil && *h.ReadOnlyHint:
		return "The tool only reads, so trying again is safe."
	case h.IdempotentHint != nil && *h.IdempotentHint:
		return "The call may or may not have taken effect there; the tool says repeating it is harmless."
	}
	return "The call may or may not have taken effect there: check before calling it again."
}

// failure is a *tools.Failure naming the upstream.
func (s *server) failure(outcome, text string, err error) error {
	return &tools.Failure{Outcome: outcome, Text: fmt.Sprintf("The upstream MCP server %q %s", s.cfg.Name, text), Err: err}
}

// printable drops control characters from upstream text.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// cut shortens s to n bytes at most, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
