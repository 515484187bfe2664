#!/usr/bin/env bash
# Noisy neighbours: how much a light object and /healthz suffer while 4
# objects run CPU-bound SQL and 4 others spin in wasm (issue 16's target:
# p99 <= 20 ms and at least half the unloaded throughput, for both).
# Measures the light object (GET /objects/probe/light/whoami) and /healthz
# unloaded, then again under that load, and prints the ratios and whether
# the targets hold; a release run also writes the table to
# bench/results/noisy-neighbour-<date>.md (RESULTS=none: it does not).
#   usage: bench/noisy-neighbour.sh [seconds per measurement] [connections]
# PROFILE=debug measures a debug build instead (to try the script, not to
# judge the targets). SQL_ROWS (default 30000000) sets how far each
# recursive CTE counts and SPIN_MS (default 2000) how long each spin event
# runs: each load event is bounded, and the loops stop with the script.
# The server runs with max_cpu_per_event = "5s". Installs wrk (Debian) if
# missing.
set -euo pipefail
seconds=${1:-8} connections=${2:-16}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${PROFILE:-release}
sql_rows=${SQL_ROWS:-30000000}
spin_ms=${SPIN_MS:-2000}
p99_target_ms=20

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
rustup target add wasm32-wasip2 >/dev/null 2>&1
if [ "$profile" = release ]; then
  cargo build --release -q -p podhost
  bin=target/release/podhost
else
  cargo build -q -p podhost
  bin=target/debug/podhost
fi
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p probe

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
cat > "$work/podhost.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "data"
idle_timeout = "10m"
[limits]
max_cpu_per_event = "5s"
[classes.probe]
path = "$root/target/guests/wasm32-wasip2/guest/probe.wasm"
TOML
RUST_LOG=warn RUST_BACKTRACE=0 "$bin" serve --config "$work/podhost.toml" > "$work/out" 2> "$work/log" &
pids+=($!)
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "$base/healthz" && break
  sleep 0.2
done
curl -sf -o /dev/null "$base/objects/probe/light/whoami" || { echo "podhost did not start:" >&2; cat "$work/log" >&2; exit 1; }

# measure NAME PREFIX MODE [SUFFIX] -> "req/s p50 p99 errors"
measure() {
  BENCH_PREFIX=$2 BENCH_MODE=$3 BENCH_SUFFIX=${4:-} BENCH_METHOD=GET \
    wrk -t1 -c"$connections" -d"${seconds}s" --timeout 10s -s bench/load.lua "$base" \
    | awk '/^RESULT/ { print $2, $3, $4, $5 }'
}
light() { measure light /objects/probe/ hot /whoami; }
health() { measure healthz /healthz fixed; }

# One load loop: runs bounded events back to back until killed, counting
# answers by status in $work/<name>.status.
load_loop() {  # name path body
  while :; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 -X POST \
      -H 'content-type: application/json' --data "$3" "$base$2" >> "$work/$1.status" || echo 000 >> "$work/$1.status"
  done
}

declare -A result
result[light,idle]=$(light)
echo "light, unloaded: ${result[light,idle]}" >&2
result[health,idle]=$(health)
echo "healthz, unloaded: ${result[health,idle]}" >&2

cte="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $sql_rows) SELECT count(*) FROM c"
for i in 1 2 3 4; do
  load_loop "sql-$i" "/objects/probe/noisy-sql-$i/sql" "{\"query\": \"$cte\"}" &
  pids+=($!)
  load_loop "spin-$i" "/objects/probe/noisy-spin-$i/spin-for?ms=$spin_ms" "" &
  pids+=($!)
done
sleep 1  # every noisy event under way
result[light,loaded]=$(light)
echo "light, loaded: ${result[light,loaded]}" >&2
result[health,loaded]=$(health)
echo "healthz, loaded: ${result[health,loaded]}" >&2
# The noise, as the server saw it: events answered by status.
noise=$(cat "$work"/sql-*.status "$work"/spin-*.status 2>/dev/null | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $1, $2; sep = ", " }')
sql_done=$(cat "$work"/sql-*.status 2>/dev/null | wc -l)
spin_done=$(cat "$work"/spin-*.status 2>/dev/null | wc -l)

field() { echo "${result[$1,$2]}" | awk -v f="$3" '{ print $f }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
verdict=yes
row() {  # label key
  local idle_rate loaded_rate p99 r ok=yes
  idle_rate=$(field "$2" idle 1) loaded_rate=$(field "$2" loaded 1) p99=$(field "$2" loaded 3)
  # No answer at all within the run: its p99 is longer than the run.
  if awk -v r="$loaded_rate" 'BEGIN { exit !(r == 0) }'; then p99=">$((seconds * 1000))"; fi
  r=$(ratio "$loaded_rate" "$idle_rate")
  awk -v r="$r" -v p="$p99" -v t="$p99_target_ms" 'BEGIN { exit !(r >= 0.5 && p ~ /^[0-9.]+$/ && p <= t) }' || { ok=no; verdict=no; }
  echo "| $1 | $idle_rate | $(field "$2" idle 3) | $loaded_rate | $p99 | $(field "$2" loaded 4) | $r | $ok |"
}
report=$work/report.md
{
  echo "# podhost noisy neighbours, $(date -u +%F)"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)."
  echo "podhost $(git rev-parse --short HEAD) ($profile build); wrk, 1 thread, $connections connections, ${seconds} s per run."
  echo "Load: 4 objects running \`WITH RECURSIVE\` counting to $sql_rows and 4 spinning ${spin_ms} ms in wasm, back to back; max_cpu_per_event = 5s."
  echo
  echo "| target | unloaded req/s | unloaded p99 ms | loaded req/s | loaded p99 ms | loaded errors | loaded / unloaded | p99 <= ${p99_target_ms} ms and >= 0.5 |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  row "light object (GET whoami)" light
  row "/healthz" health
  echo
  echo "Noisy events answered during the run: $sql_done SQL, $spin_done spin ($noise)."
  echo
  echo "Targets hold: $verdict"
} > "$report"
cat "$report"
if [ "$profile" = release ] && [ "${RESULTS:-write}" != none ]; then
  mkdir -p bench/results
  cp "$report" "bench/results/noisy-neighbour-$(date -u +%F).md"
fi
