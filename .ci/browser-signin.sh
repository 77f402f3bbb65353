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
CHROMIUM='/usr/bin/chromium'

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$ci_dir/lib.sh"
browser_dir="$ci_dir/.browser"
out_dir="$ci_dir/out/browser"

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

# Start clean, so a failed run leaves no screenshot from an earlier one.
rm -rf "$out_dir"
mkdir -p "$out_dir"

ensure_chromium
ensure_node
ensure_playwright
start_dev_handler "${BROWSER_SIGNIN_PORT:-$(free_port)}"

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
