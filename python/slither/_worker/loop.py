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
from slither._worker.execute import execute
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
