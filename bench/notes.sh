#!/usr/bin/env bash
# examples/notes under many tabs of one user: the time from one edit to
# every tab's receipt of its batch (150 ms batching window included), and
# how many batches a burst of edits becomes per tab. Writes
# bench/results/notes-<date>.md.
#   usage: bench/notes.sh [tabs] [edits] [burst]   (default: 1000 20 100)
# PROFILE=debug tries the script on a debug build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tabs=${1:-1000}
edits=${2:-20}
burst=${3:-100}
profile=${PROFILE:-release}

rustup target add wasm32-wasip2 >/dev/null 2>&1
if [ "$profile" = release ]; then
  cargo build --release -q -p podhost -p fanout
else
  cargo build -q -p podhost -p fanout
fi
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p notes
# Each tab is a socket on both sides.
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
[classes.notes]
path = "$root/target/guests/wasm32-wasip2/guest/notes.wasm"
access = "user"
TOML
"target/$profile/podhost" serve --config "$work/podhost.toml" >"$work/out" 2>"$work/log" &
server=$!
for _ in $(seq 1 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.2
done

token=$(curl -sf "http://127.0.0.1:$port/auth/signup" \
  -d '{"email": "bench@example.com", "password": "correct horse battery"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

echo "notes: $tabs tabs of one user, $edits single edits, a burst of $burst"
lines=$("target/$profile/notes" "ws://127.0.0.1:$port" "$token" "$tabs" "$edits" "$burst")
value() { awk -v k="$1" '$1 == k { print $2 }' <<<"$lines"; }

date=$(date +%F)
out=bench/results/notes-$date.md
{
  echo "# Notes sync to many tabs, $date"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)."
  echo "podhost $profile build, \`examples/notes\`, one user's object, $tabs tabs (sockets with their"
  echo "own client ids, acknowledging every batch) and a writer socket; client and server on this machine."
  echo
  echo "One edit (a socket \`put\`), $edits times, 1 s apart: time from the send to each tab's receipt"
  echo "of the batch carrying it. It includes the 150 ms batching window by design."
  echo
  echo "| per delivery p50 | p99 | max | until every tab has it, p50 | max |"
  echo "| ---: | ---: | ---: | ---: | ---: |"
  echo "| $(value delivery_p50_ms) ms | $(value delivery_p99_ms) ms | $(value delivery_max_ms) ms | $(value all_tabs_p50_ms) ms | $(value all_tabs_max_ms) ms |"
  echo
  echo "A burst of $burst edits, sent back to back in $(value burst_sent_ms) ms:"
  echo "batches carrying them per tab: max $(value burst_batches_max), mean $(value burst_batches_mean)."
  echo
  echo "Targets (issue 21): a burst of 100 edits within 150 ms arrives as <= 2 batches per client."
} | tee "$out"
