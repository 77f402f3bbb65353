package config

import (
	"strconv"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
)

// Setting is one environment variable the handler reads in production
// mode. The list is the contract between the code, infra/ (which sets the
// function app's settings), local.settings.sample.json (func start) and
// the README's Configuration table; the deployment tests compare them.
type Setting struct {
	Name string
	// Default is the value an unset setting means, as it would be written,
	// where the handler has one such value (the README's default column
	// starts with it, and infra/main.parameters.json may only repeat it);
	// empty where the default is none, derived (api://<client id>) or
	// owned by another package (the task budget, the reuse grace).
	Default string
	// Azure: infra/ sets it on the function app from what the deployment
	// itself creates (ids, addresses); nobody chooses it.
	Azure bool
	// Operator: the operator chooses it, as an azd environment value of
	// the same name (`azd env set NAME value`) that infra/ writes into the
	// function app's settings when it is not empty. Provisioning replaces
	// the app settings, so a value set by hand in the portal is lost on the
	// next `azd provision`; an azd environment value is not.
	Operator bool
	// Local: local.settings.sample.json lists it for func start.
	Local bool
	// Platform: the Functions host or App Service sets it; nobody
	// configures it.
	Platform bool
}

// Settings lists every setting the handler reads in production mode.
// Those neither Azure nor Operator keep their defaults in Azure because the
// deployment fixes them: v2 tokens and api://<client id> (infra's app
// registration), the public cloud (Graph Bicep deploys only there) and the
// sealing key's secret name (the postprovision hook creates it).
func Settings() []Setting {
	return []Setting{
		{Name: "FUNCTIONS_CUSTOMHANDLER_PORT", Platform: true},
		{Name: "WEBSITE_HOSTNAME", Platform: true},
		{Name: "WEBSITE_SITE_NAME", Platform: true}, // telemetry's role name
		{Name: "IDENTITY_ENDPOINT", Platform: true}, // the managed identity (azcred)
		{Name: "MSI_ENDPOINT", Platform: true},
		{Name: "PUBLIC_BASE_URL", Local: true, Operator: true}, // empty: https://$WEBSITE_HOSTNAME
		{Name: "ENTRA_TENANT_ID", Azure: true, Local: true},
		{Name: "ENTRA_CLIENT_ID", Azure: true, Local: true},
		{Name: "ENTRA_AUTHORITY_HOST", Local: true, Default: DefaultAuthorityHost},
		{Name: "ENTRA_ALLOWED_TENANTS", Operator: true},
		{Name: "ENTRA_TOKEN_VERSION", Default: "2"},
		{Name: "ENTRA_APP_ID_URI"},
		{Name: "ENTRA_CLIENT_AUTH", Azure: true, Default: string(ClientAuthSecret)},
		{Name: "ENTRA_CLIENT_SECRET", Local: true},
		{Name: "TOKEN_SEALING_KEYS", Local: true},
		{Name: "KEY_VAULT_URI", Azure: true},
		{Name: "KEY_VAULT_CLIENT_SECRET_NAME", Default: DefaultClientSecretName},
		{Name: "KEY_VAULT_SEALING_KEY_NAME", Default: DefaultSealingKeyName},
		{Name: "AZURE_CLIENT_ID", Azure: true},
		{Name: "AZURE_CLIENT_SECRET"}, // read only to refuse it (azcred)
		{Name: "REDIS_URL", Azure: true, Local: true},
		{Name: "REDIS_AUTH", Azure: true},
		{Name: "REDIS_USERNAME", Azure: true},
		{Name: "APPLICATIONINSIGHTS_CONNECTION_STRING", Azure: true},
		{Name: "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", Azure: true},
		{Name: "GRAPH_BASE_URL", Default: DefaultGraphBaseURL},
		{Name: "GRAPH_SCOPE", Default: DefaultGraphScope},
		{Name: "AUTH_ALLOWED_RETURN_URLS", Operator: true},
		{Name: "MCP_ALLOWED_ORIGINS", Operator: true}, // also the host's CORS list
		{Name: "MCP_AUTH_MODE", Local: true, Operator: true, Default: string(AuthModeProxy)},
		{Name: "OAUTH_EXTRA_REDIRECT_SCHEMES", Operator: true},
		{Name: "ROLE_MAP", Operator: true},
		{Name: "MCP_UPSTREAMS", Operator: true}, // empty: the shipped upstreams.json
		{Name: "TOOL_CALLS_PER_MINUTE", Operator: true, Default: strconv.Itoa(DefaultToolCallsPerMinute)},
		{Name: "TOOL_CALLS_BURST", Operator: true, Default: strconv.Itoa(DefaultToolCallsBurst)},
		{Name: "TASKS_MAX_BYTES_PER_TENANT", Operator: true},
		{Name: "CLIENT_IP_HEADER", Operator: true, Default: clientip.DefaultHeader},
		{Name: "REFRESH_REUSE_GRACE", Operator: true},
		{Name: "LOG_LEVEL", Local: true, Operator: true, Default: "info"},
	}
}
