# azd preprovision hook (Windows, PowerShell 7). Same check as
# preprovision.sh: before anything is created, AZURE_LOCATION must offer
# Flex Consumption and (with REDIS_KIND=managed, the default) Azure Managed
# Redis; when az cannot be asked, warn and go on.
# First, as there, the operator's choices are checked by the handler's own
# parsing (go run ./handler/stage -check-settings).
$ErrorActionPreference = 'Stop'

if (-not (Get-Command go -ErrorAction SilentlyContinue)) {
  [Console]::Error.WriteLine('preprovision: Go is not installed; azd needs it to check the settings and build the handler')
  exit 1
}
Push-Location (Join-Path $PSScriptRoot '../..')
try {
  & go run ./handler/stage -check-settings
  $checked = $LASTEXITCODE
} finally {
  Pop-Location
}
if ($checked -ne 0) {
  [Console]::Error.WriteLine('preprovision: nothing was provisioned')
  exit 1
}

function Skip([string]$message) {
  [Console]::Error.WriteLine("preprovision: warning: $message; region not checked")
  exit 0
}

# Normalize turns region names (East US, eastus) into azd's form.
function Normalize([string]$text) {
  @($text -split "[`t`r`n]+" | ForEach-Object { ($_ -replace ' ', '').ToLowerInvariant() } | Where-Object { $_ })
}

# Invoke-Az runs az and returns its output, or $null when it failed
# (stderr is dropped; ErrorActionPreference Continue so that PowerShell
# before 7.2 does not throw on it).
function Invoke-Az {
  $ErrorActionPreference = 'Continue'
  $out = & az @args 2>$null
  if ($LASTEXITCODE -ne 0) { return $null }
  (@($out) -join "`n").Trim()
}

$location = @(Normalize $env:AZURE_LOCATION)[0]
if (-not $location) { Skip 'AZURE_LOCATION is not set yet' }
if (-not (Get-Command az -ErrorAction SilentlyContinue)) { Skip 'the Azure CLI (az) is not installed' }
$sub = @()
if ($env:AZURE_SUBSCRIPTION_ID) { $sub = @('--subscription', $env:AZURE_SUBSCRIPTION_ID) }

$flex = Invoke-Az functionapp list-flexconsumption-locations @sub -o tsv
if (-not $flex) { Skip 'az could not list the Flex Consumption regions (signed in? az 2.60 or later?)' }
if ((Normalize $flex) -notcontains $location) {
  [Console]::Error.WriteLine("preprovision: region $($env:AZURE_LOCATION) does not offer Flex Consumption: choose one that does (az functionapp list-flexconsumption-locations) with azd env set AZURE_LOCATION <region>")
  exit 1
}

$kind = if ($env:REDIS_KIND) { $env:REDIS_KIND } else { 'managed' }
if ($kind -eq 'managed') {
  $amr = Invoke-Az provider show -n Microsoft.Cache @sub --query "resourceTypes[?resourceType=='redisEnterprise'].locations | [0]" -o tsv
  if (-not $amr) { Skip 'az could not list the Azure Managed Redis regions' }
  if ((Normalize $amr) -notcontains $location) {
    [Console]::Error.WriteLine("preprovision: region $($env:AZURE_LOCATION) offers Flex Consumption but not Azure Managed Redis: choose another with azd env set AZURE_LOCATION <region>")
    exit 1
  }
}
Write-Host "Region $($env:AZURE_LOCATION) offers what this deployment needs."
