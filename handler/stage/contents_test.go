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

// TestStagedBinaryHoldsNoDevMode reads what went into the binary Stage
// staged for a deployment: the module list (go version -m) and the names of
// the functions linked (kept in the binary's function table, which
// stripping does not remove: the runtime needs it for stack traces). The
// deployed handler must not hold the Entra stand-in, which mints tokens
// anyone could use, nor dev mode's embedded Redis and its Lua interpreter.
// The same checks must find modules and packages the handler does hold,
// which shows they can see what is there in a binary built this way, and
// the dev command must import everything on the list, which shows the list
// names what dev mode is made of (a package that moved would otherwise be
// absent for good).
func TestStagedBinaryHoldsNoDevMode(t *testing.T) {
	t.Parallel()
	devModules := []string{"github.com/alicebob/miniredis", "github.com/yuin/gopher-lua"}
	devPackages := []string{"handler/devidp", "handler/devmode", "handler/devupstream"}
	devDeps := goOutput(t, "list", "-deps", "-f", "{{.ImportPath}}", "../dev")
	for _, m := range devModules {
		if !strings.Contains(devDeps, m+"/") && !strings.Contains(devDeps, m+"\n") {
			t.Errorf("the dev command imports nothing of %s: the list of what must not ship is out of date", m)
		}
	}
	for _, p := range devPackages {
		if !strings.Contains(devDeps, modulePath+"/"+p+"\n") {
			t.Errorf("the dev command does not import %s: the list of what must not ship is out of date", p)
		}
	}
	dir, _ := stageReal(t)
	bin := filepath.Join(dir, BinaryName)
	info := goOutput(t, "version", "-m", bin)
	if !strings.Contains(info, "\tpath\t"+modulePath+"/handler\n") {
		t.Errorf("the binary's main package is not %s/handler:\n%s", modulePath, info)
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		modules, packages []string
		want              bool
	}{
		{devModules, devPackages, false},
		{[]string{"github.com/mark3labs/mcp-go", "github.com/redis/go-redis"}, []string{"handler/app", "handler/entra"}, true},
	} {
		for _, m := range c.modules {
			if got := strings.Contains(info, "\tdep\t"+m); got != c.want {
				t.Errorf("module %s linked: %v, want %v", m, got, c.want)
			}
		}
		for _, p := range c.packages {
			if got := bytes.Contains(code, []byte(modulePath+"/"+p+".")); got != c.want {
				t.Errorf("functions of %s in the binary: %v, want %v", p, got, c.want)
			}
		}
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
