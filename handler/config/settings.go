package config

// Setting is one environment variable the handler reads in production
// mode. The list is the contract between the code, infra/ (which sets the
// function app's settings) and local.settings.sample.json (func start);
// the deployment tests compare all three.
type Setting struct {
	Name string
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
		{Name: "ENTRA_AUTHORITY_HOST", Local: true},
		{Name: "ENTRA_ALLOWED_TENANTS", Operator: true},
		{Name: "ENTRA_TOKEN_VERSION"},
		{Name: "ENTRA_APP_ID_URI"},
		{Name: "ENTRA_CLIENT_AUTH", Azure: true},
		{Name: "ENTRA_CLIENT_SECRET", Local: true},
		{Name: "TOKEN_SEALING_KEYS", Local: true},
		{Name: "KEY_VAULT_URI", Azure: true},
		{Name: "KEY_VAULT_CLIENT_SECRET_NAME"},
		{Name: "KEY_VAULT_SEALING_KEY_NAME"},
		{Name: "AZURE_CLIENT_ID", Azure: true},
		{Name: "AZURE_CLIENT_SECRET"}, // read only to refuse it (azcred)
		{Name: "REDIS_URL", Azure: true, Local: true},
		{Name: "REDIS_AUTH", Azure: true},
		{Name: "REDIS_USERNAME", Azure: true},
		{Name: "APPLICATIONINSIGHTS_CONNECTION_STRING", Azure: true},
		{Name: "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", Azure: true},
		{Name: "GRAPH_BASE_URL"},
		{Name: "GRAPH_SCOPE"},
		{Name: "AUTH_ALLOWED_RETURN_URLS", Operator: true},
		{Name: "MCP_ALLOWED_ORIGINS", Operator: true}, // also the host's CORS list
		{Name: "MCP_AUTH_MODE", Local: true, Operator: true},
		{Name: "OAUTH_EXTRA_REDIRECT_SCHEMES", Operator: true},
		{Name: "ROLE_MAP", Operator: true},
		{Name: "TOOL_CALLS_PER_MINUTE", Operator: true},
		{Name: "TOOL_CALLS_BURST", Operator: true},
		{Name: "TASKS_MAX_BYTES_PER_TENANT", Operator: true},
		{Name: "CLIENT_IP_HEADER", Operator: true},
		{Name: "REFRESH_REUSE_GRACE", Operator: true},
		{Name: "LOG_LEVEL", Local: true, Operator: true},
	}
}
