# azd postprovision hook (Windows). Same steps as postprovision.sh: create
# the first token-sealing key once (never overwrite it), then print how to
# connect a client.
$ErrorActionPreference = 'Stop'
$secretName = if ($env:TOKEN_SEALING_KEY_SECRET_NAME) { $env:TOKEN_SEALING_KEY_SECRET_NAME } else { 'token-sealing-key' }
if (-not $env:KEY_VAULT_NAME) { throw 'postprovision: KEY_VAULT_NAME is not set; was the infrastructure provisioned?' }

# The deploying user's Key Vault role assignment can take a minute to apply.
$names = $null
for ($i = 0; $i -lt 12; $i++) {
  $names = az keyvault secret list --vault-name $env:KEY_VAULT_NAME --query '[].name' -o tsv 2>$null
  if ($LASTEXITCODE -eq 0) { break }
  Start-Sleep -Seconds 10
}
if ($LASTEXITCODE -ne 0) { throw "postprovision: cannot read Key Vault $($env:KEY_VAULT_NAME)" }

if (($names -split "`n") -contains $secretName) {
  Write-Host "Key Vault $($env:KEY_VAULT_NAME) already holds $secretName: left as it is."
} else {
  $bytes = New-Object byte[] 32
  [System.Security.Cryptography.RandomNumberGenerator]::Fill($bytes)
  $file = New-TemporaryFile
  try {
    [System.IO.File]::WriteAllText($file.FullName, [Convert]::ToBase64String($bytes))
    az keyvault secret set --vault-name $env:KEY_VAULT_NAME --name $secretName --file $file.FullName --content-type 'base64 32-byte AES key' --query id -o none
    if ($LASTEXITCODE -ne 0) { throw 'postprovision: could not create the sealing key' }
  } finally { Remove-Item $file.FullName -Force }
  Write-Host "Created the first $secretName in Key Vault $($env:KEY_VAULT_NAME)."
}

Write-Host @"

MCP endpoint: $($env:MCP_URL) (MCP_AUTH_MODE=$(if ($env:MCP_AUTH_MODE) { $env:MCP_AUTH_MODE } else { 'proxy' }))

In proxy mode, Claude, Claude Code, the MCP Inspector and VS Code need only
that URL: they register, show this app's consent page and sign in with Entra.

VS Code (.vscode/mcp.json):
{
  "servers": {
    "entra-mcp": { "type": "http", "url": "$($env:MCP_URL)" }
  }
}

Sign in from a browser for a one-time code: $($env:AZURE_FUNCTION_URL)/auth/login
Give people access by assigning App Roles (Task.Read, Task.Write, Task.All,
MCPServer.Admin) to them on the enterprise application $($env:ENTRA_CLIENT_ID).
"@
