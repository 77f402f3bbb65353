package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// BenchmarkToolsListHandler measures the whole handler for one tools/list,
// without the network: guards, cached token verification, the
// pre-encoded answer.
func BenchmarkToolsListHandler(b *testing.B) {
	st := newStack(b, storetest.Mini(b))
	benchRequest(b, st.handler, st.token(b, "all"))
}

func benchRequest(b *testing.B, h http.Handler, token string) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}
