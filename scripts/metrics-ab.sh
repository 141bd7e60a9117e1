#!/usr/bin/env bash
# What Prometheus metrics cost: noop throughput and the dispatcher's CPU per task with
# `--metrics` off and on, alternated PAIRS times on fresh pull clusters (2 single-slot
# workers); with metrics on, a scraper reads /metrics every second, as Prometheus would.
# CPU is every dispatcher thread's schedstat (nanoseconds) around 300,000 tasks.
# Usage: scripts/metrics-ab.sh [PAIRS=5]   (needs `cargo build --release`)
# Loopback only; every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-5}
B=target/release
export RUST_LOG=${RUST_LOG:-warn}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }
log=$(mktemp)
echo "| pair | metrics | tasks/s | dispatcher µs/task |"
echo "|---|---|---:|---:|"
for pair in $(seq "$PAIRS"); do
  for m in off on; do
    args=(); [ "$m" = on ] && args=(--metrics 127.0.0.1:0)
    "$B/dispatcher" -m pull -p 0 --grpc 127.0.0.1:0 "${args[@]}" > "$log" 2>/dev/null &
    d=$!; pids=("$d")
    for _ in $(seq 100); do grep -q "dispatcher ready" "$log" && break; sleep 0.05; done
    ep=$(grep -o 'workers=[^ ]*' "$log" | cut -d= -f2)
    grpc=$(grep -o 'grpc=[^ ]*' "$log" | cut -d= -f2)
    url=$(grep -o 'metrics=[^ ]*' "$log" | cut -d= -f2)
    "$B/worker" 1 "$ep" --mode pull > /dev/null 2>&1 & pids+=("$!")
    "$B/worker" 1 "$ep" --mode pull > /dev/null 2>&1 & pids+=("$!")
    sleep 0.5
    if [ "$m" = on ]; then (while true; do curl -s "$url" > /dev/null; sleep 1; done) & pids+=("$!"); fi
    "$B/client" --dispatcher "$grpc" submit noop --count 20000 --wait --json > /dev/null
    c0=$(cpu_ns "$d")
    rate=$("$B/client" --dispatcher "$grpc" submit noop --count 300000 --wait --json | grep -o '"tasks_per_second":[0-9.]*' | cut -d: -f2)
    c1=$(cpu_ns "$d")
    printf "| %s | %s | %.0f | %.2f |\n" "$pair" "$m" "$rate" "$(echo "($c1 - $c0) / 1000 / 300000" | bc -l)"
    kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
  done
done
