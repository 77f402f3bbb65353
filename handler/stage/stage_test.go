package main

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/httpapi"
)

// moduleRoot is where `go test` runs this package from, two levels down.
const moduleRoot = "../.."

// stagedPkg is the real handler, staged once for the tests in this
// package (the build is the slow part) the way azd stages it: azure.yaml's
// prepackage command, run on a copy of the tracked files.
type stagedPkg struct {
	clean string // the clean checkout; "" when staged in place, without git
	dir   string // the staged folder
	fns   []Function
}

// stagedDir is where stageOnce works, removed by TestMain.
var stagedDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "stage-test-") })

var stageOnce = sync.OnceValues(func() (stagedPkg, error) {
	tmp, err := stagedDir()
	if err != nil {
		return stagedPkg{}, err
	}
	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		return stagedPkg{}, err
	}
	files, err := trackedFiles(root)
	if err != nil { // a tree without git: stage it in place
		dir := filepath.Join(tmp, "dist")
		fns, err := Stage(moduleRoot, dir, Options{Build: true})
		return stagedPkg{dir: dir, fns: fns}, err
	}
	_, dist, cmd, err := azdService(root)
	if err != nil {
		return stagedPkg{}, err
	}
	clean := filepath.Join(tmp, "checkout")
	if err := copyFiles(root, clean, files); err != nil {
		return stagedPkg{}, fmt.Errorf("copy the tracked files: %w", err)
	}
	run := exec.Command("sh", "-c", cmd)
	run.Dir = clean
	if out, err := run.CombinedOutput(); err != nil {
		return stagedPkg{}, fmt.Errorf("azure.yaml's prepackage %q: %v\n%s", cmd, err, out)
	}
	dir := filepath.Join(clean, strings.TrimSuffix(dist, ".zip"))
	fns, err := Validate(dir)
	if err != nil {
		return stagedPkg{}, fmt.Errorf("staged by the azd hook: %w", err)
	}
	return stagedPkg{clean: clean, dir: dir, fns: fns}, nil
})

func staged(t *testing.T) stagedPkg {
	t.Helper()
	p, err := stageOnce()
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	return p
}

func stageReal(t *testing.T) (string, []Function) {
	t.Helper()
	p := staged(t)
	return p.dir, p.fns
}

// asStage, set in a child's environment, makes this test binary run the
// staging command's main instead of the tests, so a test can exec the
// command without linking it a second time.
const asStage = "STAGE_TEST_RUN_AS_STAGE"

func TestMain(m *testing.M) {
	if os.Getenv(asStage) == "1" {
		main()
		return
	}
	code := m.Run()
	if dir, err := stagedDir(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// TestStagedLayout stages the real sources and binary and checks the folder
// the Functions host will load: Stage validates, and the checks here say
// the important rules again in plain terms.
func TestStagedLayout(t *testing.T) {
	t.Parallel()
	dir, fns := stageReal(t)

	if _, err := os.Stat(filepath.Join(dir, "host.json")); err != nil {
		t.Fatalf("host.json: %v", err)
	}
	if len(fns) == 0 {
		t.Fatal("no functions staged")
	}
	for _, f := range fns {
		if _, err := os.Stat(filepath.Join(dir, f.Name, "function.json")); err != nil {
			t.Errorf("function %s is not a direct child with function.json: %v", f.Name, err)
		}
		if reservedRoute(f.Route) {
			t.Errorf("function %s uses reserved route %q", f.Name, f.Route)
		}
	}
	st, err := os.Stat(filepath.Join(dir, BinaryName))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o755 {
		t.Errorf("binary mode = %v, want 0755", st.Mode().Perm())
	}
	if err := validateBinary(filepath.Join(dir, BinaryName)); err != nil {
		t.Error(err)
	}
}

// TestSourceFunctionsAreStaged checks that every functions/<name> folder in
// the sources arrived in the staged folder, and nothing else did.
func TestSourceFunctionsAreStaged(t *testing.T) {
	t.Parallel()
	_, fns := stageReal(t)
	entries, err := os.ReadDir(filepath.Join(moduleRoot, "functions"))
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, e := range entries {
		if e.IsDir() {
			want = append(want, e.Name())
		}
	}
	for _, f := range fns {
		got = append(got, f.Name)
	}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("staged functions %v, sources have %v", got, want)
	}
}

// TestFunctionRoutesMatchHandler checks that the Functions host forwards
// exactly the paths and methods the handler serves: a route missing from
// functions/ is unreachable in Azure, and one the handler lacks is a 404.
func TestFunctionRoutesMatchHandler(t *testing.T) {
	t.Parallel()
	_, fns := stageReal(t)
	var want []Route
	for _, r := range httpapi.Routes() {
		want = append(want, Route{Path: r.Path, Methods: r.Methods})
	}
	if err := CheckRoutes(fns, want); err != nil {
		t.Error(err)
	}
}

func TestCheckRoutes(t *testing.T) {
	t.Parallel()
	fns := []Function{
		{Name: "mcp", Route: "mcp", Methods: []string{"DELETE", "GET", "POST"}},
		{Name: "health", Route: "health", Methods: []string{"GET"}},
	}
	ok := []Route{
		{Path: "/health", Methods: []string{"get"}},
		{Path: "/mcp", Methods: []string{"POST", "GET", "DELETE"}},
	}
	if err := CheckRoutes(fns, ok); err != nil {
		t.Errorf("matching routes: %v", err)
	}
	for name, want := range map[string][]Route{
		"missing function": append(ok[:1:1], Route{Path: "/mcp", Methods: []string{"POST", "GET", "DELETE"}}, Route{Path: "/auth/login", Methods: []string{"GET"}}),
		"extra function":   ok[:1],
		"other methods":    {ok[0], {Path: "/mcp", Methods: []string{"POST"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := CheckRoutes(fns, want); err == nil {
				t.Errorf("%s: no error", name)
			}
		})
	}
}

// TestValidateRejects stages the real sources without a build, then breaks
// one rule at a time and expects Validate to say so.
func TestValidateRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		want    string
	}{
		{"two triggers", func(t *testing.T, dir string) {
			writeFunction(t, dir, "mcp", `{"bindings":[
				{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":["post"],"route":"mcp"},
				{"type":"httpTrigger","direction":"in","name":"req2","authLevel":"anonymous","methods":["get"],"route":"mcp2"},
				{"type":"http","direction":"out","name":"res"}]}`)
		}, "exactly one of each"},
		{"no http out", func(t *testing.T, dir string) {
			writeFunction(t, dir, "mcp", `{"bindings":[
				{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":["post"],"route":"mcp"}]}`)
		}, "exactly one of each"},
		{"reserved route", func(t *testing.T, dir string) {
			writeFunction(t, dir, "adm", `{"bindings":[
				{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":["get"],"route":"Admin/x"},
				{"type":"http","direction":"out","name":"res"}]}`)
		}, "reserves"},
		{"function key", func(t *testing.T, dir string) {
			writeFunction(t, dir, "health", `{"bindings":[
				{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get"],"route":"health"},
				{"type":"http","direction":"out","name":"res"}]}`)
		}, "anonymous"},
		{"folder without function.json", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "stray"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "stray"},
		{"route prefix", func(t *testing.T, dir string) {
			replaceIn(t, filepath.Join(dir, "host.json"), `"routePrefix": ""`, `"routePrefix": "api"`)
		}, "routePrefix"},
		{"forwarding instead of proxying", func(t *testing.T, dir string) {
			replaceIn(t, filepath.Join(dir, "host.json"), `"enableProxyingHttpRequest": true`, `"enableForwardingHttpRequest": true`)
		}, "enableProxyingHttpRequest"},
		{"not an ELF binary", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, BinaryName), "#!/bin/sh\n", 0o755)
		}, "not an ELF"},
		{"binary not executable", func(t *testing.T, dir string) {
			if runtime.GOOS == "windows" {
				t.Skip("no exec bit on Windows")
			}
			src, _ := stageReal(t)
			b, err := os.ReadFile(filepath.Join(src, BinaryName))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, BinaryName), string(b), 0o644)
		}, "not executable"},
		{"no binary", func(t *testing.T, dir string) {}, "handler binary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dist")
			if _, err := Stage(moduleRoot, dir, Options{}); err != nil {
				t.Fatalf("stage without a build: %v", err)
			}
			// The cases that are not about the binary get a valid one.
			if tc.name != "no binary" {
				src, _ := stageReal(t)
				b, err := os.ReadFile(filepath.Join(src, BinaryName))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, BinaryName), string(b), 0o755)
				if _, err := Validate(dir); err != nil {
					t.Fatalf("before breaking it: %v", err)
				}
			}
			tc.breakIt(t, dir)
			_, err := Validate(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCleanDirRefuses(t *testing.T) {
	t.Parallel()
	// The module itself, and a parent of it.
	for _, out := range []string{moduleRoot, filepath.Join(moduleRoot, "..")} {
		abs, _ := filepath.Abs(out)
		if err := cleanDir(moduleRoot, abs); err == nil {
			t.Errorf("cleanDir(%s) did not refuse", out)
		}
	}
	// A folder with other content.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "notes.txt"), "keep me", 0o644)
	if err := cleanDir(moduleRoot, dir); err == nil {
		t.Error("cleanDir on a foreign folder did not refuse")
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
}

func writeFunction(t *testing.T, dir, name, doc string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name, "function.json"), doc, 0o644)
}

func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	os.Remove(path)
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

func replaceIn(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %s", path, old)
	}
	writeFile(t, path, strings.Replace(string(b), old, new, 1), 0o644)
}

// TestZipCarriesTheExecBit: the package azd deploys holds every staged file,
// the binary with mode 0755 and the rest 0644, whatever system staged it;
// and a plain unzip into a fresh folder gives a handler that runs.
func TestZipCarriesTheExecBit(t *testing.T) {
	t.Parallel()
	p := staged(t)
	dir := p.dir
	// The zip azure.yaml's hook made is the one azd deploys; staged in
	// place (no git), there is none, and Zip makes it.
	pkg := p.dir + ".zip"
	if p.clean == "" {
		pkg = filepath.Join(t.TempDir(), "dist.zip")
		if err := Zip(dir, pkg); err != nil {
			t.Fatal(err)
		}
	}
	zr, err := zip.OpenReader(pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	names := map[string]os.FileMode{}
	for _, f := range zr.File {
		names[f.Name] = f.Mode()
		want := os.FileMode(0o644)
		if f.Name == BinaryName {
			want = 0o755
		}
		if f.Mode() != want || f.CreatorVersion>>8 != 3 { // 3: Unix, so unzip applies the mode
			t.Errorf("%s: mode %v (creator %d), want %v from a Unix creator", f.Name, f.Mode(), f.CreatorVersion>>8, want)
		}
	}
	for _, want := range []string{"host.json", BinaryName, "mcp/function.json", "upstreams.json"} {
		if _, ok := names[want]; !ok {
			t.Errorf("the zip lacks %s (has %v)", want, names)
		}
	}
	again := filepath.Join(t.TempDir(), "again.zip")
	if err := Zip(dir, again); err != nil {
		t.Fatal(err)
	}
	if a, b := mustRead(t, pkg), mustRead(t, again); !bytes.Equal(a, b) {
		t.Error("two zips of one staging differ")
	}

	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the unzipped linux/amd64 binary can run only there")
	}
	unzip, err := exec.LookPath("unzip")
	if err != nil {
		t.Skip("no unzip on PATH")
	}
	fresh := t.TempDir()
	if out, err := exec.Command(unzip, "-q", pkg, "-d", fresh).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(fresh, BinaryName))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("unzipped handler: %v, mode %v", err, st.Mode())
	}
	out, _ := exec.Command(filepath.Join(fresh, BinaryName), "-h").CombinedOutput()
	if !strings.Contains(string(out), "-dev") {
		t.Fatalf("the unzipped handler did not run: %s", out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckSettingsFlag: `go run ./handler/stage -check-settings`, which
// the preprovision hooks run with the azd environment values, fails on a
// value the handler would refuse, naming it, and passes on good ones.
func TestCheckSettingsFlag(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(env ...string) (string, error) {
		cmd := exec.Command(self, "-check-settings")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), asStage + "=1"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Run("good values pass", func(t *testing.T) {
		if out, err := run("ROLE_MAP=Task.Read=tasks.read", "MCP_ALLOWED_ORIGINS=https://app.contoso.com"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("a bad value fails, named", func(t *testing.T) {
		out, err := run("ROLE_MAP=Task.Read=tasks.reed", "LOG_LEVEL=loud")
		if err == nil {
			t.Fatalf("passed:\n%s", out)
		}
		for _, want := range []string{"ROLE_MAP", "LOG_LEVEL", "azd env set"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}
