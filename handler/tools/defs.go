package tools

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mark3labs/mcp-go/mcp"
)

// hints are a tool's behaviour annotations (MCP ToolAnnotations). Every
// tool states all of them, because mcp.NewTool defaults destructiveHint and
// openWorldHint to true.
type hints struct {
	readOnly    bool // does not change its environment
	destructive bool // may overwrite or remove data (meaningful when not read-only)
	idempotent  bool // repeating a call with the same arguments has no further effect
}

// readOnly returns the hints of a tool that only reads.
func readOnly() hints { return hints{readOnly: true, idempotent: true} }

// define builds a tool definition with a title, a description, all
// annotations set, and an input schema that rejects unknown arguments.
// All our tools are closed-world: they touch only this server's own data.
func define(name, title, description string, h hints, opts ...mcp.ToolOption) mcp.Tool {
	base := []mcp.ToolOption{
		mcp.WithToolTitle(title),
		mcp.WithDescription(description),
		mcp.WithToolAnnotation(mcp.ToolAnnotation{
			Title:           title,
			ReadOnlyHint:    mcp.ToBoolPtr(h.readOnly),
			DestructiveHint: mcp.ToBoolPtr(h.destructive),
			IdempotentHint:  mcp.ToBoolPtr(h.idempotent),
			OpenWorldHint:   mcp.ToBoolPtr(false),
		}),
		mcp.WithSchemaAdditionalProperties(false),
	}
	return mcp.NewTool(name, append(base, opts...)...)
}

// outputSchema sets a tool's output schema from a JSON Schema built as Go
// values. Tools that set one return structured content that matches it.
func outputSchema(schema map[string]any) mcp.ToolOption {
	b, err := json.Marshal(schema)
	if err != nil {
		// The schemas are literals in this package: this is a programming error.
		panic(fmt.Sprintf("tools: output schema: %v", err))
	}
	return mcp.WithRawOutputSchema(b)
}

// object is a JSON Schema object whose listed properties are all required
// and which has no others.
func object(props map[string]any) map[string]any {
	required := make([]string, 0, len(props))
	for name := range props {
		required = append(required, name)
	}
	return objectWith(props, required)
}

// objectWith is a JSON Schema object with some properties required.
func objectWith(props map[string]any, required []string) map[string]any {
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             sorted(required), // stable tools/list output
		"additionalProperties": false,
	}
}

func str(description string) map[string]any {
	return map[string]any{"type": "string", "description": description}
}

func arrayOf(items map[string]any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}

func sorted(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return out
}
