#!/usr/bin/env bash
# Soak: ROUNDS × 100,000 noop tasks through a 2-worker cluster per mode, with the
# dispatcher's RSS sampled every 0.5 s. Run twice: default retention, and a small one.
# Usage: scripts/soak.sh [ROUNDS=20] [RETAIN=1000000]   (needs `cargo build --release`)
# Loopback only; every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
RETAIN=${2:-1000000}
BIN=target/release
OUT=${SOAK_OUT:-docs/results/soak-retain-$RETAIN.csv}
mkdir -p "$(dirname "$OUT")"
echo "mode,elapsed_s,processed,rss_mib" > "$OUT"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for mode in pull push; do
  log=$(mktemp)
  "$BIN/dispatcher" -m "$mode" -p 0 --grpc 127.0.0.1:0 --retain-finished "$RETAIN" > "$log" 2>/dev/null &
  dp=$!; pids+=("$dp")
  for _ in $(seq 50); do grep -q "dispatcher ready" "$log" && break; sleep 0.1; done
  grpc=$(grep -o 'grpc=[^ ]*' "$log" | cut -d= -f2); ep=$(grep -o 'workers=[^ ]*' "$log" | cut -d= -f2)
  for _ in 1 2; do "$BIN/worker" 1 "$ep" 2>/dev/null & pids+=("$!"); done
  sleep 1
  start=$(date +%s.%N); processed=0; pfile=$(mktemp); echo 0 > "$pfile"
  sample() { awk -v m="$mode" -v s="$start" -v p="$(cat "$pfile")" -v now="$(date +%s.%N)" \
      '/VmRSS/ { printf "%s,%.1f,%d,%.1f\n", m, now - s, p, $2 / 1024 }' "/proc/$dp/status" >> "$OUT"; }
  ( while kill -0 "$dp" 2>/dev/null; do sample; sleep 0.5; done ) & sampler=$!
  for _ in $(seq "$ROUNDS"); do
    "$BIN/client" --dispatcher "$grpc" submit noop --count 100000 --wait --json > /dev/null
    processed=$((processed + 100000)); echo "$processed" > "$pfile"
    sample
  done
  kill "$sampler" 2>/dev/null || true
  peak=$(awk -F, -v m="$mode" '$1 == m && $4 > p { p = $4 } END { print p }' "$OUT")
  final=$(awk -F, -v m="$mode" '$1 == m { r = $4 } END { print r }' "$OUT")
  echo "$mode: $processed tasks, retain $RETAIN, dispatcher RSS peak ${peak} MiB, at the end ${final} MiB"
  kill "$dp"; wait "$dp" 2>/dev/null || true
done
echo "samples in $OUT"
