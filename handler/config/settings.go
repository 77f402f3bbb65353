package config

// Setting is one environment variable the handler reads in production
// mode. The list is the contract between the code, infra/ (which sets the
// function app's settings) and local.settings.sample.json (func start);
// the deployment tests compare all three.
type Setting struct {
	Name string
	// Azure: infra/ sets it on the function app.
	Azure bool
	// Local: local.settings.sample.json lists it for func start.
	Local bool
	// Platform: the Functions host or App Service sets it; nobody
	// configures it.
	Platform bool
}

// Settings lists every setting the handler reads in production mode.
func Settings() []Setting {
	return []Setting{
		{Name: "FUNCTIONS_CUSTOMHANDLER_PORT", Platform: true},
		{Name: "WEBSITE_HOSTNAME", Platform: true},
		{Name: "WEBSITE_SITE_NAME", Platform: true}, // telemetry's role name
		{Name: "IDENTITY_ENDPOINT", Platform: true}, // the managed identity (azcred)
		{Name: "MSI_ENDPOINT", Platform: true},
		{Name: "PUBLIC_BASE_URL", Local: true}, // in Azure: https://$WEBSITE_HOSTNAME
		{Name: "ENTRA_TENANT_ID", Azure: true, Local: true},
		{Name: "ENTRA_CLIENT_ID", Azure: true, Local: true},
		{Name: "ENTRA_AUTHORITY_HOST", Local: true},
		{Name: "ENTRA_ALLOWED_TENANTS"},
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
		{Name: "AUTH_ALLOWED_RETURN_URLS"},
		{Name: "MCP_ALLOWED_ORIGINS"},
		{Name: "MCP_AUTH_MODE", Azure: true, Local: true},
		{Name: "OAUTH_EXTRA_REDIRECT_SCHEMES"},
		{Name: "ROLE_MAP"},
		{Name: "TOOL_CALLS_PER_MINUTE"},
		{Name: "TOOL_CALLS_BURST"},
		{Name: "TASKS_MAX_BYTES_PER_TENANT"},
		{Name: "CLIENT_IP_HEADER"},
		{Name: "REFRESH_REUSE_GRACE"},
		{Name: "LOG_LEVEL", Local: true},
	}
}
