package mcpserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
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
	type args struct {
		Environment string `json:"environment" jsonschema:"dev, test or prod"`
	}
	type result struct {
		Deployments []string `json:"deployments"`
	}
	listDeployments, err := tools.Define(tools.Spec{
		Name: "list_deployments", Title: "List deployments", Description: "Lists deployments.",
		Permissions: []string{"deploy.read"}, ReadOnly: true, Idempotent: true,
	}, func(_ context.Context, c tools.Call, in args) (result, error) {
		return result{Deployments: []string{in.Environment + " for " + c.Principal.ObjectID}}, nil
	})
	if err != nil {
		t.Fatal(err)
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
				return post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + name + `","arguments":{"environment":"dev"}}}`})
			}
			got := call("list_deployments")
			if c.sees {
				if r := callTool(t, s, p, "list_deployments", map[string]any{"environment": "dev"}); r.Result.IsError || r.Result.StructuredContent["deployments"].([]any)[0] != "dev for "+p.ObjectID {
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

// TestAuditLineNamesTheCaller: each tool call's audit line says whether a
// person or an application called, and which client the token was for,
// for allowed and denied calls alike.
func TestAuditLineNamesTheCaller(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	s, err := New(Options{Tools: testTools(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	agent := principalWith("Task.Read")
	agent.Kind, agent.AppID = entra.CallerApp, "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
	callTool(t, s, agent, "whoami", nil)
	callTool(t, s, agent, "list_things", nil) // Task.Read is not marked for applications
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "tool call" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("audit lines %v", lines)
	}
	for i, want := range []bool{true, false} {
		if m := lines[i]; m["caller"] != "app" || m["app_id"] != agent.AppID || m["allowed"] != want {
			t.Errorf("audit line %d: %v", i, m)
		}
	}
}
