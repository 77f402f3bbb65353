package tools_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

var (
	alice = &entra.Principal{
		TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47",
		ObjectID: "11111111-1111-1111-1111-111111111111",
		Name:     "Alice Example",
		Username: "alice@contoso.example",
		Kind:     entra.CallerUser,
		AppID:    "aebc6443-996d-45c2-90f0-388ff96faa56",
		Roles:    []string{"Task.All"},
	}
	bob = &entra.Principal{
		TenantID: "0d2f1a52-57a7-4c5e-9b0a-1f0d3c4e5a6b",
		ObjectID: "22222222-2222-2222-2222-222222222222",
		Name:     "Bob Other",
		Kind:     entra.CallerUser,
		Roles:    []string{"Task.All"},
	}
)

// server holds the tools over a test Redis.
type server struct {
	t     *testing.T
	tools map[string]tools.Tool
}

func newServer(t *testing.T, d tools.Deps) *server {
	t.Helper()
	m := map[string]tools.Tool{}
	for _, tool := range tools.All(d) {
		m[tool.Def.Name] = tool
	}
	return &server{t: t, tools: m}
}

func withRedis(t *testing.T) *server {
	t.Helper()
	return newServer(t, tools.Deps{Tasks: taskstore.New(storetest.Redis(t)), Version: "test"})
}

// call runs a tool as p, holding every permission, with arguments given as
// Go values, the way mcp-go hands them over when it did not keep the raw
// JSON.
func (s *server) call(p *entra.Principal, name string, args any) (*mcp.CallToolResult, error) {
	s.t.Helper()
	return s.callWith(p, authz.DefaultTable().Permissions(), name, args)
}

// callWith is call for a caller holding only grants.
func (s *server) callWith(p *entra.Principal, grants []string, name string, args any) (*mcp.CallToolResult, error) {
	s.t.Helper()
	tool, ok := s.tools[name]
	if !ok {
		s.t.Fatalf("no tool %q", name)
	}
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	return tool.Run(context.Background(), tools.Call{
		Principal:    p,
		Grants:       grants,
		Request:      req,
		AllowedTools: func() []string { return []string{"whoami", name} },
	})
}

// ok runs a call that must succeed and returns its result.
func (s *server) ok(p *entra.Principal, name string, args any) *mcp.CallToolResult {
	s.t.Helper()
	res, err := s.call(p, name, args)
	if err != nil {
		s.t.Fatalf("%s(%v): %v", name, args, err)
	}
	if res.IsError {
		s.t.Fatalf("%s(%v): tool error %q", name, args, text(res))
	}
	checkOutputSchema(s.t, s.tools[name].Def, res)
	return res
}

// toolError runs a call that must end in a tool error and returns its text.
func (s *server) toolError(p *entra.Principal, name string, args any) string {
	s.t.Helper()
	res, err := s.call(p, name, args)
	if err != nil {
		s.t.Fatalf("%s(%v): internal error %v, want a tool error", name, args, err)
	}
	if !res.IsError {
		s.t.Fatalf("%s(%v): succeeded, want a tool error", name, args)
	}
	if res.StructuredContent != nil {
		s.t.Errorf("%s(%v): error result carries structured content", name, args)
	}
	return text(res)
}

func text(res *mcp.CallToolResult) string {
	if len(res.Content) != 1 {
		return fmt.Sprintf("<%d contents>", len(res.Content))
	}
	tc, ok := res.Content[0].(mcp.TextContent)
	if !ok {
		return fmt.Sprintf("<%T>", res.Content[0])
	}
	return tc.Text
}

// structured returns a result's structured content as decoded JSON.
func structured(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("structured content is not an object: %s", b)
	}
	return m
}

func taskID(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	id, _ := structured(t, res)["id"].(string)
	if id == "" {
		t.Fatalf("result has no task id: %s", text(res))
	}
	return id
}

// TestExactToolNames holds the catalog without Graph against the golden
// tools-per-role file (TestToolsPerRole keeps that file true).
func TestExactToolNames(t *testing.T) {
	t.Parallel()
	var names []string
	for _, tool := range productionTools(t) {
		names = append(names, tool.Def.Name)
	}
	slices.Sort(names)
	want := toolstest.Names(toolstest.Load(t).Tools, false)
	if !slices.Equal(names, want) {
		t.Fatalf("tools %v, want %v (toolstest/%s)", names, want, toolstest.FileName)
	}
}

func TestDefinitions(t *testing.T) {
	t.Parallel()
	// Permissions and hints are in the golden file, where a change shows in review.
	wants := map[string]toolstest.Tool{}
	for _, w := range toolstest.Load(t).Tools {
		wants[w.Name] = w
	}
	for _, tool := range productionTools(t) {
		def, w := tool.Def, wants[tool.Def.Name]
		if len(tool.Permissions) == 0 {
			t.Errorf("%s: no permission declared: nobody could use it", def.Name)
		}
		a := def.Annotations
		if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil {
			t.Errorf("%s: an annotation is unset: %+v", def.Name, a)
			continue
		}
		if got := goldenTool(tool, false); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: permissions and hints %+v, want %+v (toolstest/%s)", def.Name, got, w, toolstest.FileName)
		}
		if *a.OpenWorldHint {
			t.Errorf("%s: openWorldHint is true (NewTool's default); our tools are closed-world", def.Name)
		}
		if a.Title == "" || def.Title == "" || def.Description == "" {
			t.Errorf("%s: missing title or description", def.Name)
		}
		if def.InputSchema.AdditionalProperties != false {
			t.Errorf("%s: input schema allows unknown arguments", def.Name)
		}
		for name, prop := range def.InputSchema.Properties {
			if p, _ := prop.(map[string]any); p["description"] == "" || p["description"] == nil {
				t.Errorf("%s: argument %s has no description", def.Name, name)
			}
		}
		for _, r := range def.InputSchema.Required {
			if _, ok := def.InputSchema.Properties[r]; !ok {
				t.Errorf("%s: required argument %s is not declared", def.Name, r)
			}
		}
		if def.RawOutputSchema == nil {
			t.Errorf("%s: no output schema", def.Name)
		}
		if _, err := json.Marshal(def); err != nil {
			t.Errorf("%s: definition does not encode: %v", def.Name, err)
		}
	}
}

func TestWhoami(t *testing.T) {
	t.Parallel()
	s := newServer(t, tools.Deps{})
	res := s.ok(alice, "whoami", nil)
	got := structured(t, res)
	want := map[string]any{
		"tid": alice.TenantID, "oid": alice.ObjectID, "name": "Alice Example",
		"username": "alice@contoso.example", "roles": []any{"Task.All"},
		"caller": "user", "appId": alice.AppID,
		"grants":       []any{"server.admin", "signed-in", "tasks.read", "tasks.write"},
		"allowedTools": []any{"whoami", "whoami"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("whoami = %v, want %v", got, want)
	}
	var fromText map[string]any
	if err := json.Unmarshal([]byte(text(res)), &fromText); err != nil || fmt.Sprint(fromText) != fmt.Sprint(want) {
		t.Errorf("whoami text %q is not the same JSON", text(res))
	}
	if msg := s.toolError(alice, "whoami", map[string]any{"tid": "x"}); !strings.Contains(msg, `unknown argument "tid"`) {
		t.Errorf("whoami with an argument: %q", msg)
	}
}

func TestServerStats(t *testing.T) {
	t.Parallel()
	s := newServer(t, tools.Deps{
		Version: "1.2.3",
		Stats:   func(context.Context) any { return map[string]int{"toolCalls": 7} },
	})
	got := structured(t, s.ok(alice, "server_stats", map[string]any{}))
	if fmt.Sprint(got) != fmt.Sprint(map[string]any{"version": "1.2.3", "stats": map[string]any{"toolCalls": 7.0}}) {
		t.Errorf("server_stats = %v", got)
	}
	got = structured(t, newServer(t, tools.Deps{Version: "v"}).ok(alice, "server_stats", nil))
	if got["version"] != "v" {
		t.Errorf("server_stats without Stats = %v", got)
	}
}

func TestTaskLifecycle(t *testing.T) {
	t.Parallel()
	s := withRedis(t)

	created := s.ok(alice, "create_task", map[string]any{"title": "Write report", "notes": "Q3 numbers"})
	id := taskID(t, created)
	task := structured(t, created)
	if task["title"] != "Write report" || task["notes"] != "Q3 numbers" || task["status"] != "open" ||
		task["createdBy"] != alice.ObjectID || task["createdByName"] != "Alice Example" {
		t.Errorf("created task %v", task)
	}
	if !strings.Contains(text(created), id) || !strings.Contains(text(created), "Write report") {
		t.Errorf("create text %q lacks id or title", text(created))
	}
	second := taskID(t, s.ok(alice, "create_task", map[string]any{"title": "Call bank"}))

	if got := structured(t, s.ok(alice, "get_task", map[string]any{"id": id})); got["id"] != id {
		t.Errorf("get_task = %v", got)
	}

	list := structured(t, s.ok(alice, "list_tasks", map[string]any{"limit": 1}))
	if tasks := list["tasks"].([]any); len(tasks) != 1 || tasks[0].(map[string]any)["id"] != second || list["nextCursor"] == nil {
		t.Fatalf("first page %v", list)
	}
	list = structured(t, s.ok(alice, "list_tasks", map[string]any{"limit": 1, "cursor": list["nextCursor"]}))
	if tasks := list["tasks"].([]any); len(tasks) != 1 || tasks[0].(map[string]any)["id"] != id || list["nextCursor"] != nil {
		t.Fatalf("second page %v", list)
	}

	found := structured(t, s.ok(alice, "search_tasks", map[string]any{"query": "q3"}))
	if tasks := found["tasks"].([]any); len(tasks) != 1 || found["complete"] != true {
		t.Errorf("search_tasks = %v", found)
	}

	updated := structured(t, s.ok(alice, "update_task", map[string]any{"id": id, "title": "Write final report", "notes": ""}))
	if updated["title"] != "Write final report" || updated["notes"] != "" {
		t.Errorf("update_task = %v", updated)
	}
	if done := structured(t, s.ok(alice, "complete_task", map[string]any{"id": id})); done["status"] != "done" {
		t.Errorf("complete_task = %v", done)
	}
	open := structured(t, s.ok(alice, "list_tasks", map[string]any{"status": "open"}))
	if tasks := open["tasks"].([]any); len(tasks) != 1 || tasks[0].(map[string]any)["id"] != second {
		t.Errorf("open tasks %v", open)
	}

	deleted := s.ok(alice, "delete_task", map[string]any{"id": id})
	if !strings.Contains(text(deleted), "Deleted") {
		t.Errorf("delete text %q", text(deleted))
	}
	if msg := s.toolError(alice, "get_task", map[string]any{"id": id}); msg != "task "+id+" not found" {
		t.Errorf("get after delete: %q", msg)
	}
	empty := s.ok(alice, "search_tasks", map[string]any{"query": "q3"})
	if tasks := structured(t, empty)["tasks"].([]any); len(tasks) != 0 {
		t.Errorf("search after delete %v", tasks)
	}
}

// TestWriteOnlyCallersGetReceipts: a caller who may change tasks but not
// read them learns from a write tool that the change happened (id and
// status), never the task's title or notes: otherwise complete_task of a
// done task, which changes nothing, would be get_task for anyone who knows
// an id.
func TestWriteOnlyCallersGetReceipts(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	const secret = "notes only readers may see"
	id := taskID(t, s.ok(alice, "create_task", map[string]any{"title": "Private title", "notes": secret}))
	s.ok(alice, "complete_task", map[string]any{"id": id})
	writeOnly := []string{authz.SignedIn, "tasks.write"}
	for _, c := range []struct {
		tool string
		args map[string]any
		want string // the status after the call
	}{
		{"create_task", map[string]any{"title": "Writer's own", "notes": secret, "idempotency_key": "k-1"}, "open"},
		{"create_task", map[string]any{"title": "Writer's own", "notes": secret, "idempotency_key": "k-1"}, "open"}, // the replay
		{"complete_task", map[string]any{"id": id}, "done"},
		{"update_task", map[string]any{"id": id, "status": "open"}, "open"},
		{"delete_task", map[string]any{"id": id}, "open"},
	} {
		t.Run(c.tool, func(t *testing.T) {
			res, err := s.callWith(alice, writeOnly, c.tool, c.args)
			if err != nil || res.IsError {
				t.Fatalf("%v %s", err, text(res))
			}
			checkOutputSchema(t, s.tools[c.tool].Def, res)
			got := structured(t, res)
			if len(got) != 2 || got["id"] == "" || got["status"] != c.want {
				t.Errorf("structured content %v, want only the id and status %q", got, c.want)
			}
			if txt := text(res); strings.Contains(txt, secret) || strings.Contains(txt, "title") || strings.Contains(txt, "Private") {
				t.Errorf("text %q shows the task", txt)
			}
		})
	}
	// A caller who may read gets the whole task, as before.
	full := structured(t, s.ok(alice, "create_task", map[string]any{"title": "t", "notes": secret}))
	if full["notes"] != secret {
		t.Errorf("a reader's create_task answer %v lacks the notes", full)
	}
}

func TestRawJSONArguments(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	var req mcp.CallToolRequest
	wire := `{"method":"tools/call","params":{"name":"create_task","arguments":{"title":"from the wire","notes":null}}}`
	if err := json.Unmarshal([]byte(wire), &req); err != nil {
		t.Fatal(err)
	}
	res, err := s.tools["create_task"].Run(context.Background(), tools.Call{Principal: alice, Grants: authz.DefaultTable().Permissions(), Request: req})
	if err != nil || res.IsError {
		t.Fatalf("create from raw JSON: %v %v", err, text(res))
	}
	if got := structured(t, res); got["title"] != "from the wire" {
		t.Errorf("created %v", got)
	}

	wire = `{"method":"tools/call","params":{"name":"list_tasks","arguments":{"limit":100000000000000000000}}}`
	if err := json.Unmarshal([]byte(wire), &req); err != nil {
		t.Fatal(err)
	}
	res, err = s.tools["list_tasks"].Run(context.Background(), tools.Call{Principal: alice, Request: req})
	if err != nil || !res.IsError {
		t.Fatalf("huge limit: %v, %+v", err, res)
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	id := taskID(t, s.ok(alice, "create_task", map[string]any{"title": "target"}))
	cases := []struct {
		tool string
		args any
		want string
	}{
		{"create_task", map[string]any{}, `missing required argument "title"`},
		{"create_task", map[string]any{"title": nil}, `missing required argument "title"`},
		{"create_task", map[string]any{"title": 5}, `argument "title" must be a string`},
		{"create_task", map[string]any{"title": "x", "owner": "me"}, `unknown argument "owner"`},
		{"create_task", map[string]any{"title": "x", "tid": bob.TenantID}, `unknown argument "tid"`},
		{"create_task", map[string]any{"title": strings.Repeat("t", 201)}, `argument "title" must be at most 200 characters`},
		{"create_task", map[string]any{"title": "   "}, "invalid title: must not be empty"},
		{"create_task", map[string]any{"title": "x", "notes": strings.Repeat("n", 4001)}, `argument "notes" must be at most 4000 characters`},
		{"create_task", map[string]any{"title": "x", "notes": []string{"a"}}, `argument "notes" must be a string`},
		{"create_task", []any{"title"}, "arguments must be a JSON object"},
		{"create_task", "title", "arguments must be a JSON object"},
		{"list_tasks", map[string]any{"limit": 0}, `argument "limit" must be between 1 and 100`},
		{"list_tasks", map[string]any{"limit": 101}, `argument "limit" must be between 1 and 100`},
		{"list_tasks", map[string]any{"limit": 1.5}, `argument "limit" must be an integer`},
		{"list_tasks", map[string]any{"limit": "10"}, `argument "limit" must be an integer`},
		{"list_tasks", map[string]any{"limit": true}, `argument "limit" must be an integer`},
		{"list_tasks", map[string]any{"status": "closed"}, `argument "status" must be one of: open, done`},
		{"list_tasks", map[string]any{"cursor": "abc"}, "invalid cursor"},
		{"get_task", map[string]any{}, `missing required argument "id"`},
		{"get_task", map[string]any{"id": 12}, `argument "id" must be a string`},
		{"get_task", map[string]any{"id": "short"}, `argument "id" must be at least 12 characters`},
		{"get_task", map[string]any{"id": "../../../etc"}, `argument "id": '../../../etc' does not match pattern '^[a-z2-7]{12}$'`},
		{"get_task", map[string]any{"id": strings.ToUpper(id)}, `argument "id": '` + strings.ToUpper(id) + `' does not match pattern`},
		{"revoke_sessions", map[string]any{"oid": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"}, `argument "oid": 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz' does not match pattern`},
		{"search_tasks", map[string]any{"query": ""}, `argument "query" must be at least 1 characters`},
		{"search_tasks", map[string]any{"query": "x", "limit": -1}, `argument "limit" must be between 1 and 100`},
		{"update_task", map[string]any{"id": id}, "invalid update: give at least one of title, notes or status"},
		{"update_task", map[string]any{"id": id, "status": "closed"}, `argument "status" must be one of: open, done`},
		{"update_task", map[string]any{"id": id, "title": ""}, `argument "title" must be at least 1 characters`},
		{"complete_task", map[string]any{"id": id, "status": "done"}, `unknown argument "status"`},
		{"delete_task", nil, `missing required argument "id"`},
		{"server_stats", map[string]any{"verbose": true}, `unknown argument "verbose"`},
	}
	for _, c := range cases {
		t.Run(c.tool+": "+c.want, func(t *testing.T) {
			if msg := s.toolError(alice, c.tool, c.args); !strings.Contains(msg, c.want) {
				t.Errorf("%s(%v): %q, want it to say %q", c.tool, c.args, msg, c.want)
			}
		})
	}
	// Nothing above changed the task.
	if got := structured(t, s.ok(alice, "get_task", map[string]any{"id": id})); got["title"] != "target" {
		t.Errorf("task changed by rejected calls: %v", got)
	}
}

func TestMissingTask(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	const id = "aaaaaaaaaaaa"
	for _, tool := range []string{"get_task", "complete_task", "delete_task"} {
		if msg := s.toolError(alice, tool, map[string]any{"id": id}); msg != "task aaaaaaaaaaaa not found" {
			t.Errorf("%s: %q", tool, msg)
		}
	}
	if msg := s.toolError(alice, "update_task", map[string]any{"id": id, "notes": "x"}); msg != "task aaaaaaaaaaaa not found" {
		t.Errorf("update_task: %q", msg)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	id := taskID(t, s.ok(alice, "create_task", map[string]any{"title": "contoso secret", "notes": "private"}))

	notFound := "task " + id + " not found"
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"get_task", map[string]any{"id": id}},
		{"update_task", map[string]any{"id": id, "title": "pwned"}},
		{"complete_task", map[string]any{"id": id}},
		{"delete_task", map[string]any{"id": id}},
	} {
		t.Run(c.tool, func(t *testing.T) {
			if msg := s.toolError(bob, c.tool, c.args); msg != notFound {
				t.Errorf("bob %s: %q, want %q", c.tool, msg, notFound)
			}
		})
	}
	if tasks := structured(t, s.ok(bob, "list_tasks", nil))["tasks"].([]any); len(tasks) != 0 {
		t.Errorf("bob lists %v", tasks)
	}
	if tasks := structured(t, s.ok(bob, "search_tasks", map[string]any{"query": "secret"}))["tasks"].([]any); len(tasks) != 0 {
		t.Errorf("bob finds %v", tasks)
	}
	got := structured(t, s.ok(alice, "get_task", map[string]any{"id": id}))
	if got["title"] != "contoso secret" || got["status"] != "open" {
		t.Errorf("alice's task changed: %v", got)
	}
}

func TestTaskLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, tools.Deps{Tasks: taskstore.New(storetest.Redis(t), taskstore.WithMaxTasks(1))})
	s.ok(alice, "create_task", map[string]any{"title": "one"})
	if msg := s.toolError(alice, "create_task", map[string]any{"title": "two"}); !strings.Contains(msg, "maximum of 1 tasks") {
		t.Errorf("over the cap: %q", msg)
	}
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	down := newServer(t, tools.Deps{Tasks: taskstore.New(storetest.Down(t))})
	none := newServer(t, tools.Deps{})
	calls := map[string]map[string]any{
		"list_tasks":    nil,
		"get_task":      {"id": "aaaaaaaaaaaa"},
		"search_tasks":  {"query": "x"},
		"create_task":   {"title": "x"},
		"update_task":   {"id": "aaaaaaaaaaaa", "title": "x"},
		"complete_task": {"id": "aaaaaaaaaaaa"},
		"delete_task":   {"id": "aaaaaaaaaaaa"},
	}
	for name, s := range map[string]*server{"redis down": down, "no store": none} {
		t.Run(name, func(t *testing.T) {
			for tool, args := range calls {
				res, err := s.call(alice, tool, args)
				if !errors.Is(err, outage.ErrUnavailable) || res != nil {
					t.Errorf("%s: %s: %v, %v; want an error wrapping ErrUnavailable", name, tool, res, err)
				}
			}
			// Tools that do not need Redis keep working.
			s.ok(alice, "whoami", nil)
		})
	}
}

func TestNoPrincipalIsAnInternalError(t *testing.T) {
	t.Parallel()
	for _, tool := range productionTools(t) {
		if _, err := tool.Run(context.Background(), tools.Call{}); err == nil {
			t.Errorf("%s ran without a principal", tool.Def.Name)
		}
	}
}

// checkOutputSchema checks a result's structured content against the
// tool's output schema, for the parts of JSON Schema our schemas use.
func checkOutputSchema(t *testing.T, def mcp.Tool, res *mcp.CallToolResult) {
	t.Helper()
	var schema map[string]any
	if err := json.Unmarshal(def.RawOutputSchema, &schema); err != nil {
		t.Fatalf("%s: output schema: %v", def.Name, err)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if err := conforms(schema, v, "$"); err != nil {
		t.Errorf("%s: structured content does not match output schema: %v\n%s", def.Name, err, b)
	}
}

func conforms(schema map[string]any, v any, at string) error {
	switch schema["type"] {
	case nil:
		return nil
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want object", at)
		}
		props, _ := schema["properties"].(map[string]any)
		for _, r := range schema["required"].([]any) {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: missing %s", at, r)
			}
		}
		for k, val := range obj {
			p, ok := props[k].(map[string]any)
			if !ok {
				if schema["additionalProperties"] == false {
					return fmt.Errorf("%s: unexpected %s", at, k)
				}
				continue
			}
			if err := conforms(p, val, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want array", at)
		}
		for i, item := range arr {
			if err := conforms(schema["items"].(map[string]any), item, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want string", at)
		}
		if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, any(s)) {
			return fmt.Errorf("%s: %q not in enum", at, s)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want boolean", at)
		}
	default:
		return fmt.Errorf("%s: checker does not know type %v", at, schema["type"])
	}
	return nil
}

// productionTools is All without the conformance suite's fixtures, which a
// build with the conformance tag adds (their names start with "test_").
// productionTools is the catalog without the conformance build's fixtures.
func productionTools(t testing.TB) []tools.Tool {
	golden := toolstest.Load(t)
	var out []tools.Tool
	for _, tool := range tools.All(tools.Deps{}) {
		if !golden.IsFixture(tool.Def.Name) {
			out = append(out, tool)
		}
	}
	return out
}
