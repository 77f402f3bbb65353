#!/bin/sh
# azd postprovision hook. azd exports the deployment's outputs as
# environment variables (KEY_VAULT_NAME, MCP_URL, MCP_AUTH_MODE, ...).
#
# 0. az must be installed and signed into the tenant azd deployed to, checked
#    first: every step below uses it, and a missing az or another tenant
#    must not pass for a role assignment that has not applied yet.
# 1. The first version of the token-sealing key is created here, once: Bicep
#    never holds a secret value, and a re-provision must not replace a key
#    that sealed live sessions. Rotate later by adding a version (README).
#    A soft-deleted key is recovered, which keeps what it sealed readable.
# 2. The deploying user gets the Task.All App Role, once (looked up first).
#    Not in Bicep: redeploying an assignment that exists fails there
#    (microsoftgraph/msgraph-bicep-types#161), so the second `azd up` would.
# 3. Print the MCP URL and a VS Code mcp.json entry.
set -eu

fail() {
  echo "postprovision: $*" >&2
  exit 1
}

lower() {
  printf '%s' "$1" | tr '[:upper:]' '[:lower:]'
}

secret_name="${TOKEN_SEALING_KEY_SECRET_NAME:-token-sealing-key}"

if [ -z "${KEY_VAULT_NAME:-}" ] || [ -z "${ENTRA_TENANT_ID:-}" ]; then
  fail "KEY_VAULT_NAME or ENTRA_TENANT_ID is not set; was the infrastructure provisioned?"
fi

# --- 0. az, signed into the right tenant ----------------------------------
if ! command -v az >/dev/null 2>&1; then
  fail "the Azure CLI (az) is not installed: install it (https://aka.ms/azure-cli), run az login --tenant $ENTRA_TENANT_ID, then azd provision"
fi
if ! az_tenant=$(az account show --query tenantId -o tsv 2>/dev/null) || [ -z "$az_tenant" ]; then
  fail "az is not signed in: run az login --tenant $ENTRA_TENANT_ID, then azd provision"
fi
if [ "$(lower "$az_tenant")" != "$(lower "$ENTRA_TENANT_ID")" ]; then
  fail "az is signed into tenant $az_tenant, but azd deployed to tenant $ENTRA_TENANT_ID: run az login --tenant $ENTRA_TENANT_ID, then azd provision"
fi

errfile="$(mktemp)"
keyfile=""
trap 'rm -f "$errfile" ${keyfile:+"$keyfile"}' EXIT

# first_error prints the first line az wrote to stderr.
first_error() {
  sed -n '1p' "$errfile"
}

# --- 1. the sealing key ---------------------------------------------------
# The deploying user's Key Vault role assignment can take a minute or two to
# apply: wait only while the vault says Forbidden, and fail at once on
# anything else.
tries=0
while ! names=$(az keyvault secret list --vault-name "$KEY_VAULT_NAME" --query "[].name" -o tsv 2>"$errfile"); do
  if ! grep -qi "forbidden" "$errfile"; then
    fail "cannot list the secrets of Key Vault $KEY_VAULT_NAME: $(first_error)"
  fi
  tries=$((tries + 1))
  if [ "$tries" -ge 12 ]; then
    fail "Key Vault $KEY_VAULT_NAME still refuses you after two minutes: check that you hold Key Vault Secrets Officer on it ($(first_error))"
  fi
  if [ "$tries" -eq 1 ]; then
    echo "Waiting for your Key Vault role assignment to apply (up to two minutes)..."
  fi
  sleep 10
done

if printf '%s\n' "$names" | grep -qx "$secret_name"; then
  echo "Key Vault $KEY_VAULT_NAME already holds $secret_name: left as it is."
elif deleted=$(az keyvault secret list-deleted --vault-name "$KEY_VAULT_NAME" --query "[?name=='$secret_name'].name" -o tsv 2>"$errfile") &&
  [ -n "$deleted" ]; then
  # Deleted but recoverable: setting a new value would fail (409), and the
  # old key still opens the sessions it sealed. Recovery is asynchronous.
  echo "Key Vault $KEY_VAULT_NAME holds $secret_name soft-deleted: recovering it."
  if ! az keyvault secret recover --vault-name "$KEY_VAULT_NAME" --name "$secret_name" -o none 2>"$errfile"; then
    fail "cannot recover the soft-deleted $secret_name in Key Vault $KEY_VAULT_NAME: $(first_error)"
  fi
  tries=0
  until az keyvault secret show --vault-name "$KEY_VAULT_NAME" --name "$secret_name" --query id -o none 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      fail "the recovery of $secret_name in Key Vault $KEY_VAULT_NAME has not finished after a minute; run azd provision again"
    fi
    sleep 2
  done
  echo "Recovered $secret_name in Key Vault $KEY_VAULT_NAME."
else
  # The value goes through a file readable only by us, never a command line.
  umask 077
  keyfile="$(mktemp)"
  head -c 32 /dev/urandom | base64 | tr -d '\n' >"$keyfile"
  if ! az keyvault secret set --vault-name "$KEY_VAULT_NAME" --name "$secret_name" --file "$keyfile" \
    --content-type "base64 32-byte AES key" --query id -o none 2>"$errfile"; then
    if grep -qi "deleted but recoverable" "$errfile"; then
      fail "$secret_name is soft-deleted in Key Vault $KEY_VAULT_NAME and you may not list deleted secrets: recover it with az keyvault secret recover --vault-name $KEY_VAULT_NAME --name $secret_name, then azd provision"
    fi
    fail "cannot create $secret_name in Key Vault $KEY_VAULT_NAME: $(first_error)"
  fi
  echo "Created the first $secret_name in Key Vault $KEY_VAULT_NAME."
fi

# --- 2. Task.All for the deploying user -----------------------------------
graph="https://graph.microsoft.com/v1.0"
if [ "${DEPLOYER_PRINCIPAL_TYPE:-User}" != "User" ] || [ -z "${DEPLOYER_PRINCIPAL_ID:-}" ]; then
  echo "Task.All not assigned: azd runs as a ${DEPLOYER_PRINCIPAL_TYPE:-principal without an id}, and the App Roles are for users."
elif [ -z "${ENTRA_SERVICE_PRINCIPAL_ID:-}" ] || [ -z "${ENTRA_TASK_ALL_ROLE_ID:-}" ]; then
  fail "ENTRA_SERVICE_PRINCIPAL_ID or ENTRA_TASK_ALL_ROLE_ID is not set; was the infrastructure provisioned?"
elif ! held=$(az rest --method get \
  --url "$graph/users/$DEPLOYER_PRINCIPAL_ID/appRoleAssignments?\$filter=resourceId%20eq%20$ENTRA_SERVICE_PRINCIPAL_ID" \
  --query "length(value[?appRoleId=='$ENTRA_TASK_ALL_ROLE_ID'])" -o tsv 2>"$errfile"); then
  echo "postprovision: warning: cannot read your App Role assignments, Task.All not assigned: $(first_error)" >&2
elif [ "$held" != "0" ]; then
  echo "You already hold Task.All on enterprise application ${ENTRA_CLIENT_ID:-}."
elif az rest --method post --url "$graph/servicePrincipals/$ENTRA_SERVICE_PRINCIPAL_ID/appRoleAssignedTo" \
  --headers Content-Type=application/json \
  --body "{\"principalId\":\"$DEPLOYER_PRINCIPAL_ID\",\"resourceId\":\"$ENTRA_SERVICE_PRINCIPAL_ID\",\"appRoleId\":\"$ENTRA_TASK_ALL_ROLE_ID\"}" \
  -o none 2>"$errfile"; then
  echo "Assigned you Task.All on enterprise application ${ENTRA_CLIENT_ID:-}."
else
  # Not fatal: everything is deployed; only your own first call needs it.
  echo "postprovision: warning: could not assign you Task.All ($(first_error)); assign it in the Entra admin center: Enterprise applications, ${ENTRA_CLIENT_ID:-the app}, Users and groups" >&2
fi

base="${MCP_URL:-}"
base="${base%/mcp}"

cat <<MSG

MCP endpoint: ${MCP_URL:-<see azd env get-values>} (MCP_AUTH_MODE=${MCP_AUTH_MODE:-proxy})

In proxy mode, Claude, Claude Code, the MCP Inspector and VS Code need only
that URL: they register, show this app's consent page and sign in with Entra.

VS Code (.vscode/mcp.json):
{
  "servers": {
    "entra-mcp": { "type": "http", "url": "${MCP_URL:-<MCP_URL>}" }
  }
}

Sign in from a browser for a one-time code: ${base:-${AZURE_FUNCTION_URL:-<function url>}}/auth/login
Give people access by assigning App Roles (Task.Read, Task.Write, Task.All,
MCPServer.Admin) to them on the enterprise application ${ENTRA_CLIENT_ID:-}.
MSG
