#!/usr/bin/env bash
# Runs the official MCP conformance suite against our handler, twice: the
# pinned 0.1.16 server suite (the 2025 revisions) and the 2026-07-28
# requirement set of the package's 0.2.0 pre-release. The handler fronts an
# upstream MCP server meanwhile (the TypeScript SDK's, .ci/upstream-server.mjs,
# as upstream "ts"), so the suites check a list that holds its tools; the
# MCP Inspector's CLI and the TypeScript SDK's client (.ci/upstream-client.mjs)
# then list and call them through our endpoint.
#
# It stages the package with the `conformance` tag (which adds the suites'
# test_* fixtures), runs it under the Functions host stand-in
# (handler/funchost) with the handler in dev mode (embedded Entra stand-in
# and Redis), and points the suites at a loopback proxy in front of it
# (.ci/token-proxy.mjs) that adds the dev token to every request: some
# scenarios send raw requests that nothing else could authenticate. The
# proxy's address is the handler's PUBLIC_BASE_URL, as the app's host name
# is in Azure, so the Origin the suites send as their own is the server's.
#
# Failures listed in .ci/conformance-expected-failures.yml (0.1.16) and
# .ci/conformance-2026-07-28-expected-failures.yml are expected; any other
# failure, or a listed one that now passes, makes the suite exit non-zero
# and so fails CI.
#
# Usage: .ci/conformance.sh
# Environment:
#   CONFORMANCE_PORT  port for the host stand-in (default 18931)
#   CONFORMANCE_URL   test this MCP URL instead of building and starting the
#                     handler (CONFORMANCE_TOKEN then optional); the
#                     expected failures are ours, so expect differences
# Needs Go, npm (any version) and network access to the npm registry on the
# first run. Both conformance packages (0.1.16 under the npm alias
# conformance-0.1.16), the Inspector and Node 22 are pinned in
# .ci/package.json and installed into .ci/node_modules (git-ignored) by npm
# ci.
set -euo pipefail

REQUIREMENTS='2026-07-28'
# The requirement set also runs scenarios it does not score (pending in the
# suite, or extensions), and its baseline check ignores them. These three
# we pass: each is run once more on its own, against the same baseline
# file, so CI notices when one breaks. (The tasks extension's scenarios,
# also unscored, test io.modelcontextprotocol/tasks, which we do not
# implement.)
UNSCORED_WE_PASS=(json-schema-2020-12 http-header-validation http-custom-header-server-validation)

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/conformance"
port=${CONFORMANCE_PORT:-18931}

ensure_node
suite_pkg='conformance-0.1.16'
suite_bin=$(npm_bin "$suite_pkg" conformance)
conformance_pkg='@modelcontextprotocol/conformance'
conformance_bin=$(npm_bin "$conformance_pkg" conformance)
conformance_version=$(npm_version "$conformance_pkg")
inspector_pkg='@modelcontextprotocol/inspector'
inspector_bin=$(npm_bin "$inspector_pkg" mcp-inspector)
proxy_port=$(free_port)
if [[ -z ${CONFORMANCE_URL:-} ]]; then
  public_url="http://127.0.0.1:$proxy_port"
  # The suites run against the endpoint as it fronts an upstream: the
  # TypeScript SDK's server, whose tools join the list they check.
  start_ts_upstream
  start_hosted_handler "$port" conformance
  CONFORMANCE_URL="$base_url/mcp"
  CONFORMANCE_TOKEN=$dev_token
fi
upstream=$(node -p 'new URL(process.argv[1]).origin' "$CONFORMANCE_URL")
mcp_path=$(node -p 'new URL(process.argv[1]).pathname' "$CONFORMANCE_URL")
start_token_proxy "$proxy_port" "$upstream" "${CONFORMANCE_TOKEN:-}"
suite_url="$proxy_url$mcp_path"

rm -rf "$out_dir"
mkdir -p "$out_dir"
status=0

# suite NAME CMD... runs one conformance command and records a failure.
# The suite's tallies ("N passed, N failed") count the expected failures
# too; CI readers take such lines as test results, so they are reworded
# here. The baseline check and the exit code decide.
suite() {
  local name=$1 rc
  shift
  log "$name"
  set +e
  HOME="$tmp/home" "$@" 2>&1 | sed -u -E 's/([0-9]+) passed, ([0-9]+) failed/\1 ok, \2 not ok/'
  rc=${PIPESTATUS[0]}
  set -e
  if [[ $rc -ne 0 ]]; then
    echo "$name failed (exit $rc); results in $out_dir" >&2
    status=1
  fi
}

suite "running @modelcontextprotocol/conformance $(npm_version "$suite_pkg") against $suite_url" \
  node "$suite_bin" server --url "$suite_url" \
  --expected-failures "$ci_dir/conformance-expected-failures.yml" -o "$out_dir/0.1.16"

next_expected="$ci_dir/conformance-$REQUIREMENTS-expected-failures.yml"
suite "running $conformance_pkg $conformance_version --requirements $REQUIREMENTS against $suite_url" \
  node "$conformance_bin" server --url "$suite_url" --requirements "$REQUIREMENTS" \
  --expected-failures "$next_expected" -o "$out_dir/$REQUIREMENTS"
for scenario in "${UNSCORED_WE_PASS[@]}"; do
  suite "running the unscored $scenario at $REQUIREMENTS" \
    node "$conformance_bin" server --url "$suite_url" --scenario "$scenario" --spec-version "$REQUIREMENTS" \
    --expected-failures "$next_expected" -o "$out_dir/$REQUIREMENTS-unscored"
done

# The figures the README quotes: every check of the 0.1.16 run, and of the
# requirement set's scored scenarios (expected failures included).
mapfile -t scored < <(node "$conformance_bin" list --requirements "$REQUIREMENTS" --server |
  awk '/^Server scenarios/ { on = 1; next } /^[^ ]/ { on = 0 } on && /^  - / { print $2 }')
node "$ci_dir/conformance-tally.mjs" "0.1.16 server suite" "$out_dir/0.1.16"
node "$ci_dir/conformance-tally.mjs" "$REQUIREMENTS requirement set (scored)" "$out_dir/$REQUIREMENTS" "${scored[@]}"
node "$ci_dir/conformance-tally.mjs" "$REQUIREMENTS unscored scenarios we pass" "$out_dir/$REQUIREMENTS-unscored"

if [[ $status -ne 0 && -n $server_pid ]]; then
  # Dev mode prints its demo tokens at start-up: keep them out of CI logs.
  echo "last lines of the handler's log (tokens removed):" >&2
  server_log_tail
fi

# A second, independent client: the MCP Inspector's CLI lists the tools and
# calls one with the same token, as a person connecting it would.
if [[ $status -eq 0 && -n ${CONFORMANCE_TOKEN:-} ]]; then
  log "MCP Inspector CLI ($inspector_pkg $(npm_version "$inspector_pkg")): tools/list and tools/call"
  inspect() {
    HOME="$tmp/home" node "$inspector_bin" --cli "$CONFORMANCE_URL" --transport http \
      --header "Authorization: Bearer $CONFORMANCE_TOKEN" "$@"
  }
  # With the handler started here, the token is the demo user "all"'s: the
  # list must be the golden file's dev-mode list (its tools and the demo
  # upstream's), the fixtures of this conformance build, and the upstream
  # tools start_ts_upstream's rules give it, in tools/list order.
  want_tools=''
  if [[ -n $server_pid ]]; then
    want_tools=$(node -e '
      const g = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const names = [...g.users.find((u) => u.key === "all").devMode, ...g.conformance.added.map((t) => t.name), "ts.add", "ts.echo"];
      process.stdout.write(names.sort().join(","));
    ' "$root/handler/tools/toolstest/tools-per-role.json")
  fi
  if ! listed=$(inspect --method tools/list 2>&1) || ! grep -q '"name": "create_task"' <<<"$listed"; then
    echo "MCP Inspector could not list the tools:" >&2
    grep -v -e 'eyJ' <<<"$listed" | tail -n 20 >&2
    status=1
  elif [[ -n $want_tools ]] && ! got_tools=$(node -e '
      const out = require("fs").readFileSync(0, "utf8");
      const list = JSON.parse(out.slice(out.indexOf("{"), out.lastIndexOf("}") + 1));
      process.stdout.write(list.tools.map((t) => t.name).join(","));
    ' <<<"$listed") || [[ $got_tools != "$want_tools" ]]; then
    echo "MCP Inspector listed [${got_tools:-?}], want the golden file's [$want_tools]" >&2
    status=1
  elif ! called=$(inspect --method tools/call --tool-name create_task --tool-arg title=from-the-inspector 2>&1) ||
    ! grep -q 'from-the-inspector' <<<"$called"; then
    echo "MCP Inspector could not call create_task:" >&2
    grep -v -e 'eyJ' <<<"$called" | tail -n 20 >&2
    status=1
  elif [[ -n $server_pid ]] && { ! called=$(inspect --method tools/call --tool-name ts.echo --tool-arg text=via-the-inspector 2>&1) ||
    ! grep -q 'via-the-inspector (session ' <<<"$called"; }; then
    echo "MCP Inspector could not call the upstream's ts.echo:" >&2
    grep -v -e 'eyJ' <<<"$called" | tail -n 20 >&2
    status=1
  else
    echo "MCP Inspector: tools listed${want_tools:+ (exactly as in the golden file, with the upstream tools)}, create_task${server_pid:+ and the upstream tool ts.echo} called"
  fi
fi

# The TypeScript SDK's client, through our endpoint, against the upstream.
if [[ $status -eq 0 && -n $server_pid ]]; then
  log "TypeScript SDK client through the front to the TypeScript SDK upstream"
  if ! MCP_URL="$CONFORMANCE_URL" TOKENS="$tmp/tokens.json" UPSTREAM_STATS="$upstream_url/stats" \
    node "$ci_dir/upstream-client.mjs"; then
    status=1
    server_log_tail
  fi
fi
exit "$status"
