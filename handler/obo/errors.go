package obo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// Dependency is how outages of Entra's token endpoint are named.
const Dependency = "entra token service"

// ErrUnavailable is wrapped by errors that mean Entra could not serve the
// request: try again later. It is an
// *outage.Error naming Entra's token service, so the MCP server's "try
// again" handling covers it and its logs do not blame Redis.
var ErrUnavailable error = outage.New(Dependency, nil)

// AADSTS numbers that mean the user must do or get something first.
const (
	aadstsConsentRequired = 65001 // no consent to the downstream permission
)

// ConsentError means Entra refused the on-behalf-of request because of the
// user's standing, not a fault: nobody consented to the application using
// the downstream permissions (AADSTS65001, suberror consent_required), or
// sign-in policy such as MFA or Conditional Access requires more of the
// user (interaction_required). UserMessage says what to do.
type ConsentError struct {
	// Scopes are the scopes that were asked for.
	Scopes []string
	// ClientID is the application that needs the consent.
	ClientID string
	// Code is the AADSTS number, such as 65001; 0 if Entra sent none.
	Code int
	// InteractionRequired is set when sign-in policy, not missing consent,
	// is the reason.
	InteractionRequired bool
	// Claims is the claims challenge Entra sent with interaction_required,
	// if any; a client that can sign the user in again passes it on.
	Claims string
}

// Error describes the refusal for logs.
func (e *ConsentError) Error() string {
	reason := "consent required"
	if e.InteractionRequired {
		reason = "interaction required"
	}
	return fmt.Sprintf("obo: %s for %s (AADSTS%d)", reason, strings.Join(e.Scopes, " "), e.Code)
}

// UserMessage tells the user what to ask their administrator for.
func (e *ConsentError) UserMessage() string {
	perms := describeScopes(e.Scopes)
	if e.InteractionRequired {
		return fmt.Sprintf("Your organisation's sign-in policy (for example multi-factor authentication or Conditional Access) "+
			"requires more before this server may use %s on your behalf. Sign in to your MCP client again; if this keeps "+
			"happening, ask your administrator to review the Conditional Access policies that apply to application %s. (AADSTS%d)",
			perms, e.ClientID, e.Code)
	}
	return fmt.Sprintf("This server may not use %s on your behalf: the permission has not been consented to. "+
		"Ask your administrator to grant admin consent for %s to application %s "+
		"(Microsoft Entra admin center > App registrations > this application > API permissions > Grant admin consent). (AADSTS%d)",
		perms, perms, e.ClientID, e.Code)
}

// describeScopes writes scopes as "User.Read (https://graph.microsoft.com)"
// — permission first, the way the admin center lists them.
func describeScopes(scopes []string) string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		if j := strings.LastIndex(s, "/"); j > 0 && j < len(s)-1 {
			out[i] = s[j+1:] + " (" + s[:j] + ")"
		} else {
			out[i] = s
		}
	}
	return strings.Join(out, ", ")
}

// entraError is the body of Entra's token-endpoint errors.
type entraError struct {
	Error         string `json:"error"`
	Suberror      string `json:"suberror"`
	ErrorCodes    []int  `json:"error_codes"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
	Claims        string `json:"claims"`
}

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// classify turns an MSAL error into ConsentError, an ErrUnavailable error,
// or a plain error that names what Entra said (never the assertion).
func classify(err error, clientID string, scopes []string) error {
	var call msalerrors.CallErr
	if errors.As(err, &call) && call.Resp != nil {
		status := call.Resp.StatusCode
		var body entraError
		if call.Resp.Body != nil {
			data, _ := io.ReadAll(io.LimitReader(call.Resp.Body, maxErrorBody))
			_ = json.Unmarshal(data, &body) // not JSON: the status still tells
		}
		code := 0
		if len(body.ErrorCodes) > 0 {
			code = body.ErrorCodes[0]
		}
		switch {
		case body.Suberror == "consent_required" || slices.Contains(body.ErrorCodes, aadstsConsentRequired):
			return &ConsentError{Scopes: slices.Clone(scopes), ClientID: clientID, Code: code}
		case body.Error == "interaction_required":
			return &ConsentError{Scopes: slices.Clone(scopes), ClientID: clientID, Code: code, InteractionRequired: true, Claims: body.Claims}
		case status >= 500 || status == 429 || body.Error == "temporarily_unavailable":
			return fmt.Errorf("%w: Entra answered %d %s%s", ErrUnavailable, status, body.Error, ids(code, body))
		}
		return fmt.Errorf("obo: Entra refused the token request: %d %s%s", status, body.Error, ids(code, body))
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("obo: token request: %w", err)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) || errors.As(err, &urlErr) {
		// No answer at all: Entra unreachable or too slow.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("obo: token request: %w", err)
}

// ids formats the AADSTS number and the ids Entra support asks for.
func ids(code int, body entraError) string {
	var b strings.Builder
	if code != 0 {
		b.WriteString(" AADSTS" + strconv.Itoa(code))
	}
	if body.TraceID != "" {
		b.WriteString(" trace_id=" + body.TraceID)
	}
	if body.CorrelationID != "" {
		b.WriteString(" correlation_id=" + body.CorrelationID)
	}
	return b.String()
}
