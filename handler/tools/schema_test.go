package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// TestArgumentsAreCheckedAgainstTheSchema: every rule an input schema
// states is checked before the tool runs, and a broken one is a tool error
// that names the argument and the rule; the tool never sees the call.
func TestArgumentsAreCheckedAgainstTheSchema(t *testing.T) {
	t.Parallel()
	ran := 0
	tool := newTool(define("book", "Book", "Books a slot.", hints{},
		mcp.WithString("code", mcp.Required(), mcp.Pattern(`^[A-Z]{3}-[0-9]{2}$`)),
		mcp.WithString("colour", mcp.Enum("red", "green")),
		mcp.WithString("when", mcp.Description("start"), func(p map[string]any) { p["format"] = "date-time" }),
		mcp.WithString("contact", func(p map[string]any) { p["format"] = "email" }),
		mcp.WithInteger("seats", mcp.Min(1), mcp.Max(9)),
		mcp.WithString("note", mcp.MaxLength(5)),
	), "tasks.write", func(context.Context, Call, args) (*mcp.CallToolResult, error) {
		ran++
		return mcp.NewToolResultText("booked"), nil
	})
	call := func(t *testing.T, arguments string) *mcp.CallToolResult {
		t.Helper()
		var req mcp.CallToolRequest
		req.Params.Name = "book"
		req.Params.Arguments = json.RawMessage(arguments)
		res, err := tool.Run(context.Background(), Call{Principal: &entra.Principal{TenantID: "t", ObjectID: "o"}, Request: req})
		if err != nil {
			t.Fatalf("an argument problem came back as an internal error: %v", err)
		}
		return res
	}
	for name, c := range map[string]struct{ args, want string }{
		"pattern":        {`{"code":"abc-12"}`, `argument "code": 'abc-12' does not match pattern '^[A-Z]{3}-[0-9]{2}$'`},
		"enum":           {`{"code":"ABC-12","colour":"blue"}`, `argument "colour" must be one of: red, green`},
		"date-time":      {`{"code":"ABC-12","when":"next tuesday"}`, `argument "when": 'next tuesday' is not valid date-time`},
		"email":          {`{"code":"ABC-12","contact":"nobody"}`, `argument "contact": 'nobody' is not valid email`},
		"minimum":        {`{"code":"ABC-12","seats":0}`, `argument "seats" must be between 1 and 9`},
		"maximum":        {`{"code":"ABC-12","seats":10}`, `argument "seats" must be between 1 and 9`},
		"not an integer": {`{"code":"ABC-12","seats":1.5}`, `argument "seats" must be an integer`},
		"max length":     {`{"code":"ABC-12","note":"too long"}`, `argument "note" must be at most 5 characters`},
		"unknown field":  {`{"code":"ABC-12","extra":1}`, `unknown argument "extra"`},
		"wrong type":     {`{"code":12}`, `argument "code" must be a string`},
		"missing":        {`{}`, `missing required argument "code"`},
		"not an object":  {`[1]`, `arguments must be a JSON object`},
		"a huge value":   {`{"code":"` + strings.Repeat("<", 100000) + `"}`, `…`},
	} {
		t.Run(name, func(t *testing.T) {
			res := call(t, c.args)
			if !res.IsError || !strings.Contains(toolstest.Text(res), c.want) {
				t.Errorf("%s: %v %q, want a tool error saying %q", c.args, res.IsError, toolstest.Text(res), c.want)
			}
		})
	}
	if ran != 0 {
		t.Fatalf("the tool ran %d times for refused arguments", ran)
	}
	t.Run("good arguments reach the tool", func(t *testing.T) {
		res := call(t, `{"code":"ABC-12","colour":"red","when":"2026-12-03T10:00:00Z","contact":"a@b.example","seats":2,"note":null}`)
		if res.IsError || ran != 1 {
			t.Fatalf("%q, ran %d", toolstest.Text(res), ran)
		}
	})
}

// TestReadmeExampleTool: the README's example tool (copied verbatim into
// readme_example_test.go, which the stage tests hold equal to the README)
// builds, lists the schema of its types, and runs.
func TestReadmeExampleTool(t *testing.T) {
	t.Parallel()
	list := deploymentTools(Deps{})
	if len(list) != 1 || list[0].Def.Name != "list_deployments" || list[0].Permissions[0] != "deploy.read" {
		t.Fatalf("%+v", list)
	}
	var req mcp.CallToolRequest
	req.Params.Arguments = json.RawMessage(`{"environment":"dev"}`)
	res, err := list[0].Run(context.Background(), Call{Principal: &entra.Principal{TenantID: "t", ObjectID: "o"}, Request: req})
	if err != nil || res.IsError || toolstest.Text(res) == "" {
		t.Fatalf("%v %+v", err, res)
	}
}
