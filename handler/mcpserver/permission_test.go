package mcpserver

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// TestANewToolWithANewPermission is what a team does to add its own tool
// behind a new App Role: one role-table row and one tool that names the
// permission. Only the new role's holders see and run it; for everyone else
// it does not exist; and the pre-encoded tools/list stays mcp-go's answer
// for every grant set.
func TestANewToolWithANewPermission(t *testing.T) {
	t.Parallel()
	table := authz.DefaultTable()
	table.Roles = append(table.Roles, authz.Role{
		Value: "Deploy.Read", Description: "Read deployments.",
		Permissions: []string{"deploy.read"}, Members: []string{authz.MemberUser},
	})
	listDeployments := tools.Tool{
		Def: mcp.NewTool("list_deployments", mcp.WithDescription("Lists deployments."),
			mcp.WithReadOnlyHintAnnotation(true), mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true), mcp.WithOpenWorldHintAnnotation(false)),
		Permissions: []string{"deploy.read"},
		Run: func(_ context.Context, c tools.Call) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("deployments for " + c.Principal.ObjectID), nil
		},
	}
	s, err := New(Options{Tools: append(testTools(), listDeployments), Roles: table})
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		roles []string
		sees  bool
	}{
		{[]string{"Deploy.Read"}, true},
		{[]string{"Task.Read", "Deploy.Read"}, true},
		{[]string{"Task.All", "MCPServer.Admin"}, false},
		{[]string{"deploy.read"}, false}, // a permission name is not a role
		{nil, false},
	} {
		t.Run(strings.Join(append([]string{"roles"}, c.roles...), " "), func(t *testing.T) {
			p := principalWith(c.roles...)
			listed := names(t, post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`}).Body.Bytes())
			if slices.Contains(listed, "list_deployments") != c.sees {
				t.Errorf("tools/list %v: list_deployments listed = %v, want %v", listed, !c.sees, c.sees)
			}
			call := func(name string) *httptest.ResponseRecorder {
				return post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`})
			}
			got := call("list_deployments")
			if c.sees {
				if r := callTool(t, s, p, "list_deployments", nil); r.Result.IsError || r.text() != "deployments for "+p.ObjectID {
					t.Errorf("call: %s", got.Body)
				}
				return
			}
			unknown := call("list_deploymentsx")
			if want := strings.ReplaceAll(unknown.Body.String(), "list_deploymentsx", "list_deployments"); got.Code != unknown.Code || got.Body.String() != want {
				t.Errorf("forbidden call:\n got %d %s\nunknown %d %s", got.Code, got.Body, unknown.Code, unknown.Body)
			}
		})
	}

	t.Run("tools/list is mcp-go's answer for every grant set", func(t *testing.T) {
		var sets [][]string
		for _, roles := range roleSets() {
			sets = append(sets, roles, append(slices.Clone(roles), "Deploy.Read"))
		}
		checkPreEncodedLists(t, s, sets)
	})
}
