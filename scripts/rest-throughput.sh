#!/usr/bin/env bash
# REST throughput with keep-alive connections against gRPC, in one run: a pull dispatcher
# with --http and 2 workers x 1 slot (python runtimes forked from a fork server that
# preloaded dill), a by-reference no-op (perf/course/course_tasks.no_op) registered once.
#  1. wrk (Debian's), a Lua body, WRK_CONNECTIONS keep-alive connections for 10 s against
#     POST /execute_function; then the queue drains; executions/s = tasks completed over
#     the time until the last one ended.
#  2. A fresh cluster; `client load --function no_op` over gRPC at GRPC_RATE/s (Execute,
#     one task per call, open loop, Poisson), the same function and arguments.
#   scripts/rest-throughput.sh            (WRK_CONNECTIONS=32 GRPC_RATE=19000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release -q --bins
venv=target/rest-venv
[ -f $venv/.volley-rest-ready ] || { echo "needs target/rest-venv (scripts/test.sh makes it)" >&2; exit 1; }
python="$(pwd)/$venv/bin/python"; tasks="$(pwd)/perf/course"
out=target/rest-throughput; mkdir -p $out
bin=target/release
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop EXIT
cluster() {
  $bin/dispatcher --mode pull --port 0 --grpc 127.0.0.1:0 --http 127.0.0.1:0 > $out/dispatcher.log 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "dispatcher ready" $out/dispatcher.log && break; sleep 0.05; done
  http=$(grep -o "http=http://[0-9.:]*" $out/dispatcher.log | cut -d= -f2)
  grpc=$(grep -o "grpc=http://[0-9.:]*" $out/dispatcher.log | cut -d= -f2)
  endpoint=$(grep -o "workers=tcp://[0-9.:]*" $out/dispatcher.log | cut -d= -f2)
  for i in 1 2; do
    $bin/worker 1 "$endpoint" --python "$python" --python-path "$tasks" --fork-server --python-preload dill > $out/worker-$i.log 2>&1 &
    pids+=($!)
  done
  sleep 2
  # Registers the no-op; writes wrk's Lua body; prints the task arguments (a JSON string).
  args=$(cd "$tasks" && "$python" - "$http" "$out/post.lua" <<'PY'
import codecs, json, sys, dill, requests, course_tasks
ser = lambda o: codecs.encode(dill.dumps(o), "base64").decode()
fid = requests.post(sys.argv[1] + "/register_function", json={"name": "no_op", "payload": ser(course_tasks.no_op)}).json()["function_id"]
body = json.dumps({"function_id": fid, "payload": ser(((), {}))})
open("../../" + sys.argv[2], "w").write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' % json.dumps(body))
print(json.dumps(ser(((), {}))))
PY
)
}
left() { $bin/client --dispatcher "$grpc" info --json | "$python" -c "import json,sys; d=json.load(sys.stdin); print(d['counters']['completed'], d['counters']['failed'], d['queued'] + d['running'])"; }

cluster
t0=$(date +%s.%N)
wrk -t2 -c"${WRK_CONNECTIONS:-32}" -d10s -s $out/post.lua "$http/execute_function" | tee $out/wrk.txt
while true; do read -r done failed waiting < <(left); [ "$waiting" = 0 ] && break; sleep 0.1; done
t1=$(date +%s.%N)
echo "REST: $done tasks completed, $failed failed, in $(echo "$t1 - $t0" | bc) s: $(echo "$done / ($t1 - $t0)" | bc) executions/s"
stop
cluster
$bin/client --dispatcher "$grpc" load --function no_op --args "$args" --rate "${GRPC_RATE:-19000}" --for 10s \
  --warmup 1s --drain 5s --out $out/grpc-load.csv
