// azd entry point: `azd up` deploys this at subscription scope.
//
// Order, and why it is this order:
//   1. the resource group and the one user-assigned managed identity;
//   2. the Entra app registration (app/entra.bicep). It needs the identity
//      (federated credential) and the function's host name (redirect URI);
//      the host name is built from the site name, so it does not wait for the
//      function app;
//   3. storage, Key Vault, Redis, Log Analytics + Application Insights
//      (app/resources.bicep), which need only the identity;
//   4. the plan and the function app with its app settings (app/function.bicep),
//      which need the app registration's client id. Nothing flows back from 4
//      to 2, so there is no cycle.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; also makes the resource names unique.')
param environmentName string

// Not restricted with @allowed: the regions offering Flex Consumption and
// Azure Managed Redis keep growing, and a stale list would block valid ones.
// infra/hooks/preprovision.* asks Azure instead, before anything is created.
@minLength(1)
@description('Region for every resource. It must offer Flex Consumption and (with redisKind = managed) Azure Managed Redis.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the principal running azd (AZURE_PRINCIPAL_ID). It gets Key Vault Secrets Officer so the postprovision hook can create the first sealing key; the hook also assigns it Task.All (a user only). Empty skips both.')
param principalId string = ''

@description('Kind of the principal running azd: User for `azd auth login` as a person, ServicePrincipal in CI.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('managed: Azure Managed Redis (Microsoft.Cache/redisEnterprise). cache: Azure Cache for Redis (Microsoft.Cache/redis), which Microsoft is retiring: creating new Basic/Standard/Premium caches is blocked for new customers since 2026-04-01 and for everyone from 2026-10-01.')
@allowed([
  'managed'
  'cache'
])
param redisKind string = 'managed'

// Without persistence a Redis restart (maintenance, a failover without a
// replica) loses every session, one-time code, remembered consent,
// registration and task. Azure Managed Redis offers AOF (every second) and
// RDB snapshots on the Balanced tier this deployment uses; AOF loses at most
// about a second. Azure Cache for Redis (redisKind = cache) persists only on
// Premium, which this deployment does not use: there the setting is ignored.
@description('Azure Managed Redis data persistence: aof (append-only file, fsync every second), rdb (a snapshot every hour) or disabled.')
@allowed([
  'aof'
  'rdb'
  'disabled'
])
param redisPersistence string = 'aof'

// Off by default, on purpose: purge protection cannot be turned off again, and
// while it is on `azd down --purge` cannot purge the vault, so the same
// environment name cannot be provisioned again until the soft-delete retention
// (7 days here) runs out. The vault only holds the token-sealing key (losing
// it signs users out, nothing more) and, in secret mode, a client secret that
// can be re-issued. Turn it on where policy requires it:
// `azd env set KEY_VAULT_PURGE_PROTECTION true`.
@description('Enable Key Vault purge protection (irreversible; blocks `azd down --purge` from purging the vault).')
param keyVaultPurgeProtection bool = false

@description('Memory per Flex Consumption instance, in MB (FUNCTION_INSTANCE_MEMORY_MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on Flex Consumption instances; it also caps what a flood of requests can cost (FUNCTION_MAXIMUM_INSTANCES).')
param maximumInstanceCount int = 40

// ---------------------------------------------------------------------------
// The operator's choices. Each is an azd environment value named like the
// handler's setting (`azd env set NAME value`, then `azd provision`), mapped
// in main.parameters.json, and written into the function app's settings by
// app/function.bicep. Provisioning replaces the app settings
// (retainCurrentAppSettings: false), so a value set by hand in the portal is
// gone after the next `azd up`: this is the one way to choose them. Empty
// means the handler's default, and an empty value is not written at all.
// README "Configuration" says what each does; config.Settings() marks them
// Operator, and a Go test holds this list, main.parameters.json and
// app/function.bicep to it.

// proxy: the function app is the OAuth authorization server MCP clients see
// (client registration, consent, PKCE) and signs users in with Entra ID.
// entra: Protected Resource Metadata names Entra ID itself, for clients with
// built-in Entra support. `azd env set MCP_AUTH_MODE entra`.
@description('MCP_AUTH_MODE: how MCP clients sign in: proxy (this app is their OAuth authorization server) or entra (they go to Entra ID directly).')
@allowed([
  'proxy'
  'entra'
])
param mcpAuthMode string = 'proxy'

// On Flex Consumption the Functions host answers every CORS preflight
// itself, before the handler sees it, from siteConfig.cors; app/function.bicep
// builds that list from this same value, so the host and the handler allow
// exactly the same origins.
@description('MCP_ALLOWED_ORIGINS: comma-separated browser origins (https://app.example.com) that may call /mcp, the OAuth and the session endpoints; also the Functions host\'s CORS list. Empty: none.')
param mcpAllowedOrigins string = ''

@description('AUTH_ALLOWED_RETURN_URLS: comma-separated exact URLs /auth/login may send a one-time code to. Empty: none.')
param authAllowedReturnUrls string = ''

@description('OAUTH_EXTRA_REDIRECT_SCHEMES: comma-separated custom URI schemes without a dot OAuth clients may register (cursor). Empty: none.')
param oauthExtraRedirectSchemes string = ''

// Also registered as a redirect URI (<url>/auth/callback) on the app
// registration, so sign-in works at a custom domain.
@description('PUBLIC_BASE_URL: the URL clients use, such as https://mcp.contoso.com (a custom domain you bound to the function app). Empty: the function app\'s own https://<name>.azurewebsites.net.')
param publicBaseUrl string = ''

@description('ROLE_MAP: the role table, quote-free (Task.Read=tasks.read;Task.All=tasks.read+tasks.write): azd puts the value into the parameters file unescaped, so JSON with quotes does not survive. Empty: the default table.')
param roleMap string = ''

@description('MCP_UPSTREAMS: the upstream MCP servers fronted here, as base64 of the JSON infra/upstreams.json holds (azd puts values into the parameters file unescaped, so JSON with quotes does not survive). Empty: the upstreams.json shipped in the package.')
param mcpUpstreams string = ''

@description('LOG_LEVEL: debug, info, warn or error. Empty: info.')
param logLevel string = ''

@description('CLIENT_IP_HEADER: the header holding the caller\'s address (X-Azure-SocketIP behind a locked-down Front Door), or none. Empty: X-Forwarded-For as the Functions host sets it.')
param clientIpHeader string = ''

@description('REFRESH_REUSE_GRACE: how long a rotated refresh token presented again still gets a successor, 0 to 5m. Empty: 30s.')
param refreshReuseGrace string = ''

@description('TOOL_CALLS_PER_MINUTE: tools/call per caller per minute, 1-60000. Empty: the default.')
param toolCallsPerMinute string = ''

@description('TOOL_CALLS_BURST: tool calls a caller may make at once, 1-10000. Empty: the default.')
param toolCallsBurst string = ''

@description('TASKS_MAX_BYTES_PER_TENANT: each tenant\'s task storage in bytes, 65536-1073741824. Empty: the default.')
param tasksMaxBytesPerTenant string = ''

// The app registration is single-tenant (AzureADMyOrg), so other tenants'
// tokens only exist once it is made multi-tenant by hand.
@description('ENTRA_ALLOWED_TENANTS: comma-separated tenant ids whose tokens are accepted. Empty: this tenant only.')
param entraAllowedTenants string = ''

var operatorSettings = {
  MCP_AUTH_MODE: mcpAuthMode
  MCP_ALLOWED_ORIGINS: mcpAllowedOrigins
  AUTH_ALLOWED_RETURN_URLS: authAllowedReturnUrls
  OAUTH_EXTRA_REDIRECT_SCHEMES: oauthExtraRedirectSchemes
  PUBLIC_BASE_URL: publicBaseUrl
  ROLE_MAP: roleMap
  MCP_UPSTREAMS: mcpUpstreams
  LOG_LEVEL: logLevel
  CLIENT_IP_HEADER: clientIpHeader
  REFRESH_REUSE_GRACE: refreshReuseGrace
  TOOL_CALLS_PER_MINUTE: toolCallsPerMinute
  TOOL_CALLS_BURST: toolCallsBurst
  TASKS_MAX_BYTES_PER_TENANT: tasksMaxBytesPerTenant
  ENTRA_ALLOWED_TENANTS: entraAllowedTenants
}

// ---------------------------------------------------------------------------
// Deployment choices that are not app settings.

// To sign in against this app registration from a local `func start`, add
// http://localhost:7071/auth/callback (Entra allows http only for
// localhost). The registration's redirect URIs are this template's: a URI
// added by hand (az ad app update --web-redirect-uris replaces the list) is
// gone after the next provision.
@description('More web redirect URIs for the app registration, comma-separated (ENTRA_EXTRA_REDIRECT_URIS). Empty: only the function app\'s own callback (and PUBLIC_BASE_URL\'s).')
param entraExtraRedirectUris string = ''

// Off by default: granting tenant-wide consent needs an administrator
// (Privileged Role Administrator, Cloud Application Administrator or
// Application Administrator, with DelegatedPermissionGrant.ReadWrite.All),
// and a deployer without those rights would see the whole provision fail.
// Without it, sign-in still works (it asks only for this API's own scope),
// and my_profile answers a tool error naming the consent an administrator
// must grant (Graph User.Read for this app), unless the user consented to it
// already. `azd env set GRANT_GRAPH_CONSENT true` as an administrator, or
// grant it in the admin center (App registrations, API permissions).
@description('Grant admin consent (all users) for the Microsoft Graph User.Read permission my_profile uses (GRANT_GRAPH_CONSENT). Needs an administrator.')
param grantGraphConsent bool = false

// Enabled by default, as Azure Managed Redis itself defaults: a replica on a
// second node (about double the price of the cache) that takes over within
// seconds when a node fails or is patched, and the availability SLA, which
// needs it. Without it, every patch or node failure makes the cache
// unreachable until the node is back, and everything here needs Redis
// (sign-in, tokens, rate limits, tasks); AOF persistence (REDIS_PERSISTENCE)
// still brings the data back. Choose before the first `azd up`: high
// availability cannot be turned off on an existing cache. Disabled suits a
// trial or development deployment: `azd env set REDIS_HIGH_AVAILABILITY
// Disabled`. Azure Cache for Redis (redisKind = cache) ignores it: its Basic
// tier has no replica.
@description('Azure Managed Redis high availability: Enabled (a replica, about double the cost, the SLA) or Disabled (REDIS_HIGH_AVAILABILITY). Cannot be disabled on an existing cache.')
@allowed([
  'Enabled'
  'Disabled'
])
param redisHighAvailability string = 'Enabled'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// azure.yaml's service name; azd finds the function app by this tag.
var serviceName = 'mcp'

var functionAppName = '${abbrs.webSitesFunctions}${serviceName}-${resourceToken}'

// The redirect URI needs the host name before the site exists. A site that
// does not opt into regional host names (autoGeneratedDomainNameLabelScope,
// not set in app/function.bicep) is served at <name>.azurewebsites.net in the
// public cloud. AZURE_FUNCTION_URL below uses the host name the site reports,
// so a difference would show up as a redirect-URI mismatch at sign-in.
var functionHostName = '${functionAppName}.azurewebsites.net'

// The address clients use: PUBLIC_BASE_URL when the operator chose one (the
// handler drops a trailing slash, and so does this), else the site's own.
var publicBase = empty(publicBaseUrl)
  ? 'https://${functionHostName}'
  : take(publicBaseUrl, length(publicBaseUrl) - (endsWith(publicBaseUrl, '/') ? 1 : 0))

// The app registration's redirect URIs beyond the site's own callback: the
// public base URL's callback (the handler's redirect URI is PUBLIC_BASE_URL
// + /auth/callback) and the operator's extra ones.
var extraRedirectUris = concat(
  empty(publicBaseUrl) ? [] : ['${publicBase}/auth/callback'],
  filter(map(split(entraExtraRedirectUris, ','), u => trim(u)), u => !empty(u))
)

// The postprovision hook creates the first version of this secret; the
// handler's default KEY_VAULT_SEALING_KEY_NAME is the same name.
var sealingKeySecretName = 'token-sealing-key'

resource rg 'Microsoft.Resources/resourceGroups@2024-11-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// One identity for everything the handler and the Functions host reach:
// host storage, the deployment container, Key Vault, Redis, Application
// Insights, and the federated credential that replaces a client secret.
module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.6.0' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${serviceName}-${resourceToken}'
    location: location
    tags: tags
  }
}

module entra 'app/entra.bicep' = {
  name: 'entra'
  scope: rg
  params: {
    // Display name of the app registration; entra.bicep makes its uniqueName
    // unique per resource group.
    appName: '${serviceName}-${environmentName}'
    functionHostName: functionHostName
    identityPrincipalId: identity.outputs.principalId
    identityClientId: identity.outputs.clientId
    extraRedirectUris: extraRedirectUris
    grantGraphConsent: grantGraphConsent
  }
}

module backing 'app/resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    functionAppName: functionAppName
    identityName: identity.outputs.name
    identityPrincipalId: identity.outputs.principalId
    principalId: principalId
    principalType: principalType
    redisKind: redisKind
    redisPersistence: redisPersistence
    redisHighAvailability: redisHighAvailability
    keyVaultPurgeProtection: keyVaultPurgeProtection
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    identityResourceId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: backing.outputs.storageAccountName
    deploymentContainerUrl: backing.outputs.deploymentContainerUrl
    appInsightsConnectionString: backing.outputs.appInsightsConnectionString
    keyVaultUri: backing.outputs.keyVaultUri
    redisUrl: backing.outputs.redisUrl
    entraTenantId: tenant().tenantId
    appClientId: entra.outputs.clientId
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    operatorSettings: operatorSettings
  }
}

// Outputs azd stores in the environment (`azd env get-values`), where the
// hooks read them; none of them is a secret. An output is never named like
// an azd environment value main.parameters.json reads (it would feed the
// next provision) unless it carries that same value back (MCP_AUTH_MODE,
// REDIS_KIND).
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_MCP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_URL string = functionApp.outputs.url
output MCP_URL string = empty(publicBaseUrl) ? '${functionApp.outputs.url}/mcp' : '${publicBase}/mcp'
output ENTRA_TENANT_ID string = tenant().tenantId
output ENTRA_CLIENT_ID string = entra.outputs.clientId
// For the postprovision hook's Task.All assignment, and for purging the
// deleted app registration after `azd down` (README "Tear down").
output ENTRA_APP_OBJECT_ID string = entra.outputs.appObjectId
output ENTRA_SERVICE_PRINCIPAL_ID string = entra.outputs.servicePrincipalId
output ENTRA_TASK_ALL_ROLE_ID string = entra.outputs.taskAllRoleId
// Who ran azd: the hook assigns Task.All to a User (AZURE_PRINCIPAL_ID and
// AZURE_PRINCIPAL_TYPE are azd's own, filled in at each provision).
output DEPLOYER_PRINCIPAL_ID string = principalId
output DEPLOYER_PRINCIPAL_TYPE string = principalType
output KEY_VAULT_NAME string = backing.outputs.keyVaultName
output KEY_VAULT_URI string = backing.outputs.keyVaultUri
output TOKEN_SEALING_KEY_SECRET_NAME string = sealingKeySecretName
output REDIS_KIND string = redisKind
output MCP_AUTH_MODE string = mcpAuthMode
