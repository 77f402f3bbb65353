package tools_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

var update = flag.Bool("update", false, "rewrite the golden toolstest/"+toolstest.FileName+" from the catalog")

var goldenPath = filepath.Join("toolstest", toolstest.FileName)

// goldenTool is the golden entry of a tool.
func goldenTool(t tools.Tool, graphOnly bool) toolstest.Tool {
	a := t.Def.Annotations
	set := func(b *bool) bool { return b != nil && *b }
	return toolstest.Tool{
		Name:        t.Def.Name,
		Permissions: t.Permissions,
		ReadOnly:    set(a.ReadOnlyHint),
		Destructive: set(a.DestructiveHint),
		Idempotent:  set(a.IdempotentHint),
		OpenWorld:   set(a.OpenWorldHint),
		Graph:       graphOnly,
	}
}

// byName sorts golden entries as tools/list does.
func byName(list []toolstest.Tool) {
	slices.SortFunc(list, func(a, b toolstest.Tool) int { return strings.Compare(a.Name, b.Name) })
}

// readGolden reads the golden file from the source tree (not the embedded
// copy, so a test run right after -update sees the new one).
func readGolden(t *testing.T) toolstest.File {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("read %s: %v", goldenPath, err)
	}
	var f toolstest.File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("read %s: %v", goldenPath, err)
	}
	return f
}

func encodeGolden(t *testing.T, f toolstest.File) []byte {
	t.Helper()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// checkGolden compares want (the file as the catalog makes it) with the
// file on disk, or writes it with -update.
func checkGolden(t *testing.T, want toolstest.File, flags string) {
	t.Helper()
	wantBytes := encodeGolden(t, want)
	if *update {
		if err := os.WriteFile(goldenPath, wantBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenPath)
		return
	}
	got, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("read %s: %v", goldenPath, err)
	}
	if bytes.Equal(got, wantBytes) {
		return
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(string(wantBytes), "\n")
	i := 0
	for i < len(gotLines) && i < len(wantLines) && gotLines[i] == wantLines[i] {
		i++
	}
	line := func(l []string) string {
		if i < len(l) {
			return strings.TrimSpace(l[i])
		}
		return "(end of file)"
	}
	t.Fatalf("%s is stale: the tool catalog, the role map or the demo users changed.\n"+
		"Run   go test%s ./handler/tools -run TestToolsPerRole -update   and review its diff.\n"+
		"First difference, line %d: the file has %s, the catalog makes %s",
		goldenPath, flags, i+1, line(gotLines), line(wantLines))
}
