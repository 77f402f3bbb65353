//go:build conformance

package tools_test

import (
	"slices"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// TestToolsPerRoleConformance holds the golden file's conformance part
// against the conformance build's catalog: the fixture tools it adds to
// the production ones, each for every signed-in caller.
func TestToolsPerRoleConformance(t *testing.T) {
	want := readGolden(t)
	production := map[string]bool{}
	for _, name := range toolstest.Names(want.Tools, true) {
		production[name] = true
	}
	want.Conformance.Added = nil
	for _, tool := range tools.All(tools.Deps{Graph: &tools.Graph{Tokens: &fakeTokens{}}}) {
		if production[tool.Def.Name] {
			continue
		}
		if !slices.Equal(tool.Permissions, []string{authz.SignedIn}) {
			// The golden file's users would then list fixtures per role,
			// which it has no place for.
			t.Errorf("fixture %s needs %v, want signed-in", tool.Def.Name, tool.Permissions)
		}
		want.Conformance.Added = append(want.Conformance.Added, goldenTool(tool, false))
	}
	byName(want.Conformance.Added)
	checkGolden(t, want, " -tags conformance")
}
