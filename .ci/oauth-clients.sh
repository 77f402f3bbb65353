#!/usr/bin/env bash
# The OAuth front against real third-party clients, with the staged
# package under the Functions host stand-in (handler/funchost), the handler
# in dev mode (proxy) behind it:
#
#   1. the official TypeScript MCP SDK's OAuth client, with Chromium
#      walking the pages (.ci/oauth-sdk-client.mjs): discovery from a 401, dynamic registration
#      and a Client ID Metadata Document, consent, sign-in at the Entra
#      stand-in, token, tools/list and tools/call, refresh, reuse detection,
#      remembered consent, revocation; once more with a provider without
#      state(), for which the SDK sends no state;
#   2. the same SDK client with a real Chromium clicking the consent page
#      (.ci/browser-oauth.mjs), Allow and Deny; screenshots in
#      .ci/out/oauth/;
#   3. Chromium calling across origins (.ci/browser-cors.mjs): from an
#      origin in the host's CORS list (= MCP_ALLOWED_ORIGINS) the host's
#      preflights let registration and /mcp through and WWW-Authenticate is
#      readable; from any other origin the browser blocks them.
#
# Installs what it needs like browser-signin.sh (lib.sh): Debian chromium,
# and the Node tools of .ci/package.json (Node 22, playwright-core,
# @modelcontextprotocol/sdk).
#
# Usage: .ci/oauth-clients.sh
set -euo pipefail

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/oauth"

rm -rf "$out_dir"
mkdir -p "$out_dir"

ensure_chromium
ensure_node
allowed_origin="http://127.0.0.1:$(free_port)"
other_port=$(free_port)
start_hosted_handler "$(free_port)" "" "$allowed_origin"

status=0
log "the TypeScript SDK's OAuth client: DCR, a metadata document, no state"
BASE_URL="$base_url" OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  run_node "the SDK client" "its checks are above; screenshots in $out_dir" 180 "$ci_dir/oauth-sdk-client.mjs" || status=$?

log "the TypeScript SDK's OAuth client with Chromium on the consent page"
BASE_URL="$base_url" OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  run_node "the SDK client with Chromium" "screenshots in $out_dir" 180 "$ci_dir/browser-oauth.mjs" || status=$?

log "Chromium across origins, preflights answered by the host stand-in"
BASE_URL="$base_url" ALLOWED_ORIGIN="$allowed_origin" OTHER_PORT="$other_port" DEV_TOKEN="$dev_token" \
  OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  run_node "the cross-origin browser calls" "screenshot in $out_dir" 120 "$ci_dir/browser-cors.mjs" || status=$?
exit "$status"
