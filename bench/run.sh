#!/usr/bin/env bash
# Side by side, in one run on this machine: podhost (examples/counter,
# durability=full), the baseline (the same SQL by hand: axum + rusqlite, no
# Wasm) and Cloudflare's workerd (../shared/bench/peer-workerd), on the same
# counter workload. Prints a table of rates, latencies and ratios, and
# writes it to bench/results/<date>.md. In the same rounds it measures this
# machine's ceilings (bench/ceilings: an HTTP no-op on podhost's server
# stack, durable writes spread over files, durable file creation) and
# reports each podhost scenario as a fraction of its ceiling.
# Then the other figures of issue 25, each a section of the same report
# with its target and whether it holds, and a summary table at the end:
#   activation  criterion's p50 for the first event of a hibernated object
#               (and of a new one), durability normal: no fsync;
#   objects     live objects on one host: RSS per live object over
#               MEMORY_OBJECTS, how many of LIVE_OBJECTS go live, the
#               mappings and open files they hold, the first error;
#   hibernated  RSS per object once MEMORY_OBJECTS objects have hibernated;
#   sockets     SOCKETS idle WebSockets to examples/chat: how many open,
#               RSS per socket;
#   fanout      server CPU per delivered message at FANOUT subscribers,
#               and the kernel's floor under it (bench/ceilings fanout);
#   noisy       bench/noisy-neighbour.sh's table and verdict.
# A part that fails says why in the report ("not measured: ...") and the
# run goes on.
#   usage: bench/run.sh [seconds per measurement] [connections]
# Environment (defaults in brackets):
#   ROUNDS [3]             times each scenario cell is measured; the median
#                          is reported
#   EXTRAS [all]           "none" for the four scenarios and ceilings only,
#                          or some of "activation objects hibernated sockets
#                          fanout noisy" (spaces or commas)
#   LIVE_OBJECTS [100000]  objects asked to go live at once
#   MEMORY_OBJECTS [10000] objects the per-object memory is measured over
#   SOCKETS [100000]       idle WebSockets asked for
#   FANOUT ["1000 10000"]  subscriber counts of the fan-out rows
#   PUBLISHES [20]         publishes per fan-out row
#   RESULTS [write]        "none" to print the report without writing
#                          bench/results/<date>.md
#   PEER_WORKERD           workerd's run.sh if ../shared is elsewhere, or
#                          "none" to skip it
# Installs wrk (Debian) if missing; workerd installs itself (npm) on first
# use. The sockets part raises its own limit on open files as far as the
# process may (ulimit -n; fs.nr_open is the kernel's cap and is read, not
# changed); no kernel limit is raised.
set -euo pipefail
seconds=${1:-8} connections=${2:-16}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
peer=${PEER_WORKERD:-$root/../shared/bench/peer-workerd/run.sh}
rss_objects=${RSS_OBJECTS:-2000}
rounds=${ROUNDS:-3}
extras=${EXTRAS:-all}
[ "$extras" = all ] && extras="activation objects hibernated sockets fanout noisy"
[ "$extras" = none ] && extras=""
extras=${extras//,/ }
live_objects=${LIVE_OBJECTS:-100000}
memory_objects=${MEMORY_OBJECTS:-10000}
sockets=${SOCKETS:-100000}
fanout_sizes=${FANOUT:-1000 10000}
publishes=${PUBLISHES:-20}
results=${RESULTS:-write}
wants() { [[ " $extras " == *" $1 "* ]]; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p podhost -p baseline -p ceilings
cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p counter
if [ -n "$extras" ]; then
  cargo build --release -q -p fanout
  cargo build -q --target wasm32-wasip2 --profile guest --target-dir target/guests -p chat
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() {  # url
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "no answer from $1" >&2
  return 1
}

# name -> base URL, path prefix, pid
declare -A url prefix pid
servers=()

# Databases kept open past their instance: all of spread's 10,000 objects
# if the limit on open files allows (2 files each; 2,048 left for
# connections and the rest), else as many as it does.
open_databases() {
  local hard
  hard=$(ulimit -Hn)
  [ "$hard" = unlimited ] && hard=1048576
  hard=$(( (hard - 2048) / 2 ))
  [ "$hard" -gt 12000 ] && hard=12000
  [ "$hard" -lt 2048 ] && hard=2048
  echo "$hard"
}

start_podhost() {
  local port dir=$work/podhost
  port=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/podhost.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "data"
durability = "full"
idle_timeout = "10m"
max_active = 2048
max_open_databases = $(open_databases)
[server]
max_connections_per_address = 1000000   # every client is 127.0.0.1
[classes.counter]
path = "$root/target/guests/wasm32-wasip2/guest/counter.wasm"
TOML
  RUST_LOG=warn RUST_BACKTRACE=0 target/release/podhost serve --config "$dir/podhost.toml" > "$dir/out" 2> "$dir/log" &
  pids+=($!); pid[podhost]=$!
  url[podhost]=http://127.0.0.1:$port prefix[podhost]=/objects/counter/
  servers+=(podhost)
}

start_baseline() {
  local port
  port=$(free_port)
  target/release/baseline "$port" "$work/baseline" > /dev/null 2> "$work/baseline.log" &
  pids+=($!); pid[baseline]=$!
  url[baseline]=http://127.0.0.1:$port prefix[baseline]=/c/
  servers+=(baseline)
}

start_workerd() {
  if [ "$peer" = none ]; then
    echo "workerd skipped (PEER_WORKERD=none)" >&2
    return
  fi
  if [ ! -f "$peer" ]; then
    echo "workerd skipped (no $peer)" >&2
    return
  fi
  local port
  port=$(free_port)
  bash "$peer" "$port" "$work/workerd" > "$work/workerd.log" 2>&1 &
  pids+=($!); pid[workerd]=$!
  url[workerd]=http://127.0.0.1:$port prefix[workerd]=/c/
  servers+=(workerd)
}

# The HTTP ceiling: a server like the others, measured on hot read only.
start_noop() {
  local port
  port=$(free_port)
  target/release/ceilings http "$port" > /dev/null 2> "$work/noop.log" &
  pids+=($!); pid[noop]=$!
  url[noop]=http://127.0.0.1:$port prefix[noop]=/c/
}

start_podhost
start_baseline
start_workerd
start_noop
for s in "${servers[@]}" noop; do wait_for "${url[$s]}${prefix[$s]}warmup"; done

# measure SERVER MODE METHOD -> "req/s p50 p99 errors"
measure() {
  local s=$1
  BENCH_PREFIX=${prefix[$s]} BENCH_MODE=$2 BENCH_METHOD=$3 BENCH_RUN=$RANDOM \
    wrk -t1 -c"$connections" -d"${seconds}s" --timeout 10s -s bench/load.lua "${url[$s]}" \
    | awk '/^RESULT/ { print $2, $3, $4, $5 }'
}

# A process's descendants, one pid a line.
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

# Resident memory of a process and all its descendants, in KiB.
tree_rss() {
  local total=0 p
  for p in "$1" $(descendants "$1"); do
    total=$((total + $(awk '/VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# RSS growth per newly activated object, in KiB.
rss_per_object() {
  local s=$1 before after
  before=$(tree_rss "${pid[$s]}")
  seq 1 "$rss_objects" | xargs -P 16 -I{} curl -s -o /dev/null "${url[$s]}${prefix[$s]}rss-{}"
  sleep 1
  after=$(tree_rss "${pid[$s]}")
  awk -v a="$after" -v b="$before" -v n="$rss_objects" 'BEGIN { printf "%.1f", (a - b) / n }'
}

declare -A result runs
# Memory first, on fresh servers: after the scenarios podhost holds
# max_active objects, and activating more would only replace them.
for s in "${servers[@]}"; do
  result[rss,$s]=$(rss_per_object "$s")
  echo "rss $s: ${result[rss,$s]} KiB/object" >&2
done

# The ceiling each scenario is read against (hot write too, for
# information: group commit lets one fdatasync serve several requests).
declare -A ceiling_of=([hot-read]=http [hot-write]=durable-writes [spread]=durable-writes [cold]=file-create)
# A ceiling is measured right after the scenario it bounds, so the two see
# the same machine (durable writes once a round, after spread).
declare -A measure_after=([hot-read]=http [spread]=durable-writes [cold]=file-create)
declare -A ceiling_name=(
  [http]="HTTP no-op (a handler that does nothing on podhost's server stack)"
  [durable-writes]="durable writes (4 KiB + fdatasync over 1,000 files, 16 threads)"
  [file-create]="file creation (create + 4 KiB + fdatasync + directory fsync, 16 threads)"
)
# The disk ceilings run in the file system of the servers' data.
ceiling_dir=$work/ceilings
mkdir -p "$ceiling_dir"

# measure_ceiling NAME -> "ops/s p50 p99 errors" (a disk ceiling counts
# none: it stops at the first)
measure_ceiling() {
  case $1 in
    http) measure noop hot GET ;;
    durable-writes)
      target/release/ceilings durable-writes --threads 16 --files 1000 --seconds "$seconds" --dir "$ceiling_dir" \
        | awk '/^RESULT/ { print $2, $3, $4, "-" }' ;;
    file-create)
      target/release/ceilings file-create --threads 16 --seconds "$seconds" --dir "$ceiling_dir" \
        | awk '/^RESULT/ { print $2, $3, $4, "-" }' ;;
  esac
}

# This machine drifts (other tenants, disk writeback) by up to 2x within
# minutes. Each scenario runs $rounds times, the servers taking turns
# within a round, and each cell keeps its median round by req/s.
scenarios=("hot-write hot POST" "hot-read hot GET" "cold cold POST" "spread spread POST")
for round in $(seq 1 "$rounds"); do
  for scenario in "${scenarios[@]}"; do
    read -r label mode method <<< "$scenario"
    for s in "${servers[@]}"; do
      line=$(measure "$s" "$mode" "$method")
      runs[$label,$s]+="$line"$'\n'
      echo "round $round $label $s: $line" >&2
    done
    ceiling=${measure_after[$label]:-}
    if [ -n "$ceiling" ]; then
      line=$(measure_ceiling "$ceiling")
      runs[ceiling,$ceiling]+="$line"$'\n'
      echo "round $round ceiling $ceiling: $line" >&2
    fi
  done
done
# The scenario servers are done: the parts below start their own, on a
# quieter machine.
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

for key in "${!runs[@]}"; do
  result[$key]=$(printf '%s' "${runs[$key]}" | sort -g -k1,1 | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }')
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
field() { echo "${result[$1,$2]:-- - - -}" | awk -v f="$3" '{ print $f }'; }

report=$work/report.md
{
  echo "# podhost benchmarks, $(date -u +%F)"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)."
  echo "Load: wrk, 1 thread, $connections connections, ${seconds} s per run; each cell is the median of $rounds rounds (servers taking turns); durability full (fsync per commit) on podhost and the baseline; podhost with \`max_active = 2048\`, \`max_open_databases = $(open_databases)\`."
  echo "podhost $(git rev-parse --short HEAD); $(rustc --version)."
  echo
  echo "| scenario | podhost req/s | baseline req/s | workerd req/s | podhost / workerd | podhost / baseline |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for scenario in "${scenarios[@]}"; do
    read -r label _ <<< "$scenario"
    p=$(field "$label" podhost 1) b=$(field "$label" baseline 1) w=$(field "$label" workerd 1)
    echo "| $label | $p | $b | $w | $(ratio "$p" "$w") | $(ratio "$p" "$b") |"
  done
  echo
  echo "Latency in ms, p50 / p99 (errors):"
  echo
  echo "| scenario | podhost | baseline | workerd |"
  echo "| --- | --- | --- | --- |"
  for scenario in "${scenarios[@]}"; do
    read -r label _ <<< "$scenario"
    row="| $label |"
    for s in podhost baseline workerd; do
      row="$row $(field "$label" "$s" 2) / $(field "$label" "$s" 3) ($(field "$label" "$s" 4)) |"
    done
    echo "$row"
  done
  echo
  p=${result[rss,podhost]:--} b=${result[rss,baseline]:--} w=${result[rss,workerd]:--}
  echo "Memory: resident growth per newly activated object ($rss_objects objects): podhost $p KiB, baseline $b KiB, workerd $w KiB; podhost / workerd $(ratio "$p" "$w")."
  echo
  echo "## podhost against this machine's ceilings"
  echo
  echo 'Each podhost scenario as a fraction of what this machine allows, the ceilings measured by `bench/ceilings` in the same rounds (median round each). Hot write may pass its ceiling: group commit makes one fdatasync serve several requests.'
  echo
  echo "| scenario | podhost req/s | ceiling | ceiling ops/s | podhost / ceiling | podhost / workerd | podhost / baseline |"
  echo "| --- | ---: | --- | ---: | ---: | ---: | ---: |"
  for label in hot-read spread cold hot-write; do
    c=${ceiling_of[$label]}
    p=$(field "$label" podhost 1) b=$(field "$label" baseline 1) w=$(field "$label" workerd 1) top=$(field ceiling "$c" 1)
    echo "| $label | $p | ${ceiling_name[$c]} | $top | $(ratio "$p" "$top") | $(ratio "$p" "$w") | $(ratio "$p" "$b") |"
  done
  echo
  echo "The ceilings, ops/s and latency in ms, p50 / p99 (errors; a disk ceiling stops at the first):"
  echo
  echo "| ceiling | ops/s | p50 / p99 |"
  echo "| --- | ---: | --- |"
  for c in http durable-writes file-create; do
    echo "| ${ceiling_name[$c]} | $(field ceiling "$c" 1) | $(field ceiling "$c" 2) / $(field ceiling "$c" 3) ($(field ceiling "$c" 4)) |"
  done
} > "$report"

# The summary's rows, "| target | figure | holds |", in the order measured.
summary=$work/summary
: > "$summary"
row() { echo "| $1 | $2 | $3 |" >> "$summary"; }
# holds VALUE OP LIMIT -> yes / no (no for a value that is not a number)
holds() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v !~ /^-?[0-9.]+$/) { print "no"; exit }
    v += 0; ok = (op == "<=") ? v <= t : v >= t
    print ok ? "yes" : "no" }'
}
scenario_row() {  # target label against-server field
  local p f
  p=$(field "$2" podhost 1) f=$(field "$3" "$4" 1)
  if [ "$f" = - ] || [ "$p" = - ]; then
    row "$1" "not measured: no $4 figure" no
  else
    row "$1" "$(ratio "$p" "$f") ($p / $f)" "$(holds "$(ratio "$p" "$f")" '>=' "$5")"
  fi
}
scenario_row "spread over 10,000 objects ≥ 0.5 of the durable-write ceiling" spread ceiling durable-writes 0.5
scenario_row "cold ≥ 0.5 of the file-creation ceiling" cold ceiling file-create 0.5
scenario_row "hot read ≥ 0.6 of the HTTP ceiling" hot-read ceiling http 0.6
scenario_row "hot write ≥ 10× workerd" hot-write hot-write workerd 10

source bench/figures.sh
for part in activation objects hibernated sockets fanout noisy; do
  if wants "$part"; then
    run_part "$part" >> "$report"
  else
    while IFS= read -r target; do
      row "$target" "not measured: not in EXTRAS" no
    done <<< "${part_targets[$part]}"
  fi
done

{
  echo
  echo "## Targets (issue 25)"
  echo
  echo "| target | figure | holds |"
  echo "| --- | --- | --- |"
  cat "$summary"
} >> "$report"
cat "$report"
if [ "$results" != none ]; then
  mkdir -p bench/results
  cp "$report" "bench/results/$(date -u +%F).md"
fi
