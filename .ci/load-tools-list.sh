#!/usr/bin/env bash
# Load test: tools/list over loopback HTTP with token verification, against
# a bare net/http handler in the same run. The server is pinned to core 1 and
# wrk to core 0 so the two do not fight on a 2-core machine.
#
#   .ci/load-tools-list.sh [seconds]     (default 10)
#
# Prints requests/s and latency for both, the ratio, and the handler's peak
# resident memory (VmHWM). A second bare handler sends a body as large as the
# handler's answer (bare-same), for the ratio at equal payload. Needs wrk
# (apt-get install wrk) and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns=64
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

go build -o "$tmp/handler" ./handler/dev
go build -o "$tmp/bare" ./.ci/bare

wait_http() { # url
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "server at $1 did not come up" >&2; return 1
}

# The handler in dev mode: same HTTP stack, verification and tools as
# production, with keys from the embedded stand-in issuer.
taskset -c 1 "$tmp/handler" -addr 127.0.0.1:7191 -dev-tokens "$tmp/tokens.json" >"$tmp/handler.log" 2>&1 &
hpid=$!; pids+=("$hpid")
taskset -c 1 "$tmp/bare" -addr 127.0.0.1:7181 >/dev/null 2>&1 &
pids+=("$!")
wait_http http://127.0.0.1:7191/health
wait_http http://127.0.0.1:7181/
for _ in $(seq 1 100); do [ -s "$tmp/tokens.json" ] && break; sleep 0.05; done
token="$(sed -E 's/.*"all":"([^"]+)".*/\1/' "$tmp/tokens.json")"
list_bytes="$(curl -fsS http://127.0.0.1:7191/mcp -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}' | wc -c)"
taskset -c 1 "$tmp/bare" -addr 127.0.0.1:7182 -bytes "$list_bytes" >/dev/null 2>&1 &
pids+=("$!")
wait_http http://127.0.0.1:7182/

cat >"$tmp/list.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
wrk.headers["Authorization"] = "Bearer $token"
LUA

# Check the answer is a real tool list before timing it.
curl -fsS http://127.0.0.1:7191/mcp -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}' | grep -q '"name":"create_task"' \
  || { echo "tools/list did not return the tools" >&2; exit 1; }

run() { # name url
  taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$tmp/list.lua" "$2" >"$tmp/$1.txt"
  rps="$(awk '/^Requests\/sec/ {print $2}' "$tmp/$1.txt")"
  p99="$(awk '$1=="99%" {print $2}' "$tmp/$1.txt")"
  p50="$(awk '$1=="50%" {print $2}' "$tmp/$1.txt")"
  errs="$(awk '/Non-2xx/ {print $5}' "$tmp/$1.txt")"
  printf '%-9s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errs:-0}"
  eval "${1}_rps=$rps"
}

echo "tools/list, ${conns} connections, ${secs}s, server on core 1, wrk on core 0; the handler's answer is ${list_bytes} bytes"
run bare http://127.0.0.1:7181/
run bare_same http://127.0.0.1:7182/
run handler http://127.0.0.1:7191/mcp
# shellcheck disable=SC2154 # run sets <name>_rps through eval
awk -v h="$handler_rps" -v b="$bare_rps" -v s="$bare_same_rps" \
  'BEGIN { printf "handler/bare: %.0f%%   handler/bare_same (same payload): %.0f%%\n", 100*h/b, 100*h/s }'
echo "handler peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$hpid/status)"
