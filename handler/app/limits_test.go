package app

import (
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// TestToolCallLimitSettingsReachTheEndpoint: TOOL_CALLS_PER_MINUTE and
// TOOL_CALLS_BURST are what tools/call is limited by, per caller.
func TestToolCallLimitSettingsReachTheEndpoint(t *testing.T) {
	t.Parallel()
	st := newStackWith(t, storetest.Redis(t), func(c *config.Config, _ *devidp.Options) {
		c.Limits.ToolCallsPerMinute, c.Limits.ToolCallsBurst = 1, 3
	})
	writer, reader := st.token(t, "writer"), st.token(t, "reader")
	const whoami = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	for i := range 3 {
		if text, isErr := callText(t, st.rpc(t, writer, whoami)); isErr {
			t.Fatalf("call %d within the burst: %q", i, text)
		}
	}
	if text, isErr := callText(t, st.rpc(t, writer, whoami)); !isErr || !strings.HasPrefix(text, "Too many tool calls: retry in ") {
		t.Fatalf("fourth call with a burst of 3: %q", text)
	}
	// Another caller has a budget of their own.
	if text, isErr := callText(t, st.rpc(t, reader, whoami)); isErr {
		t.Fatalf("another caller: %q", text)
	}
}

// TestTaskBudgetSettingReachesTheStore: TASKS_MAX_BYTES_PER_TENANT is the
// budget create_task is refused by (64 KiB: seven tasks of 8 KB notes).
func TestTaskBudgetSettingReachesTheStore(t *testing.T) {
	t.Parallel()
	st := newStackWith(t, storetest.Redis(t), func(c *config.Config, _ *devidp.Options) {
		c.Limits.TaskBytesPerTenant = config.MinTaskBytes
	})
	writer := st.token(t, "writer")
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_task","arguments":{"title":"big","notes":"` +
		strings.Repeat("€", 2700) + `"}}}`
	for i := range 10 {
		text, isErr := callText(t, st.rpc(t, writer, body))
		if isErr {
			if i < 6 || !strings.Contains(text, "task storage is full (64 KiB") {
				t.Fatalf("create %d: %q", i, text)
			}
			return
		}
	}
	t.Fatal("ten tasks of 8 KB fit in 64 KiB")
}
