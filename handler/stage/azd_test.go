package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/httpapi"
)

// azdService reads what azure.yaml says about the mcp service: its dist
// folder and the posix prepackage command.
func azdService(t *testing.T, root string) (dist, prepackage string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "azure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{"language: custom", "host: function"} {
		if !strings.Contains(text, want) {
			t.Errorf("azure.yaml lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^\s+dist:\s*(\S+)\s*$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("azure.yaml has no dist")
	}
	dist = m[1]
	m = regexp.MustCompile(`(?s)prepackage:\s*\n\s*posix:\s*\n\s*shell:\s*sh\s*\n\s*run:\s*([^\n]+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("azure.yaml has no posix prepackage hook")
	}
	return dist, strings.TrimSpace(m[1])
}

// TestAzdHookStagesACleanCheckout runs azure.yaml's own prepackage command
// on a copy of the tracked files (a clean checkout), and checks that the
// folder azd will zip is exactly what the Functions host needs.
func TestAzdHookStagesACleanCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler")
	}
	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	dist, cmd := azdService(t, root)
	if !strings.Contains(cmd, "-out "+dist) {
		t.Errorf("azure.yaml dist %q, but the hook stages with %q", dist, cmd)
	}
	if !strings.Contains(cmd, "./handler/stage") {
		t.Fatalf("the prepackage hook does not run the staging routine: %q", cmd)
	}

	clean := t.TempDir()
	copyTracked(t, root, clean)
	run := exec.Command("sh", "-c", cmd)
	run.Dir = clean
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	fns, err := Validate(filepath.Join(clean, dist))
	if err != nil {
		t.Fatalf("staged by the azd hook: %v", err)
	}
	var want []Route
	for _, r := range httpapi.Routes() {
		want = append(want, Route{Path: r.Path, Methods: r.Methods})
	}
	if err := CheckRoutes(fns, want); err != nil {
		t.Error(err)
	}
}

// copyTracked copies the files git tracks (or, without git, the source
// tree less build output and caches) from root to dst.
func copyTracked(t *testing.T, root, dst string) {
	t.Helper()
	var files []string
	if out, err := exec.Command("git", "-C", root, "ls-files").Output(); err == nil && len(out) > 0 {
		files = strings.Split(strings.TrimSpace(string(out)), "\n")
		// Files written since the last commit (this change) count too.
		if more, err := exec.Command("git", "-C", root, "ls-files", "--others", "--exclude-standard").Output(); err == nil && len(more) > 0 {
			files = append(files, strings.Split(strings.TrimSpace(string(more)), "\n")...)
		}
	} else {
		t.Skip("git is needed to know the tracked files")
	}
	for _, f := range files {
		src := filepath.Join(root, f)
		info, err := os.Lstat(src)
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		target := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			in.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		out.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}
