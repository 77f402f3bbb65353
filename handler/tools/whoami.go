package tools

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
)

// identity is what whoami reports about the caller.
type identity struct {
	TenantID     string   `json:"tid"`
	ObjectID     string   `json:"oid"`
	Name         string   `json:"name"`
	Username     string   `json:"username"`
	Caller       string   `json:"caller"`
	AppID        string   `json:"appId"`
	Roles        []string `json:"roles"`
	Grants       []string `json:"grants"`
	AllowedTools []string `json:"allowedTools"`
}

func whoamiTools(Deps) []Tool {
	def := define("whoami", "Who am I",
		"Shows who you are signed in as: tenant id, object id, name, username, whether you are a person or an application, "+
			"your App Roles, the access they grant, and the tools you may use.",
		readOnly(),
		outputSchema(object(map[string]any{
			"tid":          str("Entra tenant id"),
			"oid":          str("Entra object id of the user"),
			"name":         str("Display name"),
			"username":     str("Sign-in name (display only)"),
			"caller":       map[string]any{"type": "string", "enum": []string{"user", "app"}, "description": "user: a person signed in; app: an application calling as itself"},
			"appId":        str("Client id of the application the token was issued to"),
			"roles":        arrayOf(str("App Role value")),
			"grants":       arrayOf(str("Access granted by the roles")),
			"allowedTools": arrayOf(str("Tool name")),
		})),
	)
	return []Tool{newTool(def, authz.SignedIn, whoami)}
}

func whoami(_ context.Context, call Call, _ args) (*mcp.CallToolResult, error) {
	p := call.Principal
	id := identity{
		TenantID:     p.TenantID,
		ObjectID:     p.ObjectID,
		Name:         p.Name,
		Username:     p.Username,
		Caller:       string(p.Kind),
		AppID:        p.AppID,
		Roles:        nonNil(p.Roles),
		Grants:       nonNil(call.Grants),
		AllowedTools: []string{},
	}
	if call.AllowedTools != nil {
		id.AllowedTools = nonNil(call.AllowedTools())
	}
	return jsonResult(id)
}

// nonNil makes an empty list encode as [] rather than null, as the output
// schema promises an array.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// jsonResult returns v as indented JSON text and as structured content.
func jsonResult(v any) (*mcp.CallToolResult, error) {
	text, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return mcp.NewToolResultStructured(v, string(text)), nil
}
