// Entra ID app registration for the MCP endpoint, through the Microsoft Graph
// Bicep extension (alias microsoftGraphV1 in infra/bicepconfig.json, pinned to
// br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0).
//
// Creates, in this order (each step references an earlier one, so the Graph
// writes never race each other):
//   1. app            the application: roles, scope, pre-authorized VS Code,
//                     redirect URI, token version 2, Graph User.Read (OBO)
//   2. appIdentifier  the same application again (same uniqueName), now with
//                     identifierUris = api://<appId>
//   3. servicePrincipal  with appRoleAssignmentRequired: true
//   4. federatedCredential  trusts the function's managed identity, so MSAL
//                     signs in with a client assertion and no secret exists
//   5. graphConsent   admin consent for Graph User.Read (if grantGraphConsent)
//
// Not here: the deploying user's Task.All assignment. An appRoleAssignedTo
// has no client-provided key, and redeploying one that exists fails with
// "EntitlementGrant entry already exists" (msgraph-bicep-types#161, open),
// so the second `azd up` would fail. infra/hooks/postprovision.* assigns it
// instead, after looking it up (output taskAllRoleId).
//
// Types and the v1.0 API version come from msgraph-bicep-types
// generated/microsoftgraph/microsoft.graph/v1.0/1.0.0/types.md:
//   Microsoft.Graph/applications@v1.0
//   Microsoft.Graph/applications/federatedIdentityCredentials@v1.0
//   Microsoft.Graph/servicePrincipals@v1.0
//   Microsoft.Graph/oauth2PermissionGrants@v1.0
//
// Who can deploy this: Graph resources are written with the deploying
// identity's own Entra permissions (Application.ReadWrite.All for the
// application and its credential; creating apps is allowed to members by
// default unless the tenant turned that off, then Application Developer).
// Graph Bicep deploys only to the public cloud, and interactively only from
// Azure CLI / Azure PowerShell sign-ins (Graph Bicep known issues); the
// Azure-Samples azd templates that use this extension deploy it with azd.
//
// TEARING DOWN: `azd down --purge` does NOT delete anything declared here
// (Graph objects are not in the resource group; Azure/azure-dev#4724). Remove
// them by hand, with the client id and object id from `azd env get-value`
// (main.bicep outputs ENTRA_CLIENT_ID and ENTRA_APP_OBJECT_ID):
//   objectId=$(az ad app show --id <clientId> --query id -o tsv)
//   az ad app delete --id <clientId>       # app, its credential, its roles
//   az ad sp show --id <clientId>          # if it still exists:
//   az ad sp delete --id <clientId>        #   service principal + assignments
//   az rest --method DELETE \
//     --url https://graph.microsoft.com/v1.0/directory/deletedItems/$objectId
// The last step matters: a deleted application stays in the tenant's deleted
// items for 30 days still holding its uniqueName, and redeploying the same
// environment (same uniqueName) then fails with "Another object with the same
// value for property uniqueName already exists" (Graph Bicep known issues).
// Either purge it as above, restore it, or deploy under a new azd environment.
//
// CHANGING ROLES OR THE SCOPE LATER: Entra refuses to delete or change a
// role/scope that is enabled ("Permission (scope or role) cannot be deleted or
// updated unless disabled first"). Their ids are derived from uniqueName and
// must never change; to retire one, first deploy it with isEnabled: false,
// then remove it in a second deployment (in the role table:
// "retired": true, then delete the row).

extension microsoftGraphV1

@description('Display name of the app registration; also seeds its uniqueName.')
param appName string

@description('Host name of the function app, e.g. func-abc.azurewebsites.net (no scheme, no path). Must be the real default host name of the site.')
param functionHostName string

@description('Object (principal) id of the user-assigned managed identity the function app runs as; the federated credential trusts tokens whose subject is this id.')
param identityPrincipalId string

@description('Client id of the same managed identity. Only recorded in the federated credential description, so a person in the portal can tell which identity it trusts.')
param identityClientId string

@description('More web redirect URIs, e.g. http://localhost:7071/auth/callback to sign in against this registration from a local `func start` (Entra allows http only for localhost).')
param extraRedirectUris array = []

@description('Grant admin consent, for all users, to the Graph User.Read permission (an oauth2PermissionGrant). The deployer needs an admin role that may grant tenant-wide consent.')
param grantGraphConsent bool = false

@description('Optional GUID some tenants require on every application create/update ("ServiceManagementReference field is required"). Empty leaves it unset.')
param serviceManagementReference string = ''

// ---------------------------------------------------------------------------
// Names and ids. All deterministic, so a redeploy updates the same objects in
// place instead of creating new ones.

// uniqueName is the client-provided key Graph upserts on
// (PATCH /applications(uniqueName='...')): it is what makes this template
// idempotent. It is immutable once set. Seeded from the resource group, so one
// azd environment (one resource group) = one app registration.
var appUniqueName = '${replace(toLower(appName), ' ', '-')}-${uniqueString(subscription().id, resourceGroup().id, appName)}'

// Role and scope ids must stay the same for the life of the registration (see
// "CHANGING ROLES" above); guid() over the uniqueName gives exactly that.
var accessAsUserScopeId = guid(appUniqueName, 'scope', 'access_as_user')
var taskAllRoleId = guid(appUniqueName, 'appRole', 'Task.All')

// Visual Studio Code's first-party client id. Pre-authorizing it for
// access_as_user lets VS Code's built-in Microsoft sign-in get a token for
// this API with no consent prompt (the same value the Azure-Samples MCP
// templates pre-authorize).
var vsCodeClientId = 'aebc6443-996d-45c2-90f0-388ff96faa56'

// Microsoft Graph and its delegated User.Read permission: the handler's
// my_profile tool calls Graph on behalf of the user (OBO, default scope
// https://graph.microsoft.com/User.Read), so the registration declares it.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var graphUserReadScopeId = 'e1fe6dd8-ba31-4d61-89e7-88639da4683d'

// Must match the handler's sign-in callback route (handler/signin: the
// redirect URI is PUBLIC_BASE_URL + "/auth/callback").
var callbackUri = 'https://${functionHostName}/auth/callback'

// The FIC's name is its key on the application (identifier, URL friendly,
// immutable).
var federatedCredentialName = 'function-managed-identity'

// ---------------------------------------------------------------------------
// The application's properties, shared by both declarations below.
//
// Why both declarations carry everything: the extension upserts by uniqueName
// with PATCH, so the second one should keep what it leaves out anyway; giving
// it the full set means the second write can never drop what the first one
// set, whatever the extension does with omitted properties.

// The App Roles are the rows of the handler's role table,
// handler/authz/roles.json, which also says what each role may do, who may
// hold it (allowedMemberTypes: 'User', and 'Application' for app-only
// callers such as agents with a managed identity) and dev mode's demo
// users. Add or change roles there, not here; a test holds this loop to
// the file.
var roleTable = loadJsonContent('../../handler/authz/roles.json')
var appRoles = [for role in roleTable.roles: {
  id: guid(appUniqueName, 'appRole', role.value)
  value: role.value
  displayName: role.value
  description: role.description
  allowedMemberTypes: role.members
  isEnabled: !(role.?retired ?? false)
}]

var api = {
  // v2 access tokens (iss .../v2.0, aud = client id) are what the handler
  // verifies; without this Entra issues v1 tokens to this API.
  requestedAccessTokenVersion: 2
  oauth2PermissionScopes: [
    {
      id: accessAsUserScopeId
      value: 'access_as_user'
      // 'User': users may consent for themselves (tenant policy permitting).
      type: 'User'
      adminConsentDisplayName: 'Access the MCP server as the signed-in user'
      adminConsentDescription: 'Allows the application to call the MCP server on behalf of the signed-in user. What the user can do there is still decided by the App Roles assigned to them.'
      userConsentDisplayName: 'Access the MCP server as you'
      userConsentDescription: 'Allows the application to call the MCP server on your behalf, with the roles you have been assigned.'
      isEnabled: true
    }
  ]
  preAuthorizedApplications: [
    {
      appId: vsCodeClientId
      delegatedPermissionIds: [
        accessAsUserScopeId
      ]
    }
  ]
}

var web = {
  // A web (confidential) redirect: the handler redeems the code server-side
  // with MSAL, authenticating with the federated credential below.
  // union, not concat: Entra refuses a list with the same URI twice.
  redirectUris: union([callbackUri], extraRedirectUris)
  // Authorization code + PKCE only; no implicit flow.
  implicitGrantSettings: {
    enableAccessTokenIssuance: false
    enableIdTokenIssuance: false
  }
}

// The delegated permissions the on-behalf-of upstreams need
// (infra/upstreams.json, the file staged with the package: an upstream
// given only as MCP_UPSTREAMS is not seen here). The handler's config
// refuses two upstreams naming one API, which Entra takes only once.
var upstreamApiAccess = map(
  filter(loadJsonContent('../upstreams.json').upstreams, u => u.auth.mode == 'on-behalf-of' && contains(u.auth, 'apiPermissions')),
  u => {
    resourceAppId: u.auth.apiPermissions.resourceAppId
    resourceAccess: map(u.auth.apiPermissions.scopeIds, id => {
      id: id
      type: 'Scope'
    })
  }
)

var requiredResourceAccess = concat([
  {
    resourceAppId: microsoftGraphAppId
    resourceAccess: [
      {
        id: graphUserReadScopeId
        type: 'Scope'
      }
    ]
  }
], upstreamApiAccess)

// ---------------------------------------------------------------------------
// 1. The application, everything but identifierUris.
resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appUniqueName
  displayName: appName
  signInAudience: 'AzureADMyOrg'
  serviceManagementReference: empty(serviceManagementReference) ? null : serviceManagementReference
  appRoles: appRoles
  api: api
  web: web
  requiredResourceAccess: requiredResourceAccess
}

// 2. The same application again, adding identifierUris = api://<appId>.
//
// An application cannot reference its own appId in its own declaration
// (appId is read-only, assigned by Entra on creation), and Graph does not
// give an app the api://<appId> identifier URI by default: without it, tokens
// for api://<appId>/... fail with AADSTS500011 "resource principal named
// api://<appId> was not found" (microsoftgraph/msgraph-bicep-types#239).
// So, as in the Azure-Samples azd templates for remote MCP servers
// (Azure-Samples/azmcp-foundry-aca-mi infra/modules/entra-app.bicep, also the
// former microsoft/mcp servers/Azure.Mcp.Server/azd-templates/*/entra-app.bicep),
// the application is declared a second time with the same uniqueName: Graph
// upserts by uniqueName, so this is an update of the object created above,
// and referencing app.appId orders it after the create.
resource appIdentifier 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appUniqueName
  displayName: appName
  signInAudience: 'AzureADMyOrg'
  serviceManagementReference: empty(serviceManagementReference) ? null : serviceManagementReference
  appRoles: appRoles
  api: api
  web: web
  requiredResourceAccess: requiredResourceAccess
  identifierUris: [
    'api://${app.appId}'
  ]
}

// 3. The service principal (enterprise application) in this tenant.
// appRoleAssignmentRequired: only users (or groups) assigned one of the App
// Roles can get a token for this API at all, so an unassigned user is turned
// away by Entra before the handler sees them.
// It names appIdentifier (not app) so it is created after the last write to
// the application and so starts with its final roles.
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: appIdentifier.appId
  appRoleAssignmentRequired: true
}

// 4. Federated identity credential: the application trusts tokens that the
// function app's user-assigned managed identity gets for
// api://AzureADTokenExchange. MSAL sends such a token as its client assertion
// (ENTRA_CLIENT_AUTH=managed-identity), so the app has no secret to store or
// rotate. (Graph Bicep cannot create client secrets anyway: passwordCredentials
// are not supported, see the Graph Bicep limitations page.)
//
// Known trap: a FIC declared in the same deployment as its new application has
// been reported to fail (msgraph-bicep-types#271 "Resource 'app-fic' does not
// exist", Azure/bicep-types-az#2627 "Not Found", msgraph-bicep-types#301
// "Error in query syntax"). What the reports have in common, and what this
// declaration avoids:
// - #271/#2627 nest the FIC with a bare name ('app-fic'). The identifier must
//   be the full name '<application uniqueName>/<credential name>' (Graph Bicep
//   known issues, "Child resources"); so this is a top-level
//   Microsoft.Graph/applications/federatedIdentityCredentials resource with
//   that full name.
// - #301 writes the full name as plain text, so Bicep sees no dependency and
//   may create the FIC while the application is still being created. The
//   known-issues page: a reference to the parent in the name implies
//   dependsOn; a plain-text name needs an explicit dependsOn. Here the name
//   references appIdentifier (the last write to the application), and the
//   explicit dependsOn on the service principal adds one more completed Graph
//   write before the FIC is posted.
// If it still fails on a first deployment, rerun `azd provision` (the FIC is
// keyed by its name, so a rerun upserts it), or move this resource into its
// own module that looks the app up with `existing` by uniqueName and is
// deployed after this one, as Azure-Samples/azmcp-obo-template did for a
// while (commit f1c2c06 "Move federated identity credential to separate Bicep
// module for reliable deployment"; it later returned to this same-file form
// with a full name, commit d36c370).
resource federatedCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${appIdentifier.uniqueName}/${federatedCredentialName}'
  description: 'Lets the function app\'s managed identity (client id ${identityClientId}) sign in as this app without a secret.'
  // The identity's tokens are issued by this tenant's v2.0 issuer...
  issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  // ...with sub = the identity's object (principal) id, not its client id.
  subject: identityPrincipalId
  // Public-cloud token-exchange audience (Graph Bicep deploys only to the
  // public cloud). One value only.
  audiences: [
    'api://AzureADTokenExchange'
  ]
  dependsOn: [
    servicePrincipal
  ]
}

// 5. Admin consent for Graph User.Read, for every user (consentType
// AllPrincipals): my_profile's on-behalf-of call then works without each
// user consenting, and where the tenant lets no user consent at all.
// Graph keys a grant by [clientId, consentType, resourceId], so a redeploy
// updates the same grant instead of failing like an appRoleAssignedTo.
// Optional (main.bicep grantGraphConsent): only an administrator may grant
// it, and a deployer without the right would fail the whole provision.
resource msGraphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = if (grantGraphConsent) {
  appId: microsoftGraphAppId
}

resource graphConsent 'Microsoft.Graph/oauth2PermissionGrants@v1.0' = if (grantGraphConsent) {
  clientId: servicePrincipal.id
  consentType: 'AllPrincipals'
  resourceId: msGraphServicePrincipal.id
  // The value of graphUserReadScopeId, as an access token's scp carries it.
  scope: 'User.Read'
}

// ---------------------------------------------------------------------------
// Outputs (no secrets: there are none).

@description('Application (client) id: ENTRA_CLIENT_ID.')
output clientId string = appIdentifier.appId

@description('Application ID URI: ENTRA_APP_ID_URI (the handler\'s default is the same value).')
output appIdUri string = 'api://${appIdentifier.appId}'

@description('Object id of the service principal (enterprise application), where App Roles are assigned.')
output servicePrincipalId string = servicePrincipal.id

@description('Object id of the application (for `az ad app` and for purging it from deleted items).')
output appObjectId string = appIdentifier.id

@description('Id of the Task.All App Role: the postprovision hook assigns it to the deploying user.')
output taskAllRoleId string = taskAllRoleId

@description('uniqueName of the application (the key Graph Bicep upserts on).')
output appUniqueName string = appUniqueName

@description('Delegated scope clients request: api://<client id>/access_as_user.')
output scope string = 'api://${appIdentifier.appId}/access_as_user'
