package main

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/internal/jsonfile"
)

// Function is one staged Azure Function: its folder name, and the route and
// methods of its HTTP trigger (route without a leading slash, methods upper
// case and sorted).
type Function struct {
	Name    string
	Route   string
	Methods []string
}

// Validate checks a staged folder the way the Functions host will read it,
// binary included, and returns its functions sorted by name. It reports
// every problem it finds, not just the first.
func Validate(dir string) ([]Function, error) {
	return validate(dir, true)
}

// ValidateLayout is Validate without the binary: for a folder staged with
// -skip-build.
func ValidateLayout(dir string) ([]Function, error) {
	return validate(dir, false)
}

func validate(dir string, binary bool) ([]Function, error) {
	var errs []error
	exe, err := validateHostJSON(filepath.Join(dir, hostJSON))
	if err != nil {
		errs = append(errs, err)
	}
	if binary && exe != "" {
		if err := validateBinary(filepath.Join(dir, exe)); err != nil {
			errs = append(errs, err)
		}
	}
	fns, err := validateFunctions(dir)
	if err != nil {
		errs = append(errs, err)
	}
	if err := validateUpstreams(filepath.Join(dir, config.UpstreamsFile)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("staged folder %s is not valid:\n%w", dir, errors.Join(errs...))
	}
	return fns, nil
}

// validateUpstreams parses the staged upstream configuration as the
// handler will at start-up, against the shipped role table (ROLE_MAP can
// only name the permissions it has), so a deployment never ships one the
// handler would refuse.
func validateUpstreams(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", config.UpstreamsFile, err)
	}
	if _, err := config.ParseUpstreams(b, authz.DefaultTable()); err != nil {
		return fmt.Errorf("%s: %w", config.UpstreamsFile, err)
	}
	return nil
}

// hostConfig is the part of host.json we depend on.
type hostConfig struct {
	Version       string `json:"version"`
	CustomHandler *struct {
		Description struct {
			DefaultExecutablePath string `json:"defaultExecutablePath"`
		} `json:"description"`
		EnableProxyingHTTPRequest bool            `json:"enableProxyingHttpRequest"`
		HTTP                      json.RawMessage `json:"http"`
	} `json:"customHandler"`
	Extensions struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
	ConfigurationProfile string `json:"configurationProfile"`
}

// validateHostJSON checks host.json and returns the executable it names.
func validateHostJSON(path string) (string, error) {
	var h hostConfig
	if err := jsonfile.Read(path, &h); err != nil {
		return "", err
	}
	var errs []error
	if h.Version != "2.0" {
		errs = append(errs, fmt.Errorf("version is %q, want \"2.0\"", h.Version))
	}
	exe := ""
	if h.CustomHandler == nil {
		errs = append(errs, errors.New("no customHandler section"))
	} else {
		exe = h.CustomHandler.Description.DefaultExecutablePath
		if exe != BinaryName {
			errs = append(errs, fmt.Errorf("customHandler.description.defaultExecutablePath is %q, want %q", exe, BinaryName))
			exe = ""
		}
		// The YARP proxy streams requests and responses unchanged; the
		// older forwarding mode rebuilds them.
		if !h.CustomHandler.EnableProxyingHTTPRequest {
			errs = append(errs, errors.New("customHandler.enableProxyingHttpRequest is not true"))
		}
		// The host throws when function.json folders and
		// customHandler.http routes are both present.
		if len(h.CustomHandler.HTTP) > 0 {
			errs = append(errs, errors.New("customHandler.http is set: routes come from function.json folders only"))
		}
	}
	if h.ConfigurationProfile != "" {
		errs = append(errs, fmt.Errorf("configurationProfile %q is set: it does not mix with function.json folders", h.ConfigurationProfile))
	}
	if p := h.Extensions.HTTP.RoutePrefix; p == nil || *p != "" {
		errs = append(errs, errors.New(`extensions.http.routePrefix must be "" so routes are /mcp, not /api/mcp`))
	}
	if len(errs) > 0 {
		return exe, fmt.Errorf("%s: %w", hostJSON, errors.Join(errs...))
	}
	return exe, nil
}

// validateBinary checks that the handler is an executable linux/amd64 ELF
// file: the only kind the Functions workers run.
func validateBinary(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("handler binary: %w", err)
	}
	// Windows has no exec bit to set or check; the deployment zip is made on
	// Linux (see the design notes).
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o111 != 0o111 {
		return fmt.Errorf("handler binary %s is not executable (mode %v)", path, st.Mode().Perm())
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("handler binary %s is not an ELF file: %w", path, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("handler binary %s is %v/%v, want 64-bit x86-64", path, f.Class, f.Machine)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("handler binary %s is built for OS ABI %v, want Linux", path, f.OSABI)
	}
	return nil
}

// functionName is what the host accepts as a function (folder) name.
var functionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)

// validateFunctions checks every folder in dir: the host loads each direct
// child folder as a function, so each must hold a function.json.
func validateFunctions(dir string) ([]Function, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var (
		fns    []Function
		errs   []error
		routes = map[string]string{} // route -> function name
	)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		fn, err := readFunction(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := routes[strings.ToLower(fn.Route)]; dup {
			errs = append(errs, fmt.Errorf("functions %s and %s share route %q", other, fn.Name, fn.Route))
		}
		routes[strings.ToLower(fn.Route)] = fn.Name
		fns = append(fns, fn)
	}
	if len(fns) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no functions"))
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	return fns, errors.Join(errs...)
}

// binding is one entry of function.json's bindings.
type binding struct {
	Type      string   `json:"type"`
	Direction string   `json:"direction"`
	Name      string   `json:"name"`
	AuthLevel string   `json:"authLevel"`
	Methods   []string `json:"methods"`
	Route     string   `json:"route"`
}

// readFunction reads and checks one function folder. A proxied custom
// handler function must have exactly one httpTrigger in and one http out.
func readFunction(dir string) (Function, error) {
	name := filepath.Base(dir)
	fn := Function{Name: name}
	var doc struct {
		Bindings []binding `json:"bindings"`
	}
	if err := jsonfile.Read(filepath.Join(dir, functionJSON), &doc); err != nil {
		return fn, fmt.Errorf("function %s: %w", name, err)
	}
	var errs []error
	if !functionName.MatchString(name) {
		errs = append(errs, fmt.Errorf("%q is not a valid function name", name))
	}
	in, bindErrs := checkBindings(doc.Bindings)
	errs = append(errs, bindErrs...)
	if len(in) == 1 {
		var trigErrs []error
		fn.Route, fn.Methods, trigErrs = checkTrigger(in[0])
		errs = append(errs, trigErrs...)
	}
	if len(errs) > 0 {
		return fn, fmt.Errorf("function %s: %w", name, errors.Join(errs...))
	}
	return fn, nil
}

// checkBindings returns the httpTrigger in bindings and says what is
// wrong with the bindings: another binding than the trigger and the http
// out, not exactly one of each, an out binding not named res.
func checkBindings(bindings []binding) (in []binding, errs []error) {
	var out []binding
	for _, b := range bindings {
		switch {
		case b.Type == "httpTrigger" && b.Direction == "in":
			in = append(in, b)
		case b.Type == "http" && b.Direction == "out":
			out = append(out, b)
		default:
			errs = append(errs, fmt.Errorf("binding %q (%s, %s) is neither the httpTrigger in nor the http out", b.Name, b.Type, b.Direction))
		}
	}
	if len(in) != 1 || len(out) != 1 {
		errs = append(errs, fmt.Errorf("has %d httpTrigger in and %d http out bindings, want exactly one of each", len(in), len(out)))
	}
	if len(out) == 1 && out[0].Name != "res" {
		errs = append(errs, fmt.Errorf("http out binding is named %q, want \"res\"", out[0].Name))
	}
	return in, errs
}

// checkTrigger returns the httpTrigger's route and methods (upper case,
// sorted) and what is wrong with it.
func checkTrigger(t binding) (route string, methods []string, errs []error) {
	route = strings.TrimPrefix(t.Route, "/")
	for _, m := range t.Methods {
		methods = append(methods, strings.ToUpper(m))
	}
	sort.Strings(methods)
	if t.Name != "req" {
		errs = append(errs, fmt.Errorf("httpTrigger is named %q, want \"req\"", t.Name))
	}
	// We authenticate with Entra tokens; a function key would stop
	// every MCP client that does not know it.
	if t.AuthLevel != "anonymous" {
		errs = append(errs, fmt.Errorf("httpTrigger authLevel is %q, want \"anonymous\"", t.AuthLevel))
	}
	if route == "" {
		errs = append(errs, errors.New("httpTrigger has no route"))
	}
	if reservedRoute(route) {
		errs = append(errs, fmt.Errorf("route %q starts with a prefix the host reserves (admin, runtime)", route))
	}
	if len(methods) == 0 {
		errs = append(errs, errors.New("httpTrigger lists no methods (it would accept all)"))
	}
	if i := slices.IndexFunc(methods, func(m string) bool { return !knownMethod(m) }); i >= 0 {
		errs = append(errs, fmt.Errorf("unknown HTTP method %q", methods[i]))
	}
	return route, methods, errs
}

// reservedRoute reports whether the host would refuse the route: it
// refuses any route that starts with admin or runtime, in any case, even
// "administrators".
func reservedRoute(route string) bool {
	r := strings.ToLower(route)
	return strings.HasPrefix(r, "admin") || strings.HasPrefix(r, "runtime")
}

func knownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// Route is a path the handler serves and the methods it accepts there, as
// the handler's router lists them (Path with a leading slash).
type Route struct {
	Path    string
	Methods []string
}

// CheckRoutes reports whether the staged functions forward exactly the
// handler's routes: same paths, same methods. The Functions host answers
// 404 for any path or method no function.json lists, so a handler route
// without a function is unreachable in Azure.
func CheckRoutes(fns []Function, want []Route) error {
	key := func(path string, methods []string) string {
		m := make([]string, len(methods))
		for i, s := range methods {
			m[i] = strings.ToUpper(s)
		}
		sort.Strings(m)
		return strings.TrimPrefix(path, "/") + " " + strings.Join(m, ",")
	}
	have := map[string]string{} // key -> function name
	for _, f := range fns {
		have[key(f.Route, f.Methods)] = f.Name
	}
	var errs []error
	for _, r := range want {
		k := key(r.Path, r.Methods)
		if _, ok := have[k]; !ok {
			errs = append(errs, fmt.Errorf("handler route %s %v has no function with that route and those methods", r.Path, r.Methods))
		}
		delete(have, k)
	}
	for k, name := range have {
		errs = append(errs, fmt.Errorf("function %s (%s) matches no handler route", name, k))
	}
	return errors.Join(errs...)
}
