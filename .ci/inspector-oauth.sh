#!/usr/bin/env bash
# The MCP Inspector's own OAuth flow against the handler in dev mode (proxy),
# as the README's "Connect MCP clients" describes it: the Inspector's web app
# (@modelcontextprotocol/inspector, pinned in .ci/package.json) runs on loopback ports, and
# a real Chromium (Debian's, driven by playwright-core) uses its UI
# (.ci/inspector-oauth.mjs): add the server (transport streamable-http, URL
# <handler>/mcp), connect, and the Inspector finds the authorization server
# from the 401, registers itself, and sends the browser to our consent page;
# "Allow", "Alex All" on the Entra stand-in's account picker, back to the
# Inspector's /oauth/callback, token; then the Inspector lists the tools and
# calls whoami. Screenshots in .ci/out/inspector/.
#
# The Inspector runs with a fresh HOME and storage folder, secrets in memory,
# its API token set (the documented MCP_INSPECTOR_API_TOKEN, not
# DANGEROUSLY_OMIT_AUTH), no browser of its own (MCP_AUTO_OPEN_ENABLED=false)
# and its client log in MCP_LOG_FILE, which the test reads.
#
# Installs what it needs like oauth-clients.sh (lib.sh): Debian chromium,
# and the Node tools of .ci/package.json (Node 22, which the Inspector needs
# at 22.19 or newer, playwright-core, the Inspector).
#
# Usage: .ci/inspector-oauth.sh
set -euo pipefail

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/inspector"

inspector_pid=''
inspector_token=''
# shellcheck disable=SC2317 # run by the EXIT trap
stop_inspector() {
  if [[ -n $inspector_pid ]]; then
    kill "$inspector_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$inspector_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$inspector_pid" 2>/dev/null || true
    wait "$inspector_pid" 2>/dev/null || true
    inspector_pid=''
  fi
}
# lib.sh's cleanup stops the handler and removes $tmp.
trap 'stop_inspector; cleanup' EXIT

# The Inspector prints its API token at start-up: keep it out of CI logs.
inspector_log_tail() {
  if [[ -n $inspector_token ]]; then
    sed "s/$inspector_token/<token>/g" "$tmp/inspector.log" | tail -n 40 >&2 || true
  else
    tail -n 40 "$tmp/inspector.log" >&2 || true
  fi
}

# The Inspector's client log (MCP_LOG_FILE, JSON lines, credentials
# redacted by the Inspector) as one line per HTTP exchange, without queries
# and bodies.
inspector_client_log() {
  [[ -s $tmp/inspector-client.log ]] || return 0
  # shellcheck disable=SC2016 # JavaScript template literals
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
    for (const line of lines.slice(-40)) {
      let e;
      try { e = JSON.parse(line); } catch { continue; }
      const rq = e.fetchRequest, rs = e.fetchResponse;
      const when = new Date(e.time).toISOString().slice(11, 23);
      if (rq) {
        const u = String(rq.url).split("?")[0];
        console.log(`${when} ${e.category ?? ""} ${rq.method} ${u} -> ${rs ? rs.status : "(no response)"}${e.err ? ` ${e.err}` : ""}`);
      } else {
        console.log(`${when} ${e.category ?? ""} ${e.msg ?? ""}${e.err ? ` ${JSON.stringify(e.err).slice(0, 200)}` : ""}`);
      }
    }
  ' "$tmp/inspector-client.log" >&2 || true
}

# start_inspector starts the Inspector's web app on 127.0.0.1 (its default
# bind host) with its UI, MCP Apps sandbox and app origin on free ports,
# and waits until /healthz answers. Sets inspector_url and inspector_token.
start_inspector() {
  local bin port sandbox_port app_port
  bin=$(npm_bin "$INSPECTOR_PKG" mcp-inspector)
  port=$(free_port)
  sandbox_port=$(free_port)
  app_port=$(free_port)
  inspector_token=$(node -p 'require("crypto").randomBytes(32).toString("hex")')
  inspector_url="http://127.0.0.1:$port"
  mkdir -p "$tmp/inspector-home" "$tmp/inspector-storage"
  log "starting the MCP Inspector $INSPECTOR_VERSION at $inspector_url"
  # Only what is set here: settings of a developer's own Inspector (a
  # catalog file to write to, allowed origins, no auth, TLS, a secrets file)
  # and HTTP proxies (it talks to loopback only) are not passed on.
  env -u ALLOWED_ORIGINS -u MCP_INSPECTOR_ALLOWED_HOSTS -u DANGEROUSLY_OMIT_AUTH \
    -u DANGEROUSLY_BIND_ALL_INTERFACES -u MCP_PROXY_AUTH_TOKEN -u MCP_CATALOG_PATH \
    -u MCP_SANDBOX_FULL_ADDRESS -u MCP_APP_ORIGIN_FULL_ADDRESS -u SERVER_PORT \
    -u INSPECTOR_TLS_KEY_PATH -u INSPECTOR_TLS_CERT_PATH -u MCP_INSPECTOR_SECRET_FILE \
    -u MCP_INSPECTOR_SECRET_KEY -u MCP_INSPECTOR_SECRET_KEY_FILE -u MCP_INSPECTOR_PERSIST_TOKENS \
    -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy \
    HOME="$tmp/inspector-home" \
    HOST=127.0.0.1 \
    CLIENT_PORT="$port" \
    MCP_SANDBOX_PORT="$sandbox_port" \
    MCP_APP_ORIGIN_PORT="$app_port" \
    MCP_AUTO_OPEN_ENABLED=false \
    MCP_INSPECTOR_API_TOKEN="$inspector_token" \
    MCP_INSPECTOR_SECRET_STORE=memory \
    MCP_STORAGE_DIR="$tmp/inspector-storage" \
    MCP_LOG_FILE="$tmp/inspector-client.log" \
    "$bin" --web >"$tmp/inspector.log" 2>&1 &
  inspector_pid=$!
  for _ in $(seq 1 150); do
    if ! kill -0 "$inspector_pid" 2>/dev/null; then
      echo "the MCP Inspector exited during start-up:" >&2
      inspector_log_tail
      exit 1
    fi
    if http_ok "$inspector_url/healthz"; then
      return
    fi
    sleep 0.2
  done
  echo "the MCP Inspector did not answer GET /healthz with 200 within 30 s:" >&2
  inspector_log_tail
  exit 1
}

rm -rf "$out_dir"
mkdir -p "$out_dir"

ensure_chromium
ensure_node
INSPECTOR_PKG='@modelcontextprotocol/inspector'
INSPECTOR_VERSION=$(npm_version "$INSPECTOR_PKG")
start_dev_handler "$(free_port)"
start_inspector

log "the MCP Inspector's OAuth flow, with Chromium on its UI and our pages"
status=0
BASE_URL="$base_url" INSPECTOR_URL="$inspector_url" INSPECTOR_TOKEN="$inspector_token" \
  INSPECTOR_VERSION="$INSPECTOR_VERSION" INSPECTOR_LOG="$tmp/inspector-client.log" \
  OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  run_node "the MCP Inspector's OAuth flow" "screenshots in $out_dir" 120 "$ci_dir/inspector-oauth.mjs" || status=$?
if [[ $status -ne 0 ]]; then
  echo "last lines of the MCP Inspector's log (API token removed):" >&2
  inspector_log_tail
  echo "the MCP Inspector's client log (HTTP exchanges, credentials redacted by the Inspector):" >&2
  inspector_client_log
fi
exit "$status"
