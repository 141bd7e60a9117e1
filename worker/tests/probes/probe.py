# A Python function that does what its event asks; the same probe exists in every language.
import os
import sys
import time

COUNT = 0


def handle(event):
    global COUNT
    if "echo" in event:
        return event["echo"]
    if "raise" in event:
        raise ValueError(event["raise"])
    if "crash" in event:
        import ctypes
        ctypes.string_at(0)
    if "exit" in event:
        os._exit(event["exit"])
    if "alloc_mb" in event:
        block = bytearray(event["alloc_mb"] << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
    if "sleep_ms" in event:
        time.sleep(event["sleep_ms"] / 1000)
    if "print" in event:
        sys.stdout.write("x" * event["print"])
    if "env" in event:
        return os.environ.get(event["env"])
    if "count" in event:
        COUNT += 1
        return [COUNT, os.getpid()]
    if "process" in event:
        blocked = [l.split()[1] for l in open("/proc/self/status") if l.startswith("SigBlk:")]
        return {
            "group_leader": os.getpgid(0) == os.getpid(),
            "stdin": os.readlink("/proc/self/fd/0"),
            "in_home": os.getcwd() == os.environ.get("HOME"),
            "blocked": int(blocked[0], 16),
        }
    if "fds" in event:
        return sorted(int(f) for f in os.listdir("/proc/self/fd"))
    if "ls" in event:
        return sorted(os.listdir("."))
    return None
