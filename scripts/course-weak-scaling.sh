#!/usr/bin/env bash
# The course FaaS's weak-scaling study through Volley's REST edge (dispatcher --http): for
# each mode and worker count, a dispatcher and N workers x 1 slot (local mode: a pool of
# N slots), then perf/course/weak_scaling.py, the course's measurement (5 tasks per
# worker, a thread per task, 100 ms polls, a new connection per call). Rows go to
# OUT/performance_test.csv in the course's columns.
#
#   scripts/course-weak-scaling.sh [--modes "local pull push"] [--workers "1 2 4 8 16"]
#                                  [--optypes "no_op sleep"] [--out DIR] [--cold]
#
# Python runtimes fork from a fork server that preloaded dill and requests (what the
# course's task modules import); --cold starts each from a fresh interpreter instead.
set -euo pipefail
cd "$(dirname "$0")/.."
modes="local pull push"; workers="1 2 4 8 16"; optypes="no_op sleep"; out=target/course-weak-scaling; warm=1
while [ $# -gt 0 ]; do
  case "$1" in
    --modes) modes="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --optypes) optypes="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --cold) warm=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p volley-dispatcher -p volley-worker
venv=target/rest-venv
if [ ! -f $venv/.volley-rest-ready ]; then
  python3 -m venv $venv
  $venv/bin/python -m pip install --quiet dill==0.4.1 requests==2.34.2 schemathesis==4.32.5
  printf 'dill==0.4.1\nrequests==2.34.2\nschemathesis==4.32.5' > $venv/.volley-rest-ready
fi
python="$(pwd)/$venv/bin/python"
tasks=$(realpath perf/course)
mkdir -p "$out"; logs="$out/logs"; mkdir -p "$logs"
starts=(--python "$python" --python-path "$tasks")
[ $warm = 1 ] && starts+=(--fork-server --python-preload dill,requests)
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop EXIT

for mode in $modes; do
  for n in $workers; do
    log="$logs/dispatcher-$mode-$n.log"
    if [ "$mode" = local ]; then
      target/release/dispatcher --mode local -w "$n" --grpc 127.0.0.1:0 --http 127.0.0.1:0 "${starts[@]}" > "$log" 2>&1 &
    else
      target/release/dispatcher --mode "$mode" --port 0 --grpc 127.0.0.1:0 --http 127.0.0.1:0 > "$log" 2>&1 &
    fi
    pids+=($!)
    for _ in $(seq 100); do grep -q "dispatcher ready" "$log" && break; sleep 0.05; done
    url=$(grep -o "http=http://[0-9.:]*" "$log" | cut -d= -f2)
    if [ "$mode" != local ]; then
      endpoint=$(grep -o "workers=tcp://[0-9.:]*" "$log" | cut -d= -f2)
      for i in $(seq "$n"); do
        target/release/worker 1 "$endpoint" --name "w$i" "${starts[@]}" > "$logs/worker-$mode-$n-$i.log" 2>&1 &
        pids+=($!)
      done
      for _ in $(seq 200); do
        [ "$(grep -l "registered with the dispatcher" "$logs"/worker-"$mode"-"$n"-*.log 2>/dev/null | wc -l)" -ge "$n" ] && break
        sleep 0.05
      done
    fi
    sleep 1  # the fork servers' preloads, before the clock starts
    for optype in $optypes; do
      (cd "$tasks" && "$python" weak_scaling.py "$url" --workers "$n" --optype "$optype" --mode "$mode" \
        --csv "$(realpath "$OLDPWD/$out")/performance_test.csv")
    done
    stop
  done
done
echo "rows in $out/performance_test.csv"
