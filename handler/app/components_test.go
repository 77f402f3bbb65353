package app

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// TestTaskResourceAndWeeklySummary: the task://{id} template and the
// weekly_summary prompt, through the whole handler: the reader reads a task
// the writer made and gets it in the summary; the writer, without
// tasks.read, sees neither.
func TestTaskResourceAndWeeklySummary(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	writer, reader := st.token(t, "writer"), st.token(t, "reader")
	created := st.rpc(t, writer, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_task","arguments":{"title":"Renew the certificate"}}}`)
	id, _ := created["result"].(map[string]any)["structuredContent"].(map[string]any)["id"].(string)
	if id == "" {
		t.Fatalf("create_task: %v", created)
	}
	read := `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"task://` + id + `"}}`
	summary := `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"weekly_summary","arguments":{"audience":"leadership"}}}`

	open := `{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"tasks://open"}}`
	t.Run("reader", func(t *testing.T) {
		b, _ := json.Marshal(st.rpc(t, reader, open))
		if !strings.Contains(string(b), "Renew the certificate") {
			t.Errorf("tasks://open: %s", b)
		}
		b, _ = json.Marshal(st.rpc(t, reader, `{"jsonrpc":"2.0","id":7,"method":"resources/list","params":{}}`))
		if !strings.Contains(string(b), `"uri":"tasks://open"`) {
			t.Errorf("resources/list: %s", b)
		}
		b, _ = json.Marshal(st.rpc(t, reader, read))
		if !strings.Contains(string(b), `Renew the certificate`) || !strings.Contains(string(b), `"mimeType":"application/json"`) {
			t.Errorf("resources/read: %s", b)
		}
		b, _ = json.Marshal(st.rpc(t, reader, summary))
		if !strings.Contains(string(b), "Renew the certificate") || !strings.Contains(string(b), "for leadership") {
			t.Errorf("prompts/get: %s", b)
		}
		b, _ = json.Marshal(st.rpc(t, reader, `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"task://aaaaaaaaaaaa"}}`))
		if !strings.Contains(string(b), `"code":-32002`) {
			t.Errorf("a task that does not exist: %s", b)
		}
	})
	t.Run("writer", func(t *testing.T) {
		for _, body := range []string{read, summary, open} {
			b, _ := json.Marshal(st.rpc(t, writer, body))
			if !strings.Contains(string(b), `"error"`) || strings.Contains(string(b), "Renew") {
				t.Errorf("%s: %s", body, b)
			}
		}
		b, _ := json.Marshal(st.rpc(t, writer, `{"jsonrpc":"2.0","id":5,"method":"prompts/list","params":{}}`))
		if strings.Contains(string(b), "weekly_summary") {
			t.Errorf("prompts/list: %s", b)
		}
	})
}
