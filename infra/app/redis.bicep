// Redis for sign-in flows, sessions, rate limits and tasks, reached only with
// the identity's Entra token (REDIS_AUTH=entra: user = the identity's object
// id, password = a token for https://redis.azure.com). Access keys are off in
// both kinds, so there is no key to leak; TLS only.
targetScope = 'resourceGroup'

@description('managed: Azure Managed Redis. cache: Azure Cache for Redis (being retired).')
@allowed([
  'managed'
  'cache'
])
param kind string = 'managed'

@description('Azure Managed Redis data persistence: aof (fsync every second), rdb (hourly snapshots) or disabled. Azure Cache for Redis persists only on Premium, which is not used here.')
@allowed([
  'aof'
  'rdb'
  'disabled'
])
param persistence string = 'aof'

@description('Azure Managed Redis high availability: Enabled (a replica on a second node, about double the cost, needed for the SLA) or Disabled. Cannot be disabled on an existing cache. Azure Cache for Redis Basic has no replica either way.')
@allowed([
  'Enabled'
  'Disabled'
])
param highAvailability string = 'Enabled'

param name string
param location string
param tags object

@description('Object (principal) id of the user-assigned identity; it becomes the Redis user.')
param identityPrincipalId string

@description('Display alias for the identity in Azure Cache for Redis access policy assignments.')
param identityName string

// Access policy assignment names must match ^[A-Za-z0-9]{1,60}$ (Azure Managed
// Redis API 2025-07-01): a GUID's dashes are refused, and the AVM module's
// default name is the raw object id, so name it explicitly.
var assignmentName = replace(identityPrincipalId, '-', '')

// Azure Managed Redis (Microsoft.Cache/redisEnterprise).
module managed 'br/public:avm/res/cache/redis-enterprise:0.5.1' = if (kind == 'managed') {
  name: 'redis-managed'
  params: {
    name: name
    location: location
    tags: tags
    // The smallest Azure Managed Redis SKU the module accepts.
    skuName: 'Balanced_B0'
    highAvailability: highAvailability
    minimumTlsVersion: '1.2'
    // No virtual network in this deployment; Entra auth is the gate.
    publicNetworkAccess: 'Enabled'
    database: {
      accessKeysAuthentication: 'Disabled'
      clientProtocol: 'Encrypted'
      // The handler uses a plain (non-cluster) go-redis client and Lua scripts
      // over several keys. The module's default, OSSCluster, needs a
      // cluster-aware client and answers a plain one with MOVED. The policy
      // cannot be changed on an existing database.
      clusteringPolicy: 'EnterpriseCluster'
      // Refuse writes when full instead of silently evicting keys with a TTL:
      // those are sign-in state, refresh-handle chains and reuse tombstones,
      // and losing a tombstone would let a rotated handle's reuse go unnoticed.
      evictionPolicy: 'NoEviction'
      // The module's tagged union (0.5.1, API 2025-07-01): AOF fsyncs every
      // second, RDB snapshots hourly. Without it a restart loses every
      // session, code, registration and task.
      persistence: persistence == 'aof'
        ? { type: 'aof', frequency: '1s' }
        : persistence == 'rdb' ? { type: 'rdb', frequency: '1h' } : { type: 'disabled' }
      port: 10000
      accessPolicyAssignments: [
        {
          name: assignmentName
          userObjectId: identityPrincipalId
          // The only policy Azure Managed Redis offers.
          accessPolicyName: 'default'
        }
      ]
    }
  }
}

// Azure Cache for Redis (Microsoft.Cache/redis), for subscriptions that still
// may create one.
module cache 'br/public:avm/res/cache/redis:0.18.0' = if (kind == 'cache') {
  name: 'redis-cache'
  params: {
    name: name
    location: location
    tags: tags
    // Smallest tier (C0 Basic: one node, no SLA). Use Standard for a replica.
    skuName: 'Basic'
    capacity: 0
    disableAccessKeyAuthentication: true
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    redisConfiguration: {
      'aad-enabled': 'true'
      // See the eviction note on Azure Managed Redis above.
      'maxmemory-policy': 'noeviction'
    }
    accessPolicyAssignments: [
      {
        name: assignmentName
        objectId: identityPrincipalId
        objectIdAlias: identityName
        // Read and write without the @dangerous commands; the handler needs
        // none of them (no KEYS, FLUSH*, CONFIG, INFO in production).
        accessPolicyName: 'Data Contributor'
      }
    ]
  }
}

output name string = kind == 'managed' ? managed!.outputs.name : cache!.outputs.name
output hostName string = kind == 'managed' ? managed!.outputs.hostName : cache!.outputs.hostName
// rediss:// is TLS. Azure Managed Redis listens on 10000, Azure Cache for
// Redis on 6380 (its TLS port). Only database 0 exists in Azure Managed Redis.
output url string = kind == 'managed'
  ? 'rediss://${managed!.outputs.hostName}:${managed!.outputs.port}/0'
  : 'rediss://${cache!.outputs.hostName}:${cache!.outputs.sslPort}/0'
