#!/usr/bin/env bash
# The durable path against the memory store, in one run: a pull dispatcher, 2 workers x 1
# slot, TASKS noops through `client submit --wait` (ExecuteBatch + WatchResults), on
#   memory · Redis without persistence · AOF appendfsync everysec · AOF always ·
#   Redis without persistence under --ha (every write a fenced script),
# each on a private redis-server (port 6391, nothing shared with the machine's Redis).
# Prints tasks/s and the CPU per task of the dispatcher and of redis-server (from
# /proc/PID/stat around the batch), and Redis's commands per task.
#   scripts/redis-durability.sh          (TASKS=300000 RUNS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bins
TASKS=${TASKS:-300000}; RUNS=${RUNS:-2}
bin=target/release; out="$(pwd)/target/redis-durability"; mkdir -p "$out"
port=6391
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; pids=()
  redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
}
trap stop EXIT
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

one() { # label store dispatcher-args redis-args
  local label=$1 store=$2 dargs=$3 rargs=$4
  rm -rf $out/redis && mkdir -p $out/redis
  local rpid=""
  if [ "$store" != memory ]; then
    # shellcheck disable=SC2086
    redis-server --port $port --bind 127.0.0.1 --save "" --dir $out/redis --logfile $out/redis/log $rargs &
    rpid=$!; pids+=($rpid)
    for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
  fi
  # shellcheck disable=SC2086
  $bin/dispatcher -m pull -p 0 --grpc 127.0.0.1:0 --store "$store" $dargs > $out/dispatcher.log 2>&1 &
  local d=$!; pids+=($d)
  for _ in $(seq 200); do grep -q "dispatcher ready" $out/dispatcher.log && break; sleep 0.05; done
  local grpc endpoint
  grpc=$(grep -o "grpc=http://[0-9.:]*" $out/dispatcher.log | cut -d= -f2)
  endpoint=$(grep -o "workers=tcp://[0-9.:]*" $out/dispatcher.log | cut -d= -f2)
  for _ in 1 2; do $bin/worker 1 "$endpoint" -m pull > /dev/null 2>&1 & pids+=($!); done
  sleep 1
  [ -n "$rpid" ] && redis-cli -p $port config resetstat >/dev/null
  local d0 r0=0 d1 r1=0 line
  d0=$(ticks $d); [ -n "$rpid" ] && r0=$(ticks $rpid)
  line=$($bin/client submit noop --count "$TASKS" --wait --dispatcher "$grpc" | tail -1)
  d1=$(ticks $d); [ -n "$rpid" ] && r1=$(ticks $rpid)
  local commands=0
  if [ -n "$rpid" ]; then
    commands=$(redis-cli -p $port info commandstats | grep -v resetstat | awk -F'calls=' '/calls=/{split($2, a, ","); s += a[1]} END {print s + 0}')
  fi
  python3 - "$label" "$line" "$TASKS" "$hz" "$d0" "$d1" "$r0" "$r1" "$commands" <<'EOF'
import re, sys
label, line, n, hz, d0, d1, r0, r1, cmds = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
rate = re.search(r"\(([0-9]+) tasks/s\)", line)
us = lambda a, b: (b - a) * 1e6 / hz / n
print(f"{label:<22} {rate.group(1) if rate else '?':>8} tasks/s   dispatcher {us(d0, d1):5.2f} µs/task"
      f"   redis {us(r0, r1):5.2f} µs/task   redis commands/task {cmds / n:.4f}   ({line.strip()})")
EOF
  stop
}

for run in $(seq "$RUNS"); do
  echo "run $run ($TASKS noops, pull, 2 workers x 1 slot, $(git rev-parse --short HEAD))"
  one memory memory "" ""
  one redis-off "redis://127.0.0.1:$port/0" "" "--appendonly no"
  one redis-aof-everysec "redis://127.0.0.1:$port/0" "" "--appendonly yes --appendfsync everysec"
  one redis-aof-always "redis://127.0.0.1:$port/0" "" "--appendonly yes --appendfsync always"
  one redis-off-ha "redis://127.0.0.1:$port/0" "--ha" "--appendonly no"
done
