"""A client of the course FaaS's REST API, written from its contract
(../shared/MPCS_CONTRACT.md): what the course's clients rely on, checked against a Volley
dispatcher started with --http. Needs dill and requests.

    rest_client.py contract URL       every check that needs no fault from outside
    rest_client.py submit URL FN ARGS register restfns.FN, run it on ARGS (JSON list);
                                      print the task id
    rest_client.py status URL TASK    print the task's status
    rest_client.py wait URL TASK      poll until the task ends; print it as JSON
"""

import codecs
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import dill
import requests

import restfns


def serialize(obj):
    return codecs.encode(dill.dumps(obj), "base64").decode()


def deserialize(text):
    return dill.loads(codecs.decode(text.encode(), "base64"))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Client:
    def __init__(self, url):
        self.url = url.rstrip("/") + "/"

    def register(self, fn, name="fn"):
        r = requests.post(self.url + "register_function", json={"name": name, "payload": serialize(fn)})
        check(r.status_code == 200, "register: %s %s" % (r.status_code, r.text))
        return r.json()["function_id"]

    def execute(self, fid, args=(), kwargs=None):
        payload = serialize((tuple(args), kwargs or {}))
        r = requests.post(self.url + "execute_function", json={"function_id": fid, "payload": payload})
        check(r.status_code == 200, "execute: %s %s" % (r.status_code, r.text))
        return r.json()["task_id"]

    def result(self, tid):
        r = requests.get(self.url + "result/" + tid)
        check(r.status_code == 200, "result: %s %s" % (r.status_code, r.text))
        body = r.json()
        check(body["task_id"] == tid, "result names %r, not %r" % (body["task_id"], tid))
        return body

    def wait(self, tid, limit=60):
        end = time.time() + limit
        while time.time() < end:
            body = self.result(tid)
            if body["status"] in ("COMPLETED", "FAILED"):
                return body
            check(body["result"] == "None", "a pending result is the string None: %r" % body["result"])
            time.sleep(0.01)
        raise AssertionError("task %s did not end within %s s" % (tid, limit))

    def run(self, fn, args=(), kwargs=None):
        body = self.wait(self.execute(self.register(fn), args, kwargs))
        return body["status"], deserialize(body["result"])


def read_in_fresh_interpreter(text):
    """What a client with none of the server's (or the test's) modules reads."""
    code = ("import codecs, dill, sys; e = dill.loads(codecs.decode(sys.stdin.read().encode(), 'base64')); "
            "print(type(e).__name__, getattr(e, 'error_code', None), str(e), sep='|')")
    out = subprocess.run([sys.executable, "-I", "-c", code], input=text, capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "a fresh interpreter could not read the failure: %s" % out.stderr)
    kind, error_code, message = out.stdout.rstrip("\n").split("|", 2)
    return kind, error_code, message


def local_square(x):  # defined in __main__: travels by value
    return x * x


def contract(url):
    c = Client(url)
    # By reference and by value, args and kwargs, None.
    check(c.run(restfns.double, (21,)) == ("COMPLETED", 42), "by reference")
    check(c.run(local_square, (7,)) == ("COMPLETED", 49), "by value")
    check(c.run(restfns.add, (1,), {"b": 2, "scale": 10}) == ("COMPLETED", 30), "kwargs")
    check(c.run(restfns.nothing) == ("COMPLETED", None), "a None result")
    check(c.run(lambda: {"k": [1, 2.5, "x"]}) == ("COMPLETED", {"k": [1, 2.5, "x"]}), "a lambda")
    print("ok values")

    # The pending result is the string "None"; status and result agree; ids round-trip.
    fid = c.register(restfns.nap)
    tid = c.execute(fid, (0.5,))
    check(tid == tid.lower() and len(tid) == 36, "a lowercase hyphenated UUID: %r" % tid)
    status = requests.get(c.url + "status/" + tid).json()
    check(status == {"task_id": tid, "status": status["status"]}, "status body: %r" % status)
    check(status["status"] in ("QUEUED", "RUNNING"), "status while sleeping: %r" % status)
    check(c.result(tid)["result"] == "None", "pending result")
    done = c.wait(tid)
    check((done["status"], deserialize(done["result"])) == ("COMPLETED", "slept 0.5"), "nap: %r" % done)
    print("ok pending")

    # A raise reads back, in a fresh interpreter, as Function Failure with error_code 500.
    status, exc = c.run(restfns.boom, ("bad input",))
    check(status == "FAILED" and isinstance(exc, ValueError), "a ValueError: %r" % exc)
    body = c.wait(c.execute(c.register(restfns.boom), ("bad input",)))
    kind, code, message = read_in_fresh_interpreter(body["result"])
    check(kind == "ValueError" and code == "500", "fresh read: %s %s" % (kind, code))
    check(message.startswith("Function Failure") and "bad input" in message, "fresh text: %r" % message)
    status, exc = c.run(restfns.refuse, ("mine",))
    check(isinstance(exc, restfns.ClientError) and exc.error_code == 500, "the client's type: %r" % exc)
    check(str(exc).startswith("Function Failure") and "mine" in str(exc), "its text: %r" % str(exc))
    # Wrong shapes and non-callables end FAILED as Function Failure, quickly.
    fid = c.register(restfns.double)
    for payload in [serialize(((2,),)), serialize([(2,), {}])]:
        r = requests.post(c.url + "execute_function", json={"function_id": fid, "payload": payload})
        check(r.status_code == 200, "a wrong shape is accepted: %s" % r.status_code)
        body = c.wait(r.json()["task_id"], limit=10)
        exc = deserialize(body["result"])
        check(body["status"] == "FAILED" and str(exc).startswith("Function Failure"), "wrong shape: %r" % exc)
    status, exc = c.run(42)
    check(status == "FAILED" and str(exc).startswith("Function Failure") and exc.error_code == 500, "42: %r" % exc)
    # A user's os._exit is a Worker Failure; the next task runs.
    status, exc = c.run(restfns.exit_hard)
    check(status == "FAILED" and str(exc).startswith("Worker Failure") and exc.error_code == 500, "exit: %r" % exc)
    check(c.run(restfns.double, (1,)) == ("COMPLETED", 2), "a task after a crash")
    print("ok failures")

    # Bad input gets the contract's codes.
    r = requests.post(c.url + "register_function", json={"name": "hello", "payload": "payload"})
    check(r.status_code in (400, 500), "a payload that is not a pickle: %s" % r.status_code)
    for body in [{"name": "x"}, {"payload": serialize(restfns.double)}, {"name": 1, "payload": "x"}]:
        r = requests.post(c.url + "register_function", json=body)
        check(r.status_code == 422, "missing or non-string field %r: %s" % (body, r.status_code))
    r = requests.post(c.url + "register_function", data=b"{not json", headers={"content-type": "application/json"})
    check(r.status_code == 422, "malformed JSON: %s" % r.status_code)
    r = requests.post(c.url + "execute_function", json={"function_id": fid, "payload": "%%%"})
    check(r.status_code == 400, "a bad task payload: %s" % r.status_code)
    unknown = "3f2b8e1c-9d4a-4c6e-8b2f-1a2b3c4d5e6f"
    r = requests.post(c.url + "execute_function", json={"function_id": unknown, "payload": serialize(((), {}))})
    check(r.status_code in (400, 404, 500), "an unknown function: %s" % r.status_code)
    r = requests.post(c.url + "execute_function", json={"function_id": "nope", "payload": serialize(((), {}))})
    check(r.status_code == 422, "a malformed function id: %s" % r.status_code)
    for path in ["status/", "result/"]:
        check(requests.get(c.url + path + unknown).status_code == 404, "unknown task on " + path)
        check(requests.get(c.url + path + "not-a-uuid").status_code == 422, "malformed task id on " + path)
    # Repeated slashes, as the course's perf client sends them.
    r = requests.post(c.url + "/register_function", json={"name": "d", "payload": serialize(restfns.double)})
    check(r.status_code == 200, "//register_function: %s" % r.status_code)
    r = requests.post(c.url + "//execute_function", json={"function_id": r.json()["function_id"],
                                                          "payload": serialize(((3,), {}))})
    check(r.status_code == 200 and c.wait(r.json()["task_id"])["status"] == "COMPLETED", "//execute_function")
    # Several MiB of payload, both ways in.
    big = "x" * (2 << 20)
    fid = c.register(lambda s: len(s) + len(big))
    body = c.wait(c.execute(fid, ("y" * (2 << 20),)), limit=60)
    check((body["status"], deserialize(body["result"])) == ("COMPLETED", 4 << 20), "2 MiB function and args")
    print("ok bad input")

    # 200 concurrent tasks, each on a new connection, each polled to its end.
    fid = c.register(restfns.nap)

    def one(i):
        tid = requests.post(c.url + "execute_function",
                            json={"function_id": fid, "payload": serialize(((0.01,), {}))}).json()["task_id"]
        return c.wait(tid, limit=120)

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        ended = list(pool.map(one, range(200)))
    check(all(b["status"] == "COMPLETED" for b in ended), "200 concurrent: %r" % [b["status"] for b in ended])
    check(len({b["task_id"] for b in ended}) == 200, "200 distinct ids")
    print("ok concurrent")


def main():
    command, url = sys.argv[1], sys.argv[2]
    c = Client(url)
    if command == "contract":
        contract(url)
    elif command == "submit":
        fid = c.register(getattr(restfns, sys.argv[3]))
        print(c.execute(fid, json.loads(sys.argv[4])))
    elif command == "status":
        print(requests.get(c.url + "status/" + sys.argv[3]).json()["status"])
    elif command == "wait":
        body = c.wait(sys.argv[3], limit=float(os.environ.get("WAIT_LIMIT", "120")))
        value = deserialize(body["result"])
        print(json.dumps({"status": body["status"], "type": type(value).__name__,
                          "text": str(value), "error_code": getattr(value, "error_code", None)}))
    else:
        raise SystemExit("unknown command " + command)


if __name__ == "__main__":
    main()
