#!/usr/bin/env bash
# Instructions per noop task, the noise-free figure: the dispatcher (and, in pull and push,
# one single-slot worker) run under callgrind while N1 and then N2 tasks go through fresh
# clusters; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up and shutdown. User space only:
# the kernel's share (syscalls, wake-ups) is not counted.
# Usage: scripts/callgrind-per-task.sh [N1=10000] [N2=30000]   (needs `cargo build --release`
# and valgrind; VOLLEY_BIN_DIR picks other dispatcher and worker binaries; MODES picks the
# modes, default "local pull push"; VOLLEY_DISPATCHER_ARGS adds dispatcher flags, e.g.
# "--metrics 127.0.0.1:0" to count what the Prometheus counters cost).
# Loopback only; every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-10000}
N2=${2:-30000}
BIN=${VOLLEY_BIN_DIR:-target/release}
CLIENT=target/release/client
export RUST_LOG=${RUST_LOG:-warn}
out=$(mktemp -d)
pids=()
cleanup() { kill -INT "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# Runs N tasks through a fresh cluster under callgrind; leaves out/{d,w}.MODE.N.
measure() {
  local mode=$1 n=$2 log
  log=$(mktemp)
  RUST_LOG=info valgrind --tool=callgrind --callgrind-out-file="$out/d.$mode.$n" \
    "$BIN/dispatcher" -m "$mode" -p 0 --grpc 127.0.0.1:0 ${VOLLEY_DISPATCHER_ARGS:-} > "$log" 2>&1 &
  pids=("$!")
  for _ in $(seq 300); do grep -q "dispatcher ready" "$log" && break; sleep 0.1; done
  local grpc ep
  grpc=$(grep -o 'grpc=[^ ]*' "$log" | cut -d= -f2); ep=$(grep -o 'workers=[^ ]*' "$log" | cut -d= -f2)
  if [ "$mode" != local ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out/w.$mode.$n" "$BIN/worker" 1 "$ep" > /dev/null 2>&1 &
    pids+=("$!")
    sleep 4
  fi
  "$CLIENT" --dispatcher "$grpc" submit noop --count "$n" --wait --timeout-s 600 > /dev/null
  kill -INT "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  pids=()
}

ir() { awk '/^summary:/ { print $2 }' "$1"; }
echo "| mode | dispatcher instructions/task | worker instructions/task |"
echo "|---|---:|---:|"
for mode in ${MODES:-local pull push}; do
  measure "$mode" "$N1"; measure "$mode" "$N2"
  d=$(( ($(ir "$out/d.$mode.$N2") - $(ir "$out/d.$mode.$N1")) / (N2 - N1) ))
  w="–"
  [ "$mode" = local ] || w=$(( ($(ir "$out/w.$mode.$N2") - $(ir "$out/w.$mode.$N1")) / (N2 - N1) ))
  echo "| $mode | $d | $w |"
done
rm -rf "$out"
