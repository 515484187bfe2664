#!/usr/bin/env bash
# Three podhost nodes on a local etcd (Debian's etcd-server), in one run on
# this machine:
#  (a) hot writes to one counter object sent straight to its owner, and the
#      same through another node (one forward hop): req/s, p50, p99, ratio;
#  (b) failover: SIGKILL the owner of a fresh object, time until another
#      node serves it again (every acknowledged write restored), 10 kills;
#  (c) objects per node after 300 objects got their first request from a
#      balanced load (each through a random node, as a load balancer would).
# Replication goes to a file:// store (the bench measures the cluster, not
# the store); durability = replicated, so a failover loses nothing.
#   usage: bench/cluster.sh [seconds] [connections]
# Builds podhost (release; PROFILE=debug tries the script on a debug build)
# and the counter guest. LEASE_TTL (default 5s, podhost's default) sets
# the nodes' lease, which bounds the failover time.
set -euo pipefail
seconds=${1:-8} connections=${2:-16}
lease_ttl=${LEASE_TTL:-5s}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server; }
rustup target add wasm32-wasip2 >/dev/null
profile=${PROFILE:-release}
if [ "$profile" = release ]; then cargo build --release -q -p podhost; else cargo build -q -p podhost; fi
podhost=$root/target/$profile/podhost
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p counter
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

etcd_port=$(free_port) peer_port=$(free_port)
etcd --name=bench --data-dir="$work/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-cluster="bench=http://127.0.0.1:$peer_port" > /dev/null 2> "$work/etcd.log" &
for _ in $(seq 1 150); do curl -sf -o /dev/null "http://127.0.0.1:$etcd_port/health" && break; sleep 0.2; done

# The owner of every object under /bench/owners/, as "node" lines.
owners() {
  curl -s "http://127.0.0.1:$etcd_port/v3/kv/range" -d "$(python3 -c '
import base64, json
b = lambda s: base64.b64encode(s.encode()).decode()
print(json.dumps({"key": b("/bench/owners/"), "range_end": b("/bench/owners0")}))')" \
    | python3 -c '
import base64, json, sys
for kv in json.load(sys.stdin).get("kvs", []):
    print(base64.b64decode(kv["value"]).decode())'
}

declare -A url pid
start() {  # node
  local dir="$work/$1"
  mkdir -p "$dir"
  cat > "$dir/podhost.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "data"
durability = "replicated"
idle_timeout = "10m"
[server]
max_connections_per_address = 4096
[cluster]
etcd = "etcd://127.0.0.1:$etcd_port/bench"
node = "$1"
lease_ttl = "$lease_ttl"
[replication]
url = "file://$work/store"
[classes.counter]
path = "$root/target/guests/wasm32-wasip2/guest/counter.wasm"
TOML
  : > "$dir/out"
  RUST_LOG=warn "$podhost" serve --config "$dir/podhost.toml" > "$dir/out" 2>> "$dir/log" &
  pid[$1]=$!
  url[$1]=""
  # A restarted node waits for its previous lease to expire first.
  for _ in $(seq 1 300); do
    url[$1]=$(sed -n 's/^podhost listening on //p' "$dir/out")
    [ -n "${url[$1]}" ] && break
    sleep 0.1
  done
  [ -n "${url[$1]}" ] || { cat "$dir/log" >&2; exit 1; }
}

load() {  # url -> "req/s p50 p99 errors"
  BENCH_MODE=hot BENCH_METHOD=POST BENCH_PREFIX=/objects/counter/ \
    wrk -t1 -c"$connections" -d"${seconds}s" -s bench/load.lua "$1/objects/counter/hot" \
    | awk '/^RESULT/ { print $2, $3, $4, $5 }'
}

for node in a b c; do start "$node"; done

# (a) One forward hop: "hot" is a's (a served it first).
curl -sf -X POST "${url[a]}/objects/counter/hot" > /dev/null
[ "$(owners | sort | uniq -c | awk '$2 == "a" { print $1 }')" = 1 ] || { echo "hot is not a's" >&2; exit 1; }
direct=$(load "${url[a]}")
forwarded=$(load "${url[b]}")

# (b) Failover: c serves a fresh object three times, is killed, and a is
# asked (every 50 ms) until it serves the object with the three writes.
failovers=()
for kill in $(seq 1 10); do
  object="failover-$kill"
  for _ in 1 2 3; do curl -sf -X POST "${url[c]}/objects/counter/$object" > /dev/null; done
  killed=$(now)
  kill -9 "${pid[c]}"; wait "${pid[c]}" 2>/dev/null || true
  served=""
  for _ in $(seq 1 600); do
    served=$(curl -s -o /dev/null -w '%{http_code}' "${url[a]}/objects/counter/$object") || true
    [ "$served" = 200 ] && break
    sleep 0.05
  done
  back=$(now)
  count=$(curl -s "${url[a]}/objects/counter/$object")
  [ "$served" = 200 ] && [ "$count" = 3 ] || { echo "failover $kill: $served, count $count (expected 3)" >&2; exit 1; }
  failovers+=("$(awk -v a="$killed" -v b="$back" 'BEGIN { printf "%.2f", b - a }')")
  start c
done

# (c) 300 objects, each first sent to a random node.
nodes=(a b c)
declare -A before
while read -r n node; do before[$node]=$n; done < <(owners | sort | uniq -c)
for i in $(seq 1 300); do
  curl -sf -X POST "${url[${nodes[RANDOM % 3]}]}/objects/counter/spread-$i" > /dev/null
done
per_node=""
while read -r n node; do per_node+="$node $((n - ${before[$node]:-0})), "; done < <(owners | sort | uniq -c)

echo "3 nodes ($profile build), local etcd, lease_ttl $lease_ttl, durability replicated to file://"
echo "(a) hot POSTs, $connections connections, ${seconds}s each (req/s, p50 ms, p99 ms, errors)"
echo "  direct to the owner: $direct"
echo "  through another node (one forward hop): $forwarded"
awk -v f="${forwarded%% *}" -v d="${direct%% *}" 'BEGIN { printf "  forwarded/direct req/s: %.2f\n", f / d }'
echo "(b) failover, SIGKILL to served again through another node, 10 kills (s):"
echo "  ${failovers[*]}"
printf '%s\n' "${failovers[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  printf "  min %.2f, median %.2f, max %.2f\n", v[1], (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2, v[NR] }'
echo "(c) owners after 300 objects got their first request through a random node"
echo "  ${per_node%, }"
