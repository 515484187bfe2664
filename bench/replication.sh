#!/usr/bin/env bash
# Replication to an S3-compatible server on 127.0.0.1 (moto's), in one run
# on this machine: hot writes on one counter object and writes spread over
# 1,000 objects, with durability = full (shipping in the background) and
# durability = replicated (each response waits for its segment in the
# store); then the lag of background shipping right after the hot load,
# and the store's bytes per write.
#   usage: bench/replication.sh [seconds] [connections]
# Builds podhost (release; PROFILE=debug tries the script on a debug build)
# and the guests; installs wrk and moto if missing.
set -euo pipefail
seconds=${1:-8} connections=${2:-16}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
rustup target add wasm32-wasip2 >/dev/null
profile=${PROFILE:-release}
if [ "$profile" = release ]; then cargo build --release -q -p podhost; else cargo build -q -p podhost; fi
podhost=target/$profile/podhost
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p counter
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
s3_port=$(free_port)
moto_server -H 127.0.0.1 -p "$s3_port" > "$work/moto.log" 2>&1 &
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$s3_port/" && break; sleep 0.2; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench

# Store bytes and objects under a bucket (ListObjectsV2, one page of 1,000
# is plenty for the hot object; the spread run is not counted).
store_bytes() {  # bucket
  curl -s "http://127.0.0.1:$s3_port/$1?list-type=2&max-keys=100000" \
    | python3 -c 'import re,sys; t=sys.stdin.read(); print(sum(int(s) for s in re.findall(r"<Size>(\d+)</Size>", t)))'
}

url=""
start() {  # name durability
  local dir="$work/$1"
  mkdir -p "$dir"
  curl -s -X PUT "http://127.0.0.1:$s3_port/$1" > /dev/null
  cat > "$dir/podhost.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "data"
durability = "$2"
idle_timeout = "10m"
[replication]
url = "s3://$1/podhost"
endpoint = "http://127.0.0.1:$s3_port"
allow_http = true
region = "us-east-1"
[classes.counter]
path = "$root/target/guests/wasm32-wasip2/guest/counter.wasm"
TOML
  RUST_LOG=warn "$podhost" serve --config "$dir/podhost.toml" > "$dir/out" 2> "$dir/log" &
  pid=$!
  url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^podhost listening on //p' "$dir/out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$dir/log" >&2; exit 1; }
}

load() {  # mode -> "req/s p50 p99 errors"
  BENCH_MODE=$1 BENCH_OBJECTS=1000 BENCH_METHOD=POST BENCH_PREFIX=/objects/counter/ \
    wrk -t1 -c"$connections" -d"${seconds}s" -s bench/load.lua "$url/objects/counter/hot" \
    | awk '/^RESULT/ { print $2, $3, $4, $5 }'
}

metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

declare -A hot spread lag bytes
for durability in full replicated; do
  start "$durability" "$durability"
  curl -s -X POST "$url/objects/counter/hot" > /dev/null
  before=$(store_bytes "$durability")
  hot[$durability]=$(load hot)
  lag[$durability]="$(metric podhost_replication_lag_ms) ms, $(metric podhost_replication_queued_bytes) bytes queued"
  count=$(curl -s "$url/objects/counter/hot")
  # Let background shipping finish before counting the store's bytes.
  for _ in $(seq 1 300); do [ "$(metric podhost_replication_queued_bytes)" = 0 ] && break; sleep 0.1; done
  after=$(store_bytes "$durability")
  bytes[$durability]=$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN { printf "%.0f", (a - b) / n }')
  spread[$durability]=$(load spread)
  kill "$pid"; wait "$pid" || true
done

echo "replication to moto's S3 server on 127.0.0.1, $connections connections, ${seconds}s each"
echo "(columns: req/s, p50 ms, p99 ms, errors)"
for durability in full replicated; do
  echo "  $durability: hot ${hot[$durability]} | spread over 1,000 ${spread[$durability]}"
  echo "    right after the hot load: lag ${lag[$durability]}; store bytes per hot write: ${bytes[$durability]}"
done
awk -v a="${hot[replicated]%% *}" -v b="${hot[full]%% *}" 'BEGIN { printf "  hot write replicated/full: %.2f (target >= 0.5)\n", a / b }'
awk -v a="${spread[replicated]%% *}" -v b="${spread[full]%% *}" 'BEGIN { printf "  spread replicated/full: %.2f\n", a / b }'
