package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/httpapi"
)

// There is no Bicep compiler here, so these tests read infra/ as text:
// they hold the deployment to the handler's contract (settings, roles,
// callback, outputs the hooks use) and forbid secrets in it.

func readInfra(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	root := filepath.Join(moduleRoot, "infra")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".bicep") || strings.HasSuffix(path, ".json") || strings.Contains(path, "hooks")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(moduleRoot, path)
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func mustFile(t *testing.T, files map[string]string, name string) string {
	t.Helper()
	s, ok := files[name]
	if !ok {
		t.Fatalf("%s is missing", name)
	}
	return s
}

// TestAppRegistrationMatchesTheHandler: the App Roles are the role table's,
// the scope is the one clients ask for, tokens are v2 as the verifier
// expects by default, and the redirect URI is the handler's callback.
func TestAppRegistrationMatchesTheHandler(t *testing.T) {
	files := readInfra(t)
	entra := mustFile(t, files, "infra/app/entra.bicep")

	roles := regexp.MustCompile(`value:\s*'([A-Za-z.]+)'`).FindAllStringSubmatch(entra, -1)
	var got []string
	for _, m := range roles {
		if m[1] != "access_as_user" {
			got = append(got, m[1])
		}
	}
	sort.Strings(got)
	if want := authz.DefaultRoleMap().Roles(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("App Roles in entra.bicep %v, role table %v", got, want)
	}
	for _, want := range []string{
		"value: 'access_as_user'",
		"requestedAccessTokenVersion: 2",
		"https://${functionHostName}" + httpapi.PathCallback,
		"appRoleAssignmentRequired: true",
		"api://AzureADTokenExchange",
		"api://${",
	} {
		if !strings.Contains(entra, want) {
			t.Errorf("entra.bicep lacks %q", want)
		}
	}
	if !strings.HasSuffix((config.Entra{AppIDURI: "api://x"}).Scope(), "/access_as_user") {
		t.Error("the handler's scope is not access_as_user")
	}

	var bc struct {
		Extensions map[string]string `json:"extensions"`
	}
	if err := json.Unmarshal([]byte(mustFile(t, files, "infra/bicepconfig.json")), &bc); err != nil {
		t.Fatalf("bicepconfig.json: %v", err)
	}
	ext := bc.Extensions["microsoftGraphV1"]
	if !strings.Contains(ext, "microsoftgraph/v1.0:") || strings.HasSuffix(ext, ":") {
		t.Errorf("Graph extension not pinned: %q", ext)
	}
}

// TestInfraHoldsNoSecrets: no key, password or connection string with a
// key is read or written by the templates; secrets reach the app only
// through Key Vault and the managed identity.
func TestInfraHoldsNoSecrets(t *testing.T) {
	forbidden := []string{"listKeys(", "listConnectionStrings(", "listSecrets(", "primaryKey", "secondaryKey",
		"AccountKey=", "SharedAccessSignature", "ENTRA_CLIENT_SECRET", "TOKEN_SEALING_KEYS", "clientSecret:", "passwordCredentials"}
	for name, text := range readInfra(t) {
		text = withoutComments(text)
		for _, f := range forbidden {
			if strings.Contains(text, f) {
				t.Errorf("%s contains %q", name, f)
			}
		}
	}
}

// withoutComments drops whole-line // comments, where explaining why a
// secret is absent must not count as one.
func withoutComments(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "//") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// block returns what lies between the brace that ends header's line in text
// and the brace that closes it, or fails the test.
func block(t *testing.T, file, text, header string) string {
	t.Helper()
	start := strings.Index(text, header)
	if start < 0 {
		t.Fatalf("%s has no %q", file, header)
	}
	open := strings.Index(text[start:], "{")
	if open < 0 {
		t.Fatalf("%s: %q opens no block", file, header)
	}
	body := text[start+open+1:]
	depth := 1
	for i, c := range body {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
		}
		if depth == 0 {
			return body[:i]
		}
	}
	t.Fatalf("%s: %q is not closed", file, header)
	return ""
}

// objectKeys reads the top-level keys of a Bicep object body.
func objectKeys(body string) []string {
	key := regexp.MustCompile(`(?m)^\s*([A-Za-z][A-Za-z0-9_]*)\s*:`)
	var names []string
	depth := 0
	for _, line := range strings.Split(withoutComments(body), "\n") {
		if depth == 0 {
			if m := key.FindStringSubmatch(line); m != nil {
				names = append(names, m[1])
			}
		}
		depth += strings.Count(line, "{") + strings.Count(line, "[") - strings.Count(line, "}") - strings.Count(line, "]")
	}
	sort.Strings(names)
	return names
}

// appSettingNames reads the keys of `var appSettings = { ... }` in
// infra/app/function.bicep: the function app's whole set of settings.
func appSettingNames(t *testing.T, function string) []string {
	t.Helper()
	return objectKeys(block(t, "infra/app/function.bicep", function, "var appSettings = {"))
}

// TestOnlyTheSiteCarriesTheServiceTag: azd finds the app by its
// azd-service-name tag, and azd 1.20.0-1.23.3 refuse to deploy when more
// than one resource carries it (the App Service plan did).
func TestOnlyTheSiteCarriesTheServiceTag(t *testing.T) {
	files := readInfra(t)
	var where []string
	for name, text := range files {
		if n := strings.Count(withoutComments(text), "'azd-service-name'"); n > 0 && strings.HasSuffix(name, ".bicep") {
			where = append(where, fmt.Sprintf("%s (%d)", name, n))
		}
	}
	if len(where) != 1 || where[0] != "infra/app/function.bicep (1)" {
		t.Fatalf("azd-service-name appears in %v, want once, in infra/app/function.bicep", where)
	}
	function := withoutComments(files["infra/app/function.bicep"])
	site := block(t, "infra/app/function.bicep", function, "module site ")
	if !regexp.MustCompile(`(?m)^    tags: union\(tags, \{ 'azd-service-name': serviceName \}\)$`).MatchString(site) {
		t.Error("the site's own tags do not carry azd-service-name")
	}
	plan := block(t, "infra/app/function.bicep", function, "module plan ")
	if !regexp.MustCompile(`(?m)^    tags: tags$`).MatchString(plan) {
		t.Error("the plan's tags are not the plain environment tags")
	}
	if !strings.Contains(withoutComments(files["infra/main.bicep"]), "serviceName: serviceName") {
		t.Error("main.bicep does not hand the service name to the function module")
	}
}

// TestFunctionAppSettingsAreTheHandlersAzureSettings: infra/ sets exactly the
// settings config.Settings marks as set in Azure, plus the Functions host's
// identity-based storage settings; never FUNCTIONS_WORKER_RUNTIME (Flex
// Consumption refuses it).
func TestFunctionAppSettingsAreTheHandlersAzureSettings(t *testing.T) {
	files := readInfra(t)
	got := appSettingNames(t, mustFile(t, files, "infra/app/function.bicep"))
	var want []string
	for _, s := range config.Settings() {
		if s.Azure {
			want = append(want, s.Name)
		}
	}
	want = append(want, "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__clientId", "AzureWebJobsStorage__credential")
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("function app settings\n got %v\nwant %v", got, want)
	}
	for name, text := range files {
		if strings.Contains(withoutComments(text), "FUNCTIONS_WORKER_RUNTIME") {
			t.Errorf("%s sets FUNCTIONS_WORKER_RUNTIME, which Flex Consumption refuses", name)
		}
	}
	function := withoutComments(files["infra/app/function.bicep"])
	if !regexp.MustCompile(`name:\s*'custom'`).MatchString(function) || !strings.Contains(function, "'1.0'") {
		t.Error("the function app does not run the custom handler runtime 1.0")
	}
}

// TestEveryAccessTheHandlerNeedsIsGranted: the identity can read secrets,
// use the Functions storage, publish telemetry and reach Redis with Entra
// auth; the deploying user can create the first sealing key.
func TestEveryAccessTheHandlerNeedsIsGranted(t *testing.T) {
	files := readInfra(t)
	all := ""
	for _, text := range files {
		all += withoutComments(text)
	}
	for _, role := range []string{"Key Vault Secrets User", "Key Vault Secrets Officer", "Storage Blob Data Owner", "Monitoring Metrics Publisher"} {
		if !strings.Contains(all, "'"+role+"'") {
			t.Errorf("no %q role assignment in infra/", role)
		}
	}
	redis := withoutComments(mustFile(t, files, "infra/app/redis.bicep"))
	if strings.Count(redis, "accessPolicyAssignments") < 2 {
		t.Error("Redis (both kinds) needs an Entra access policy assignment for the identity")
	}
	for _, want := range []string{"clusteringPolicy: 'EnterpriseCluster'", "disableAccessKeyAuthentication: true"} {
		if !strings.Contains(redis, want) {
			t.Errorf("redis.bicep lacks %q", want)
		}
	}
}

// TestOutputsFeedTheHooks: every azd environment value the postprovision
// hooks read is an output of main.bicep.
func TestOutputsFeedTheHooks(t *testing.T) {
	files := readInfra(t)
	main := mustFile(t, files, "infra/main.bicep")
	outputs := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^output\s+([A-Z_]+)\s`).FindAllStringSubmatch(main, -1) {
		outputs[m[1]] = true
	}
	// Environment reads: ${NAME} or $NAME in sh, $env:NAME in PowerShell.
	reads := map[string]*regexp.Regexp{
		"infra/hooks/postprovision.sh":  regexp.MustCompile(`\$\{?([A-Z][A-Z_]+)`),
		"infra/hooks/postprovision.ps1": regexp.MustCompile(`\$env:([A-Z][A-Z_]+)`),
	}
	for hook, re := range reads {
		for _, m := range re.FindAllStringSubmatch(mustFile(t, files, hook), -1) {
			if !outputs[m[1]] {
				t.Errorf("%s reads %s, which main.bicep does not output", hook, m[1])
			}
		}
	}
	for _, want := range []string{"AZURE_FUNCTION_URL", "MCP_URL", "ENTRA_CLIENT_ID", "ENTRA_TENANT_ID", "KEY_VAULT_URI"} {
		if !outputs[want] {
			t.Errorf("main.bicep does not output %s", want)
		}
	}
}

// TestRedisPersistsAndRefusesToEvict: Azure Managed Redis keeps its data
// across restarts (AOF by default, an azd environment value), and never
// evicts sign-in state to make room.
func TestRedisPersistsAndRefusesToEvict(t *testing.T) {
	files := readInfra(t)
	redis := mustFile(t, files, "infra/app/redis.bicep")
	for _, want := range []string{
		"param persistence string = 'aof'",
		"persistence: persistence == 'aof'",
		"{ type: 'aof', frequency: '1s' }",
		"evictionPolicy: 'NoEviction'",
		"'maxmemory-policy': 'noeviction'",
	} {
		if !strings.Contains(redis, want) {
			t.Errorf("infra/app/redis.bicep lacks %q", want)
		}
	}
	// The choice flows from the azd environment down to the module.
	chain := map[string]string{
		"infra/main.parameters.json": `"redisPersistence": {` + "\n" + `      "value": "${REDIS_PERSISTENCE=aof}"`,
		"infra/main.bicep":           "redisPersistence: redisPersistence",
		"infra/app/resources.bicep":  "persistence: redisPersistence",
	}
	for file, want := range chain {
		if !strings.Contains(mustFile(t, files, file), want) {
			t.Errorf("%s does not pass the persistence choice on (%q)", file, want)
		}
	}
}
