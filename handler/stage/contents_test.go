package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// modulePath is this module's import path, which prefixes its symbols.
const modulePath = "github.com/entra-mcp/functions-mcp"

// TestOnlyTheDevStagingHoldsDevMode reads what went into the binary Stage
// staged for a deployment, and into one built as Stage builds it with -dev:
// the module list (go version -m) and the names of the functions linked
// (kept in the binary's function table, which stripping does not remove:
// the runtime needs it for stack traces). The deployed handler must not
// hold the Entra stand-in, which mints tokens anyone could use, nor dev
// mode's embedded Redis and its Lua interpreter; the dev build must hold
// them, which shows the check can see them.
func TestOnlyTheDevStagingHoldsDevMode(t *testing.T) {
	t.Parallel()
	devModules := []string{"github.com/alicebob/miniredis", "github.com/yuin/gopher-lua"}
	devPackages := []string{"handler/devidp", "handler/devmode", "handler/devupstream"}
	cases := []struct {
		name    string
		binary  func(t *testing.T) string
		main    string
		wantDev bool
	}{
		{"production", func(t *testing.T) string {
			dir, _ := stageReal(t)
			return filepath.Join(dir, BinaryName)
		}, modulePath + "/handler", false},
		{"dev", func(t *testing.T) string {
			bin := filepath.Join(t.TempDir(), BinaryName)
			if err := buildHandler(moduleRoot, bin, Options{Dev: true}, true); err != nil {
				t.Fatal(err)
			}
			return bin
		}, modulePath + "/handler/dev", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			bin := c.binary(t)
			info := goOutput(t, "version", "-m", bin)
			if !strings.Contains(info, "\tpath\t"+c.main+"\n") {
				t.Errorf("the binary's main package is not %s:\n%s", c.main, info)
			}
			for _, m := range devModules {
				if got := strings.Contains(info, "\tdep\t"+m); got != c.wantDev {
					t.Errorf("module %s linked: %v, want %v", m, got, c.wantDev)
				}
			}
			code, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range devPackages {
				if got := bytes.Contains(code, []byte(modulePath+"/"+p+".")); got != c.wantDev {
					t.Errorf("functions of %s in the binary: %v, want %v", p, got, c.wantDev)
				}
			}
		})
	}
}

// goOutput runs the go command and returns its standard output.
func goOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
