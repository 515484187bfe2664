#!/usr/bin/env bash
# Deploys under load (issue 18): a ~2 MiB component (the `versioned` test
# guest padded with a custom section) is deployed to a running server
# while wrk reads one hot object. Reports the time from the start of the
# PUT to the first request answered by the new version, the PUT's own
# time, and the hot reads' p99 and errors steady vs during the deploy
# (target: no errors, p99 at most twice the steady p99). A release run
# writes bench/results/deploy-<date>.md.
#   usage: bench/deploy.sh [seconds per measurement] [connections]
# PROFILE=debug measures a debug build instead (to try the script).
# Installs wrk (Debian) if missing.
set -euo pipefail
seconds=${1:-6} connections=${2:-16}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${PROFILE:-release}
token=bench-deploy-admin-token-0123456789abcdef

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
rustup target add wasm32-wasip2 >/dev/null 2>&1
if [ "$profile" = release ]; then
  cargo build --release -q -p podhost
  bin=target/release/podhost
else
  cargo build -q -p podhost
  bin=target/debug/podhost
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Two versions, each padded to ~2 MiB with a custom section (id 0).
variant() {  # feature-or-empty output
  if [ -n "$1" ]; then
    cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p versioned --features "$1"
  else
    cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p versioned
  fi
  python3 - target/guests/wasm32-wasip2/guest/versioned.wasm "$2" <<'PY'
import sys
def leb(n):
    out = bytearray()
    while True:
        byte = n & 0x7f
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
wasm = open(sys.argv[1], "rb").read()
name = b"bench-padding"
pad = b"\0" * max(0, 2 * 1024 * 1024 - len(wasm) - 32)
body = leb(len(name)) + name + pad
open(sys.argv[2], "wb").write(wasm + b"\0" + leb(len(body)) + body)
PY
}
variant "" "$work/v1.wasm"
variant v2 "$work/v2.wasm"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
cat > "$work/podhost.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "data"
idle_timeout = "10m"
admin_token = "$token"
TOML
RUST_LOG=warn RUST_BACKTRACE=0 "$bin" serve --config "$work/podhost.toml" > "$work/out" 2> "$work/log" &
pids+=($!)
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "$base/healthz" && break
  sleep 0.2
done

deploy() {  # file -> "http_code seconds"
  curl -s -o "$work/deploy.json" -w '%{http_code} %{time_total}\n' -X PUT \
    -H "authorization: Bearer $token" -H 'content-type: application/wasm' \
    --data-binary "@$1" "$base/admin/classes/versioned"
}
read -r code _ < <(deploy "$work/v1.wasm")
[ "$code" = 201 ] || { echo "deploying v1 failed ($code):" >&2; cat "$work/deploy.json" "$work/log" >&2; exit 1; }
curl -sf -o /dev/null "$base/objects/versioned/hot/version"

reads() {
  BENCH_PREFIX=/objects/versioned/ BENCH_MODE=hot BENCH_SUFFIX=/version BENCH_METHOD=GET \
    wrk -t1 -c"$connections" -d"${seconds}s" --timeout 10s -s bench/load.lua "$base" \
    | awk '/^RESULT/ { print $2, $3, $4, $5 }'
}
read -r steady_rps _ steady_p99 steady_errors < <(reads)

reads > "$work/during" &
load=$!
sleep 1
start=$(date +%s.%N)
read -r code put_seconds < <(deploy "$work/v2.wasm")
[ "$code" = 201 ] || { echo "deploying v2 failed ($code):" >&2; cat "$work/deploy.json" >&2; exit 1; }
until [ "$(curl -s "$base/objects/versioned/first/version")" = v2 ]; do sleep 0.001; done
first=$(python3 -c "print(f'{$(date +%s.%N) - $start:.3f}')")
wait "$load"
read -r during_rps _ during_p99 during_errors < "$work/during"

verdict=$(python3 -c "print('yes' if $during_errors == 0 and $during_p99 <= 2 * max($steady_p99, 0.001) else 'no')")
report="$work/report.md"
{
  echo "# podhost deploy under load, $(date -u +%F)"
  echo
  echo "$(nproc) cores, $profile build, a $(stat -c %s "$work/v2.wasm")-byte component, hot reads with $connections connections for ${seconds}s"
  echo
  echo "| measure | value |"
  echo "| --- | --- |"
  echo "| PUT of the new version (upload, checks, compile, record) | ${put_seconds} s |"
  echo "| from the PUT's start to the first request on the new version | ${first} s |"
  echo "| hot reads, steady: req/s, p99 ms, errors | $steady_rps, $steady_p99, $steady_errors |"
  echo "| hot reads during the deploy: req/s, p99 ms, errors | $during_rps, $during_p99, $during_errors |"
  echo "| no errors and p99 at most twice the steady p99 | $verdict |"
} > "$report"
cat "$report"
if [ "$profile" = release ]; then
  mkdir -p bench/results
  cp "$report" "bench/results/deploy-$(date -u +%F).md"
fi
