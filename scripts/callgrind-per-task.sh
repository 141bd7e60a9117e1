#!/usr/bin/env bash
# Instructions per noop task, the noise-free figure: the dispatcher (and, in pull and push,
# one single-slot worker) run under callgrind while N1 and then N2 tasks go through fresh
# clusters; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up and shutdown. User space only:
# the kernel's share (syscalls, wake-ups) is not counted.
# With RATE set, the tasks arrive one at a time instead of as one batch: `client load` at
# RATE/s (Poisson) for N/RATE seconds, itself under callgrind too (the generator's column),
# the worker with two slots: the open-loop figure of BENCHMARKS.md's curve section.
# Usage: scripts/callgrind-per-task.sh [N1=10000] [N2=30000]   (needs `cargo build --release`
# and valgrind; VOLLEY_BIN_DIR picks other dispatcher, worker and client binaries; KEEP=DIR
# keeps the callgrind files; MODES picks the
# modes, default "local pull push"; VOLLEY_DISPATCHER_ARGS adds dispatcher flags, e.g.
# "--metrics 127.0.0.1:0" to count what the Prometheus counters cost; RATE, e.g.
# `RATE=500 MODES=push scripts/callgrind-per-task.sh 3000 8000`).
# Loopback only; every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-10000}
N2=${2:-30000}
BIN=${VOLLEY_BIN_DIR:-target/release}
# The load generator from the same build when there is one.
CLIENT=$BIN/client
[ -x "$CLIENT" ] || CLIENT=target/release/client
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
    local slots=1
    [ -z "${RATE:-}" ] || slots=2
    valgrind --tool=callgrind --callgrind-out-file="$out/w.$mode.$n" "$BIN/worker" "$slots" "$ep" > /dev/null 2>&1 &
    pids+=("$!")
    sleep 4
  fi
  if [ -n "${RATE:-}" ]; then
    # Every request counts (no warm-up); the load's own line says how many went.
    valgrind --tool=callgrind --callgrind-out-file="$out/c.$mode.$n" "$CLIENT" --dispatcher "$grpc" load \
      --rate "$RATE" --arrival poisson --optype noop --for "$(( n / RATE ))s" --warmup 0s --drain 3s --out "$out/load.$mode.$n.csv" > "$out/load.$mode.$n" 2>&1
    grep -o '[0-9]* sent' "$out/load.$mode.$n" | head -1 | cut -d' ' -f1 > "$out/n.$mode.$n"
  else
    "$CLIENT" --dispatcher "$grpc" submit noop --count "$n" --wait --timeout-s 600 > /dev/null
    echo "$n" > "$out/n.$mode.$n"
  fi
  kill -INT "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  pids=()
}

ir() { awk '/^summary:/ { print $2 }' "$1"; }
per_task() { # role, mode: the difference between the two runs over the tasks between them
  echo $(( ($(ir "$out/$1.$2.$N2") - $(ir "$out/$1.$2.$N1")) / ($(cat "$out/n.$2.$N2") - $(cat "$out/n.$2.$N1")) ))
}
echo "| mode | dispatcher instructions/task | worker instructions/task | generator instructions/task |"
echo "|---|---:|---:|---:|"
for mode in ${MODES:-local pull push}; do
  measure "$mode" "$N1"; measure "$mode" "$N2"
  d=$(per_task d "$mode")
  w="–"; c="–"
  [ "$mode" = local ] || w=$(per_task w "$mode")
  [ -z "${RATE:-}" ] || c=$(per_task c "$mode")
  echo "| $mode | $d | $w | $c |"
done
# KEEP=DIR keeps the callgrind files for callgrind_annotate.
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$out"/[dwc].* "$KEEP"/; fi
rm -rf "$out"
