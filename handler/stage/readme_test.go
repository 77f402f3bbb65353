package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// readmeTable returns the rows of the README table whose header line is
// header, as cells without their outer pipes.
func readmeTable(t *testing.T, readme, header string) [][]string {
	t.Helper()
	start := strings.Index(readme, header+"\n")
	if start < 0 {
		t.Fatalf("README has no table %q", header)
	}
	var rows [][]string
	for _, line := range strings.Split(readme[start:], "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

func readReadme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var backticked = regexp.MustCompile("^`([^`]+)`")

// TestReadmeConfigurationIsTheSettingsList: the README's Configuration
// table lists exactly the settings the handler reads (config.Settings), and
// its "in Azure" column says what the deployment does with each: infra/
// sets the Azure ones, the operator chooses the Operator ones with
// `azd env set` (never "the app setting", which the next provision wipes).
func TestReadmeConfigurationIsTheSettingsList(t *testing.T) {
	t.Parallel()
	readme := readReadme(t)
	rows := readmeTable(t, readme, "| setting | meaning | default | in Azure |")
	settings := map[string]config.Setting{}
	for _, s := range config.Settings() {
		settings[s.Name] = s
	}
	seen := map[string]bool{}
	for _, row := range rows {
		m := backticked.FindStringSubmatch(row[0])
		if m == nil || len(row) != 4 {
			t.Errorf("malformed row %q", row)
			continue
		}
		name, where := m[1], row[3]
		seen[name] = true
		s, ok := settings[name]
		if !ok {
			t.Errorf("README documents %s, which the handler does not read", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			switch {
			case s.Operator && !strings.HasPrefix(where, "`azd env set "+name+"`"):
				t.Errorf("an operator's choice; the in-Azure column should start with `azd env set %s`, got %q", name, where)
			case !s.Operator && strings.Contains(where, "azd env set"):
				t.Errorf("not an azd environment value (infra/ does not read it), but the README says %q", where)
			case s.Azure && !strings.Contains(where, "set by `infra/`"):
				t.Errorf("infra/ sets it, but the README says %q", where)
			}
		})
	}
	for _, s := range config.Settings() {
		if !s.Platform && !seen[s.Name] {
			t.Errorf("README's Configuration table lacks %s", s.Name)
		}
	}
	if strings.Contains(readme, "or the app setting") || strings.Contains(readme, "or the\napp setting") {
		t.Error(`README tells operators to use "the app setting", which the next provision removes`)
	}
}

// TestReadmeNamesEveryAzdEnvironmentValue: every azd environment value
// infra/main.parameters.json reads is either an operator setting (in the
// Configuration table) or a row of the deploy section's table, with the
// same default; and the table names nothing the parameters do not read.
func TestReadmeNamesEveryAzdEnvironmentValue(t *testing.T) {
	t.Parallel()
	defaults, malformed := azdValues(t)
	for _, m := range malformed {
		t.Errorf("parameter %s, not ${NAME} or ${NAME=default}", m)
	}
	// azd's own values: it fills them in itself.
	for _, own := range []string{"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE"} {
		delete(defaults, own)
	}
	operator := map[string]bool{}
	for _, s := range config.Settings() {
		if s.Operator {
			operator[s.Name] = true
		}
	}

	rows := readmeTable(t, readReadme(t), "| azd environment value | chooses | default |")
	inTable := map[string]bool{}
	for _, row := range rows {
		m := backticked.FindStringSubmatch(row[0])
		if m == nil || len(row) != 3 {
			t.Errorf("malformed row %q", row)
			continue
		}
		name := m[1]
		inTable[name] = true
		def, ok := defaults[name]
		switch {
		case !ok:
			t.Errorf("README's deploy table names %s, which infra/main.parameters.json does not read", name)
		case def == "" && row[2] != "none":
			t.Errorf("%s: no default in main.parameters.json, README says %q", name, row[2])
		case def != "" && row[2] != "`"+def+"`":
			t.Errorf("%s: default %q in main.parameters.json, README says %q", name, def, row[2])
		}
	}
	for name := range defaults {
		if !operator[name] && !inTable[name] {
			t.Errorf("infra/main.parameters.json reads %s, which README's deploy table does not explain", name)
		}
		if operator[name] && inTable[name] {
			t.Errorf("%s is an operator setting: explain it once, in the Configuration table", name)
		}
	}
}

// azdValues reads infra/main.parameters.json: the azd environment value
// each parameter takes (${NAME} or ${NAME=default}) and its default, "" for
// none; malformed names each parameter that takes none that way, with its
// value.
func azdValues(t *testing.T) (defaults map[string]string, malformed []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "infra", "main.parameters.json"))
	if err != nil {
		t.Fatal(err)
	}
	var params struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(b, &params); err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`^\$\{([A-Z_]+)(?:=([^}]*))?\}$`)
	defaults = map[string]string{}
	for name, p := range params.Parameters {
		v, _ := p.Value.(string)
		m := ref.FindStringSubmatch(v)
		if m == nil {
			malformed = append(malformed, fmt.Sprintf("%s is %q", name, v))
			continue
		}
		defaults[m[1]] = m[2]
	}
	return defaults, malformed
}

// updateReadme rewrites the README's generated tables (the role table)
// instead of failing when they are stale.
var updateReadme = flag.Bool("update", false, "rewrite the README's role table from handler/authz/roles.json and the tools-per-role golden file")

const roleTableHeader = "| demo user | App Role | permissions | tools it sees |"

// TestReadmeRoleTableIsTheRoleTable: the README's table of demo users,
// roles, permissions and tools is the role table (handler/authz/roles.json)
// and the tools-per-role golden file, row for row. With -update it is
// rewritten from them, so a new role is a row of roles.json and nothing
// written by hand here.
func TestReadmeRoleTableIsTheRoleTable(t *testing.T) {
	readme := readReadme(t)
	golden := toolstest.Load(t)
	var want []string
	for _, r := range authz.DefaultTable().Roles {
		if r.Retired || !r.AllowsMember(authz.MemberUser) {
			continue
		}
		key := devidpKey(r)
		want = append(want, "| `"+key+"` | `"+r.Value+"` | "+ticked(r.Permissions)+" | "+ticked(golden.User(t, key).Tools)+" |")
	}
	start := strings.Index(readme, roleTableHeader+"\n")
	if start < 0 {
		t.Fatalf("README has no table %q", roleTableHeader)
	}
	lines := strings.SplitAfter(readme[start:], "\n")
	n := 2 // header and separator
	for n < len(lines) && strings.HasPrefix(lines[n], "|") {
		n++
	}
	have := strings.Join(lines[2:n], "")
	fresh := strings.Join(want, "\n") + "\n"
	if have == fresh {
		return
	}
	if !*updateReadme {
		t.Fatalf("README role table is stale: run go test ./handler/stage -run TestReadmeRoleTable -update\nhave:\n%swant:\n%s", have, fresh)
	}
	end := start + len(strings.Join(lines[:n], ""))
	out := readme[:start] + strings.Join(lines[:2], "") + fresh + readme[end:]
	if err := os.WriteFile(filepath.Join(moduleRoot, "README.md"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// devidpKey is the demo user's key for role r, as dev mode names it.
func devidpKey(r authz.Role) string {
	for _, u := range devidp.UsersFor(authz.Table{Roles: []authz.Role{r}}) {
		return u.Key
	}
	return ""
}

// ticked is names as the README writes a list: `a`, `b`.
func ticked(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "`" + n + "`"
	}
	return strings.Join(out, ", ")
}

// TestReadmeExampleToolIsCompiled: the README's example tool is, byte for
// byte, handler/tools/readme_example_test.go, which the tools tests build
// and run, so the example cannot rot.
func TestReadmeExampleToolIsCompiled(t *testing.T) {
	t.Parallel()
	readme := readReadme(t)
	start := strings.Index(readme, "## Adding a tool\n")
	if start < 0 {
		t.Fatal("README has no \"Adding a tool\"")
	}
	a := strings.Index(readme[start:], "```go\n")
	if a < 0 {
		t.Fatal("\"Adding a tool\" has no Go example")
	}
	block := readme[start+a+len("```go\n"):]
	block = block[:strings.Index(block, "```\n")]
	b, err := os.ReadFile(filepath.Join(moduleRoot, "handler/tools/readme_example_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, code, _ := strings.Cut(string(b), "\n\n") // the generated-code header
	if code != block {
		t.Errorf("README's example tool and handler/tools/readme_example_test.go differ; copy the README's block into the file (after its header)")
	}
}
