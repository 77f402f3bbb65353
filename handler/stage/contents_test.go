package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// modulePath is this module's import path, which prefixes its symbols.
const modulePath = "github.com/entra-mcp/functions-mcp"

// TestOnlyTheDevStagingHoldsDevMode builds what Stage builds, for a
// deployment and with -dev, and reads what went into each binary: its
// module list (go version -m) and its symbol table (go tool nm). The
// deployed handler must not hold the Entra stand-in, which mints tokens
// anyone could use, nor dev mode's embedded Redis and its Lua interpreter;
// the dev staging must hold them, which shows the check can see them.
func TestOnlyTheDevStagingHoldsDevMode(t *testing.T) {
	t.Parallel()
	devModules := []string{"github.com/alicebob/miniredis", "github.com/yuin/gopher-lua"}
	devPackages := []string{"handler/devidp", "handler/devmode"}
	dir := t.TempDir()
	cases := []struct {
		name    string
		opts    Options
		main    string
		wantDev bool
	}{
		{"production", Options{}, modulePath + "/handler", false},
		{"dev", Options{Dev: true}, modulePath + "/handler/dev", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // two links at once: most of the test's time
			bin := filepath.Join(dir, c.name)
			// Unstripped, as Stage builds it but with the symbol table kept.
			if err := buildHandler(moduleRoot, bin, c.opts, false); err != nil {
				t.Fatal(err)
			}
			info := goOutput(t, "version", "-m", bin)
			if !strings.Contains(info, "\tpath\t"+c.main+"\n") {
				t.Errorf("the binary's main package is not %s:\n%s", c.main, info)
			}
			for _, m := range devModules {
				if got := strings.Contains(info, "\tdep\t"+m); got != c.wantDev {
					t.Errorf("module %s linked: %v, want %v", m, got, c.wantDev)
				}
			}
			symbols := goOutput(t, "tool", "nm", bin)
			for _, p := range devPackages {
				if got := strings.Contains(symbols, modulePath+"/"+p+"."); got != c.wantDev {
					t.Errorf("symbols of %s in the binary: %v, want %v", p, got, c.wantDev)
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
