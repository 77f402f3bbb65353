#!/bin/sh
# azd preprovision hook: before anything is created,
# 1. check the operator's choices (azd environment values such as ROLE_MAP)
#    as the handler will read them: a bad one would otherwise surface only
#    as a function app that never starts;
# 2. check that AZURE_LOCATION offers what infra/ puts there, Flex
#    Consumption and (with REDIS_KIND=managed, the default) Azure Managed
#    Redis. A region missing either would fail late, after the app
#    registration and half the resources exist. No list of regions is kept
#    here: Azure's answer is the current one. When it cannot ask (no az, not
#    signed in, an az without the command) it warns and lets the provision
#    go on.
set -eu

# --- 1. the operator's choices -------------------------------------------
# Go builds the handler at deploy time anyway; the check is the handler's
# own parsing (handler/config), run from the repository root.
if ! command -v go >/dev/null 2>&1; then
  echo "preprovision: Go is not installed; azd needs it to check the settings and build the handler" >&2
  exit 1
fi
root="$(dirname "$0")/../.."
if ! (cd "$root" && go run ./handler/stage -check-settings); then
  echo "preprovision: nothing was provisioned" >&2
  exit 1
fi

# --- 2. the region -------------------------------------------------------

skip() {
  echo "preprovision: warning: $*; region not checked" >&2
  exit 0
}

# normalize turns region names (East US, eastus, one a line or tab-separated)
# into azd's form, one a line.
normalize() {
  tr '\t' '\n' | tr '[:upper:]' '[:lower:]' | tr -d ' \r'
}

location="$(printf '%s' "${AZURE_LOCATION:-}" | normalize)"
if [ -z "$location" ]; then
  skip "AZURE_LOCATION is not set yet"
fi
if ! command -v az >/dev/null 2>&1; then
  skip "the Azure CLI (az) is not installed"
fi
set --
if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  set -- --subscription "$AZURE_SUBSCRIPTION_ID"
fi

if ! flex=$(az functionapp list-flexconsumption-locations "$@" -o tsv 2>/dev/null) || [ -z "$flex" ]; then
  skip "az could not list the Flex Consumption regions (signed in? az 2.60 or later?)"
fi
if ! printf '%s\n' "$flex" | normalize | grep -qx "$location"; then
  echo "preprovision: region $AZURE_LOCATION does not offer Flex Consumption: choose one that does (az functionapp list-flexconsumption-locations) with azd env set AZURE_LOCATION <region>" >&2
  exit 1
fi

if [ "${REDIS_KIND:-managed}" = "managed" ]; then
  if ! amr=$(az provider show -n Microsoft.Cache "$@" --query "resourceTypes[?resourceType=='redisEnterprise'].locations | [0]" -o tsv 2>/dev/null) || [ -z "$amr" ]; then
    skip "az could not list the Azure Managed Redis regions"
  fi
  if ! printf '%s\n' "$amr" | normalize | grep -qx "$location"; then
    echo "preprovision: region $AZURE_LOCATION offers Flex Consumption but not Azure Managed Redis: choose another with azd env set AZURE_LOCATION <region>" >&2
    exit 1
  fi
fi
echo "Region $AZURE_LOCATION offers what this deployment needs."
