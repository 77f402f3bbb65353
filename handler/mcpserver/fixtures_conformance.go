//go:build conformance

package mcpserver

// The official MCP conformance suite reads resources and prompts with fixed
// names (test://..., test_*) and checks what comes back. These fixtures and
// the capabilities they need exist only in a build with the conformance tag
// (.ci/conformance.sh builds one); production has none. The fixture tools
// live in package tools (conformance_fixtures.go there).

import (
	"context"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// fixturePNG is a 1x1 PNG, base64; the suite compares what it gets with it.
const fixturePNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="

// fixtureOptions turns on what the suite's scenarios exercise beyond tools:
// resources (with subscribe), prompts, completion/complete and
// logging/setLevel.
func fixtureOptions() []server.ServerOption {
	return []server.ServerOption{
		server.WithResourceCapabilities(true, false),
		server.WithPromptCapabilities(false),
		server.WithCompletions(),
		server.WithLogging(),
	}
}

// registerFixtures adds the suite's resources, resource template and prompts.
func registerFixtures(s *server.MCPServer) {
	registerFixtureResources(s)
	registerFixturePrompts(s)
}

func registerFixtureResources(s *server.MCPServer) {
	s.AddResource(mcp.NewResource("test://static-text", "static-text",
		mcp.WithResourceTitle("Static text"),
		mcp.WithResourceDescription("A fixed text resource"),
		mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{
				URI:      "test://static-text",
				MIMEType: "text/plain",
				Text:     "This is the content of the static text resource.",
			}}, nil
		})
	s.AddResource(mcp.NewResource("test://static-binary", "static-binary",
		mcp.WithResourceTitle("Static binary"),
		mcp.WithResourceDescription("A fixed binary resource"),
		mcp.WithMIMEType("image/png")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.BlobResourceContents{
				URI:      "test://static-binary",
				MIMEType: "image/png",
				Blob:     fixturePNG,
			}}, nil
		})
	s.AddResourceTemplates(fixtureTemplates()...)
}

// fixtureTemplates is the suite's resource template, which the endpoint
// registers again whenever it rebuilds mcp-go's templates.
func fixtureTemplates() []server.ServerResourceTemplate {
	return []server.ServerResourceTemplate{{
		Template: mcp.NewResourceTemplate("test://template/{id}/data", "template",
			mcp.WithTemplateDescription("A resource whose URI carries an id"),
			mcp.WithTemplateMIMEType("application/json")),
		Handler: func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			id := templateID(req.Params.URI)
			return []mcp.ResourceContents{mcp.TextResourceContents{
				URI:      req.Params.URI,
				MIMEType: "application/json",
				Text:     fmt.Sprintf(`{"id":%q,"templateTest":true,"data":%q}`, id, "Data for ID: "+id),
			}}, nil
		},
	}}
}

// templateID returns the {id} of test://template/{id}/data, or "".
func templateID(uri string) string {
	rest, ok := strings.CutPrefix(uri, "test://template/")
	if !ok {
		return ""
	}
	id, ok := strings.CutSuffix(rest, "/data")
	if !ok {
		return ""
	}
	return id
}

func registerFixturePrompts(s *server.MCPServer) {
	s.AddPrompt(mcp.NewPrompt("test_simple_prompt",
		mcp.WithPromptTitle("Simple prompt"),
		mcp.WithPromptDescription("A prompt without arguments")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return promptResult(mcp.NewTextContent("This is a simple prompt for testing.")), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_arguments",
		mcp.WithPromptTitle("Prompt with arguments"),
		mcp.WithPromptDescription("A prompt with two required arguments"),
		mcp.WithArgument("arg1", mcp.ArgumentDescription("First argument"), mcp.RequiredArgument()),
		mcp.WithArgument("arg2", mcp.ArgumentDescription("Second argument"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			a := req.Params.Arguments
			return promptResult(mcp.NewTextContent(
				fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", a["arg1"], a["arg2"]))), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_embedded_resource",
		mcp.WithPromptTitle("Prompt with an embedded resource"),
		mcp.WithPromptDescription("A prompt that embeds the resource it is given"),
		mcp.WithArgument("resourceUri", mcp.ArgumentDescription("URI of the resource to embed"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return promptResult(
				mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI:      req.Params.Arguments["resourceUri"],
					MIMEType: "text/plain",
					Text:     "Embedded resource content for testing.",
				}),
				mcp.NewTextContent("Please process the embedded resource above."),
			), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_image",
		mcp.WithPromptTitle("Prompt with an image"),
		mcp.WithPromptDescription("A prompt that includes an image")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return promptResult(
				mcp.NewImageContent(fixturePNG, "image/png"),
				mcp.NewTextContent("Please analyze the image above."),
			), nil
		})
	// 2026-07-28 (SEP-2322): a prompt can ask the client for input too; it
	// answers input_required until the retry carries the user's context.
	s.AddPrompt(mcp.NewPrompt("test_input_required_result_prompt",
		mcp.WithPromptTitle("Prompt that asks the user"),
		mcp.WithPromptDescription("A prompt that asks the user for its context first")),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			if r := server.ElicitationResponse(req.Params.InputResponses, "user_context"); r != nil &&
				r.Action == mcp.ElicitationResponseActionAccept {
				content, _ := r.Content.(map[string]any)
				text, _ := content["context"].(string)
				return promptResult(mcp.NewTextContent("Answer with this context in mind: " + text)), nil
			}
			return server.NewInputRequestBuilder("").Elicit("user_context", mcp.ElicitationParams{
				Message: "What context should the prompt use?",
				RequestedSchema: map[string]any{
					"type":       "object",
					"properties": map[string]any{"context": map[string]any{"type": "string"}},
					"required":   []string{"context"},
				},
			}).PromptResult(), nil
		})
}

// promptResult is a prompt of one user message per content item.
func promptResult(content ...mcp.Content) *mcp.GetPromptResult {
	msgs := make([]mcp.PromptMessage, len(content))
	for i, c := range content {
		msgs[i] = mcp.PromptMessage{Role: mcp.RoleUser, Content: c}
	}
	return &mcp.GetPromptResult{Messages: msgs}
}
