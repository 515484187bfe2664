#!/usr/bin/env bash
# examples/toolbox: POST /key/memories/search over N memories of D
# dimensions (default 10,000 × 384), timed end to end over HTTP (one
# client, keep-alive, on this machine): p50/p99 of the searches. The
# memories are put first, one PUT each. Writes
# bench/results/memories-<date>.md. A bench figure, not a test.
#   usage: bench/memories.sh [memories] [dims] [searches]
# PROFILE=debug tries it on a debug build.
set -euo pipefail
memories=${1:-10000} dims=${2:-384} searches=${3:-50}
profile=${PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rustup target add wasm32-wasip2 >/dev/null 2>&1
if [ "$profile" = release ]; then
  cargo build --release -q -p podhost
  bin=target/release/podhost
else
  cargo build -q -p podhost
  bin=target/debug/podhost
fi
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p toolbox

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

admin=bench-admin-token-of-at-least-32-bytes
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/podhost.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "data"
durability = "full"
idle_timeout = "10m"
admin_token = "$admin"
[classes.toolbox]
path = "$root/target/guests/wasm32-wasip2/guest/toolbox.wasm"
access = "key"
TOML
"$bin" serve --config "$work/podhost.toml" >"$work/out" 2>"$work/log" &
server=$!
for _ in $(seq 1 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.2
done
key=$(curl -sf -X POST -H "Authorization: Bearer $admin" -d '{"label": "bench"}' \
  "http://127.0.0.1:$port/admin/objects/toolbox/bench/keys" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["key"]["key"])')

result=$(python3 - "$port" "$key" "$memories" "$dims" "$searches" <<'PY'
import http.client, json, random, sys, time
port, key, n, dims, searches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
conn = http.client.HTTPConnection("127.0.0.1", int(port))
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
def call(method, path, body):
    conn.request(method, "/key" + path, json.dumps(body), headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {data[:200]!r}")
    return data
rng = random.Random(7)
vector = lambda: [rng.uniform(-1, 1) for _ in range(dims)]
start = time.perf_counter()
for i in range(n):
    call("PUT", f"/memories/m{i}", {"content": f"memory {i}", "embedding": vector()})
put_s = time.perf_counter() - start
call("POST", "/memories/search", {"embedding": vector(), "limit": 10})  # warm
times = []
for _ in range(searches):
    body = {"embedding": vector(), "limit": 10}
    t = time.perf_counter()
    results = json.loads(call("POST", "/memories/search", body))["results"]
    times.append((time.perf_counter() - t) * 1000)
    assert len(results) == 10
times.sort()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"{put_s:.1f} {p(0.5):.1f} {p(0.99):.1f}")
PY
)
read -r put_s p50 p99 <<<"$result"
date=$(date +%F)
out=bench/results/memories-$date.md
{
  echo "# Memory search (examples/toolbox), $date"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)."
  echo "podhost $profile build, durability full; $memories memories of $dims dimensions (f32 BLOBs),"
  echo "put one PUT each in ${put_s} s; $searches searches (top 10 by cosine), timed end to end over HTTP"
  echo "(one keep-alive client on this machine)."
  echo
  echo "| searches | p50 | p99 |"
  echo "| --- | --- | --- |"
  echo "| $searches | ${p50} ms | ${p99} ms |"
} | tee "$out"
