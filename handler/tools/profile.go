package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// Limits of the Graph call. A /me answer is about 1 KiB; a megabyte means
// something is wrong, and reading it all would only cost memory.
const (
	graphTimeout      = 10 * time.Second
	maxGraphBodyBytes = 1 << 20
)

// GraphTokens gets Graph tokens on behalf of the caller; *obo.Client is
// one.
type GraphTokens interface {
	// Token returns an access token for scopes on behalf of the caller in
	// ctx (principal and verified token, entra.NewVerifiedContext). Its
	// errors are an *obo.ConsentError, errors wrapping
	// outage.ErrUnavailable, or bugs.
	Token(ctx context.Context, scopes []string) (string, error)
	// Forget drops a kept token that Graph refused.
	Forget(ctx context.Context, p *entra.Principal, scopes []string) error
}

// Graph is what my_profile needs to read Microsoft Graph for the caller.
type Graph struct {
	Tokens GraphTokens
	// BaseURL is Graph's root: config.DefaultGraphBaseURL when empty;
	// https://graph.microsoft.us and the like in sovereign clouds, or the
	// Entra stand-in's GraphBaseURL() in dev mode. It must be https.
	BaseURL string
	// Scope is the delegated permission asked for: config.DefaultGraphScope
	// when empty (a sovereign cloud names its own Graph host here).
	Scope string
	// HTTPClient calls Graph. A copy is used that never follows redirects
	// (they would carry the bearer token elsewhere) and has a timeout;
	// a client with a 10 s timeout when nil.
	HTTPClient *http.Client
}

// profile is what my_profile reports: the caller's directory profile.
type profile struct {
	DisplayName       string `json:"displayName"`
	Mail              string `json:"mail,omitempty"`
	JobTitle          string `json:"jobTitle,omitempty"`
	UserPrincipalName string `json:"userPrincipalName"`
	ID                string `json:"id"`
}

// profileTools returns my_profile, or nothing when Graph is not configured:
// a tool that could only fail would just be noise in tools/list.
//
// my_profile is read-only and idempotent, and open-world: MCP's
// openWorldHint marks tools that reach entities outside the server's own
// domain. This one calls Microsoft Graph, a service the server does not
// own, and returns text (names, titles) that people and administrators
// outside it write — clients should treat both as they would any external
// call.
func profileTools(d Deps) []Tool {
	g := d.Graph
	if g == nil || g.Tokens == nil {
		return nil
	}
	base := strings.TrimRight(g.BaseURL, "/")
	if base == "" {
		base = config.DefaultGraphBaseURL
	}
	scope := g.Scope
	if scope == "" {
		scope = config.DefaultGraphScope
	}
	client := &http.Client{Timeout: graphTimeout}
	if g.HTTPClient != nil {
		c := *g.HTTPClient
		client = &c
		if client.Timeout == 0 {
			client.Timeout = graphTimeout
		}
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	def := define("my_profile", "My profile",
		"Shows your profile from Microsoft Graph: display name, email, job title and user principal name. "+
			"Reads Graph on your behalf with the delegated permission "+permissionName(scope)+".",
		readOnly(),
		outputSchema(objectWith(map[string]any{
			"displayName":       str("Display name"),
			"mail":              str("Email address (absent when the account has none)"),
			"jobTitle":          str("Job title (absent when none is set)"),
			"userPrincipalName": str("Sign-in name"),
			"id":                str("Entra object id of the user"),
		}, []string{"displayName", "userPrincipalName", "id"})),
	)
	def.Annotations.OpenWorldHint = mcp.ToBoolPtr(true)
	run := func(ctx context.Context, call Call, _ args) (*mcp.CallToolResult, error) {
		if call.Principal.Kind == entra.CallerApp {
			return Errorf("%s", NeedsUserText), nil
		}
		scopes := []string{scope}
		tok, err := g.Tokens.Token(ctx, scopes)
		var consent *obo.ConsentError
		if errors.As(err, &consent) {
			return Errorf("%s", consent.UserMessage()), nil
		}
		if err != nil {
			return nil, fmt.Errorf("my_profile: Graph token: %w", err)
		}
		p, res, err := readMe(ctx, client, base, tok, scope)
		if errors.Is(err, errTokenRefused) {
			// Kept tokens can be revoked before they expire; drop it so the
			// next call asks Entra afresh.
			if ferr := g.Tokens.Forget(ctx, call.Principal, scopes); ferr != nil {
				err = errors.Join(err, ferr)
			}
		}
		if err != nil || res != nil {
			return res, err
		}
		return jsonResult(p)
	}
	return []Tool{newTool(def, "tasks.read", run)}
}

// errTokenRefused marks Graph's 401.
var errTokenRefused = errors.New("graph refused the token")

// graphError is the body of Graph's errors.
type graphError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			RequestID string `json:"request-id"`
		} `json:"innerError"`
	} `json:"error"`
}

// graph is how outages of Microsoft Graph are named.
const graph = "microsoft graph"

// readMe calls GET /v1.0/me. It returns the profile; or a tool result for
// what the caller's administrator can fix; or an error, an *outage.Error
// naming Graph when Graph is down or throttling.
func readMe(ctx context.Context, client *http.Client, base, token, scope string) (profile, *mcp.CallToolResult, error) {
	status, body, err := getMe(ctx, client, base, token)
	if err != nil {
		return profile{}, nil, err
	}
	if status == http.StatusOK {
		p, err := parseMe(body)
		return p, nil, err
	}
	var ge graphError
	_ = json.Unmarshal(body, &ge) // not Graph's shape: the status still tells
	what := fmt.Sprintf("%d %s (request-id %s)", status, ge.Error.Code, ge.Error.InnerError.RequestID)
	switch {
	case status == http.StatusUnauthorized:
		return profile{}, nil, fmt.Errorf("my_profile: %w: %s", errTokenRefused, what)
	case status == http.StatusForbidden:
		return profile{}, Errorf("Microsoft Graph refused to read your profile (%s). Ask your administrator to grant admin consent "+
			"for the delegated permission %s to this server's application.", ge.Error.Code, permissionName(scope)), nil
	case status == http.StatusNotFound:
		return profile{}, Errorf("Microsoft Graph has no profile for your account."), nil
	case status == http.StatusTooManyRequests || status >= 500:
		return profile{}, nil, fmt.Errorf("my_profile: Graph answered %s: %w", what, outage.New(graph, nil))
	}
	return profile{}, nil, fmt.Errorf("my_profile: Graph answered %s", what)
}

// getMe sends GET /v1.0/me with token and returns the status and (capped)
// body of the answer.
func getMe(ctx context.Context, client *http.Client, base, token string) (int, []byte, error) {
	if !strings.HasPrefix(base, "https://") {
		// Never send a bearer token in clear.
		return 0, nil, errors.New("my_profile: Graph base URL must be https")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1.0/me", nil)
	if err != nil {
		return 0, nil, fmt.Errorf("my_profile: Graph request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, nil, fmt.Errorf("my_profile: Graph: %w", err)
		}
		return 0, nil, fmt.Errorf("my_profile: %w", outage.New(graph, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGraphBodyBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("my_profile: read answer: %w", outage.New(graph, err))
	}
	if len(body) > maxGraphBodyBytes {
		return 0, nil, fmt.Errorf("my_profile: Graph: answer larger than %d bytes", maxGraphBodyBytes)
	}
	return resp.StatusCode, body, nil
}

// parseMe reads the profile from Graph's user object.
func parseMe(body []byte) (profile, error) {
	var me struct {
		ID                string  `json:"id"`
		DisplayName       string  `json:"displayName"`
		Mail              *string `json:"mail"`
		JobTitle          *string `json:"jobTitle"`
		UserPrincipalName string  `json:"userPrincipalName"`
	}
	if err := json.Unmarshal(body, &me); err != nil || me.ID == "" {
		return profile{}, errors.New("my_profile: Graph: answer is not a user")
	}
	p := profile{DisplayName: me.DisplayName, UserPrincipalName: me.UserPrincipalName, ID: me.ID}
	if me.Mail != nil {
		p.Mail = *me.Mail
	}
	if me.JobTitle != nil {
		p.JobTitle = *me.JobTitle
	}
	return p, nil
}

// permissionName is the permission part of a scope:
// "https://graph.microsoft.com/User.Read" → "User.Read".
func permissionName(scope string) string {
	if i := strings.LastIndex(scope, "/"); i >= 0 {
		return scope[i+1:]
	}
	return scope
}
