package main

import (
	"archive/zip"
	"errors"
	"fmt"
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
func azdService(root string) (text, dist, prepackage string, err error) {
	b, err := os.ReadFile(filepath.Join(root, "azure.yaml"))
	if err != nil {
		return "", "", "", err
	}
	text = string(b)
	m := regexp.MustCompile(`(?m)^\s+dist:\s*(\S+)\s*$`).FindStringSubmatch(text)
	if m == nil {
		return "", "", "", errors.New("azure.yaml has no dist")
	}
	dist = m[1]
	m = regexp.MustCompile(`(?s)prepackage:\s*\n\s*posix:\s*\n\s*shell:\s*sh\s*\n\s*run:\s*([^\n]+)`).FindStringSubmatch(text)
	if m == nil {
		return "", "", "", errors.New("azure.yaml has no posix prepackage hook")
	}
	return text, dist, strings.TrimSpace(m[1]), nil
}

// TestAzureYAMLNamesWhatItNeeds: the comments say which azd runs this
// (1.20.0, the first with language: custom and .zip dists deployed as they
// are) and that custom is an alpha feature to turn on.
func TestAzureYAMLNamesWhatItNeeds(t *testing.T) {
	t.Parallel()
	text, _, _, err := azdService(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"language: custom", "host: function", "azd 1.20.0 or later", "azd config set alpha.language.custom on"} {
		if !strings.Contains(text, want) {
			t.Errorf("azure.yaml does not say %q", want)
		}
	}
}

// TestAzdHookStagesACleanCheckout: azure.yaml's own prepackage command,
// run on a copy of the tracked files (a clean checkout; the package every
// test here checks is staged that way), stages what azd deploys (dist, our
// own zip, which azd 1.20.0 and later upload as it is): exactly what the
// Functions host needs, with the handler's exec bit in the zip.
func TestAzdHookStagesACleanCheckout(t *testing.T) {
	t.Parallel()
	p := staged(t)
	if p.clean == "" {
		t.Skip("git is needed to know the tracked files")
	}
	_, dist, cmd, err := azdService(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
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
	if p.dir != filepath.Join(p.clean, folder) {
		t.Fatalf("staged into %s, want azure.yaml's %s", p.dir, folder)
	}
	var want []Route
	for _, r := range httpapi.Routes() {
		want = append(want, Route{Path: r.Path, Methods: r.Methods})
	}
	if err := CheckRoutes(p.fns, want); err != nil {
		t.Error(err)
	}
	clean, fns := p.clean, p.fns

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

// trackedFiles lists the files git tracks under root, with those written
// since the last commit (this change) and not ignored.
func trackedFiles(root string) ([]string, error) {
	out, err := exec.Command("git", "-C", root, "ls-files").Output()
	if err != nil || len(out) == 0 {
		return nil, fmt.Errorf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimSpace(string(out)), "\n")
	if more, err := exec.Command("git", "-C", root, "ls-files", "--others", "--exclude-standard").Output(); err == nil && len(more) > 0 {
		files = append(files, strings.Split(strings.TrimSpace(string(more)), "\n")...)
	}
	return files, nil
}

// copyFiles copies files (paths relative to root) from root to dst,
// regular files only, with their permissions.
func copyFiles(root, dst string, files []string) error {
	for _, f := range files {
		src := filepath.Join(root, f)
		info, err := os.Lstat(src)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		target := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := copyFile(src, target, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
