#!/usr/bin/env bash
# The keep-alive policy study on a compressed slice of the Azure sample: each policy
# simulated (client simulate) and replayed live on an elastic pool (client replay
# --autoscale), rows in the same columns, then charted together.
#
#   scripts/policy-study.sh [TRACE_DIR] [OUT_DIR]
#
# The slice: 24 functions, trace minutes 540..560, compressed 6× (200 s per policy live).
# Policy times are compressed with it: fixed 10 min → 100 s, 1 min → 10 s; the KPA's
# windows 60 s/6 s → 10 s/1 s; the hybrid's 4 h range and 1 min bins → 40 min and 10 s.
# Instances start in --init-ms 40 (250 ms / 6) plus ~5 ms of spawn and registration, so
# the simulation's cold start is 45 ms; its tick is the dispatcher's heartbeat (250 ms).
set -euo pipefail
trace=${1:-../shared/traces/azure2019-vswarm-sample}
out=${2:-policy-study}
client=${CLIENT:-target/release/client}
mkdir -p "$out"
slice=(--trace "$trace" --functions 24 --minutes 540..560 --compress 6)
policies=(fixed:keepalive=100s fixed:keepalive=10s kpa:stable=10s,panic=1s,grace=5s hybrid:range=40m,bin=10s,fallback=100s)
args=()
for p in "${policies[@]}"; do args+=(--policy "$p"); done
"$client" simulate "${slice[@]}" --tick 250ms --cold-start 45ms "${args[@]}" --out "$out/sim.csv"
rm -f "$out/live.csv"
for p in "${policies[@]}"; do
  "$client" replay "${slice[@]}" --autoscale "$p" --init-ms 40 --max-instances 40 --max-memory-mb 0 \
    --policy-out "$out/live.csv" --out "$out/replay.csv" --minutes-out "$out/minutes.csv" \
    --summary "$out/summary.json" --assert 'failed==0'
done
"$client" plot --policies "$out/sim.csv" --policies "$out/live.csv" --out "$out/plots"
