package tools

import (
	"context"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// SessionRevoker ends a user's sign-in sessions.
type SessionRevoker interface {
	RevokeUser(ctx context.Context, tid, oid string) (int, error)
}

// revokeResult is the structured result of revoke_sessions.
type revokeResult struct {
	ObjectID       string `json:"oid"`
	RevokedHandles int    `json:"revokedSessions"`
}

func sessionTools(d Deps) []Tool {
	def := define("revoke_sessions", "Revoke a user's sessions",
		"Signs a user of your organisation out everywhere: revokes every refresh token this server issued them "+
			"and deletes the Entra tokens it holds for them. Access tokens already issued stay valid until they expire. "+
			"For administrators.",
		hints{destructive: true, idempotent: true},
		mcp.WithString("oid", mcp.Required(),
			mcp.Description("Object id (GUID) of the user in your tenant"),
			mcp.MinLength(36), mcp.MaxLength(36),
			mcp.Pattern(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)),
		outputSchema(object(map[string]any{
			"oid":             str("Object id of the user"),
			"revokedSessions": map[string]any{"type": "integer", "description": "How many sign-in sessions were ended"},
		})),
	)
	run := func(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
		if d.Sessions == nil {
			return nil, fmt.Errorf("no session store configured: %w", outage.New("session store", nil))
		}
		oid, _ := a.str("oid")
		oid = strings.ToLower(oid)
		// Only users of the caller's own tenant: the tenant comes from the
		// verified token, never from arguments.
		n, err := d.Sessions.RevokeUser(ctx, call.Principal.TenantID, oid)
		if err != nil {
			return nil, fmt.Errorf("revoke sessions: %w", err)
		}
		res, err := jsonResult(revokeResult{ObjectID: oid, RevokedHandles: n})
		return res, err
	}
	return []Tool{newTool(def, "server.admin", run)}
}
