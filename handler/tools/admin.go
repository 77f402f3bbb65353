package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
)

// serverStats is what server_stats reports.
type serverStats struct {
	Version string `json:"version"`
	Stats   any    `json:"stats"`
}

func adminTools(d Deps) []Tool {
	def := define("server_stats", "Server statistics",
		"Shows this server's version and counters (requests, tool calls, errors). For administrators.",
		readOnly(),
		outputSchema(object(map[string]any{
			"version": str("Server version"),
			"stats":   map[string]any{"description": "Server counters"},
		})),
	)
	run := func(ctx context.Context, _ Call, _ args) (*mcp.CallToolResult, error) {
		out := serverStats{Version: d.Version, Stats: map[string]any{}}
		if d.Stats != nil {
			out.Stats = d.Stats(ctx)
		}
		return jsonResult(out)
	}
	return []Tool{newTool(def, "server.admin", run)}
}
