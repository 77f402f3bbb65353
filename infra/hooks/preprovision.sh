#!/bin/sh
# azd preprovision hook: before anything is created, check that
# AZURE_LOCATION offers what infra/ puts there, Flex Consumption and (with
# REDIS_KIND=managed, the default) Azure Managed Redis. A region missing
# either would fail late, after the app registration and half the resources
# exist. No list of regions is kept here: Azure's answer is the current one.
# When it cannot ask (no az, not signed in, an az without the command) it
# warns and lets the provision go on.
set -eu

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
