package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// TestUpstreamAPIPermissions: the app registration asks for the delegated
// permissions the on-behalf-of upstreams name, read from the same
// upstreams.json the package ships (so an admin can consent to them, and
// provisioning never drops them), alongside Graph's.
func TestUpstreamAPIPermissions(t *testing.T) {
	t.Parallel()
	entra := mustFile(t, readInfra(t), "infra/app/entra.bicep")
	load := regexp.MustCompile(`filter\(loadJsonContent\('([^']+)'\)\.upstreams, u => u\.auth\.mode == '([a-z-]+)' && contains\(u\.auth, 'apiPermissions'\)\)`).FindStringSubmatch(entra)
	if load == nil {
		t.Fatal("entra.bicep does not read the upstreams' apiPermissions from upstreams.json")
	}
	if got := filepath.ToSlash(filepath.Join("infra/app", load[1])); got != upstreamsJSON {
		t.Errorf("entra.bicep loads %s, want %s, the file staged with the package", got, upstreamsJSON)
	}
	if load[2] != string(config.UpstreamOnBehalfOf) {
		t.Errorf("entra.bicep picks mode %q, want %q", load[2], config.UpstreamOnBehalfOf)
	}
	for _, want := range []string{
		"resourceAppId: u.auth.apiPermissions.resourceAppId",
		"resourceAccess: map(u.auth.apiPermissions.scopeIds, id => {",
		"type: 'Scope'",
		"], upstreamApiAccess)",
		"requiredResourceAccess: requiredResourceAccess",
	} {
		if !strings.Contains(entra, want) {
			t.Errorf("entra.bicep lacks %q", want)
		}
	}
	// The field names Bicep reads are the ones the handler's parser reads.
	b, _ := json.Marshal(config.UpstreamAuth{APIPermissions: &config.APIPermissions{ResourceAppID: "a", ScopeIDs: []string{"b"}}})
	for _, field := range []string{`"apiPermissions"`, `"resourceAppId"`, `"scopeIds"`, `"mode"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("config.UpstreamAuth encodes as %s, without %s", b, field)
		}
	}
}

// TestAppRegistrationMatchesTheHandler: the App Roles are the role table's,
// the scope is the one clients ask for, tokens are v2 as the verifier
// expects by default, and the redirect URI is the handler's callback.
func TestAppRegistrationMatchesTheHandler(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	entra := mustFile(t, files, "infra/app/entra.bicep")

	// The App Roles are a loop over the role table itself.
	load := regexp.MustCompile(`var roleTable = loadJsonContent\('([^']+)'\)`).FindStringSubmatch(entra)
	if load == nil {
		t.Fatal("entra.bicep does not load the role table (var roleTable = loadJsonContent('.../handler/authz/roles.json'))")
	}
	if got := filepath.ToSlash(filepath.Join("infra/app", load[1])); got != "handler/authz/roles.json" {
		t.Errorf("entra.bicep loads %s as the role table, want handler/authz/roles.json, the file the handler embeds", got)
	}
	for _, want := range []string{
		"var appRoles = [for role in roleTable.roles: {",
		"id: guid(appUniqueName, 'appRole', role.value)",
		"value: role.value",
		"description: role.description",
		"allowedMemberTypes: role.members",
		"isEnabled: !(role.?retired ?? false)",
		"appRoles: appRoles",
	} {
		if !strings.Contains(entra, want) {
			t.Errorf("entra.bicep lacks %q: its App Roles must be the role table's rows", want)
		}
	}
	// The postprovision hook assigns the deploying user the role the
	// output names: it must be a live row of the table.
	m := regexp.MustCompile(`var taskAllRoleId = guid\(appUniqueName, 'appRole', '([^']+)'\)`).FindStringSubmatch(entra)
	if m == nil {
		t.Fatal("entra.bicep has no taskAllRoleId")
	}
	if r, ok := authz.DefaultTable().Role(m[1]); !ok || r.Retired || !r.AllowsMember(authz.MemberUser) {
		t.Errorf("the deploying user is given role %q, which handler/authz/roles.json has not as a live role for users", m[1])
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
	t.Parallel()
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

// deploymentSettingNames reads the keys of `var deploymentSettings = { ... }`
// in infra/app/function.bicep: the settings the deployment fills in.
func deploymentSettingNames(t *testing.T, function string) []string {
	t.Helper()
	return objectKeys(block(t, "infra/app/function.bicep", function, "var deploymentSettings = {"))
}

// parameterEnv reads main.parameters.json: each parameter's value text
// (such as "${NAME=default}").
func parameterEnv(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	var pf struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(mustFile(t, files, "infra/main.parameters.json")), &pf); err != nil {
		t.Fatalf("main.parameters.json: %v", err)
	}
	out := map[string]string{}
	for name, p := range pf.Parameters {
		if v, ok := p.Value.(string); ok {
			out[name] = v
		}
	}
	return out
}

// bicepParam reports whether text declares `param name <type>`.
func bicepParam(text, name, typ string) bool {
	return regexp.MustCompile(`(?m)^param ` + regexp.QuoteMeta(name) + ` ` + typ + `\b`).MatchString(withoutComments(text))
}

// TestOnlyTheSiteCarriesTheServiceTag: azd finds the app by its
// azd-service-name tag, and azd 1.20.0-1.23.3 refuse to deploy when more
// than one resource carries it (the App Service plan did).
func TestOnlyTheSiteCarriesTheServiceTag(t *testing.T) {
	t.Parallel()
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

// TestFunctionAppSettingsAreTheHandlersAzureSettings: the settings the
// deployment fills in are exactly those config.Settings marks Azure, plus the
// Functions host's identity-based storage settings; never
// FUNCTIONS_WORKER_RUNTIME (Flex Consumption refuses it).
func TestFunctionAppSettingsAreTheHandlersAzureSettings(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	got := deploymentSettingNames(t, mustFile(t, files, "infra/app/function.bicep"))
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
	t.Parallel()
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
	t.Parallel()
	files := readInfra(t)
	main := mustFile(t, files, "infra/main.bicep")
	outputs := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^output\s+([A-Z_]+)\s`).FindAllStringSubmatch(main, -1) {
		outputs[m[1]] = true
	}
	// Before the first provision there are no outputs: preprovision may read
	// only what azd itself sets and the azd environment values
	// main.parameters.json reads.
	before := map[string]bool{"AZURE_LOCATION": true, "AZURE_SUBSCRIPTION_ID": true}
	for _, v := range parameterEnv(t, files) {
		for _, m := range regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(v, -1) {
			before[m[1]] = true
		}
	}
	// Environment reads: ${NAME} or $NAME in sh, $env:NAME in PowerShell.
	sh, ps := regexp.MustCompile(`\$\{?([A-Z][A-Z_]+)`), regexp.MustCompile(`\$env:([A-Z][A-Z_]+)`)
	for _, hook := range []struct {
		file  string
		re    *regexp.Regexp
		known map[string]bool
		from  string
	}{
		{"infra/hooks/postprovision.sh", sh, outputs, "main.bicep outputs"},
		{"infra/hooks/postprovision.ps1", ps, outputs, "main.bicep outputs"},
		{"infra/hooks/preprovision.sh", sh, before, "azd or main.parameters.json sets before provisioning"},
		{"infra/hooks/preprovision.ps1", ps, before, "azd or main.parameters.json sets before provisioning"},
	} {
		t.Run(hook.file, func(t *testing.T) {
			for _, m := range hook.re.FindAllStringSubmatch(mustFile(t, files, hook.file), -1) {
				if !hook.known[m[1]] {
					t.Errorf("%s reads %s, which is not among what %s", hook.file, m[1], hook.from)
				}
			}
		})
	}
	for _, want := range []string{"AZURE_FUNCTION_URL", "MCP_URL", "ENTRA_CLIENT_ID", "ENTRA_TENANT_ID", "KEY_VAULT_URI"} {
		if !outputs[want] {
			t.Errorf("main.bicep does not output %s", want)
		}
	}
	// An output named like an environment value the parameters read would
	// feed the next provision; only those carrying the same value back may.
	for name := range outputs {
		if before[name] && name != "AZURE_LOCATION" && name != "MCP_AUTH_MODE" && name != "REDIS_KIND" {
			t.Errorf("main.bicep outputs %s, which main.parameters.json reads back on the next provision", name)
		}
	}
}

// TestRedisPersistsAndRefusesToEvict: Azure Managed Redis keeps its data
// across restarts (AOF by default, an azd environment value), and never
// evicts sign-in state to make room.
func TestRedisPersistsAndRefusesToEvict(t *testing.T) {
	t.Parallel()
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

// TestOperatorChoicesSurviveProvisioning: provisioning replaces the function
// app's settings, so every setting config.Settings marks Operator is an azd
// environment value of the same name (${NAME=...} in main.parameters.json)
// feeding a main.bicep parameter, which goes into operatorSettings, which
// app/function.bicep writes into the app settings next to its own.
func TestOperatorChoicesSurviveProvisioning(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	main := mustFile(t, files, "infra/main.bicep")
	params := parameterEnv(t, files)
	body := block(t, "infra/main.bicep", withoutComments(main), "var operatorSettings = {")
	entry := regexp.MustCompile(`(?m)^\s*([A-Z][A-Z0-9_]*):\s*([A-Za-z][A-Za-z0-9]*)\s*$`)
	valueOf := map[string]string{}
	for _, m := range entry.FindAllStringSubmatch(body, -1) {
		valueOf[m[1]] = m[2]
	}
	var want []string
	for _, st := range config.Settings() {
		if !st.Operator {
			continue
		}
		want = append(want, st.Name)
		t.Run(st.Name, func(t *testing.T) {
			param, ok := valueOf[st.Name]
			if !ok {
				t.Fatalf("main.bicep operatorSettings lacks %s: NAME: parameterName", st.Name)
			}
			if !bicepParam(main, param, "string") {
				t.Errorf("main.bicep declares no `param %s string`", param)
			}
			if v := params[param]; !strings.HasPrefix(v, "${"+st.Name+"=") || !strings.HasSuffix(v, "}") {
				t.Errorf("main.parameters.json %s = %q, want \"${%s=<default>}\"", param, v, st.Name)
			}
		})
	}
	sort.Strings(want)
	if got := objectKeys(body); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("operatorSettings in main.bicep\n got %v\nwant %v (config.Settings marked Operator)", got, want)
	}

	if !regexp.MustCompile(`(?m)^    operatorSettings: operatorSettings$`).MatchString(withoutComments(main)) {
		t.Error("main.bicep does not hand operatorSettings to the function module")
	}
	function := withoutComments(mustFile(t, files, "infra/app/function.bicep"))
	for _, want := range []string{
		"param operatorSettings object",
		"var chosenSettings = toObject(filter(items(operatorSettings), s => !empty(s.value)), s => s.key, s => s.value)",
		"var appSettings = union(deploymentSettings, chosenSettings)",
		"properties: appSettings",
		"retainCurrentAppSettings: false",
	} {
		if !strings.Contains(function, want) {
			t.Errorf("app/function.bicep lacks %q", want)
		}
	}
}

// TestOneCORSPolicy: the Functions host answers browser preflights itself on
// Flex Consumption, from siteConfig.cors; that list is MCP_ALLOWED_ORIGINS,
// the same value the handler reads, without credentials.
func TestOneCORSPolicy(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	function := withoutComments(mustFile(t, files, "infra/app/function.bicep"))
	cors := block(t, "infra/app/function.bicep", block(t, "infra/app/function.bicep", function, "siteConfig: {"), "cors: {")
	for _, want := range []string{"allowedOrigins: allowedOrigins", "supportCredentials: false"} {
		if !strings.Contains(cors, want) {
			t.Errorf("siteConfig.cors lacks %q", want)
		}
	}
	if !strings.Contains(function, "var allowedOrigins = filter(map(split(operatorSettings.MCP_ALLOWED_ORIGINS, ','), o => trim(o)), o => !empty(o))") {
		t.Error("the host's CORS list is not built from operatorSettings.MCP_ALLOWED_ORIGINS")
	}
	if v := parameterEnv(t, files)["mcpAllowedOrigins"]; v != "${MCP_ALLOWED_ORIGINS=}" {
		t.Errorf("mcpAllowedOrigins = %q, want empty by default", v)
	}
}

// TestProvisioningTwiceWorks: nothing in the templates fails on the second
// `azd up`. An appRoleAssignedTo has no client-provided key and fails when
// it exists (msgraph-bicep-types#161); the hook assigns Task.All instead,
// from the role id main.bicep outputs, after looking the assignment up.
func TestProvisioningTwiceWorks(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	for name, text := range files {
		if strings.Contains(withoutComments(text), "Microsoft.Graph/appRoleAssignedTo") {
			t.Errorf("%s declares an appRoleAssignedTo, which fails when redeployed", name)
		}
	}
	entra := withoutComments(mustFile(t, files, "infra/app/entra.bicep"))
	if !strings.Contains(entra, "output taskAllRoleId string = taskAllRoleId") {
		t.Error("entra.bicep does not output the Task.All role id")
	}
	if !strings.Contains(withoutComments(mustFile(t, files, "infra/main.bicep")), "output ENTRA_TASK_ALL_ROLE_ID string = entra.outputs.taskAllRoleId") {
		t.Error("main.bicep does not output ENTRA_TASK_ALL_ROLE_ID")
	}
	sh := mustFile(t, files, "infra/hooks/postprovision.sh")
	ps := mustFile(t, files, "infra/hooks/postprovision.ps1")
	for hook, text := range map[string]string{"postprovision.sh": sh, "postprovision.ps1": ps} {
		t.Run(hook, func(t *testing.T) {
			lookup := strings.Index(text, "appRoleAssignments")
			assign := strings.Index(text, "appRoleAssignedTo")
			if lookup < 0 || assign < 0 || lookup > assign {
				t.Errorf("%s does not look the Task.All assignment up before assigning it", hook)
			}
			if !strings.Contains(text, "ENTRA_TASK_ALL_ROLE_ID") {
				t.Errorf("%s does not take the role id from ENTRA_TASK_ALL_ROLE_ID", hook)
			}
		})
	}
}

// TestGraphConsentIsOptIn: admin consent for User.Read (all users) is
// declared, idempotent by Graph's composite key, and only with
// GRANT_GRAPH_CONSENT=true.
func TestGraphConsentIsOptIn(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	entra := withoutComments(mustFile(t, files, "infra/app/entra.bicep"))
	grant := block(t, "infra/app/entra.bicep", entra, "resource graphConsent 'Microsoft.Graph/oauth2PermissionGrants@v1.0' = if (grantGraphConsent) {")
	for _, want := range []string{"clientId: servicePrincipal.id", "consentType: 'AllPrincipals'", "resourceId: msGraphServicePrincipal.id", "scope: 'User.Read'"} {
		if !strings.Contains(grant, want) {
			t.Errorf("the consent grant lacks %q", want)
		}
	}
	if !strings.Contains(entra, "appId: microsoftGraphAppId") || !strings.Contains(entra, "'00000003-0000-0000-c000-000000000000'") {
		t.Error("the grant's resource is not Microsoft Graph's service principal")
	}
	if !strings.HasSuffix(config.DefaultGraphScope, "/User.Read") {
		t.Errorf("the handler asks Graph for %s, the grant gives User.Read", config.DefaultGraphScope)
	}
	if !bicepParam(entra, "grantGraphConsent", "bool = false") || !bicepParam(mustFile(t, files, "infra/main.bicep"), "grantGraphConsent", "bool = false") {
		t.Error("grantGraphConsent is not a bool parameter, false by default")
	}
	if v := parameterEnv(t, files)["grantGraphConsent"]; v != "${GRANT_GRAPH_CONSENT=false}" {
		t.Errorf("grantGraphConsent = %q", v)
	}
}

// TestRedirectURIsForLocalRunsAndCustomDomains: the app registration's
// redirect URIs are the template's, so the extra ones (a local func start's
// callback) come from ENTRA_EXTRA_REDIRECT_URIS, and a PUBLIC_BASE_URL gets
// its own callback registered.
func TestRedirectURIsForLocalRunsAndCustomDomains(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	main := withoutComments(mustFile(t, files, "infra/main.bicep"))
	if v := parameterEnv(t, files)["entraExtraRedirectUris"]; v != "${ENTRA_EXTRA_REDIRECT_URIS=}" {
		t.Errorf("entraExtraRedirectUris = %q", v)
	}
	for _, want := range []string{
		"filter(map(split(entraExtraRedirectUris, ','), u => trim(u)), u => !empty(u))",
		"'${publicBase}" + httpapi.PathCallback + "'",
		"extraRedirectUris: extraRedirectUris",
	} {
		if !strings.Contains(main, want) {
			t.Errorf("main.bicep lacks %q", want)
		}
	}
	if !strings.Contains(withoutComments(mustFile(t, files, "infra/app/entra.bicep")), "redirectUris: union([callbackUri], extraRedirectUris)") {
		t.Error("entra.bicep does not register the extra redirect URIs")
	}
}

// TestRedisHighAvailabilityIsAChoice: the Azure Managed Redis replica (and
// its cost) is an azd environment value passed down to the module.
func TestRedisHighAvailabilityIsAChoice(t *testing.T) {
	t.Parallel()
	files := readInfra(t)
	if v := parameterEnv(t, files)["redisHighAvailability"]; v != "${REDIS_HIGH_AVAILABILITY=Enabled}" {
		t.Errorf("redisHighAvailability = %q", v)
	}
	chain := map[string]string{
		"infra/main.bicep":          "redisHighAvailability: redisHighAvailability",
		"infra/app/resources.bicep": "highAvailability: redisHighAvailability",
		"infra/app/redis.bicep":     "highAvailability: highAvailability",
	}
	for file, want := range chain {
		if !strings.Contains(withoutComments(mustFile(t, files, file)), want) {
			t.Errorf("%s does not pass the high-availability choice on (%q)", file, want)
		}
	}
}

// fakeAZ stands in for the Azure CLI in the hook tests: it logs every call
// to $AZ_LOG and answers from FAKE_* variables, keeping what it must
// remember (Forbidden answers left, a recovery, a secret's value) in
// $AZ_STATE. An unexpected command fails loudly.
const fakeAZ = `#!/bin/sh
printf '%s\n' "$*" >>"$AZ_LOG"
case "$1 $2 $3" in
"account show "*)
  [ -n "${FAKE_TENANT:-}" ] || { echo "ERROR: Please run 'az login' to setup account." >&2; exit 1; }
  echo "$FAKE_TENANT" ;;
"keyvault secret list")
  n=$(cat "$AZ_STATE/forbidden" 2>/dev/null || echo "${FAKE_FORBIDDEN:-0}")
  if [ "$n" -gt 0 ]; then
    echo $((n - 1)) >"$AZ_STATE/forbidden"
    echo "ERROR: (Forbidden) Caller is not authorized to perform action on resource." >&2
    exit 1
  fi
  if [ -n "${FAKE_LIST_ERROR:-}" ]; then echo "ERROR: $FAKE_LIST_ERROR" >&2; exit 1; fi
  printf '%s\n' ${FAKE_SECRETS:-} ;;
"keyvault secret list-deleted")
  printf '%s\n' ${FAKE_DELETED:-} ;;
"keyvault secret recover")
  : >"$AZ_STATE/recovered" ;;
"keyvault secret show")
  [ -f "$AZ_STATE/recovered" ] ;;
"keyvault secret set")
  while [ $# -gt 0 ]; do
    if [ "$1" = --file ]; then cp "$2" "$AZ_STATE/secret"; fi
    shift
  done ;;
"rest --method get")
  echo "${FAKE_HELD:-0}" ;;
"rest --method post")
  : ;;
"functionapp list-flexconsumption-locations "*)
  printf '%s\n' "${FAKE_FLEX:-}" ;;
"provider show -n")
  printf '%s\n' "${FAKE_AMR:-}" ;;
*)
  echo "fake az: unexpected az $*" >&2
  exit 2 ;;
esac
`

// fakeGo stands for `go run ./handler/stage -check-settings` in the hooks:
// it records where it ran and with what, and fails when FAKE_GO_ERROR is
// set, as the real check does for a bad setting. (The check itself is
// config.CheckOperatorSettings, tested in handler/config, and the flag by
// TestCheckSettingsFlag.)
const fakeGo = `#!/bin/sh
echo "$PWD $*" >>"$GO_LOG"
if [ -n "${FAKE_GO_ERROR:-}" ]; then echo "stage: $FAKE_GO_ERROR" >&2; exit 1; fi
echo "operator settings: ok"
`

// hookRun is one run of an infra/hooks/*.sh script.
type hookRun struct {
	code           int
	stdout, stderr string
	calls          []string // az's arguments, one call a line
	sleeps         int
	state          string // the fake az's state folder
}

// runHook runs hook (a file in infra/hooks) as azd would, with env and a
// PATH holding only the tools the hooks use, a sleep that returns at once
// (counted), and the fake az unless withAZ is false. No real az is ever
// reachable, whatever the machine has installed.
func runHook(t *testing.T, hook string, env map[string]string, withAZ bool) hookRun {
	t.Helper()
	bin, state := t.TempDir(), t.TempDir()
	for _, tool := range []string{"sh", "sed", "grep", "tr", "mktemp", "head", "base64", "cat", "rm", "cp", "dirname"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s on PATH", tool)
		}
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("sleep", "#!/bin/sh\necho >>\"$SLEEP_LOG\"\n")
	if withAZ {
		write("az", fakeAZ)
	}
	if env["FAKE_GO"] != "missing" {
		write("go", fakeGo)
	}
	azLog, sleepLog := filepath.Join(state, "az.log"), filepath.Join(state, "sleep.log")
	cmd := exec.Command(filepath.Join(bin, "sh"), filepath.Join(moduleRoot, "infra", "hooks", hook))
	cmd.Env = []string{"PATH=" + bin, "TMPDIR=" + t.TempDir(), "AZ_LOG=" + azLog, "AZ_STATE=" + state, "SLEEP_LOG=" + sleepLog,
		"GO_LOG=" + filepath.Join(state, "go.log")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	run := hookRun{stdout: stdout.String(), stderr: stderr.String(), state: state}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		run.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if b, err := os.ReadFile(azLog); err == nil {
		run.calls = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	if b, err := os.ReadFile(sleepLog); err == nil {
		run.sleeps = strings.Count(string(b), "\n")
	}
	return run
}

// called reports how many az calls start with prefix.
func (r hookRun) called(prefix string) int {
	n := 0
	for _, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// TestPostprovisionHook runs postprovision.sh against a fake az: it checks
// az and its tenant before anything else, waits only while Key Vault says
// Forbidden, creates the sealing key once (never on a command line),
// recovers a soft-deleted one, and assigns Task.All once, after looking it
// up.
func TestPostprovisionHook(t *testing.T) {
	t.Parallel()
	const tenant = "aaaaaaaa-1111-4111-8111-111111111111"
	const user = "bbbbbbbb-2222-4222-8222-222222222222"
	const sp = "cccccccc-3333-4333-8333-333333333333"
	const role = "dddddddd-4444-4444-8444-444444444444"
	outputs := func(more ...string) map[string]string {
		env := map[string]string{
			"KEY_VAULT_NAME": "kv-test", "TOKEN_SEALING_KEY_SECRET_NAME": "token-sealing-key",
			"ENTRA_TENANT_ID": tenant, "ENTRA_CLIENT_ID": "eeeeeeee-5555-4555-8555-555555555555",
			"ENTRA_SERVICE_PRINCIPAL_ID": sp, "ENTRA_TASK_ALL_ROLE_ID": role,
			"DEPLOYER_PRINCIPAL_ID": user, "DEPLOYER_PRINCIPAL_TYPE": "User",
			"MCP_URL": "https://func-x.azurewebsites.net/mcp", "AZURE_FUNCTION_URL": "https://func-x.azurewebsites.net",
			"FAKE_TENANT": strings.ToUpper(tenant), // tenants compare without case
		}
		for i := 0; i+1 < len(more); i += 2 {
			env[more[i]] = more[i+1]
		}
		return env
	}
	failsFirst := func(t *testing.T, r hookRun, line string) {
		t.Helper()
		if r.code != 1 || !strings.Contains(r.stderr, line) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("exit %d, stderr %q; want exit 1 and the one line %q", r.code, r.stderr, line)
		}
		if r.called("keyvault") != 0 || r.sleeps != 0 {
			t.Errorf("went on to Key Vault (%v) or waited (%d sleeps)", r.calls, r.sleeps)
		}
	}

	t.Run("az missing", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs(), false)
		failsFirst(t, r, "the Azure CLI (az) is not installed")
	})
	t.Run("az not signed in", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("FAKE_TENANT", ""), true)
		failsFirst(t, r, "az is not signed in: run az login --tenant "+tenant)
	})
	t.Run("az in another tenant", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("FAKE_TENANT", "ffffffff-6666-4666-8666-666666666666"), true)
		failsFirst(t, r, "az is signed into tenant ffffffff-6666-4666-8666-666666666666, but azd deployed to tenant "+tenant)
	})
	t.Run("first provision", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("FAKE_FORBIDDEN", "2"), true)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if r.sleeps != 2 || !strings.Contains(r.stdout, "Waiting for your Key Vault role assignment") {
			t.Errorf("waited %d times for two Forbidden answers; stdout %q", r.sleeps, r.stdout)
		}
		key, err := os.ReadFile(filepath.Join(r.state, "secret"))
		if err != nil || !regexp.MustCompile(`^[A-Za-z0-9+/]{43}=$`).Match(key) {
			t.Errorf("sealing key %q (%v), want 32 bytes in base64", key, err)
		}
		for _, c := range r.calls {
			if len(key) > 0 && strings.Contains(c, string(key)) {
				t.Error("the sealing key was on az's command line")
			}
		}
		lookup := fmt.Sprintf("rest --method get --url https://graph.microsoft.com/v1.0/users/%s/appRoleAssignments?$filter=resourceId%%20eq%%20%s", user, sp)
		body := fmt.Sprintf(`{"principalId":"%s","resourceId":"%s","appRoleId":"%s"}`, user, sp, role)
		if r.called(lookup) != 1 || r.called("rest --method post --url https://graph.microsoft.com/v1.0/servicePrincipals/"+sp+"/appRoleAssignedTo") != 1 || !strings.Contains(strings.Join(r.calls, "\n"), body) {
			t.Errorf("Task.All not looked up then assigned with %s:\n%s", body, strings.Join(r.calls, "\n"))
		}
		if !strings.Contains(r.stdout, "https://func-x.azurewebsites.net/auth/login") {
			t.Errorf("no sign-in address in %q", r.stdout)
		}
	})
	t.Run("second provision", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("FAKE_SECRETS", "other token-sealing-key", "FAKE_HELD", "1"), true)
		if r.code != 0 || r.called("keyvault secret set") != 0 || r.called("rest --method post") != 0 {
			t.Errorf("exit %d (%s); a second run must change nothing:\n%s", r.code, r.stderr, strings.Join(r.calls, "\n"))
		}
		if !strings.Contains(r.stdout, "already holds token-sealing-key") || !strings.Contains(r.stdout, "You already hold Task.All") {
			t.Errorf("stdout %q", r.stdout)
		}
	})
	t.Run("soft-deleted key", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("FAKE_DELETED", "token-sealing-key", "FAKE_HELD", "1"), true)
		if r.code != 0 || r.called("keyvault secret recover --vault-name kv-test --name token-sealing-key") != 1 || r.called("keyvault secret set") != 0 {
			t.Errorf("exit %d (%s); want the key recovered, not replaced:\n%s", r.code, r.stderr, strings.Join(r.calls, "\n"))
		}
	})
	t.Run("Key Vault unreachable", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("FAKE_LIST_ERROR", "Failed to resolve kv-test.vault.azure.net"), true)
		if r.code != 1 || r.sleeps != 0 || !strings.Contains(r.stderr, "Failed to resolve") {
			t.Errorf("exit %d, %d sleeps, stderr %q; want a failure at once naming the cause", r.code, r.sleeps, r.stderr)
		}
	})
	t.Run("service principal deployer", func(t *testing.T) {
		r := runHook(t, "postprovision.sh", outputs("DEPLOYER_PRINCIPAL_TYPE", "ServicePrincipal"), true)
		if r.code != 0 || r.called("rest") != 0 {
			t.Errorf("exit %d (%s); want no App Role assignment for a service principal:\n%s", r.code, r.stderr, strings.Join(r.calls, "\n"))
		}
	})
}

// TestPreprovisionHook runs preprovision.sh against a fake az: a region
// without Flex Consumption or (for REDIS_KIND=managed) Azure Managed Redis
// stops the provision with one line; when az cannot be asked it warns and
// goes on.
func TestPreprovisionHook(t *testing.T) {
	t.Parallel()
	env := func(more ...string) map[string]string {
		e := map[string]string{
			"AZURE_LOCATION": "swedencentral", "AZURE_SUBSCRIPTION_ID": "99999999-9999-4999-8999-999999999999",
			"FAKE_FLEX": "eastus\nswedencentral", "FAKE_AMR": "East US\nSweden Central",
		}
		for i := 0; i+1 < len(more); i += 2 {
			e[more[i]] = more[i+1]
		}
		return e
	}
	for _, c := range []struct {
		name   string
		env    map[string]string
		withAZ bool
		code   int
		stderr string
	}{
		{"region offers both", env(), true, 0, ""},
		{"no Flex Consumption", env("FAKE_FLEX", "eastus"), true, 1, "region swedencentral does not offer Flex Consumption"},
		{"no Azure Managed Redis", env("FAKE_AMR", "East US"), true, 1, "region swedencentral offers Flex Consumption but not Azure Managed Redis"},
		{"only a longer name matches", env("AZURE_LOCATION", "eastus", "FAKE_FLEX", "eastus2", "FAKE_AMR", "East US 2"), true, 1, "region eastus does not offer Flex Consumption"},
		{"display name and case", env("AZURE_LOCATION", "EastUS", "FAKE_FLEX", "East US", "FAKE_AMR", "East US"), true, 0, ""},
		{"Azure Cache for Redis", env("FAKE_AMR", "East US", "REDIS_KIND", "cache"), true, 0, ""},
		{"az missing", env(), false, 0, "the Azure CLI (az) is not installed; region not checked"},
		{"az answers nothing", env("FAKE_FLEX", ""), true, 0, "az could not list the Flex Consumption regions"},
		{"location not chosen yet", env("AZURE_LOCATION", ""), true, 0, "AZURE_LOCATION is not set yet; region not checked"},
		{"a setting the handler would refuse", env("FAKE_GO_ERROR", "ROLE_MAP: unknown need"), true, 1, "ROLE_MAP: unknown need"},
		{"Go missing", env("FAKE_GO", "missing"), true, 1, "Go is not installed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runHook(t, "preprovision.sh", c.env, c.withAZ)
			if r.code != c.code || (c.stderr == "") != (r.stderr == "") || !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, c.code, c.stderr)
			}
			if c.env["FAKE_GO"] != "missing" {
				checked, _ := os.ReadFile(filepath.Join(r.state, "go.log"))
				root, _ := filepath.Abs(moduleRoot)
				if want := root + " run ./handler/stage -check-settings\n"; !sameDirLine(string(checked), want) {
					t.Errorf("settings check ran as %q, want %q", checked, want)
				}
			}
			if (c.env["FAKE_GO_ERROR"] != "" || c.env["FAKE_GO"] == "missing") && len(r.calls) != 0 {
				t.Errorf("az asked after the settings check failed: %v", r.calls)
			}
			if c.env["FAKE_GO_ERROR"] != "" || c.env["FAKE_GO"] == "missing" {
				return
			}
			if c.withAZ && c.env["AZURE_LOCATION"] != "" && r.called("functionapp list-flexconsumption-locations --subscription 99999999-9999-4999-8999-999999999999") != 1 {
				t.Errorf("Flex Consumption regions not asked for in azd's subscription: %v", r.calls)
			}
			if c.env["REDIS_KIND"] == "cache" && r.called("provider") != 0 {
				t.Error("asked for Azure Managed Redis regions with REDIS_KIND=cache")
			}
		})
	}
}

// sameDirLine compares a fake go's log line "<dir> <args>" with want,
// resolving the directory (the hook reaches the root through ../..).
func sameDirLine(got, want string) bool {
	dir, args, ok := strings.Cut(strings.TrimSpace(got), " ")
	wdir, wargs, _ := strings.Cut(strings.TrimSpace(want), " ")
	if !ok || args != wargs {
		return false
	}
	a, err1 := filepath.EvalSymlinks(dir)
	b, err2 := filepath.EvalSymlinks(wdir)
	return err1 == nil && err2 == nil && a == b
}

// TestOneRequestItemPerCall: the handler sends its own request telemetry
// (handler/telemetry), so the Functions host's Host.Results category, which
// writes a second request item for every invocation (Error would still
// duplicate the failures), is off; the handler's console lines still go to
// Application Insights as traces.
func TestOneRequestItemPerCall(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	var host struct {
		Logging struct {
			LogLevel map[string]string `json:"logLevel"`
		} `json:"logging"`
	}
	if err := json.Unmarshal(b, &host); err != nil {
		t.Fatalf("host.json: %v", err)
	}
	levels := host.Logging.LogLevel
	if levels["Host.Results"] != "None" {
		t.Errorf("host.json Host.Results = %q, want None: the host would add its own request item to the handler's", levels["Host.Results"])
	}
	if levels["Host.Function.Console"] != "Information" {
		t.Errorf("host.json Host.Function.Console = %q, want Information: the handler's log lines would be dropped", levels["Host.Function.Console"])
	}
}
