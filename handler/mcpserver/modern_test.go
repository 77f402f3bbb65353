package mcpserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// modernCall is a 2026-07-28 tools/call of name, with the standard headers
// and the given clientCapabilities JSON.
func modernCall(name, capabilities string) rpcCase {
	return rpcCase{
		header: map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name},
		body: `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"` + name + `","arguments":{},"_meta":{` +
			`"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},` +
			`"io.modelcontextprotocol/clientCapabilities":` + capabilities + `}}}`,
	}
}

// rpcAnswer is a JSON-RPC answer as the tests read it.
type rpcAnswer struct {
	ID     any `json:"id"`
	Result *struct {
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
	Error *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func decodeAnswer(t *testing.T, body string) rpcAnswer {
	t.Helper()
	// An SSE answer carries the message on its data line.
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(rest, `"id"`) {
			body = rest
		}
	}
	var a rpcAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return a
}

func TestToolsThatNeedAClientCapability(t *testing.T) {
	t.Parallel()
	ran := 0
	asker := tools.Tool{
		Def: mcp.NewTool("ask_llm", mcp.WithReadOnlyHintAnnotation(true), mcp.WithDestructiveHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(false)),
		Permissions: []string{"tasks.read"},
		ClientNeeds: []string{tools.ClientSampling, tools.ClientRoots},
		Run: func(context.Context, tools.Call) (*mcp.CallToolResult, error) {
			ran++
			return mcp.NewToolResultText("asked"), nil
		},
	}
	s, err := New(Options{Tools: append(testTools(), asker)})
	if err != nil {
		t.Fatal(err)
	}
	reader := principalWith("Task.Read")

	t.Run("a 2026-07-28 call that does not declare them is refused with 400 and -32021 naming each missing one", func(t *testing.T) {
		ran = 0
		for _, caps := range []string{`{}`, `{"roots":{}}`, `{"sampling":null,"elicitation":{}}`} {
			rec := post(s, reader, modernCall("ask_llm", caps))
			a := decodeAnswer(t, rec.Body.String())
			if rec.Code != http.StatusBadRequest || a.Error == nil || a.Error.Code != mcp.MISSING_REQUIRED_CLIENT_CAPABILITY || a.ID != float64(9) {
				t.Fatalf("capabilities %s: got %d %s", caps, rec.Code, rec.Body)
			}
			var data struct {
				Required map[string]map[string]any `json:"requiredCapabilities"`
			}
			if err := json.Unmarshal(a.Error.Data, &data); err != nil || data.Required["sampling"] == nil {
				t.Fatalf("capabilities %s: data %s does not name sampling as an object", caps, a.Error.Data)
			}
			if _, roots := data.Required["roots"]; roots != !strings.Contains(caps, "roots") {
				t.Errorf("capabilities %s: data %s", caps, a.Error.Data)
			}
		}
		if ran != 0 {
			t.Errorf("the tool ran %d times", ran)
		}
	})

	t.Run("a call that declares them runs the tool", func(t *testing.T) {
		rec := post(s, reader, modernCall("ask_llm", `{"sampling":{},"roots":{"listChanged":true}}`))
		if a := decodeAnswer(t, rec.Body.String()); rec.Code != http.StatusOK || a.Result == nil || a.Result.IsError {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
	})

	t.Run("a caller who may not use the tool learns nothing about its needs", func(t *testing.T) {
		nobody := principalWith()
		got := post(s, nobody, modernCall("ask_llm", `{}`))
		unknown := post(s, nobody, modernCall("no_such_tool", `{}`))
		if got.Code != unknown.Code || got.Body.String() != strings.ReplaceAll(unknown.Body.String(), "no_such_tool", "ask_llm") {
			t.Fatalf("forbidden: %d %s\nunknown: %d %s", got.Code, got.Body, unknown.Code, unknown.Body)
		}
	})

	t.Run("tools that need nothing, and 2025 calls, are not checked", func(t *testing.T) {
		if rec := post(s, reader, modernCall("get_thing", `{}`)); rec.Code != http.StatusOK {
			t.Errorf("get_thing: %d %s", rec.Code, rec.Body)
		}
		rec := post(s, reader, rpcCase{header: map[string]string{"MCP-Protocol-Version": "2025-11-25"},
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask_llm","arguments":{}}}`})
		if a := decodeAnswer(t, rec.Body.String()); a.Result == nil || a.Result.IsError {
			t.Errorf("2025 call: %d %s", rec.Code, rec.Body)
		}
	})

	t.Run("a request mcp-go refuses for its headers keeps mcp-go's answer", func(t *testing.T) {
		c := modernCall("ask_llm", `{}`)
		c.header["Mcp-Name"] = "other_tool"
		a := decodeAnswer(t, post(s, reader, c).Body.String())
		if a.Error == nil || a.Error.Code != mcp.HEADER_MISMATCH {
			t.Errorf("got %+v", a.Error)
		}
	})

	t.Run("a tool that needs an unknown capability is refused at start", func(t *testing.T) {
		bad := asker
		bad.ClientNeeds = []string{"telepathy"}
		if _, err := New(Options{Tools: []tools.Tool{bad}}); err == nil {
			t.Fatal("accepted")
		}
	})
}

func TestToolRefusingTheRequest(t *testing.T) {
	t.Parallel()
	refuser := tools.Tool{
		Def: mcp.NewTool("check_state", mcp.WithReadOnlyHintAnnotation(true), mcp.WithDestructiveHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(false)),
		Permissions: []string{authz.SignedIn},
		Run: func(context.Context, tools.Call) (*mcp.CallToolResult, error) {
			return nil, &tools.RequestError{Message: "requestState failed its integrity check"}
		},
	}
	s, err := New(Options{Tools: []tools.Tool{refuser}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("gets a JSON-RPC error carrying the tool's message, not a tool result", func(t *testing.T) {
		rec := post(s, principalWith(), modernCall("check_state", `{}`))
		a := decodeAnswer(t, rec.Body.String())
		if a.Result != nil || a.Error == nil || !strings.Contains(a.Error.Message, "requestState failed its integrity check") {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
		if n := s.metrics.Snapshot().ToolErrors; n != 1 {
			t.Errorf("tool errors %d, want 1 (the caller's doing, not an internal failure)", n)
		}
	})
}

func TestSubscriptionsListen(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	listen := rpcCase{
		header: map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen",
			"Accept": "application/json, text/event-stream"},
		body: `{"jsonrpc":"2.0","id":5,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},"_meta":{` +
			`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
	}

	t.Run("the acknowledgement is the first message of every listen stream, even one that ends at once", func(t *testing.T) {
		// mcp-go v1.2.1 can take the acknowledgement off its queue and then
		// drop it when the result is written first; that happened to about
		// one listen in six.
		for i := range 30 {
			body := post(s, principalWith(), listen).Body.String()
			ack := strings.Index(body, `"method":"notifications/subscriptions/acknowledged"`)
			result := strings.Index(body, `"result"`)
			if ack < 0 || result < ack {
				t.Fatalf("listen %d: %s", i, body)
			}
		}
	})
}
