#!/usr/bin/env bash
# WebSocket fan-out on podhost (examples/chat): the latency from one
# publish to each of N subscribers of a room (p50/p99/max over several
# publishes), and the server's resident memory per idle socket. Writes
# bench/results/fanout-<date>.md.
#   usage: bench/fanout.sh [N...]        (default: 1000 10000)
# PUBLISHES (default 20) sets the publishes per N.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sizes=("${@:-1000}")
[ $# -eq 0 ] && sizes=(1000 10000)
publishes=${PUBLISHES:-20}

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p podhost -p fanout
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p chat
# Each subscriber is a socket on both sides.
ulimit -n "$(ulimit -Hn)"

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
[server]
max_connections_per_address = 1000000   # every client is 127.0.0.1
[sockets]
max_queued_messages = 4096
[classes.chat]
path = "$root/target/guests/wasm32-wasip2/guest/chat.wasm"
TOML
target/release/podhost serve --config "$work/podhost.toml" >"$work/out" 2>"$work/log" &
server=$!
for _ in $(seq 1 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.2
done

echo "fan-out: ${sizes[*]} subscribers, $publishes publishes each"
lines=$(target/release/fanout "ws://127.0.0.1:$port" "$server" "$publishes" "${sizes[@]}")

date=$(date +%F)
out=bench/results/fanout-$date.md
{
  echo "# WebSocket fan-out, $date"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)."
  echo "podhost release build, \`examples/chat\`, one room per row; $publishes publishes, 200 ms apart;"
  echo "latency from the publisher's send to each subscriber's receipt (client and server on this machine)."
  echo
  echo "| subscribers | p50 ms | p99 ms | max ms | server CPU per delivery | RSS per idle socket |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
  while read -r n p50 p99 max rss cpu; do
    echo "| $n | $p50 | $p99 | $max | $cpu µs | $(awk -v b="$rss" 'BEGIN { printf "%.1f KiB", b / 1024 }') |"
  done <<<"$lines"
  echo
  echo "Targets (issue 7): p99 <= 50 ms at 10,000 subscribers; <= 10 KB per idle socket."
} | tee "$out"
