"""The Volley runtime for Python: loads a user's function and runs one task at a time.

Speaks the protocol of docs/runtime-protocol.md on descriptors 3 (frames in) and 4
(frames out); stdout and stderr stay the user's and become the task's log. Needs nothing
beyond the standard library.

The code is a `.py` file (handler `handle` or `module.handle`, the module being the file)
or a `.zip` whose root holds the handler's module and its dependencies (handler
`module.function`, default `main.handle`).
"""

import importlib
import importlib.util
import json
import os
import struct
import sys
import time
import traceback

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 8 * 1024 * 1024
INIT, READY, INIT_FAILED, INVOKE, RESULT, ERROR = 1, 2, 3, 4, 5, 6


class Stream:
    def __init__(self, fd_in, fd_out):
        self.inp = os.fdopen(fd_in, "rb", buffering=65536)
        self.out = fd_out

    def read(self):
        head = self.inp.read(4)
        if len(head) < 4:
            return None
        (length,) = struct.unpack(">I", head)
        if length == 0 or length > MAX_FRAME_BYTES:
            raise ValueError("frame of %d bytes" % length)
        body = self.inp.read(length)
        if len(body) < length:
            return None
        return body[0], Fields(body, 1)

    def write(self, kind, *parts):
        body = bytearray([kind])
        for part in parts:
            if isinstance(part, int):
                body += struct.pack(">Q", part)
            else:
                data = part.encode("utf-8", "replace")
                body += struct.pack(">I", len(data)) + data
        frame = struct.pack(">I", len(body)) + bytes(body)
        view = memoryview(frame)
        while view:
            view = view[os.write(self.out, view):]


class Fields:
    def __init__(self, body, pos):
        self.body, self.pos = body, pos

    def u32(self):
        (v,) = struct.unpack_from(">I", self.body, self.pos)
        self.pos += 4
        return v

    def u64(self):
        (v,) = struct.unpack_from(">Q", self.body, self.pos)
        self.pos += 8
        return v

    def text(self):
        n = self.u32()
        v = self.body[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return v


def failure(exc):
    kind = type(exc).__qualname__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        kind = module + "." + kind
    # The first frame is this runtime's call of the handler: the user's start below it.
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return kind, str(exc), "".join(traceback.format_exception(type(exc), exc, tb))


def load(code, handler):
    """Imports the user's code and returns its handler."""
    if code.endswith(".zip"):
        module_name, _, func = handler.rpartition(".")
        module_name = module_name or "main"
        sys.path.insert(0, code)
        module = importlib.import_module(module_name)
    else:
        func = handler.rpartition(".")[2] or "handle"
        spec = importlib.util.spec_from_file_location("handler", code)
        module = importlib.util.module_from_spec(spec)
        sys.modules["handler"] = module
        spec.loader.exec_module(module)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise AttributeError("the code defines no function %r" % func)
    return fn


def flush():
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


def main():
    stream = Stream(3, 4)
    first = stream.read()
    if first is None or first[0] != INIT:
        return 2
    fields = first[1]
    protocol = fields.u32()
    fields.text()  # the function's name
    handler_name, code = fields.text(), fields.text()
    if protocol != PROTOCOL_VERSION:
        stream.write(INIT_FAILED, "ProtocolMismatch",
                     "runtime speaks %d, worker %d" % (PROTOCOL_VERSION, protocol), "")
        return 2
    started = time.perf_counter()
    try:
        handler = load(code, handler_name)
    except BaseException as exc:  # a syntax error or a SystemExit at import is still an init failure
        flush()
        stream.write(INIT_FAILED, *failure(exc))
        return 1
    init_us = int((time.perf_counter() - started) * 1e6)
    version = "%d.%d.%d" % sys.version_info[:3]
    stream.write(READY, "python", version, init_us)
    while True:
        frame = stream.read()
        if frame is None:
            return 0
        kind, fields = frame
        if kind != INVOKE:
            return 2
        task_id = fields.u64()
        fields.u32()  # attempt
        fields.u64()  # deadline
        args = fields.text()
        try:
            result = json.dumps(handler(json.loads(args)), ensure_ascii=False, separators=(",", ":"))
        except Exception as exc:
            flush()
            stream.write(ERROR, task_id, *failure(exc))
            continue
        flush()
        stream.write(RESULT, task_id, result)


if __name__ == "__main__":
    sys.exit(main())
