#!/usr/bin/env bash
# Many workers: one dispatcher and W single-slot worker processes on this host, COUNT noop
# tasks through them, and the CPU each role spent per task, read from /proc schedstat
# (every thread, nanoseconds; utime/stime's clock ticks round a small process to zero).
# Also the CPU the idle workers burn per second before the run: heartbeats and timers.
# Usage: scripts/many-workers.sh MODE W [COUNT=200000]   (needs `cargo build --release`;
# VOLLEY_BIN_DIR picks other dispatcher and worker binaries, e.g. an older revision's).
# Loopback only; every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?mode: pull or push}
W=${2:?number of workers}
COUNT=${3:-200000}
BIN=${VOLLEY_BIN_DIR:-target/release}
CLIENT=target/release/client
export RUST_LOG=${RUST_LOG:-warn}
pids=()
workers=()
cleanup() { kill "${pids[@]}" "${workers[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# CPU milliseconds of the given processes, all threads.
cpu_ms() {
  python3 - "$@" <<'EOF'
import glob, sys
total = 0
for pid in sys.argv[1:]:
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(open(f).read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
print(total // 1_000_000)
EOF
}

log=$(mktemp)
RUST_LOG=info "$BIN/dispatcher" -m "$MODE" -p 0 --grpc 127.0.0.1:0 > "$log" 2>&1 &
dp=$!; pids+=("$dp")
for _ in $(seq 50); do grep -q "dispatcher ready" "$log" && break; sleep 0.1; done
grpc=$(grep -o 'grpc=[^ ]*' "$log" | cut -d= -f2); ep=$(grep -o 'workers=[^ ]*' "$log" | cut -d= -f2)
for _ in $(seq "$W"); do "$BIN/worker" 1 "$ep" > /dev/null 2>&1 & workers+=("$!"); done
registered=0
for _ in $(seq 300); do
  registered=$("$CLIENT" --dispatcher "$grpc" info --json 2>/dev/null \
    | python3 -c 'import json, sys; print(len(json.load(sys.stdin).get("workers", [])))' 2>/dev/null || echo 0)
  [ "$registered" = "$W" ] && break
  sleep 1
done
[ "$registered" = "$W" ] || { echo "only $registered of $W workers registered" >&2; exit 1; }
sleep 2
i0=$(cpu_ms "${workers[@]}"); sleep 5; i1=$(cpu_ms "${workers[@]}")
"$CLIENT" --dispatcher "$grpc" submit noop --count 20000 --wait > /dev/null
d0=$(cpu_ms "$dp"); w0=$(cpu_ms "${workers[@]}")
result=$("$CLIENT" --dispatcher "$grpc" submit noop --count "$COUNT" --wait | tail -1)
d1=$(cpu_ms "$dp"); w1=$(cpu_ms "${workers[@]}")
per_task() { python3 -c "print(f'{($2 - $1) * 1000 / $COUNT:.2f}')"; }
echo "$MODE, $W workers: $result"
echo "  CPU µs/task: dispatcher $(per_task "$d0" "$d1"), workers $(per_task "$w0" "$w1");" \
     "idle workers before the run: $(( (i1 - i0) / 5 )) ms of CPU per second"
