#!/usr/bin/env bash
# A call from one live object to another (objects.call), next to an HTTP
# request to the same callee through the gateway: p50/p99 latency and
# rate, one caller (or one connection) at a time. The callee answers
# `GET /count` (a read, so no fsync is measured); the calls are timed
# inside the caller (tests/guests/relay, route /bench), the HTTP requests
# by wrk. Writes bench/results/calls-<date>.md.
#   usage: bench/calls.sh [calls per round] [seconds of HTTP]
# ROUNDS (default 3) sets the rounds; the median round is reported.
set -euo pipefail
calls=${1:-5000} seconds=${2:-5}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p podhost
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p relay

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/podhost.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "data"
durability = "full"
idle_timeout = "10m"
[classes.relay]
path = "$root/target/guests/wasm32-wasip2/guest/relay.wasm"
TOML
target/release/podhost serve --config "$work/podhost.toml" >"$work/out" 2>"$work/log" &
server=$!
for _ in $(seq 1 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.2
done
base="http://127.0.0.1:$port/objects/relay"
# Both objects live before measuring.
curl -sf -o /dev/null -X POST "$base/callee/count"
curl -sf -o /dev/null -X POST "$base/caller/bench/relay/callee?n=100"

# Median of the rounds by p50: "p50 p99 rate" per line.
median() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }

call_rounds=$(for _ in $(seq 1 "$rounds"); do
  curl -sf -X POST "$base/caller/bench/relay/callee?n=$calls" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); print("%.1f %.1f %.0f" % (r["p50_us"], r["p99_us"], r["calls_per_s"]))'
done | median)

# wrk prints latencies as 123.45us, 1.23ms or 1.23s.
to_us() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); print v } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 } else { sub(/s$/, "", v); print v * 1000000 } }'; }
http_rounds=$(for _ in $(seq 1 "$rounds"); do
  out=$(wrk -t1 -c1 -d"${seconds}s" --latency "$base/callee/count")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out" | to_us)
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out" | to_us)
  rate=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
  echo "$p50 $p99 $rate"
done | median)

read -r call_p50 call_p99 call_rate <<<"$call_rounds"
read -r http_p50 http_p99 http_rate <<<"$http_rounds"
date=$(date +%F)
out=bench/results/calls-$date.md
{
  echo "# Calls between objects, $date"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)."
  echo "podhost release build, durability full, \`tests/guests/relay\`; the callee answers \`GET /count\` (a read)."
  echo "One caller at a time: $calls calls per round timed inside the caller (\`objects.call\`),"
  echo "against ${seconds} s of \`wrk -c1\` through the gateway (HTTP/1.1 keep-alive, client on this machine);"
  echo "median of $rounds rounds."
  echo
  echo "| path | p50 µs | p99 µs | per second |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| objects.call, live caller -> live callee | $call_p50 | $call_p99 | $call_rate |"
  echo "| HTTP request through the gateway | $http_p50 | $http_p99 | $http_rate |"
  echo
  echo "Target (issue 19): a call costs no more than the same request over HTTP; p50 <= 100 µs."
} | tee "$out"
