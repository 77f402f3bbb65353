#!/usr/bin/env bash
# Runs the MCP conformance package's authorization-server checks
# (`conformance authorization`) against our OAuth front in dev mode.
#
# It runs the staged package under the Functions host stand-in
# (handler/funchost), the handler in dev mode (embedded Entra stand-in and
# Redis) behind it, and runs .ci/conformance-authorization.mjs, which registers a public client
# for the tool's callback, runs the tool's scenarios (metadata endpoint,
# authorization code grant), plays the user's browser through the consent
# page and the stand-in's account picker, and compares the tool's results
# with .ci/conformance-authorization-expected-failures.yml. A check that
# fails or warns and is not listed there, a listed one that passes, or a
# skipped check fails the step.
#
# Usage: .ci/conformance-authorization.sh
# Needs Go, npm (any version) and network access to the npm registry on the
# first run; Node 22 (the package needs it) is installed into .ci/.node and
# the package (its version is pinned in lib.sh) into .ci/.conformance (both
# git-ignored) and reused.
set -euo pipefail

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/conformance-authorization"

ensure_node
ensure_conformance
start_hosted_handler "$(free_port)"

rm -rf "$out_dir"
mkdir -p "$out_dir"
log "conformance authorization ($CONFORMANCE_PKG $CONFORMANCE_VERSION) against $base_url"
BASE_URL="$base_url" CONFORMANCE_BIN="$conformance_bin" OUT_DIR="$out_dir" \
  EXPECTED="$ci_dir/conformance-authorization-expected-failures.yml" \
  run_node "conformance authorization" "results in $out_dir" 150 "$ci_dir/conformance-authorization.mjs"
