# The figures of issue 25 beyond the counter scenarios, one part each,
# sourced by bench/run.sh (which defines root, work, seconds, connections,
# the knobs, free_port, wait_for, row and holds). `run_part NAME` runs
# part_NAME in a subshell with its own servers, killed when it ends;
# the part prints its report section and adds its rows to the summary.
# One that fails prints "not measured: <why>" instead.

# Each part's targets, one a line, as the summary names them.
declare -A part_targets=(
  [activation]="activation of a hibernated object, p50 ≤ 150 µs (criterion, excluding fsync)"
  [objects]="≤ 64 KiB resident per live object (over ≥ 10,000 live objects)
100,000 live objects on one host (no kernel limit raised)"
  [hibernated]="a hibernated object costs no resident memory beyond its catalog row (≤ 1 KiB)"
  [sockets]="100,000 idle WebSockets on one host
≤ 4 KiB resident per idle WebSocket"
  [fanout]="fan-out ≤ 5 µs of server CPU per delivered message"
  [noisy]="noisy neighbour: light object and /healthz keep p99 ≤ 20 ms and ≥ 0.5 of unloaded throughput"
)

run_part() {  # name
  local name=$1 status=0 part
  echo "== $name" >&2
  (
    part_pids=()
    # Only the servers are waited for: the stderr tee is a child too, and
    # ends only once this subshell has.
    trap 'for p in "${part_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done' EXIT
    trap 'exit 143' TERM INT
    "part_$name"
  ) > "$work/$name.md" 2> >(tee "$work/$name.err" >&2) &
  part=$!
  pids+=("$part")
  wait "$part" || status=$?
  cat "$work/$name.md"
  if [ "$status" -ne 0 ]; then
    local why
    why=$(grep -v '^\s*$' "$work/$name.err" | tail -n 1)
    why=${why:-exit status $status}
    echo
    echo "**$name: not measured**: ${why//|/\\|}"
    # Rows the part did not get to write.
    while IFS= read -r target; do
      grep -qF "| $target |" "$summary" || row "$target" "not measured: ${why//|/\\|}" no
    done <<< "${part_targets[$name]}"
  fi
}

# start_server NAME CONFIG: a podhost with CONFIG (its `listen` line
# added) in $work/NAME; sets server_pid, server_url and server_dir.
start_server() {
  local port
  port=$(free_port)
  server_dir=$work/$1
  mkdir -p "$server_dir"
  { echo "listen = \"127.0.0.1:$port\""; echo "$2"; } > "$server_dir/podhost.toml"
  RUST_LOG=warn RUST_BACKTRACE=0 target/release/podhost serve --config "$server_dir/podhost.toml" \
    > "$server_dir/out" 2> "$server_dir/log" &
  server_pid=$!
  part_pids+=("$server_pid")
  server_url=http://127.0.0.1:$port
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$server_url/healthz" && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "podhost did not start: $(start_failure)" >&2
  return 1
}

# Why the server in $server_dir stopped at start: its error and causes on
# one line.
start_failure() {
  { grep -A4 '^Error:' "$server_dir/log" || tail -n 1 "$server_dir/log"; } \
    | grep -v '^\s*$' | tr -s ' \n' ' ' | cut -c1-400 | sed 's/|/\\|/g'
}

counter_classes="[classes.counter]
path = \"$root/target/guests/wasm32-wasip2/guest/counter.wasm\""

# The server's first warnings and errors (each message once, without its
# time), as a quoted block.
server_log() {
  grep -iE 'warn|error' "$server_dir/log" | cut -d' ' -f2- | awk '!seen[$0]++' \
    | head -n "${1:-5}" | cut -c1-400 | sed 's/^/    /' || true
}

kib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }
per() { awk -v a="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", a / n; else printf "-" }'; }

part_activation() {
  # Only the activation benches; criterion keeps its estimates as JSON.
  cargo bench -q -p podhost --bench hot_paths -- 'activation: first event' >&2
  local hibernated open new
  hibernated=$(criterion_median 'activation: first event of a hibernated object')
  open=$(criterion_median 'activation: first event of an object whose database stayed open')
  new=$(criterion_median 'activation: first event of a new object')
  echo
  echo "## Activation (criterion, in process)"
  echo
  echo 'From `host/benches/hot_paths.rs`, no HTTP, durability `normal` (no fsync): the first event of a hibernated object (reopen its database, instantiate, run a counter `GET`; more objects than `max_active` and `max_open_databases`, so each event also evicts one) and, for information, of an object pushed out by `max_active` whose database stayed open (instantiate around it, run the `GET`) and of a new object (create its database too). Criterion'"'"'s median, in µs.'
  echo
  echo "| activation | p50 µs | target | holds |"
  echo "| --- | ---: | --- | --- |"
  echo "| hibernated object | $hibernated | ≤ 150 µs | $(holds "$hibernated" '<=' 150) |"
  echo "| object whose database stayed open | $open | - | - |"
  echo "| new object | $new | - | - |"
  row "${part_targets[activation]}" "$hibernated µs" "$(holds "$hibernated" '<=' 150)"
}

# criterion_median ID -> the median of a criterion benchmark, in µs.
criterion_median() {
  python3 - "$1" target/criterion <<'PY'
import json, pathlib, sys
wanted, root = sys.argv[1], pathlib.Path(sys.argv[2])
for bench in root.glob("**/new/benchmark.json"):
    if json.loads(bench.read_text()).get("full_id") == wanted:
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        print(f"{estimates['median']['point_estimate'] / 1000:.1f}")
        sys.exit(0)
sys.exit(f"criterion wrote no estimate for {wanted!r}")
PY
}

# maps_by_kind PID -> "kind<TAB>count<TAB>MiB" lines: the process's
# memory mappings grouped by what backs them.
maps_by_kind() {
  python3 - "$1" <<'PY'
import collections, sys
count, size = collections.Counter(), collections.Counter()
for line in open(f"/proc/{sys.argv[1]}/maps"):
    fields = line.split(maxsplit=5)
    start, end = (int(x, 16) for x in fields[0].split("-"))
    perms, path = fields[1], (fields[5].strip() if len(fields) > 5 else "")
    if not path:
        kind = f"anonymous {perms}"
    elif path.startswith("/memfd:"):
        kind = f"memfd:{path[7:].split(' ')[0]} {perms}"
    elif path.startswith("["):
        kind = path.split(":")[0].rstrip("]") + "]"
    elif ".sqlite" in path:
        kind = "sqlite files"
    elif ".so" in path:
        kind = "shared libraries"
    else:
        kind = "other files"
    count[kind] += 1
    size[kind] += end - start
for kind, n in count.most_common():
    print(f"{kind}\t{n}\t{size[kind] / 2**20:.1f}")
PY
}

# at_line FILE N -> the walk's "AT" line for N objects (or the last).
at_line() {
  if [ "$2" = last ]; then grep '^AT ' "$1" | tail -n 1; else grep "^AT $2 " "$1" | head -n 1; fi || true
}

part_objects() {
  # A max_active the host refuses at start is halved until it starts; the
  # report says what was refused and why.
  # So is one that starts holding more than half of vm.max_map_count
  # before any object is live: it would reach fewer objects than a smaller
  # one.
  local max_active=$live_objects refused="" map_limit maps
  map_limit=$(cat /proc/sys/vm/max_map_count)
  while :; do
    if start_server "objects-$max_active" "data_dir = \"data\"
durability = \"normal\"
idle_timeout = \"1h\"
max_active = $max_active
$counter_classes"; then
      maps=$(wc -l < "/proc/$server_pid/maps")
      [ "$maps" -le $((map_limit / 2)) ] && break
      refused+="- \`max_active = $max_active\`: the server started holding $maps memory mappings before any object was live (\`vm.max_map_count\` = $map_limit)"$'\n'
      kill "$server_pid"
      wait "$server_pid" 2>/dev/null || true
    else
      refused+="- \`max_active = $max_active\`: the server did not start: \`$(start_failure)\`"$'\n'
    fi
    max_active=$((max_active / 2))
    [ "$max_active" -ge 1000 ] || { echo "podhost started with no max_active down to 1000" >&2; return 1; }
  done
  local walk=$server_dir/walk checkpoints=$live_objects
  [ "$memory_objects" -lt "$live_objects" ] && checkpoints="$memory_objects $live_objects"
  maps_by_kind "$server_pid" > "$server_dir/maps-start"
  echo "objects: activating up to $live_objects (checkpoint at $memory_objects)" >&2
  target/release/objects "$server_url" "$server_pid" live $checkpoints | tee "$walk" >&2
  maps_by_kind "$server_pid" > "$server_dir/maps-end"
  local start at_m last reached error n_m rss_m live file_limit
  start=$(at_line "$walk" 0)
  at_m=$(at_line "$walk" "$memory_objects")
  last=$(at_line "$walk" last)
  reached=$(awk '/^REACHED/ { print $2 }' "$walk")
  error=$(grep '^ERROR' "$walk" | cut -d' ' -f3- || true)
  file_limit=$(awk '/Max open files/ { print $4 }' "/proc/$server_pid/limits")
  read -r _ _ rss0 maps0 fds0 _ <<< "$start"
  read -r _ n rss maps fds live <<< "$last"
  # Memory per live object: over MEMORY_OBJECTS, or over all reached.
  if [ -n "$at_m" ]; then read -r _ n_m rss_m _ <<< "$at_m"; else n_m=$n rss_m=$rss; fi
  local per_object
  per_object=$(per "$((rss_m - rss0))" "$n_m")
  echo
  echo "## Live objects on one host"
  echo
  if [ -n "$refused" ]; then
    echo "Asked for $live_objects live objects; halved until the host started with room to spare:"
    echo
    printf '%s' "$refused"
    echo
  fi
  echo "One podhost, \`max_active = $max_active\`, \`idle_timeout = \"1h\"\`, durability \`normal\`; objects of \`examples/counter\` activated one \`GET\` each over 16 connections until $live_objects are live or a request fails. Live objects as the server's \`/metrics\` counts them (\`podhost_objects_active\`)."
  echo
  echo "| objects activated | live (metrics) | RSS MiB | mappings | open files |"
  echo "| ---: | ---: | ---: | ---: | ---: |"
  grep '^AT ' "$walk" | while read -r _ an arss amaps afds alive; do
    echo "| $an | $alive | $(kib "$arss") | $amaps | $afds |"
  done
  echo
  echo "- Resident memory per live object, over $n_m live objects: **$per_object KiB** (target ≤ 64 KiB over ≥ 10,000)."
  echo "- Live objects reached: **$reached** of $live_objects asked (target 100,000), with \`max_active = $max_active\`."
  echo "- Per live object: $(per "$((maps - maps0))" "$n") mappings, $(per "$((fds - fds0))" "$n") open files."
  echo "- Limits in force: \`vm.max_map_count\` = $map_limit (not raised), the server's open files (soft) = $file_limit."
  if [ -n "$error" ]; then
    echo "- First error, after $reached objects: \`${error//|/\\|}\`"
    echo "- The server's log, its first warnings and errors:"
    echo
    server_log 6
  fi
  echo
  echo "Mappings by kind, at the start and at $n objects:"
  echo
  echo "| kind | at 0 | at $n | per live object | MiB at $n |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  python3 - "$server_dir/maps-start" "$server_dir/maps-end" "$n" <<'PY'
import sys
def load(path):
    return {k: (int(c), m) for k, c, m in (l.rstrip("\n").split("\t") for l in open(path))}
start, end, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
for kind in sorted(end.keys() | start.keys(), key=lambda k: -end.get(k, (0, ""))[0]):
    a, b = start.get(kind, (0, "0"))[0], end.get(kind, (0, "0"))
    growth = f"{(b[0] - a) / n:.2f}" if n else "-"
    print(f"| {kind} | {a} | {b[0]} | {growth} | {b[1]} |")
PY
  local per_ok reach_ok=no
  per_ok=$(holds "$per_object" '<=' 64)
  [ "$n_m" -lt 10000 ] && per_ok=no
  [ "${reached:-0}" -ge 100000 ] && reach_ok=yes
  row "≤ 64 KiB resident per live object (over ≥ 10,000 live objects)" "$per_object KiB over $n_m" "$per_ok"
  local why=""
  [ -n "$error" ] && why="; first error: ${error//|/\\|}"
  [ -n "$refused" ] && why="; max_active = $max_active (larger ones: see the section)$why"
  row "100,000 live objects on one host (no kernel limit raised)" "$reached live of $live_objects asked$why" "$reach_ok"
}

part_hibernated() {
  start_server hibernated "data_dir = \"data\"
durability = \"normal\"
idle_timeout = \"2s\"
max_active = 256
$counter_classes"
  # Two walks, each left to hibernate: the growth over the second is what
  # hibernated objects cost. The first pays for the pool's slots, the
  # process's warm-up and the operator's log, which keeps a ring for each
  # of the 10,000 objects that logged last (logs::ring::MAX_RINGS): it
  # walks that many, so the second meets every bounded structure full.
  local half=$((memory_objects / 2)) first=10000 rss0 rss1 rss2 reached1 reached2
  rss0=$(awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status")
  echo "hibernated: activating $first then $half, each walk then left to hibernate" >&2
  target/release/objects "$server_url" "$server_pid" idle-a "$first" | tee "$server_dir/walk-a" >&2
  reached1=$(awk '/^REACHED/ { print $2 }' "$server_dir/walk-a")
  rss1=$(rss_when_all_hibernated)
  target/release/objects "$server_url" "$server_pid" idle-b "$half" | tee "$server_dir/walk-b" >&2
  reached2=$(awk '/^REACHED/ { print $2 }' "$server_dir/walk-b")
  rss2=$(rss_when_all_hibernated)
  local per_object gross catalog
  per_object=$(per "$((rss2 - rss1))" "$reached2")
  gross=$(per "$((rss2 - rss0))" "$((reached1 + reached2))")
  catalog=$(du -cb "$server_dir"/data/catalog.sqlite* | awk 'END { print $1 }')
  echo
  echo "## Hibernated objects"
  echo
  echo "One podhost, \`max_active = 256\`, \`idle_timeout = \"2s\"\`: $reached1 objects of \`examples/counter\` activated one \`GET\` each (most hibernate as others push them out) and all left to hibernate (\`podhost_objects_active\` and \`podhost_objects_open\` = 0), then $reached2 more likewise. The growth over the second set is what hibernated objects cost; the first also pays for the pool's slots (kept resident once used), the process's warm-up and the operator's log (a ring for each of the 10,000 objects that logged last, \`logs::ring::MAX_RINGS\`: the first set fills them)."
  echo
  echo "| | RSS MiB |"
  echo "| --- | ---: |"
  echo "| started | $(kib "$rss0") |"
  echo "| $reached1 hibernated | $(kib "$rss1") |"
  echo "| $((reached1 + reached2)) hibernated | $(kib "$rss2") |"
  echo
  echo "- Resident memory per hibernated object: **$per_object KiB** (over the second $reached2; target: nothing beyond its catalog row, read as ≤ 1 KiB); from the start, $gross KiB."
  echo "- The catalog on disk (with its WAL): $(per "$catalog" "$((reached1 + reached2))") bytes per object."
  row "${part_targets[hibernated]}" "$per_object KiB per object over $reached2" "$(holds "$per_object" '<=' 1)"
}

# The server's RSS in KiB once no object has an instance or an open
# database (bounded: 120 s).
rss_when_all_hibernated() {
  local open=""
  for _ in $(seq 1 120); do
    open=$(curl -sf "$server_url/metrics" | awk '/^podhost_objects_(active|open) / { n += $2 } END { print n + 0 }')
    [ "$open" = 0 ] && break
    sleep 1
  done
  [ "$open" = 0 ] || { echo "objects still live or open after 120 s: $open" >&2; return 1; }
  sleep 1
  awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status"
}

part_sockets() {
  local nr_open hard note wanted
  nr_open=$(cat /proc/sys/fs/nr_open)
  hard=$(ulimit -Hn)
  wanted=$((sockets + 4096))
  [ "$wanted" -gt "$nr_open" ] && wanted=$nr_open
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$wanted" ]; then
    if ulimit -n "$wanted" 2>/dev/null; then
      note="raised to $wanted (soft and hard; fs.nr_open = $nr_open)"
    else
      ulimit -n "$hard"
      note="could not be raised past its hard limit $hard (setrlimit refused: this process lacks CAP_SYS_RESOURCE); fs.nr_open = $nr_open"
    fi
  else
    ulimit -Sn "$hard"
    note="soft limit raised to the hard one, $hard (fs.nr_open = $nr_open)"
  fi
  # One source address has only the ephemeral port range to connect from.
  local range sources
  range=$(awk '{ print $2 - $1 }' /proc/sys/net/ipv4/ip_local_port_range)
  sources=$((sockets / (range / 2) + 1))
  start_server sockets "data_dir = \"data\"
idle_timeout = \"10m\"
[server]
max_connections_per_address = 1000000
[classes.chat]
path = \"$root/target/guests/wasm32-wasip2/guest/chat.wasm\""
  local out=$server_dir/sockets per_room=1000
  echo "sockets: opening $sockets from $sources source addresses" >&2
  target/release/sockets "ws://${server_url#http://}" "$server_pid" "$sockets" "$per_room" "$sources" | tee "$out" >&2
  local n growth fds error file_limit per_socket
  read -r _ n growth fds <<< "$(grep '^OPEN' "$out")"
  error=$(grep '^ERROR' "$out" | cut -d' ' -f3- || true)
  file_limit=$(awk '/Max open files/ { print $4 }' "/proc/$server_pid/limits")
  per_socket=$(awk -v g="$growth" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", g / n / 1024; else printf "-" }')
  echo
  echo "## Idle WebSockets"
  echo
  echo "One podhost, \`examples/chat\`, $per_room sockets a room; $sockets sockets asked for, 64 handshakes at a time, bound to $sources loopback source addresses (127.0.0.2 ...; one address has $range ephemeral ports), \`max_connections_per_address = 1000000\`. RSS growth of the server from before the first socket to 2 s after the last."
  echo
  echo "- Open: **$n** of $sockets (target 100,000)."
  echo "- Resident memory per idle socket: **$per_socket KiB** over $n (target ≤ 4 KiB)."
  echo "- The server's open files: $fds; its limit (soft): $file_limit. This script's limit on open files (the server and client inherit it): $note."
  if [ -n "$error" ]; then
    echo "- First error, after $n sockets: \`${error//|/\\|}\`"
    echo "- The server's log, its first warnings and errors:"
    echo
    server_log 4
  fi
  local reach_ok=no
  [ "$n" -ge 100000 ] && reach_ok=yes
  local why=""
  [ -n "$error" ] && why="; first error: ${error//|/\\|}"
  row "100,000 idle WebSockets on one host" "$n open of $sockets asked$why" "$reach_ok"
  row "≤ 4 KiB resident per idle WebSocket" "$per_socket KiB over $n" "$(holds "$per_socket" '<=' 4)"
}

part_fanout() {
  ulimit -n "$(ulimit -Hn)"
  start_server fanout "data_dir = \"data\"
idle_timeout = \"10m\"
[server]
max_connections_per_address = 1000000   # every client is 127.0.0.1
[sockets]
max_queued_messages = 4096
[classes.chat]
path = \"$root/target/guests/wasm32-wasip2/guest/chat.wasm\""
  local out=$server_dir/fanout
  # shellcheck disable=SC2086 # a list of sizes
  target/release/fanout "ws://${server_url#http://}" "$server_pid" "$publishes" $fanout_sizes | tee "$out" >&2
  echo
  echo "## Fan-out"
  echo
  echo "One podhost, \`examples/chat\`, one room per row: N subscribers, $publishes publishes 200 ms apart; the server's CPU time (user + system, from \`/proc\`) per delivered message, and the latency from the send to each receipt (client and server share this machine's cores, so latency at 10,000 is queueing, not a target here)."
  echo
  echo "| subscribers | server CPU per delivery µs | p50 ms | p99 ms | max ms | RSS per socket KiB |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
  local n p50 p99 max rss cpu last_n="" last_cpu=""
  while read -r n p50 p99 max rss cpu; do
    echo "| $n | $cpu | $p50 | $p99 | $max | $(kib "$rss") |"
    last_n=$n last_cpu=$cpu
  done < "$out"
  [ -n "$last_cpu" ] || { echo "the fan-out client printed nothing" >&2; return 1; }
  # The kernel's floor, with the server idle: one small frame written to
  # each of as many loopback connections, read by another process.
  local floor
  floor=$(target/release/ceilings fanout --connections "$last_n" --rounds "$publishes" | awk '/^RESULT/ { print $2 }')
  [ -n "$floor" ] || { echo "the fan-out floor printed nothing" >&2; return 1; }
  echo
  echo "The floor under it (\`ceilings fanout\`, same run): one thread writing a 64-byte frame to each of $last_n loopback connections that another process reads spends **$floor µs** of CPU per frame: on loopback the sender's write also runs the receiver's TCP processing and wakes its reader. podhost per delivery: **$(per "$last_cpu" "$floor")×** that floor."
  row "${part_targets[fanout]}" "$last_cpu µs at $last_n subscribers (kernel floor $floor µs, $(per "$last_cpu" "$floor")×)" "$(holds "$last_cpu" '<=' 5)"
}

part_noisy() {
  local out=$work/noisy.out
  RESULTS=none bash bench/noisy-neighbour.sh "$seconds" "$connections" > "$out"
  local verdict light
  verdict=$(awk '/^Targets hold:/ { print $3 }' "$out")
  light=$(awk -F'|' '/^\| light object/ { gsub(/ /, "", $6); gsub(/ /, "", $8); print "light p99 " $6 " ms, " $8 " of unloaded" }' "$out")
  echo
  echo "## Noisy neighbour"
  echo
  grep -E '^Load:' "$out"
  echo
  grep -E '^\|' "$out"
  echo
  grep -E '^Noisy events' "$out"
  echo
  echo "Targets hold: $verdict"
  row "${part_targets[noisy]}" "$light" "${verdict:-no}"
}
