//go:build conformance

package tools

// The official MCP conformance suite calls tools with fixed names and checks
// what they return. These fixtures exist only in a build with the
// conformance tag (.ci/conformance.sh builds one); production has none.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
)

// The suite compares the image and audio data it gets back with these:
// a 1x1 PNG and a tiny WAV, both base64.
const (
	fixturePNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	fixtureWAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
)

// notifyFlushWait is how long a fixture waits after its last notification.
// mcp-go v1.2.1's streamable HTTP transport can take a notification off its
// queue and then drop it when the response is written first (mcp-go PR #969
// describes the race); without the pause the suite sees 2 of 3 messages
// most of the time.
const notifyFlushWait = 100 * time.Millisecond

// extraTools returns the conformance suite's fixture tools. Every signed-in
// caller may use them, so the suite's token needs no particular role.
func extraTools(Deps) []Tool {
	fixture := func(def mcp.Tool, run Handler, clientNeeds ...string) Tool {
		return Tool{Def: def, Permissions: []string{authz.SignedIn}, Run: run, ClientNeeds: clientNeeds}
	}
	return append(mrtrTools(fixture), []Tool{
		fixture(fixtureDef("test_simple_text", "Returns a simple text response"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("This is a simple text response for testing."), nil
			}),
		fixture(fixtureDef("test_image_content", "Returns an image"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return contentResult(mcp.NewImageContent(fixturePNG, "image/png")), nil
			}),
		fixture(fixtureDef("test_audio_content", "Returns audio"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return contentResult(mcp.NewAudioContent(fixtureWAV, "audio/wav")), nil
			}),
		fixture(fixtureDef("test_embedded_resource", "Returns an embedded text resource"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return contentResult(mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI:      "test://embedded-resource",
					MIMEType: "text/plain",
					Text:     "This is an embedded resource content.",
				})), nil
			}),
		fixture(fixtureDef("test_multiple_content_types", "Returns text, an image and an embedded resource"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return contentResult(
					mcp.NewTextContent("Multiple content types test:"),
					mcp.NewImageContent(fixturePNG, "image/png"),
					mcp.NewEmbeddedResource(mcp.TextResourceContents{
						URI:      "test://mixed-content-resource",
						MIMEType: "application/json",
						Text:     `{"test":"data","value":123}`,
					}),
				), nil
			}),
		fixture(fixtureDef("test_error_handling", "Always returns a tool error"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultError("This tool intentionally returns an error for testing"), nil
			}),
		fixture(fixtureDef("test_tool_with_logging", "Sends three log messages while it runs"),
			runWithLogging),
		fixture(fixtureDef("test_tool_with_progress", "Reports progress while it runs"),
			runWithProgress),

		// The suite's sampling and elicitation scenarios need the server to
		// send a request to the client and wait for the answer. A stateless
		// endpoint behind Azure Functions cannot: the client's answer arrives
		// as a new POST, possibly on another instance, that nothing waits
		// for. The tools exist so the suite finds them, and fail at once
		// rather than let the suite wait for its 60 s timeout.
		fixture(fixtureDef("test_sampling", "Would ask the client's LLM for a completion",
			mcp.WithString("prompt", mcp.Description("Prompt to send to the LLM"), mcp.Required())),
			statelessCannotAsk),
		fixture(fixtureDef("test_elicitation", "Would ask the user for information",
			mcp.WithString("message", mcp.Description("Message to show the user"), mcp.Required())),
			statelessCannotAsk),
		fixture(fixtureDef("test_elicitation_sep1034_defaults", "Would ask the user, with default values"),
			statelessCannotAsk),
		fixture(fixtureDef("test_elicitation_sep1330_enums", "Would ask the user, with enum choices"),
			statelessCannotAsk),

		// 2026-07-28 (server-stateless): a tool that needs a capability the
		// request does not declare is refused with -32021 (the endpoint
		// checks ClientNeeds), and a request whose _meta sets no logLevel
		// gets no log messages.
		fixture(fixtureDef("test_missing_capability", "Needs the client's sampling capability"),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("The client declared sampling."), nil
			}, ClientSampling),
		fixture(fixtureDef("test_logging_tool", "Logs while it runs, if the request asks for logs"),
			runWithLogging),

		// JSON Schema 2020-12 keywords must reach the client unchanged.
		fixture(rawFixtureDef("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", schema202012),
			func(context.Context, Call) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("Arguments accepted."), nil
			}),
		// A parameter that also travels in an Mcp-Param-Region header,
		// which must agree with the body (SEP-2243; mcp-go checks it).
		fixture(rawFixtureDef("test_custom_header", "Echoes a parameter sent in a custom header too", customHeaderSchema),
			func(_ context.Context, call Call) (*mcp.CallToolResult, error) {
				region, _ := call.Request.GetArguments()["region"].(string)
				return mcp.NewToolResultText("Region: " + region), nil
			}),
	}...)
}

// schema202012 uses the keywords the json-schema-2020-12 scenario looks
// for: $schema, $defs with an $anchor, $ref, allOf/anyOf, if/then/else and
// additionalProperties.
var schema202012 = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"$defs": {
		"address": {
			"$anchor": "addressDef",
			"type": "object",
			"properties": {"street": {"type": "string"}, "city": {"type": "string"}}
		}
	},
	"properties": {
		"name": {"type": "string"},
		"address": {"$ref": "#/$defs/address"},
		"contactMethod": {"type": "string", "enum": ["phone", "email"]},
		"phone": {"type": "string"},
		"email": {"type": "string"}
	},
	"allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
	"if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
	"then": {"required": ["phone"]},
	"else": {"required": ["email"]},
	"additionalProperties": false
}`)

var customHeaderSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"region": {"type": "string", "description": "A region name", "x-mcp-header": "Region"}
	},
	"required": ["region"]
}`)

// fixtureDef builds a fixture's definition with every annotation stated:
// mcp.NewTool would otherwise call each fixture destructive and open-world.
func fixtureDef(name, description string, opts ...mcp.ToolOption) mcp.Tool {
	base := []mcp.ToolOption{
		mcp.WithDescription(description),
		mcp.WithToolAnnotation(mcp.ToolAnnotation{
			Title:           name,
			ReadOnlyHint:    mcp.ToBoolPtr(true),
			DestructiveHint: mcp.ToBoolPtr(false),
			IdempotentHint:  mcp.ToBoolPtr(true),
			OpenWorldHint:   mcp.ToBoolPtr(false),
		}),
	}
	return mcp.NewTool(name, append(base, opts...)...)
}

// rawFixtureDef is fixtureDef for a tool whose input schema is given as
// JSON, for keywords mcp-go's schema builders do not have.
func rawFixtureDef(name, description string, schema json.RawMessage) mcp.Tool {
	def := mcp.NewToolWithRawSchema(name, description, schema)
	def.Annotations = fixtureDef(name, description).Annotations
	return def
}

func contentResult(content ...mcp.Content) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: content}
}

func statelessCannotAsk(context.Context, Call) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultError("This stateless server cannot send requests to the client."), nil
}

// runWithLogging logs three messages; the transport turns the response
// into an SSE stream to carry them.
func runWithLogging(ctx context.Context, _ Call) (*mcp.CallToolResult, error) {
	sent := false
	for i, text := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		ok, err := logInfo(ctx, text)
		if err != nil {
			return nil, err
		}
		sent = sent || ok
	}
	if sent {
		time.Sleep(notifyFlushWait)
	}
	return mcp.NewToolResultText("Tool with logging executed successfully"), nil
}

// logInfo sends an info log message to the client, if it asked for one,
// and reports whether it did. From 2026-07-28 the request's _meta logLevel
// says (mcp-go's SendLogMessageToClient checks it, and sends nothing
// without one); a 2025 stateless request has no logging/setLevel to ask
// with, so it gets every message, as the 2025 suite expects.
func logInfo(ctx context.Context, text string) (bool, error) {
	srv := server.ServerFromContext(ctx)
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		if info.LogLevel == "" || !mcp.LoggingLevelInfo.ShouldSendTo(info.LogLevel) {
			return false, nil
		}
		return true, srv.SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(mcp.LoggingLevelInfo, "conformance-fixture", text))
	}
	return true, srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationMessage), map[string]any{
		"level":  "info",
		"logger": "conformance-fixture",
		"data":   text,
	})
}

// runWithProgress reports progress 0, 50 and 100 when the caller asked for
// progress by sending a progress token.
func runWithProgress(ctx context.Context, call Call) (*mcp.CallToolResult, error) {
	meta := call.Request.Params.Meta
	if meta == nil || meta.ProgressToken == nil {
		return mcp.NewToolResultText("No progress token: nothing reported."), nil
	}
	srv := server.ServerFromContext(ctx)
	for i, progress := range []int{0, 50, 100} {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		err := srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
			"progressToken": meta.ProgressToken,
			"progress":      progress,
			"total":         100,
		})
		if err != nil {
			return nil, err
		}
	}
	time.Sleep(notifyFlushWait)
	return mcp.NewToolResultText("Progress reported."), nil
}
