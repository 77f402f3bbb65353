// Package tools holds the MCP tools. Each file declares a family of tools:
// their definitions, the need each one has, and the code that runs them.
// A tool sees the verified caller and the stores it needs, never HTTP.
//
// To add a tool: write one file with a function that returns []Tool, naming
// the permission each tool needs, and add that function to All. A new
// permission is a row (or a name in a row) of authz's roles.json.
package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
)

// Tool is one MCP tool and the access it needs.
type Tool struct {
	Def mcp.Tool
	// Permissions names what a caller must hold to see and run the tool,
	// all of them (authz.SignedIn: every verified caller). The role table
	// (authz's roles.json, or ROLE_MAP) says which App Roles grant them.
	// None means nobody may.
	Permissions []string
	Run         Handler
	// Unavailable is the tool's own message for a call that failed because
	// a service it needs did not answer (outage.ErrUnavailable). For a write
	// that means its outcome is unknown: Redis may have run it and lost only
	// the reply. Empty: UnavailableText's default for the tool's hints.
	Unavailable string
	// Upstream names the upstream MCP server the tool forwards to, for the
	// audit line; empty for this server's own tools.
	Upstream string
	// ClientNeeds names the client capabilities the tool relies on
	// (ClientSampling, ClientElicitation, ClientRoots). A 2026-07-28 call
	// whose clientCapabilities lack one is refused with -32021 before the
	// tool runs, as the protocol requires; earlier revisions declare
	// capabilities at initialize, which a stateless endpoint never keeps,
	// so their calls are not checked.
	ClientNeeds []string
}

// The client capabilities a tool can need, as named in clientCapabilities.
const (
	ClientSampling    = "sampling"
	ClientElicitation = "elicitation"
	ClientRoots       = "roots"
)

// NeedsUserText is what a tool that acts on behalf of a person (on-behalf-of
// to a downstream API) tells an application calling as itself: there is
// nobody to act for, and Entra would refuse the exchange.
const NeedsUserText = "This tool acts on behalf of a signed-in person (on-behalf-of), and this call comes from an " +
	"application acting as itself (an app-only token). Call it with a token a user signed in for."

// Messages for a call whose service did not answer, by what the tool does.
const (
	// A read changed nothing, so trying again is all there is to do.
	UnavailableRead = "A service this tool needs is unavailable right now. Try again in a moment."
	// An idempotent write may have happened; repeating it is harmless.
	UnavailableIdempotent = "A service this tool needs did not answer in time, so the change may or may not have been made. " +
		"Calling this tool again with the same arguments is safe: it will not make the change twice."
	// Any other write may have happened, and repeating it may repeat it.
	UnavailableWrite = "A service this tool needs did not answer in time, so the change may or may not have been made. " +
		"Check whether it was before calling this tool again: calling it again may make the change twice."
)

// UnavailableText is what a caller is told when a service the tool needs
// did not answer: the tool's own message, else one that follows from its
// hints. A tool that does not say it is read-only or idempotent is treated
// as neither, as MCP's defaults for those hints are false.
func (t Tool) UnavailableText() string {
	a := t.Def.Annotations
	switch {
	case t.Unavailable != "":
		return t.Unavailable
	case a.ReadOnlyHint != nil && *a.ReadOnlyHint:
		return UnavailableRead
	case a.IdempotentHint != nil && *a.IdempotentHint:
		return UnavailableIdempotent
	}
	return UnavailableWrite
}

// Handler runs one call. A returned error is an internal failure: it is
// logged and the caller gets a generic tool error (outage.ErrUnavailable gets
// the tool's UnavailableText, a *Failure its Text), except a *RequestError. Problems the caller
// can fix (bad arguments, a task that does not exist) are results with
// IsError set, made with Errorf.
type Handler func(ctx context.Context, call Call) (*mcp.CallToolResult, error)

// RequestError is a tool's refusal of the request itself, not a failure
// of the tool: the caller gets a JSON-RPC error carrying Message instead of
// a tool result, so a client cannot mistake it for an answer. It is for
// requests that must not be retried unchanged, such as a requestState that
// fails its integrity check. Message goes to the client as written.
type RequestError struct{ Message string }

func (e *RequestError) Error() string { return e.Message }

// Failure is a call that failed for a reason the caller is told in words
// (Text, a tool error) and the audit line records as Outcome: an upstream
// MCP server that timed out, refused our token or is switched off by its
// circuit breaker. Err is the cause, for the log only: it never reaches the
// caller.
type Failure struct {
	Outcome string
	Text    string
	Err     error
}

func (f *Failure) Error() string {
	if f.Err == nil {
		return f.Outcome
	}
	return f.Outcome + ": " + f.Err.Error()
}

func (f *Failure) Unwrap() error { return f.Err }

// Call is what a tool sees of one invocation.
type Call struct {
	Principal *entra.Principal
	// Grants are the names of the permissions the caller holds, sorted.
	Grants  []string
	Request mcp.CallToolRequest
	// AllowedTools lists the names of the tools this caller may use.
	AllowedTools func() []string
}

// Deps are the parts of the server that tools may use.
type Deps struct {
	Tasks *taskstore.Store
	// Sessions ends users' sign-in sessions (revoke_sessions).
	Sessions SessionRevoker
	Version  string
	// Stats reports the server's counters for server_stats; it returns a
	// JSON-encodable value.
	Stats func(ctx context.Context) any
	// Graph lets my_profile read Microsoft Graph on the caller's behalf;
	// nil leaves the tool out.
	Graph *Graph
}

// All returns every production tool.
func All(d Deps) []Tool {
	var all []Tool
	all = append(all, whoamiTools(d)...)
	all = append(all, taskTools(d)...)
	all = append(all, adminTools(d)...)
	all = append(all, sessionTools(d)...)
	all = append(all, profileTools(d)...)
	// Only a build with the conformance tag has extra tools: the MCP
	// conformance suite's fixtures.
	all = append(all, extraTools(d)...)
	return all
}
