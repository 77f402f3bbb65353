#!/usr/bin/env bash
# Runs the MCP conformance package's authorization-server checks
# (`conformance authorization`) against our OAuth front in dev mode.
#
# It runs the staged package under the Functions host stand-in
# (handler/funchost), the handler in dev mode (embedded Entra stand-in and
# Redis) behind it, and runs .ci/conformance-authorization.mjs, which registers a public client
# for the tool's callback, runs the tool's scenarios (metadata endpoint,
# authorization code grant), plays the user's browser through the consent
# page and the stand-in's account picker in Chromium, and compares the tool's results
# with .ci/conformance-authorization-expected-failures.yml. A check that
# fails or warns and is not listed there, a listed one that passes, or a
# skipped check fails the step.
#
# Usage: .ci/conformance-authorization.sh
# Needs Go, npm (any version), apt-get and network access to the npm
# registry and Debian packages on the first run; the package, Node 22 (the
# package needs it) and playwright-core are pinned in .ci/package.json and
# installed into .ci/node_modules (git-ignored) by npm ci.
set -euo pipefail

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/conformance-authorization"

ensure_chromium
ensure_node
conformance_pkg='@modelcontextprotocol/conformance'
conformance_bin=$(npm_bin "$conformance_pkg" conformance)
start_hosted_handler "$(free_port)"

rm -rf "$out_dir"
mkdir -p "$out_dir"
log "conformance authorization ($conformance_pkg $(npm_version "$conformance_pkg")) against $base_url"
BASE_URL="$base_url" CONFORMANCE_BIN="$conformance_bin" OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  EXPECTED="$ci_dir/conformance-authorization-expected-failures.yml" \
  run_node "conformance authorization" "results in $out_dir" 150 "$ci_dir/conformance-authorization.mjs"
