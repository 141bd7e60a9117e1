"""The Volley runtime for Python: loads a user's function and runs one task at a time.

Speaks the protocol of docs/runtime-protocol.md on descriptors 3 (frames in) and 4
(frames out); stdout and stderr stay the user's and become the task's log. Needs nothing
beyond the standard library.

The code is a `.py` file (handler `handle` or `module.handle`, the module being the file),
a `.zip` whose root holds the handler's module and its dependencies (handler
`module.function`, default `main.handle`), or a `.dill` file: a function pickled by dill,
as the course FaaS's REST clients register them (handler: the Python version it was
pickled with, `3.11`, or empty). A dill function's tasks carry base64 of dill's
`((args...), {kwargs})`, and answer base64 of dill's pickle of the return value, or of the
exception, whose text then starts with `Function Failure` (see `DillFunction`).
"""

import importlib
import os
import struct
import sys
import time

# Only what READY needs is imported up front: `json` (through `re` and `enum`),
# `importlib.util` and `traceback` would add more than half again to the interpreter's own
# start. JSON goes through `_json`, the C accelerator `json` itself uses, set up as
# `json.loads` and `json.dumps(ensure_ascii=False, separators=(",", ":"))` set it up.
try:
    import _json

    class _Decoding:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = staticmethod(
            {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__)

    _scan = _json.make_scanner(_Decoding())

    def _unserializable(o):
        raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)

    def decode(text):
        start = len(text) - len(text.lstrip(" \t\n\r"))
        try:
            value, end = _scan(text, start)
        except StopIteration as e:
            raise ValueError("Expecting value: char %d" % e.value) from None
        if text[end:].strip(" \t\n\r"):
            raise ValueError("Extra data: char %d" % end)
        return value

    def encode(value):
        return "".join(_json.make_encoder(
            {}, _unserializable, _json.encode_basestring, None, ":", ",", False, False, True)(value, 0))

    encode(decode('{"a": [1, 2.5, "\u00e9", null, true]}'))
except Exception:  # another Python's _json: the json module's own
    import json

    def decode(text):
        return json.loads(text)

    def encode(value):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 8 * 1024 * 1024
INIT, READY, INIT_FAILED, INVOKE, RESULT, ERROR, ERROR_VALUE = 1, 2, 3, 4, 5, 6, 7


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
    if isinstance(exc, Refusal):
        return type(exc).__name__, str(exc), ""
    import traceback

    kind = type(exc).__qualname__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        kind = module + "." + kind
    # The first frame is this runtime's call of the handler: the user's start below it.
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return kind, str(exc), "".join(traceback.format_exception(type(exc), exc, tb))


class Refusal(Exception):
    """The runtime's own refusal to load a function: its message says it all, with no
    traceback of the runtime's."""


class VersionMismatch(Refusal):
    pass


class DillMissing(Refusal):
    pass


class DillFunction:
    """A function registered as a dill pickle: called with base64 of `((args), {kwargs})`,
    it answers base64 of the pickled return value. What it raises is answered as well
    pickled (`failure_value`): the same exception, its text starting `Function Failure`
    and `error_code` 500, so a client with none of Volley's modules reads it back, and
    `isinstance` of the original type holds when that type is a builtin or the client's.
    A payload that does not load, or is not callable, fails every task with why."""

    def __init__(self, path, wanted):
        running = "%d.%d" % sys.version_info[:2]
        if wanted and wanted != running:
            raise VersionMismatch(
                "this function was pickled by Python %s; this worker's interpreter (%s) is Python %s, "
                "and dill's pickles do not cross minor versions: start the worker with --python "
                "naming a Python %s" % (wanted, sys.executable, sys.version.split()[0], wanted))
        try:
            import dill
        except ImportError:
            raise DillMissing(
                "dill is not installed for %s (Python %s): install it there (pip install dill), "
                "or start the worker with --python naming an interpreter that has it"
                % (sys.executable, sys.version.split()[0])) from None
        import binascii
        self.dill, self.binascii = dill, binascii
        self.version = "%s dill %s" % (sys.version.split()[0], dill.__version__)
        self.fn, self.broken = None, None
        try:
            with open(path, "rb") as f:
                fn = dill.loads(f.read())
            if not callable(fn):
                raise TypeError("the registered payload is a %s, not a function" % type(fn).__name__)
            self.fn = fn
        except ModuleNotFoundError as exc:
            self.broken = ModuleNotFoundError(
                "%s (a function pickled by reference is imported from its module: start the worker "
                "with --python-path at the client's checkout root, with the module's imports "
                "installed)" % exc)
        except Exception as exc:  # every task of it fails with why
            self.broken = exc
        if self.broken is not None:
            self.broken_args = self.broken.args

    def __call__(self, payload):
        if self.broken is not None:
            self.broken.args = self.broken_args  # as loaded, whatever the last task's answer did
            raise self.broken
        if not isinstance(payload, str):
            raise TypeError("the task's payload is not base64 text")
        args = self.dill.loads(self.binascii.a2b_base64(payload))
        if not (isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], (tuple, list))
                and isinstance(args[1], dict)):
            raise TypeError("the task's payload is not ((args...), {kwargs}): got %s" % _shape(args))
        return self.base64(self.dill.dumps(self.fn(*args[0], **args[1])))

    def base64(self, blob):
        """Lines of 76 characters, as base64.encodebytes writes them."""
        b2a = self.binascii.b2a_base64
        return "".join(b2a(blob[i:i + 57]).decode("ascii") for i in range(0, len(blob), 57))

    def failure_value(self, exc):
        text = "Function Failure: %s: %s" % (type(exc).__name__, exc)
        try:
            exc.args = (text,)
            exc.error_code = 500
            blob = self.dill.dumps(exc)
            if not str(self.dill.loads(blob)).startswith("Function Failure"):
                raise ValueError("its text does not survive pickling")
        except Exception:  # unpicklable, or a type whose text ignores its args
            plain = Exception(text)
            plain.error_code = 500
            blob = self.dill.dumps(plain)
        return self.base64(blob)


def _shape(value):
    if isinstance(value, tuple):
        return "a %d-tuple" % len(value)
    return "a %s" % type(value).__name__


def load(code, handler):
    """Imports the user's code and returns its handler."""
    if code.endswith(".dill"):
        return DillFunction(code, handler)
    if code.endswith(".zip"):
        module_name, _, func = handler.rpartition(".")
        module_name = module_name or "main"
        sys.path.insert(0, code)
        module = importlib.import_module(module_name)
    else:
        func = handler.rpartition(".")[2] or "handle"
        # What importlib.util's loader would do, without importing it.
        module = type(sys)("handler")
        module.__file__ = code
        sys.modules["handler"] = module
        with open(code, "rb") as f:
            source = f.read()
        exec(compile(source, code, "exec"), module.__dict__)
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


def preload():
    """Imports the modules `VOLLEY_PYTHON_PRELOAD` names (`dill,requests`), which a worker
    sets only for runtimes started ahead of their code (prewarmed, the fork server): what
    the functions it expects import first is then imported before any of them comes."""
    names = os.environ.pop("VOLLEY_PYTHON_PRELOAD", "")
    for name in filter(None, names.split(",")):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing module costs its functions the import, nothing else
            sys.stderr.write("volley: cannot preload %s: %s: %s\n" % (name, type(exc).__name__, exc))


def main():
    preload()
    # The first compile() of a process sets the compiler up (0.7 ms here): done before
    # INIT, it is the runtime's start, not the user's init (and a prewarmed or forked
    # runtime has it done before its code comes).
    compile(b"pass\n", "<volley>", "exec")
    stream = Stream(3, 4)
    first = stream.read()
    if first is None or first[0] != INIT:
        return 2
    fields = first[1]
    protocol = fields.u32()
    # A prewarmed or forked runtime was started before its function was known.
    os.environ["VOLLEY_FUNCTION"] = fields.text()
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
    version = getattr(handler, "version", None) or "%d.%d.%d" % sys.version_info[:3]
    stream.write(READY, "python", version, init_us)
    valued = isinstance(handler, DillFunction)
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
            result = encode(handler(decode(args)))
        except Exception as exc:
            flush()
            described = failure(exc)
            if valued:
                stream.write(ERROR_VALUE, task_id, *described, encode(handler.failure_value(exc)))
            else:
                stream.write(ERROR, task_id, *described)
            continue
        flush()
        stream.write(RESULT, task_id, result)


def fork_server(socket_path):
    """Serves forks of this interpreter, with this module loaded, on a Unix socket.

    Each connection asks for one runtime: a line of JSON (`workdir`, `function`) sent with
    three descriptors (frames in, frames out, log). The server forks; the child becomes a
    runtime on those descriptors in a session of its own; the connection is answered
    `pid N`, then `exit N` or `signal N` when the child ends. The server exits when its
    stdin (a pipe its owner holds) closes.
    """
    import selectors
    import signal
    import socket

    preload()  # inherited by every fork, as is this:
    compile(b"pass\n", "<volley>", "exec")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    selector.register(0, selectors.EVENT_READ, "owner")
    children = {}
    os.write(4, b"R")
    os.close(4)
    while True:
        for key, _ in selector.select():
            if key.data == "owner":
                if not os.read(0, 64):
                    for pid in children:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    return 0
            elif key.data == "child":
                os.read(wake_r, 512)
                reap(children)
            else:
                conn, _ = server.accept()
                try:
                    pid = spawn(conn, [server.fileno(), wake_r, wake_w], children)
                except Exception as exc:  # a malformed request: refuse it, serve on
                    try:
                        conn.sendall(("error %s\n" % exc).encode())
                    except OSError:
                        pass
                    conn.close()
                    continue
                if pid is not None:
                    children[pid] = conn


def spawn(conn, own_fds, children):
    import socket
    import signal

    conn.settimeout(5)
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        if len(fds) != 3:
            raise ValueError("expected 3 descriptors, got %d" % len(fds))
        request = decode(data.decode("utf-8"))
        workdir, function = request["workdir"], request["function"]
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.setsid()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                high = [os.dup(fd) for fd in fds]  # out of the way of 1-4
                os.dup2(high[0], 3)
                os.dup2(high[1], 4)
                os.dup2(high[2], 1)
                os.dup2(high[2], 2)
                os.closerange(5, os.sysconf("SC_OPEN_MAX"))
                os.chdir(workdir)
                os.environ.update(HOME=workdir, TMPDIR=workdir, VOLLEY_FUNCTION=function)
                code = main()
            finally:
                flush()
                os._exit(code if isinstance(code, int) else 1)
        conn.sendall(b"pid %d\n" % pid)
        return pid
    finally:
        for fd in fds:
            os.close(fd)


def reap(children):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        if os.WIFSIGNALED(status):
            line = "signal %d\n" % os.WTERMSIG(status)
        else:
            line = "exit %d\n" % os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(line.encode())
        except OSError:
            pass
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--fork-server":
        sys.path[0:0] = sys.argv[3:]  # --python-path
        sys.exit(fork_server(sys.argv[2]))
    sys.exit(main())
