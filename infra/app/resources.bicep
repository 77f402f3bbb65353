// Everything the function app reaches, each granted to the one user-assigned
// identity and to nothing else: host storage and the deployment container,
// Key Vault, Redis, Log Analytics + Application Insights. No keys or
// connection strings leave this module: every service here has key-based
// access turned off.
targetScope = 'resourceGroup'

param location string
param tags object

@description('The deployment\'s resource token (uniqueString of subscription, environment, location).')
param resourceToken string

@description('Name the function app will have; the deployment container is named after it.')
param functionAppName string

@description('Name of the user-assigned identity (the alias shown in Redis access policy assignments).')
param identityName string

@description('Object (principal) id of the user-assigned identity.')
param identityPrincipalId string

@description('Object id of the principal running azd; empty skips its Key Vault role.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@allowed([
  'managed'
  'cache'
])
param redisKind string = 'managed'

@description('Azure Managed Redis data persistence: aof, rdb or disabled.')
@allowed([
  'aof'
  'rdb'
  'disabled'
])
param redisPersistence string = 'aof'

@description('Azure Managed Redis high availability: Enabled (a replica) or Disabled.')
@allowed([
  'Enabled'
  'Disabled'
])
param redisHighAvailability string = 'Enabled'

param keyVaultPurgeProtection bool = false

var abbrs = loadJsonContent('../abbreviations.json')

// Flex Consumption pulls the package from this container; the name pattern is
// the one Microsoft's Flex Consumption azd templates use.
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

// ---------------------------------------------------------------------------
// Log Analytics + Application Insights
// ---------------------------------------------------------------------------

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.16.1' = {
  name: 'loganalytics'
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    // 30 days is what the Flex samples use and is inside the free retention.
    dataRetention: 30
    features: {
      // Queries and ingestion only with Entra ID, never with workspace keys.
      disableLocalAuth: true
    }
  }
}

module appInsights 'br/public:avm/res/insights/component:0.8.0' = {
  name: 'appinsights'
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    // Instrumentation-key ingestion is refused: telemetry needs an Entra
    // token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=...;Authorization=AAD),
    // so the connection string in the app settings is not a credential.
    disableLocalAuth: true
    // Keep client IP addresses out of the telemetry (the module's default
    // stores them unmasked).
    disableIpMasking: false
    retentionInDays: 30
    roleAssignments: [
      {
        // Needed to send telemetry with an Entra token (/v2.1/track).
        roleDefinitionIdOrName: 'Monitoring Metrics Publisher'
        principalId: identityPrincipalId
        principalType: 'ServicePrincipal'
      }
    ]
  }
}

// ---------------------------------------------------------------------------
// Storage: AzureWebJobsStorage for the Functions host, and the Flex
// Consumption deployment container.
// ---------------------------------------------------------------------------

module storage 'br/public:avm/res/storage/storage-account:0.33.0' = {
  name: 'storage'
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    kind: 'StorageV2'
    // The host keeps only locks, keys and diagnostics here; the module's
    // default (geo-redundant) would double the cost for nothing.
    skuName: 'Standard_LRS'
    // Shared keys (and so SAS and connection strings with keys) are refused;
    // the host and the deployment both use the identity.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // No virtual network in this deployment: the Flex instances reach the
    // account over its public endpoint, authenticated by the identity.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containers: [
        {
          name: deploymentContainerName
          publicAccess: 'None'
        }
      ]
    }
    roleAssignments: [
      // Blob: the deployment package, and the host's keys and locks.
      {
        roleDefinitionIdOrName: 'Storage Blob Data Owner'
        principalId: identityPrincipalId
        principalType: 'ServicePrincipal'
      }
      // Queue and Table: granted as Microsoft's Flex Consumption samples do;
      // the host writes diagnostic events to Table storage and some host
      // features use queues.
      {
        roleDefinitionIdOrName: 'Storage Queue Data Contributor'
        principalId: identityPrincipalId
        principalType: 'ServicePrincipal'
      }
      {
        roleDefinitionIdOrName: 'Storage Table Data Contributor'
        principalId: identityPrincipalId
        principalType: 'ServicePrincipal'
      }
    ]
  }
}

// ---------------------------------------------------------------------------
// Key Vault: the token-sealing key (and the client secret in secret mode).
// Bicep never holds a secret value: the postprovision hook creates the first
// version of `token-sealing-key`, once.
// ---------------------------------------------------------------------------

module keyVault 'br/public:avm/res/key-vault/vault:0.14.0' = {
  name: 'keyvault'
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    sku: 'standard'
    // Data access only through Azure RBAC role assignments, never access policies.
    enableRbacAuthorization: true
    enableSoftDelete: true
    // The shortest retention Key Vault allows: a soft-deleted vault keeps its
    // name reserved for this long after `azd down` without --purge.
    softDeleteRetentionInDays: 7
    enablePurgeProtection: keyVaultPurgeProtection
    // Nothing here is for VMs, ARM template parameters or disk encryption.
    enableVaultForDeployment: false
    enableVaultForTemplateDeployment: false
    enableVaultForDiskEncryption: false
    // No virtual network: the handler reaches the vault publicly, with the
    // identity's token; the postprovision hook does the same from your machine.
    publicNetworkAccess: 'Enabled'
    roleAssignments: concat(
      [
        {
          // Read the secrets (all enabled versions of the sealing key).
          roleDefinitionIdOrName: 'Key Vault Secrets User'
          principalId: identityPrincipalId
          principalType: 'ServicePrincipal'
        }
      ],
      empty(principalId)
        ? []
        : [
            {
              // Create the first sealing key (postprovision) and rotate it.
              roleDefinitionIdOrName: 'Key Vault Secrets Officer'
              principalId: principalId
              principalType: principalType
            }
          ]
    )
  }
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

module redis 'redis.bicep' = {
  name: 'redis'
  params: {
    kind: redisKind
    persistence: redisPersistence
    highAvailability: redisHighAvailability
    name: redisKind == 'managed'
      ? '${abbrs.cacheRedisEnterprise}${resourceToken}'
      : '${abbrs.cacheRedis}${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identityPrincipalId
    identityName: identityName
  }
}

output storageAccountName string = storage.outputs.name
output deploymentContainerUrl string = '${storage.outputs.primaryBlobEndpoint}${deploymentContainerName}'
output appInsightsName string = appInsights.outputs.name
// Not a credential: local (instrumentation-key) auth is disabled above.
output appInsightsConnectionString string = appInsights.outputs.connectionString
output keyVaultName string = keyVault.outputs.name
output keyVaultUri string = keyVault.outputs.uri
output redisName string = redis.outputs.name
output redisUrl string = redis.outputs.url
