package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// layoutEntry is a package line of the README's Layout block: two spaces
// per level under handler/, the directory name and a slash.
var layoutEntry = regexp.MustCompile(`^((?:  )+)([a-z][a-z0-9]*)/ `)

// TestReadmeLayoutIsThePackageList: the README's Layout section names
// every package directory under handler/ (internal/'s on its one line),
// and names none that does not exist, so a package added, moved or
// removed without its line fails here.
func TestReadmeLayoutIsThePackageList(t *testing.T) {
	t.Parallel()
	readme := readReadme(t)
	start := strings.Index(readme, "## Layout\n")
	end := strings.Index(readme, "## Tests\n")
	if start < 0 || end < start {
		t.Fatal("README has no Layout section before Tests")
	}
	var listed []string
	var parents []string
	for _, line := range strings.Split(readme[start:end], "\n") {
		m := layoutEntry.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		depth := len(m[1]) / 2
		parents = append(parents[:min(depth-1, len(parents))], m[2])
		listed = append(listed, strings.Join(parents, "/"))
	}

	handler := filepath.Join(moduleRoot, "handler")
	var packages []string
	err := filepath.WalkDir(handler, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == handler {
			return err
		}
		rel, _ := filepath.Rel(handler, path)
		if d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(rel, "internal"+string(filepath.Separator)) {
			return filepath.SkipDir
		}
		if hasGo(t, path) {
			packages = append(packages, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(listed, "internal") {
		t.Error("README's Layout has no internal/ line")
	}
	for _, p := range packages {
		if !slices.Contains(listed, p) {
			t.Errorf("README's Layout lacks handler/%s/: add a line saying its job", p)
		}
	}
	for _, l := range listed {
		if l != "internal" && !slices.Contains(packages, l) {
			t.Errorf("README's Layout lists handler/%s/, which is not a package", l)
		}
	}
}

// hasGo reports whether dir holds a Go file of its own.
func hasGo(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") {
			return true
		}
	}
	return false
}
