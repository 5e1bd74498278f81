"""The worker's main loop.

::

    host ──TASK(id, pickle((fn_ref, mode, data)))──▶ run ──▶ RESULT_OK(id, pickle(reply)) ──▶ host
                                                       └───▶ RESULT_ERR(id, pickle(error)) ─▶ host
    STORE_REQ/STORE_REPLY interleave when user code reads the store mid-task.

Modes: ``"item"`` calls ``fn(x)`` per item and reports per-item errors without failing the rest;
``"batch"`` calls ``fn(items)`` once and checks that a list of the same length comes back;
``"call"`` calls ``fn(*args, **kwargs)`` once. An exception is sent with its formatted traceback; if
the exception itself will not pickle, its type name and message travel instead.
"""

from __future__ import annotations

import collections
import faulthandler
import os
import pickle
import platform
import sys
import sysconfig
import traceback
from typing import Any

from slither._worker import framing
from slither._worker.functions import resolve

PROTOCOL = pickle.HIGHEST_PROTOCOL
EXIT_INIT_FAILED = 3


class Worker:
    def __init__(self, chan: framing.Channel) -> None:
        self.chan = chan
        self.pending: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self.store_seq = 0
        self.max_result_bytes = 1 << 30

    # -- the store's transport: one request, one reply, tasks that arrive meanwhile wait their turn
    def store_request(self, payload: bytes) -> bytes:
        self.store_seq += 1
        seq = self.store_seq
        self.chan.send(framing.STORE_REQ, seq, payload)
        while True:
            frame = self.chan.recv()
            if frame is None:
                os._exit(0)
            kind, ident, body = frame
            if kind == framing.STORE_REPLY and ident == seq:
                return body
            self.pending.append(frame)

    def next_frame(self) -> tuple[int, int, bytes] | None:
        if self.pending:
            return self.pending.popleft()
        return self.chan.recv()

    def start(self) -> None:
        self.chan.send(framing.HELLO, 0, _hello())
        frame = self.chan.recv()
        if frame is None or frame[0] != framing.INIT:
            os._exit(0)
        try:
            self.init(pickle.loads(frame[2]) if frame[2] else {})
        except BaseException as exc:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.chan.send(framing.INIT_FAILED, 0, text.encode("utf-8", "replace"))
            os._exit(EXIT_INIT_FAILED)
        self.chan.send(framing.READY, 0)

    def init(self, spec: dict[str, Any]) -> None:
        self.max_result_bytes = apply_init(spec, self.store_request)

    def serve(self) -> None:
        while True:
            frame = self.next_frame()
            if frame is None or frame[0] == framing.SHUTDOWN:
                return
            kind, ident, body = frame
            if kind == framing.TASK:
                self.run_task(ident, body)
                del body, frame

    def run_task(self, ident: int, body: bytes) -> None:
        ok, payload = execute(body, self.max_result_bytes)
        self.chan.send(framing.RESULT_OK if ok else framing.RESULT_ERR, ident, payload)


def apply_init(spec: dict[str, Any], store_transport: Any) -> int:
    """Prepares this process from the pool's start-up spec (import path, store, init); returns the result limit."""
    for entry in reversed(spec.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if spec.get("store"):
        import slither.worker
        from slither._worker.store_client import WorkerStore

        slither.worker.store = WorkerStore(store_transport)
    fn_ref = spec.get("init")
    if fn_ref is not None:
        resolve(fn_ref)(*spec.get("init_args", ()))
    return int(spec.get("max_result_bytes", 1 << 30))


def execute(body: bytes, max_result_bytes: int = 1 << 30) -> tuple[bool, bytes]:
    """Runs one pickled task; returns (True, pickled results) or (False, pickled error description).

    Shared by the worker loop and by other backends' workers (e.g. Ray actors), so a task means the same
    thing wherever it runs.
    """
    try:
        fn_ref, mode, data = pickle.loads(body)
        fn = resolve(fn_ref)
    except BaseException as exc:
        return _error("setup", exc)
    if mode == "item":
        results: list[Any] = []
        errors: dict[int, dict[str, Any]] = {}
        items = iter(data)
        # list.extend(map(...)) runs at C speed and keeps what it appended when fn raises; the failing
        # item is already consumed, so the loop resumes with the next one.
        while len(results) < len(data):
            try:
                results.extend(map(fn, items))
            except BaseException as exc:  # SystemExit from user code is an error of that item too
                if isinstance(exc, KeyboardInterrupt):
                    raise
                errors[len(results)] = _describe(exc)
                results.append(None)
        return _ok((results, errors) if errors else results, max_result_bytes)
    try:
        if mode == "batch":
            out = fn(data)
            if not isinstance(out, list):
                raise _LengthError(
                    f"batch function {_name(fn)} returned {type(out).__name__}, expected a list of {len(data)} results"
                )
            if len(out) != len(data):
                raise _LengthError(
                    f"batch function {_name(fn)} returned {len(out)} results for a batch of {len(data)} items"
                )
        else:
            ((args, kwargs),) = data
            out = fn(*args, **kwargs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _error("length" if isinstance(exc, _LengthError) else "error", exc)
    return _ok(out, max_result_bytes)


def _ok(value: Any, max_result_bytes: int) -> tuple[bool, bytes]:
    try:
        payload = pickle.dumps(value, PROTOCOL)
    except BaseException as exc:
        return _error("serialization", exc, index=_first_unpicklable(value))
    if len(payload) > max_result_bytes:
        msg = f"result of {len(payload):,} bytes exceeds max_result_bytes={max_result_bytes:,}"
        return _error("too_large", ValueError(msg))
    return True, payload


def _error(kind: str, exc: BaseException, index: int | None = None) -> tuple[bool, bytes]:
    info = _describe(exc)
    info["kind"] = kind
    info["index"] = index
    return False, pickle.dumps(info, PROTOCOL)


class _LengthError(Exception):
    pass


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _describe(exc: BaseException) -> dict[str, Any]:
    """An exception as data: the object (if it pickles), its type and message, and the formatted traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__traceback__ = None
    # Pickled on its own, so that the host can still read type, message and traceback when the
    # exception's class does not exist there.
    try:
        carried: bytes | None = pickle.dumps(exc, PROTOCOL)
        pickle.loads(carried)
    except BaseException:
        carried = None
    return {
        "kind": "error",
        "exc": carried,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": tb,
    }


def _first_unpicklable(value: Any) -> int | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value = value[0]
    if not isinstance(value, list):
        return None
    for i, v in enumerate(value):
        try:
            pickle.dumps(v, PROTOCOL)
        except BaseException:
            return i
    return None


def _hello() -> bytes:
    import json

    gil_check = getattr(sys, "_is_gil_enabled", None)
    return json.dumps(
        {
            "pid": os.getpid(),
            "python": platform.python_version(),
            "gil": bool(gil_check()) if gil_check else True,
            "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        }
    ).encode()


def main() -> None:
    fd = int(os.environ["SLITHER_FD"])
    if not os.environ.get("PYTHONFAULTHANDLER"):
        faulthandler.enable()
    parent = int(os.environ.get("SLITHER_PARENT_PID", "0"))
    if parent and os.getppid() != parent:
        os._exit(0)
    worker = Worker(framing.Channel(fd))
    worker.start()
    worker.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
