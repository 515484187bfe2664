#!/usr/bin/env bash
# Hot writes on one counter object, durability = full, with group commit on
# and off, in one run on this machine; prints both rates and their ratio.
#   usage: bench/group-commit.sh [seconds] [connections]
# Builds podhost (release) and the guests; installs wrk if missing.
set -euo pipefail
seconds=${1:-8} connections=${2:-16}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
rustup target add wasm32-wasip2 >/dev/null
cargo build --release -q -p podhost
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p counter
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Runs one server with group_commit_max_events=$1, loads it, prints req/s.
run() {
  local events=$1 dir="$work/$1"
  mkdir -p "$dir"
  cat > "$dir/podhost.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "data"
durability = "full"
group_commit_max_events = $events
[classes.counter]
path = "$root/target/guests/wasm32-wasip2/guest/counter.wasm"
TOML
  RUST_LOG=warn target/release/podhost serve --config "$dir/podhost.toml" > "$dir/out" 2> "$dir/log" &
  local pid=$! url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^podhost listening on //p' "$dir/out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$dir/log" >&2; exit 1; }
  curl -s -X POST "$url/objects/counter/hot" > /dev/null
  local rate
  rate=$(BENCH_MODE=hot BENCH_METHOD=POST BENCH_PREFIX=/objects/counter/ wrk -t1 -c"$connections" -d"${seconds}s" -s bench/load.lua "$url/objects/counter/hot" \
    | awk '/^RESULT/ { print $2 }')
  kill "$pid"; wait "$pid" || true
  echo "$rate"
}

with=$(run 64)
without=$(run 1)
echo "hot writes, one counter object, durability=full, $connections connections, ${seconds}s each"
echo "  group commit on  (max 64 events): $with req/s"
echo "  group commit off (1 event/commit): $without req/s"
awk -v a="$with" -v b="$without" 'BEGIN { printf "  ratio on/off: %.2f\n", a / b }'
