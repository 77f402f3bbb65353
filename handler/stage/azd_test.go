package main

import (
	"archive/zip"
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
// and the posix prepackage command.
func azdService(t *testing.T, root string) (text, dist, prepackage string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "azure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text = string(b)
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
	return text, dist, strings.TrimSpace(m[1])
}

// TestAzureYAMLNamesWhatItNeeds: the comments say which azd runs this
// (1.20.0, the first with language: custom and .zip dists deployed as they
// are) and that custom is an alpha feature to turn on.
func TestAzureYAMLNamesWhatItNeeds(t *testing.T) {
	t.Parallel()
	text, _, _ := azdService(t, moduleRoot)
	for _, want := range []string{"azd 1.20.0 or later", "azd config set alpha.language.custom on"} {
		if !strings.Contains(text, want) {
			t.Errorf("azure.yaml does not say %q", want)
		}
	}
}

// TestAzdHookStagesACleanCheckout runs azure.yaml's own prepackage command
// on a copy of the tracked files (a clean checkout), and checks that what
// azd deploys (dist, our own zip, which azd 1.20.0 and later upload as it
// is) is exactly what the Functions host needs, with the handler's exec bit
// in the zip.
func TestAzdHookStagesACleanCheckout(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the handler")
	}
	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	_, dist, cmd := azdService(t, root)
	folder, ok := strings.CutSuffix(dist, ".zip")
	if !ok {
		t.Fatalf("azure.yaml dist %q is not a .zip: azd would zip the folder itself, without the exec bit before 1.26.0", dist)
	}
	if !strings.Contains(cmd, "-out "+folder) {
		t.Errorf("azure.yaml dist %q, but the hook stages with %q (which writes <out>.zip)", dist, cmd)
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
	fns, err := Validate(filepath.Join(clean, folder))
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

	zr, err := zip.OpenReader(filepath.Join(clean, dist))
	if err != nil {
		t.Fatalf("the hook did not write azure.yaml's dist: %v", err)
	}
	defer zr.Close()
	inZip := map[string]os.FileMode{}
	for _, f := range zr.File {
		inZip[f.Name] = f.Mode()
	}
	if m, ok := inZip[BinaryName]; !ok || m != 0o755 {
		t.Errorf("%s in %s: present %v, mode %v; want 0755", BinaryName, dist, ok, m)
	}
	for _, f := range fns {
		if _, ok := inZip[f.Name+"/function.json"]; !ok {
			t.Errorf("%s lacks %s/function.json", dist, f.Name)
		}
	}
	if _, ok := inZip["host.json"]; !ok {
		t.Errorf("%s lacks host.json", dist)
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
