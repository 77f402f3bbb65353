#!/usr/bin/env bash
# Runs the official MCP conformance suite against our handler.
#
# It stages the package with the `conformance` tag (which adds the suite's
# test_* fixtures), runs it under the Functions host stand-in
# (handler/funchost) with the handler in dev mode (embedded Entra stand-in
# and Redis), and runs the suite's server scenarios against /mcp with a dev
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

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/conformance"
port=${CONFORMANCE_PORT:-18931}

ensure_node
if [[ -z ${CONFORMANCE_URL:-} ]]; then
  start_hosted_handler "$port" conformance
  CONFORMANCE_URL="$base_url/mcp"
  CONFORMANCE_TOKEN=$dev_token
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
    server_log_tail
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
