package mcpserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

func testTemplate(uri, name, permission string) tools.ResourceTemplate {
	return tools.ResourceTemplate{
		Def:         mcp.NewResourceTemplate(uri, name, mcp.WithTemplateMIMEType("text/plain")),
		Permissions: []string{permission},
		Read: func(_ context.Context, p *entra.Principal, u string, vars map[string]string) ([]mcp.ResourceContents, error) {
			if vars["id"] != "a1" {
				return nil, tools.ErrResourceNotFound
			}
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: u, MIMEType: "text/plain", Text: "thing a1 for " + p.ObjectID}}, nil
		},
	}
}

func testResource(uri, permission string) tools.Resource {
	return tools.Resource{
		Def:         mcp.NewResource(uri, uri, mcp.WithMIMEType("text/plain")),
		Permissions: []string{permission},
		Read: func(_ context.Context, p *entra.Principal) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "text/plain", Text: uri + " for " + p.ObjectID}}, nil
		},
	}
}

func testPrompt(name, permission string) tools.Prompt {
	return tools.Prompt{
		Def:         mcp.NewPrompt(name, mcp.WithPromptDescription("test prompt "+name)),
		Permissions: []string{permission},
		Get: func(_ context.Context, p *entra.Principal, _ map[string]string) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult(name, []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(name+" for "+p.ObjectID))}), nil
		},
	}
}

// TestResourcesAndPromptsFollowThePermissions: resource templates and
// prompts are listed only to callers who hold what they need, read and got
// only by them, and for everyone else answered byte for byte as a URI or a
// prompt that does not exist.
func TestResourcesAndPromptsFollowThePermissions(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Tools: testTools(),
		Resources: []tools.Resource{testResource("stats://today", "server.admin")},
		Templates: []tools.ResourceTemplate{testTemplate("thing://{id}", "thing", "tasks.read")},
		Prompts:   []tools.Prompt{testPrompt("summary", "tasks.read"), testPrompt("ops_report", "server.admin")}})
	if err != nil {
		t.Fatal(err)
	}
	// The reference for "does not exist": a server whose only template
	// matches none of the URIs asked for.
	ref, err := New(Options{Tools: testTools(),
		Resources: []tools.Resource{testResource("other://today", "server.admin")},
		Templates: []tools.ResourceTemplate{testTemplate("other://{id}", "other", "tasks.read")},
		Prompts:   []tools.Prompt{testPrompt("unrelated", "tasks.read")}})
	if err != nil {
		t.Fatal(err)
	}
	rpc := func(srv *Server, p *entra.Principal, method, params string) string {
		return post(srv, p, rpcCase{body: `{"jsonrpc":"2.0","id":7,"method":"` + method + `","params":` + params + `}`}).Body.String()
	}
	names := func(body, list, field string) []string {
		var r struct {
			Result map[string][]map[string]any `json:"result"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var out []string
		for _, x := range r.Result[list] {
			// The conformance build's fixtures, all named test…, are
			// everyone's.
			if n := x[field].(string); !strings.HasPrefix(n, "test") {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	read := `{"uri":"thing://a1"}`
	for _, c := range []struct {
		roles                         []string
		resources, templates, prompts []string
	}{
		{[]string{"Task.Read"}, nil, []string{"thing://{id}"}, []string{"summary"}},
		{[]string{"Task.All", "MCPServer.Admin"}, []string{"stats://today"}, []string{"thing://{id}"}, []string{"ops_report", "summary"}},
		{[]string{"MCPServer.Admin"}, []string{"stats://today"}, nil, []string{"ops_report"}},
		{[]string{"Task.Write"}, nil, nil, nil},
		{nil, nil, nil, nil},
	} {
		t.Run(strings.Join(append([]string{"roles"}, c.roles...), " "), func(t *testing.T) {
			p := principalWith(c.roles...)
			if got := names(rpc(s, p, "resources/list", `{}`), "resources", "uri"); !slices.Equal(got, c.resources) {
				t.Errorf("resources/list %v, want %v", got, c.resources)
			}
			stats, unknownStats := rpc(s, p, "resources/read", `{"uri":"stats://today"}`), rpc(ref, p, "resources/read", `{"uri":"stats://today"}`)
			if len(c.resources) > 0 != strings.Contains(stats, "stats://today for "+p.ObjectID) || (len(c.resources) == 0 && stats != unknownStats) {
				t.Errorf("read stats://today:\n got %s\nunknown %s", stats, unknownStats)
			}
			if got := names(rpc(s, p, "resources/templates/list", `{}`), "resourceTemplates", "uriTemplate"); !slices.Equal(got, c.templates) {
				t.Errorf("resources/templates/list %v, want %v", got, c.templates)
			}
			if got := names(rpc(s, p, "prompts/list", `{}`), "prompts", "name"); !slices.Equal(got, c.prompts) {
				t.Errorf("prompts/list %v, want %v", got, c.prompts)
			}
			got, unknown := rpc(s, p, "resources/read", read), rpc(ref, p, "resources/read", read)
			if len(c.templates) > 0 {
				if !strings.Contains(got, "thing a1 for "+p.ObjectID) {
					t.Errorf("read: %s", got)
				}
				if miss := rpc(s, p, "resources/read", `{"uri":"thing://zz"}`); miss != rpc(ref, p, "resources/read", `{"uri":"thing://zz"}`) {
					t.Errorf("a template's empty answer differs from an unknown URI's:\n%s", miss)
				}
			} else if got != unknown {
				t.Errorf("forbidden read:\n got %s\nunknown %s", got, unknown)
			}
			for _, name := range []string{"summary", "ops_report"} {
				got := rpc(s, p, "prompts/get", `{"name":"`+name+`"}`)
				if slices.Contains(c.prompts, name) {
					if !strings.Contains(got, name+" for "+p.ObjectID) {
						t.Errorf("prompts/get %s: %s", name, got)
					}
					continue
				}
				unknown := strings.ReplaceAll(rpc(s, p, "prompts/get", `{"name":"`+name+`x"}`), name+"x", name)
				if got != unknown {
					t.Errorf("forbidden prompt %s:\n got %s\nunknown %s", name, got, unknown)
				}
			}
		})
	}
}

// TestReadsCannotBeSmuggled: a request shaped to make this server and
// mcp-go read different URIs (params given twice) is decided on the URI
// mcp-go would read; and resource reads and prompt gets spend the caller's
// tools/call budget.
func TestReadsCannotBeSmuggled(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Tools: testTools(), Limiter: &countingLimiter{allow: 2},
		Resources: []tools.Resource{testResource("stats://today", "server.admin")},
		Templates: []tools.ResourceTemplate{testTemplate("thing://{id}", "thing", "tasks.read")},
		Prompts:   []tools.Prompt{testPrompt("summary", "tasks.read")}})
	if err != nil {
		t.Fatal(err)
	}
	nobody := principalWith()
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"thing://a1"},"params":{}}`,
		`{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"stats://today"},"params":{"_meta":{}}}`,
		`{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"stats://today"},"params":{"uri":null}}`,
	} {
		got := post(s, nobody, rpcCase{body: body}).Body.String()
		if !strings.Contains(got, `"code":-32002`) {
			t.Errorf("%s:\n%s, want the unknown-URI answer", body, got)
		}
	}
	reader := principalWith("Task.Read")
	var answers []string
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"thing://a1"}}`,
		`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"summary"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"thing://a1"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"summary"}}`,
	} {
		answers = append(answers, post(s, reader, rpcCase{body: body}).Body.String())
	}
	if !strings.Contains(answers[0], "thing a1") || !strings.Contains(answers[1], "summary for") ||
		!strings.Contains(answers[2], "Too many") || !strings.Contains(answers[3], "Too many") {
		t.Errorf("a budget of 2 calls:\n%s", strings.Join(answers, "\n"))
	}
}

// countingLimiter allows the first allow calls.
type countingLimiter struct {
	mu    sync.Mutex
	allow int
}

func (c *countingLimiter) Allow(context.Context, string) (bool, time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allow--
	return c.allow >= 0, time.Second, nil
}

// TestDeniedPromptIsAudited: a prompts/get the caller may not make leaves
// an audit line, as a denied tool call does.
func TestDeniedPromptIsAudited(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	s, err := New(Options{Tools: testTools(), Prompts: []tools.Prompt{testPrompt("ops_report", "server.admin")},
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	post(s, principalWith("Task.Read"), rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"ops_report"}}`})
	if !strings.Contains(logs.String(), `"tool":"prompt:ops_report","allowed":false`) {
		t.Errorf("no denied audit line:\n%s", logs)
	}
}
