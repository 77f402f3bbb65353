package toolstest

import (
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// Text is the text a tool result carries: its text contents, one after
// another (other contents left out).
func Text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}
