//go:build !conformance

package mcpserver

import "github.com/mark3labs/mcp-go/server"

// fixtureOptions, registerFixtures and fixtureTemplates add the MCP conformance suite's
// fixtures in a build with the conformance tag; production has none.
func fixtureOptions() []server.ServerOption { return nil }

func registerFixtures(*server.MCPServer) {}

func fixtureTemplates() []server.ServerResourceTemplate { return nil }
