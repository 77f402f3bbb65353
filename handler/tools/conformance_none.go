//go:build !conformance

package tools

// extraTools returns the tools that only a test build adds: none in
// production. A build with the conformance tag adds the MCP conformance
// suite's fixtures (conformance_fixtures.go).
func extraTools(Deps) []Tool { return nil }
