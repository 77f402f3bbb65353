# azd postprovision hook (Windows, PowerShell 7). Same steps as
# postprovision.sh:
# 0. az installed and signed into the tenant azd deployed to, checked first;
# 1. the first token-sealing key, created once and never overwritten (a
#    soft-deleted one is recovered);
# 2. Task.All for the deploying user, looked up first (not in Bicep:
#    redeploying an existing assignment fails there, msgraph-bicep-types#161);
# 3. how to connect a client.
$ErrorActionPreference = 'Stop'

function Fail([string]$message) {
  [Console]::Error.WriteLine("postprovision: $message")
  exit 1
}

function Warn([string]$message) {
  [Console]::Error.WriteLine("postprovision: warning: $message")
}

# Invoke-Az runs az with the given arguments and returns its exit status,
# its output and the first line it wrote to stderr.
# Stderr goes to a file with ErrorActionPreference Continue: PowerShell
# before 7.2 turns a native command's stderr lines into errors that Stop
# would throw on.
function Invoke-Az {
  $ErrorActionPreference = 'Continue'
  $errPath = (New-TemporaryFile).FullName
  try {
    $out = & az @args 2>$errPath
    $ok = $LASTEXITCODE -eq 0
    $err = (Get-Content -Path $errPath -TotalCount 1) -join ''
  } finally {
    Remove-Item -Path $errPath -Force
  }
  [pscustomobject]@{ Ok = $ok; Out = (@($out) -join "`n").Trim(); Err = $err }
}

$secretName = if ($env:TOKEN_SEALING_KEY_SECRET_NAME) { $env:TOKEN_SEALING_KEY_SECRET_NAME } else { 'token-sealing-key' }
$vault = $env:KEY_VAULT_NAME
$tenant = $env:ENTRA_TENANT_ID
if (-not $vault -or -not $tenant) { Fail 'KEY_VAULT_NAME or ENTRA_TENANT_ID is not set; was the infrastructure provisioned?' }

# --- 0. az, signed into the right tenant ----------------------------------
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
  Fail "the Azure CLI (az) is not installed: install it (https://aka.ms/azure-cli), run az login --tenant $tenant, then azd provision"
}
$account = Invoke-Az account show --query tenantId -o tsv
if (-not $account.Ok -or -not $account.Out) { Fail "az is not signed in: run az login --tenant $tenant, then azd provision" }
if ($account.Out.ToLowerInvariant() -ne $tenant.ToLowerInvariant()) {
  Fail "az is signed into tenant $($account.Out), but azd deployed to tenant ${tenant}: run az login --tenant $tenant, then azd provision"
}

# --- 1. the sealing key ---------------------------------------------------
# Wait only while the vault says Forbidden (the role assignment is still
# applying); fail at once on anything else.
$list = $null
for ($i = 1; ; $i++) {
  $list = Invoke-Az keyvault secret list --vault-name $vault --query '[].name' -o tsv
  if ($list.Ok) { break }
  if ($list.Err -notmatch '(?i)forbidden') { Fail "cannot list the secrets of Key Vault ${vault}: $($list.Err)" }
  if ($i -ge 12) { Fail "Key Vault $vault still refuses you after two minutes: check that you hold Key Vault Secrets Officer on it ($($list.Err))" }
  if ($i -eq 1) { Write-Host 'Waiting for your Key Vault role assignment to apply (up to two minutes)...' }
  Start-Sleep -Seconds 10
}

$deleted = $null
if (($list.Out -split "`r?`n") -contains $secretName) {
  Write-Host "Key Vault $vault already holds ${secretName}: left as it is."
} elseif (($deleted = Invoke-Az keyvault secret list-deleted --vault-name $vault --query "[?name=='$secretName'].name" -o tsv).Ok -and $deleted.Out) {
  # Deleted but recoverable: a new value would be refused (409), and the old
  # key still opens the sessions it sealed. Recovery is asynchronous.
  Write-Host "Key Vault $vault holds $secretName soft-deleted: recovering it."
  $recover = Invoke-Az keyvault secret recover --vault-name $vault --name $secretName -o none
  if (-not $recover.Ok) { Fail "cannot recover the soft-deleted $secretName in Key Vault ${vault}: $($recover.Err)" }
  for ($i = 1; -not (Invoke-Az keyvault secret show --vault-name $vault --name $secretName --query id -o none).Ok; $i++) {
    if ($i -ge 30) { Fail "the recovery of $secretName in Key Vault $vault has not finished after a minute; run azd provision again" }
    Start-Sleep -Seconds 2
  }
  Write-Host "Recovered $secretName in Key Vault $vault."
} else {
  # The value goes through a file, never a command line.
  $bytes = New-Object byte[] 32
  [System.Security.Cryptography.RandomNumberGenerator]::Fill($bytes)
  $file = New-TemporaryFile
  try {
    [System.IO.File]::WriteAllText($file.FullName, [Convert]::ToBase64String($bytes))
    $set = Invoke-Az keyvault secret set --vault-name $vault --name $secretName --file $file.FullName --content-type 'base64 32-byte AES key' --query id -o none
  } finally { Remove-Item -Path $file.FullName -Force }
  if (-not $set.Ok) {
    if ($set.Err -match '(?i)deleted but recoverable') {
      Fail "$secretName is soft-deleted in Key Vault $vault and you may not list deleted secrets: recover it with az keyvault secret recover --vault-name $vault --name $secretName, then azd provision"
    }
    Fail "cannot create $secretName in Key Vault ${vault}: $($set.Err)"
  }
  Write-Host "Created the first $secretName in Key Vault $vault."
}

# --- 2. Task.All for the deploying user -----------------------------------
$graph = 'https://graph.microsoft.com/v1.0'
$principal = $env:DEPLOYER_PRINCIPAL_ID
$principalType = if ($env:DEPLOYER_PRINCIPAL_TYPE) { $env:DEPLOYER_PRINCIPAL_TYPE } else { 'User' }
$sp = $env:ENTRA_SERVICE_PRINCIPAL_ID
$role = $env:ENTRA_TASK_ALL_ROLE_ID
if ($principalType -ne 'User' -or -not $principal) {
  Write-Host "Task.All not assigned: azd runs as a $principalType, and the App Roles are for users."
} elseif (-not $sp -or -not $role) {
  Fail 'ENTRA_SERVICE_PRINCIPAL_ID or ENTRA_TASK_ALL_ROLE_ID is not set; was the infrastructure provisioned?'
} else {
  $held = Invoke-Az rest --method get --url "$graph/users/$principal/appRoleAssignments?`$filter=resourceId%20eq%20$sp" --query "length(value[?appRoleId=='$role'])" -o tsv
  if (-not $held.Ok) {
    Warn "cannot read your App Role assignments, Task.All not assigned: $($held.Err)"
  } elseif ($held.Out -ne '0') {
    Write-Host "You already hold Task.All on enterprise application $($env:ENTRA_CLIENT_ID)."
  } else {
    # The body goes through a file: PowerShell mangles the quotes of a JSON
    # argument passed to a native command.
    $body = New-TemporaryFile
    try {
      [System.IO.File]::WriteAllText($body.FullName, (@{ principalId = $principal; resourceId = $sp; appRoleId = $role } | ConvertTo-Json -Compress))
      $post = Invoke-Az rest --method post --url "$graph/servicePrincipals/$sp/appRoleAssignedTo" --headers Content-Type=application/json --body "@$($body.FullName)" -o none
    } finally { Remove-Item -Path $body.FullName -Force }
    if ($post.Ok) {
      Write-Host "Assigned you Task.All on enterprise application $($env:ENTRA_CLIENT_ID)."
    } else {
      # Not fatal: everything is deployed; only your own first call needs it.
      Warn "could not assign you Task.All ($($post.Err)); assign it in the Entra admin center: Enterprise applications, $($env:ENTRA_CLIENT_ID), Users and groups"
    }
  }
}

$mcpUrl = $env:MCP_URL
$base = if ($mcpUrl) { $mcpUrl -replace '/mcp$', '' } else { $env:AZURE_FUNCTION_URL }

Write-Host @"

MCP endpoint: $mcpUrl (MCP_AUTH_MODE=$(if ($env:MCP_AUTH_MODE) { $env:MCP_AUTH_MODE } else { 'proxy' }))

In proxy mode, Claude, Claude Code, the MCP Inspector and VS Code need only
that URL: they register, show this app's consent page and sign in with Entra.

VS Code (.vscode/mcp.json):
{
  "servers": {
    "entra-mcp": { "type": "http", "url": "$mcpUrl" }
  }
}

Sign in from a browser for a one-time code: $base/auth/login
Give people access by assigning App Roles (Task.Read, Task.Write, Task.All,
MCPServer.Admin) to them on the enterprise application $($env:ENTRA_CLIENT_ID).
"@
