package tools_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// The README's example tool, written as a team would write it in a package
// of its own: only the tools package's public API.
type deploymentsArgs struct {
	Environment string `json:"environment" jsonschema:"Which environment: dev, test or prod"`
	Limit       int    `json:"limit,omitempty" jsonschema:"Most deployments to return (default 10)"`
}

type deployment struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

type deploymentsResult struct {
	Deployments []deployment `json:"deployments"`
}

func listDeployments(t *testing.T) tools.Tool {
	t.Helper()
	tool, err := tools.Define(tools.Spec{
		Name: "list_deployments", Title: "List deployments",
		Description: "Lists the latest deployments of an environment.",
		Permissions: []string{"deploy.read"},
		ReadOnly:    true, Idempotent: true,
		Arguments: func(s *jsonschema.Schema) {
			s.Properties["environment"].Enum = []any{"dev", "test", "prod"}
			s.Properties["limit"].Minimum, s.Properties["limit"].Maximum = jsonschema.Ptr(1.0), jsonschema.Ptr(50.0)
		},
	}, func(_ context.Context, call tools.Call, in deploymentsArgs) (deploymentsResult, error) {
		if in.Environment == "prod" && in.Limit > 20 {
			return deploymentsResult{}, tools.Refuse("at most 20 prod deployments at a time")
		}
		return deploymentsResult{Deployments: []deployment{{ID: in.Environment + "-1", Version: "1.0." + call.Principal.ObjectID[:1]}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func TestDefineTypedTool(t *testing.T) {
	t.Parallel()
	tool := listDeployments(t)
	call := func(arguments string) *mcp.CallToolResult {
		var req mcp.CallToolRequest
		req.Params.Name = "list_deployments"
		req.Params.Arguments = json.RawMessage(arguments)
		res, err := tool.Run(context.Background(), tools.Call{Principal: &entra.Principal{TenantID: "t", ObjectID: "o1"}, Request: req})
		if err != nil {
			t.Fatalf("%s: internal error %v", arguments, err)
		}
		return res
	}
	t.Run("the schemas come from the types", func(t *testing.T) {
		b, err := json.Marshal(tool.Def)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			InputSchema struct {
				Properties           map[string]map[string]any `json:"properties"`
				Required             []string                  `json:"required"`
				AdditionalProperties any                       `json:"additionalProperties"`
			} `json:"inputSchema"`
			OutputSchema struct {
				Properties map[string]any `json:"properties"`
			} `json:"outputSchema"`
			Annotations mcp.ToolAnnotation `json:"annotations"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		in := got.InputSchema
		if in.Properties["environment"]["description"] != "Which environment: dev, test or prod" || len(in.Properties["environment"]["enum"].([]any)) != 3 ||
			in.Properties["limit"]["maximum"] != 50.0 || strings.Join(in.Required, ",") != "environment" || in.AdditionalProperties != false {
			t.Errorf("input schema %s", b)
		}
		if got.OutputSchema.Properties["deployments"] == nil {
			t.Errorf("output schema %s", b)
		}
		if a := got.Annotations; !*a.ReadOnlyHint || *a.DestructiveHint || !*a.IdempotentHint || *a.OpenWorldHint {
			t.Errorf("annotations %+v", a)
		}
	})
	for name, c := range map[string]struct{ args, want string }{
		"enum":            {`{"environment":"staging"}`, `argument "environment": value must be one of 'dev', 'test', 'prod'`},
		"bound":           {`{"environment":"dev","limit":99}`, `argument "limit": maximum: got 99, want 50`},
		"wrong type":      {`{"environment":"dev","limit":"ten"}`, `argument "limit": got string, want integer`},
		"unknown field":   {`{"environment":"dev","colour":"red"}`, `additional properties 'colour' not allowed`},
		"missing":         {`{}`, `missing property 'environment'`},
		"refused":         {`{"environment":"prod","limit":30}`, `at most 20 prod deployments at a time`},
		"10.0 for an int": {`{"environment":"dev","limit":10.0}`, `argument "limit": number 10.0 does not fit`},
	} {
		t.Run(name, func(t *testing.T) {
			res := call(c.args)
			if !res.IsError || !strings.Contains(text(res), c.want) {
				t.Errorf("%s: %v %q, want a tool error saying %q", c.args, res.IsError, text(res), c.want)
			}
		})
	}
	t.Run("a good call returns structured content", func(t *testing.T) {
		res := call(`{"environment":"dev","limit":null}`)
		got, _ := json.Marshal(res.StructuredContent)
		if res.IsError || string(got) != `{"deployments":[{"id":"dev-1","version":"1.0.o"}]}` {
			t.Errorf("%v %s %q", res.IsError, got, text(res))
		}
	})
}
