// The Flex Consumption plan and the function app that runs the Go custom
// handler, with every app setting the handler reads in Azure. Nothing secret
// is set here: the handler gets its secrets from Key Vault and reaches every
// service with the user-assigned identity.
targetScope = 'resourceGroup'

param name string
param planName string
param location string

@description('Tags for every resource here (azd-env-name).')
param tags object

// azd finds the app to deploy to by this tag, and it must be on exactly one
// resource: azd 1.20.0-1.23.3 refuse a deployment when more than one
// resource carries it ("expecting only '1' resource tagged with
// azd-service-name"), so the plan never gets it.
@description('azure.yaml\'s service name, tagged (azd-service-name) on the site only.')
param serviceName string

@description('Resource id of the user-assigned identity.')
param identityResourceId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Object (principal) id of the user-assigned identity: its Redis user name.')
param identityPrincipalId string

param storageAccountName string

@description('https://<account>.blob.core.windows.net/<container>: where Flex Consumption keeps the deployed package.')
param deploymentContainerUrl string

param appInsightsConnectionString string
param keyVaultUri string
param redisUrl string
param entraTenantId string

@description('Application (client) id of the API\'s app registration (app/entra.bicep output clientId).')
param appClientId string

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

@description('The operator\'s choices (main.bicep operatorSettings): app setting name to value, from azd environment values. An empty value is not written, so the handler uses its default.')
param operatorSettings object

// Flex Consumption, Linux. The plan's `reserved: true` is what makes it Linux.
module plan 'br/public:avm/res/web/serverfarm:0.7.0' = {
  name: 'plan'
  params: {
    name: planName
    location: location
    tags: tags
    skuName: 'FC1'
    reserved: true
    zoneRedundant: false
  }
}

// The settings this deployment fills in (config.Settings() entries marked
// Azure), plus the Functions host's own identity-based storage connection.
// Together with the operator's choices below they are the function app's
// whole set of settings: keep this file the only place app settings are
// written; the deployment tests compare it with the handler's list.
//
// Deliberately absent:
// - FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION: Flex Consumption
//   takes the runtime from functionAppConfig.runtime and does not support
//   them as app settings.
// - AZURE_CLIENT_SECRET, ENTRA_CLIENT_SECRET, TOKEN_SEALING_KEYS: secrets come
//   from Key Vault; the handler refuses to start when AZURE_CLIENT_SECRET is set.
var deploymentSettings = {
  // Functions host storage through the identity; the account refuses shared keys.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId

  // Token verification and sign-in.
  ENTRA_TENANT_ID: entraTenantId
  ENTRA_CLIENT_ID: appClientId
  // MSAL authenticates the app with the identity's token for
  // api://AzureADTokenExchange (a federated credential on the app
  // registration trusts it): no client secret anywhere.
  ENTRA_CLIENT_AUTH: 'managed-identity'

  // The sealing keys (token-sealing-key, every enabled version).
  KEY_VAULT_URI: keyVaultUri

  // azidentity picks this user-assigned identity for Key Vault, Redis,
  // telemetry and the sign-in assertion. It is the identity's id, never the
  // app registration's.
  AZURE_CLIENT_ID: identityClientId

  REDIS_URL: redisUrl
  REDIS_AUTH: 'entra'
  // The Redis user is the identity's object id, the name its access policy
  // assignment has.
  REDIS_USERNAME: identityPrincipalId

  // Local auth is off on the component, so the connection string alone cannot
  // ingest; telemetry goes with the identity's Entra token.
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// The operator's choices that are not empty. Every one of the handler's
// settings treats empty as its default, so leaving an empty one out changes
// nothing but keeps the portal's list to what was chosen.
var chosenSettings = toObject(filter(items(operatorSettings), s => !empty(s.value)), s => s.key, s => s.value)

var appSettings = union(deploymentSettings, chosenSettings)

// MCP_ALLOWED_ORIGINS as a list, for the Functions host's CORS. On Flex
// Consumption the host answers every preflight (OPTIONS with
// Access-Control-Request-Method) itself from this list, before the handler
// sees it, and overwrites Access-Control-Allow-Origin on the replies to
// listed origins; so the host and the handler must allow exactly the same
// origins, and both read this one value. No credentials: clients send bearer
// tokens, never cookies, across origins.
var allowedOrigins = filter(map(split(operatorSettings.MCP_ALLOWED_ORIGINS, ','), o => trim(o)), o => !empty(o))

module site 'br/public:avm/res/web/site:0.24.0' = {
  name: 'site'
  params: {
    name: name
    location: location
    tags: union(tags, { 'azd-service-name': serviceName })
    kind: 'functionapp,linux'
    serverFarmResourceId: plan.outputs.resourceId
    managedIdentities: {
      userAssignedResourceIds: [
        identityResourceId
      ]
    }
    // Used by Key Vault references; the handler reads Key Vault itself, but a
    // reference added later should resolve with the same identity.
    keyVaultAccessIdentityResourceId: identityResourceId
    httpsOnly: true
    // The MCP endpoint is stateless: no ARR affinity cookie.
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      // A custom handler (host.json customHandler, the `handler` binary).
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
    // Replaces the module's default siteConfig (alwaysOn: true, a dedicated-plan
    // setting; Flex Consumption scales to zero), keeping TLS 1.2 and no FTP.
    siteConfig: {
      alwaysOn: false
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      cors: {
        allowedOrigins: allowedOrigins
        supportCredentials: false
      }
    }
    // azd deploys with an Entra token (Flex's /api/publish); nobody needs
    // FTP or SCM basic-auth publishing credentials.
    basicPublishingCredentialsPolicies: [
      {
        name: 'ftp'
        allow: false
      }
      {
        name: 'scm'
        allow: false
      }
    ]
    configs: [
      {
        name: 'appsettings'
        properties: appSettings
        // This template is the whole truth about the settings: a value added
        // by hand (say, a stray AZURE_CLIENT_SECRET) is removed on the next
        // provision instead of being merged back.
        retainCurrentAppSettings: false
      }
    ]
  }
}

output name string = site.outputs.name
output defaultHostname string = site.outputs.defaultHostname
output url string = 'https://${site.outputs.defaultHostname}'
