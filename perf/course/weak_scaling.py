"""The course FaaS's weak-scaling study through its REST API, measured the way its
reference perf client measures it (written here from the contract, not copied): for N
workers, 5 x N tasks of one function, one thread per task; each thread executes once
(a new TCP connection per HTTP call, as `requests` makes without a session) and polls
/result every 100 ms until COMPLETED or FAILED. TotalTime runs from before the first
execute to the last task seen ending. Appends `Mode,OpType,nWorkers,nTasks,TotalTime`
(the course's columns) to the CSV, and prints the row with how many tasks failed.

    weak_scaling.py URL --workers N --optype no_op|sleep|heavy --mode LABEL [--csv FILE]

Needs dill and requests; course_tasks must be importable by the workers (--python-path).
"""

import argparse
import codecs
import csv
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import dill
import requests

import course_tasks

TASKS_PER_WORKER = 5
POLL_S = 0.1


def serialize(obj):
    return codecs.encode(dill.dumps(obj), "base64").decode()


def deserialize(text):
    return dill.loads(codecs.decode(text.encode(), "base64"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--optype", choices=["no_op", "sleep", "heavy"], required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--csv", default="performance_test.csv")
    args = parser.parse_args()
    base = args.url.rstrip("/") + "/"

    fn = getattr(course_tasks, args.optype)
    r = requests.post(base + "register_function", json={"name": args.optype, "payload": serialize(fn)})
    if r.status_code != 200:
        sys.exit("register_function answered %s: %s" % (r.status_code, r.text))
    function_id = r.json()["function_id"]
    n_tasks = TASKS_PER_WORKER * args.workers
    task_args = serialize(((), {}))
    begin = time.time()

    def one(_):
        r = requests.post(base + "execute_function", json={"function_id": function_id, "payload": task_args})
        if r.status_code != 200:
            return "REFUSED"
        task_id = r.json()["task_id"]
        while True:
            body = requests.get(base + "result/" + task_id).json()
            if body["status"] == "COMPLETED":
                ok = args.optype in str(deserialize(body["result"]))
                return "COMPLETED" if ok else "WRONG"
            if body["status"] == "FAILED":
                return "FAILED"
            time.sleep(POLL_S)

    with ThreadPoolExecutor(max_workers=n_tasks) as pool:
        ends = list(pool.map(one, range(n_tasks)))
    total = time.time() - begin
    bad = sum(1 for e in ends if e != "COMPLETED")
    new = not os.path.isfile(args.csv)
    with open(args.csv, "a", newline="") as f:
        out = csv.writer(f)
        if new:
            out.writerow(["Mode", "OpType", "nWorkers", "nTasks", "TotalTime"])
        out.writerow([args.mode, args.optype, args.workers, n_tasks, total])
    print("%s,%s,%d,%d,%.4f failed=%d" % (args.mode, args.optype, args.workers, n_tasks, total, bad))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
