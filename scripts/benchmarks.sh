#!/usr/bin/env bash
# Runs every command BENCHMARKS.md cites, one question after another, keeps each raw
# output in target/benchmarks/DATE/ (a log per question, the CSV and JSON files beside it),
# and renders BENCHMARKS.md from them (scripts/render-benchmarks.py). Run whole, it
# replaces BENCHMARKS.md; run for some questions, it renders into the output folder only.
# Usage: scripts/benchmarks.sh [QUESTION ...]
#   questions: cluster runtimes scaling openloop curve replay coldstart course durability failover chaos (default: all)
# The whole set takes about an hour on the 2-core VM; the sweeps are most of it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="target/benchmarks/$(date -u +%Y-%m-%d)"
mkdir -p "$out"
cargo build --release --bins
client=target/release/client
trace=../shared/traces/azure2019-vswarm-sample
questions=("$@")
[ ${#questions[@]} -eq 0 ] && questions=(cluster runtimes scaling openloop curve replay coldstart course durability failover chaos)

run() { # name, command...
    local name=$1; shift
    echo "== $name: $*" | tee "$out/$name.log"
    "$@" 2>&1 | tee -a "$out/$name.log"
}

for q in "${questions[@]}"; do
    case $q in
    cluster)
        VOLLEY_BENCH_SKIP_REDIS=1 VOLLEY_BENCH_MODES=pull,push VOLLEY_BENCH_TASKS=100000 \
            VOLLEY_BENCH_LATENCY_SAMPLES=2000 run cluster cargo bench -p volley-perf --bench cluster
        MODES="pull push" run callgrind scripts/callgrind-per-task.sh 10000 30000 ;;
    runtimes)
        run runtimes cargo bench -p volley-perf --bench runtimes ;;
    scaling)
        run weak $client sweep --scaling weak --workers 1,2,4,8,16 --modes local,pull,push \
            --optypes noop,sleep --task-ms 100,1000 --repeats 3 --out "$out/weak.csv" --tasks-csv "$out/weak-tasks.csv"
        run strong $client sweep --scaling strong --workers 1,2,4,8,16 --modes local,pull,push \
            --optypes sleep --task-ms 100 --strong-tasks 80 --repeats 1 --out "$out/strong.csv" ;;
    openloop)
        for mode in local pull push; do
            run "find-max-$mode" $client load --find-max --slo 'p99<50ms,success>=0.999' --rates 1000..200000 \
                --optype noop --arrival poisson --for 4s --warmup 1s --drain 5s --fresh --mode "$mode" \
                --workers 2 --slots 2 --out "$out/find-max.csv"
        done ;;
    curve)
        run cpu-curve $client load --curve --for 10s --warmup 2s --drain 5s --out "$out/load-curve.csv" ;;
    replay)
        run replay $client replay --trace "$trace" --functions 50 --minutes 540..560 --compress 10 \
            --max-memory-mb 8 --warmup-minutes 2 --cluster pull:2:16 --out "$out/replay.csv" \
            --minutes-out "$out/replay-minutes.csv" --summary "$out/replay.json" ;;
    coldstart)
        run coldstart $client coldstart --scenarios zero --trials 30 --init-ms 250 --keepalive 1s --trials-out "$out/coldstart-trials.csv"
        run bursts $client coldstart --scenarios burst,concurrency --rate 40 --task-ms 100 --duration 20s \
            --policy kpa --max-instances 16 --init-ms 250 --out "$out/coldstart-bursts.csv" --timeline-out "$out/coldstart-timeline.csv"
        # The interpreters: VOLLEY_PYTHON, VOLLEY_NODE, VOLLEY_JAVA, else PATH's (the table says which).
        run coldstart-runtimes $client coldstart --runtimes python,node,java,native --trials 30 --keepalive 500ms \
            --runtimes-out "$out/coldstart-runtimes.csv" --plot "$out" ;;
    course)
        run course scripts/course-weak-scaling.sh --out "$out/course" ;;
    durability)
        run durability scripts/redis-durability.sh ;;
    failover)
        run failover-kill $client failover --faults kill --rate 5000 --for 30s --fault-at 10s --out "$out/failover-kill"
        run failover-stall $client failover --faults stall --rate 5000 --for 30s --fault-at 10s --resume-after 2s \
            --out "$out/failover-stall"
        run failover-stall-long $client failover --faults stall --rate 5000 --for 20s --fault-at 5s --resume-after 8s \
            --out "$out/failover-stall-long" ;;
    chaos)
        run chaos $client chaos --for 60s --modes push,pull --seed 7 --out "$out/chaos.json"
        run chaos-ha $client chaos --for 60s --modes push,pull --seed 7 --ha --out "$out/chaos-ha.json" ;;
    *)
        echo "unknown question: $q (cluster runtimes scaling openloop curve replay coldstart course durability failover chaos)" >&2
        exit 2 ;;
    esac
done
python3 scripts/render-benchmarks.py "$out" --revision "$(git rev-parse --short HEAD)" \
    --date "$(date -u +%Y-%m-%d)" > "$out/BENCHMARKS.md"
if [ $# -eq 0 ]; then
    cp "$out/BENCHMARKS.md" BENCHMARKS.md
    echo "BENCHMARKS.md rendered from $out"
else
    echo "rendered $out/BENCHMARKS.md (some questions only: BENCHMARKS.md left as it is)"
fi
