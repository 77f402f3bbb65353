#!/bin/sh
# azd postprovision hook. azd exports the deployment's outputs as
# environment variables (KEY_VAULT_NAME, MCP_URL, MCP_AUTH_MODE, ...).
#
# 1. The first version of the token-sealing key is created here, once: Bicep
#    never holds a secret value, and a re-provision must not replace a key
#    that sealed live sessions. Rotate later by adding a version (README).
# 2. Print the MCP URL and a VS Code mcp.json entry.
set -eu

secret_name="${TOKEN_SEALING_KEY_SECRET_NAME:-token-sealing-key}"

if [ -z "${KEY_VAULT_NAME:-}" ]; then
  echo "postprovision: KEY_VAULT_NAME is not set; was the infrastructure provisioned?" >&2
  exit 1
fi

# The deploying user's Key Vault role assignment can take a minute to apply.
tries=0
until az keyvault secret list --vault-name "$KEY_VAULT_NAME" --query "[].name" -o tsv >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 12 ]; then
    echo "postprovision: cannot read Key Vault $KEY_VAULT_NAME (role assignment not applied yet?)" >&2
    exit 1
  fi
  sleep 10
done

if az keyvault secret list --vault-name "$KEY_VAULT_NAME" --query "[].name" -o tsv | grep -qx "$secret_name"; then
  echo "Key Vault $KEY_VAULT_NAME already holds $secret_name: left as it is."
else
  # The value goes through a file readable only by us, never a command line.
  umask 077
  keyfile="$(mktemp)"
  trap 'rm -f "$keyfile"' EXIT
  head -c 32 /dev/urandom | base64 | tr -d '\n' > "$keyfile"
  az keyvault secret set --vault-name "$KEY_VAULT_NAME" --name "$secret_name" --file "$keyfile" \
    --content-type "base64 32-byte AES key" --query id -o none
  echo "Created the first $secret_name in Key Vault $KEY_VAULT_NAME."
fi

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

Sign in from a browser for a one-time code: ${AZURE_FUNCTION_URL:-<function url>}/auth/login
Give people access by assigning App Roles (Task.Read, Task.Write, Task.All,
MCPServer.Admin) to them on the enterprise application ${ENTRA_CLIENT_ID:-}.
MSG
