#!/usr/bin/env bash
# Browser test of the sign-in: a real Chromium, driven by playwright-core,
# signs in through the dev-mode Entra stand-in as the demo reader, reads the
# one-time code from the page, trades it at /auth/exchange and lists the
# reader's MCP tools with the access token (.ci/browser-signin.mjs).
#
# It installs Debian's chromium if /usr/bin/chromium is missing, and the
# Node tools of .ci/package.json (playwright-core among them) with npm ci
# into .ci/node_modules (git-ignored), builds the handler, starts it in dev
# mode on a free loopback port and stops it on exit. The screenshot of the
# code page goes to .ci/out/browser/.
#
# Usage: .ci/browser-signin.sh
# Environment:
#   BROWSER_SIGNIN_PORT  port for the handler (default: a free one)
# Needs Go, npm (any version), apt-get for the first run, and access to the
# npm registry and Debian packages on the first run; the tools run on the
# Node 22 that .ci/package.json pins.
set -euo pipefail

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
out_dir="$ci_dir/out/browser"

# Start clean, so a failed run leaves no screenshot from an earlier one.
rm -rf "$out_dir"
mkdir -p "$out_dir"

ensure_chromium
ensure_node
start_dev_handler "${BROWSER_SIGNIN_PORT:-$(free_port)}"

log "signing in with Chromium"
BASE_URL="$base_url" OUT_DIR="$out_dir" CHROMIUM="$CHROMIUM" \
  run_node "browser sign-in" "screenshots in $out_dir" 180 "$ci_dir/browser-signin.mjs"
