"""The worker's main loop: a reading thread and an executing (main) thread.

::

    fd 3 ─▶ reader thread ─┬─ TASK (+segment) ▶ inbox ─▶ main thread: STARTED, run, RESULT_OK/RESULT_ERR ─▶ fd 3
                           ├─ REVOKE(id) ────▶ still waiting in the inbox? REVOKED(id): it will never run
                           ├─ STORE_REPLY ───▶ the store request waiting for it (user code, any thread)
                           └─ SHUTDOWN / EOF ▶ main thread returns

The reader keeps answering while a task runs: a batch the host pipelined behind a long run can be taken
back for an idle worker, and store replies reach user code whatever thread asked. Whether a batch runs is
decided under one lock: the host hears either STARTED (it ran, or runs) or REVOKED (it never will).
Task semantics (what ``"item"``, ``"batch"`` and ``"call"`` mean) are in ``execute.py``. A task or result
whose large buffers travel in a shared-memory segment carries its descriptor (``buffers.py``); a task's
segment is closed once the task is loaded (its mapping keeps the memory), or when it is revoked.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py imports re and enum, milliseconds of every worker start
import collections
import faulthandler
import os
import queue
import sys
import sysconfig
import threading

from slither._worker import framing
from slither._worker.buffers import Encoded, Segment
from slither._worker.execute import execute
from slither._worker.functions import resolve

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

EXIT_INIT_FAILED = 3
EXIT_PROTOCOL = 4
_INIT = -1  # the inbox's marker for the INIT frame


class Worker:
    def __init__(self, chan: framing.Channel) -> None:
        self.chan = chan
        self.inbox: queue.SimpleQueue[tuple[int, bytes, Segment | None] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        # Copies of each batch received and not yet started; and copies taken back before they started. Counts,
        # not sets: a batch given back can be sent to this worker again while its first copy is still queued.
        self.waiting: collections.Counter[int] = collections.Counter()
        self.revoked: collections.Counter[int] = collections.Counter()
        self.replies: dict[int, queue.SimpleQueue[bytes | None]] = {}
        self.store_seq = 0
        self.max_result_bytes = 1 << 30

    # -- the reading thread ----------------------------------------------------------------------
    def read_loop(self) -> None:
        while True:
            try:
                frame = self.chan.recv()
            except framing.ProtocolViolation as exc:
                print(f"slither worker: {exc}", file=sys.stderr, flush=True)
                os._exit(EXIT_PROTOCOL)
            if frame is None:
                break
            kind, ident, body, fd = frame
            segment = None if fd is None else Segment(fd, 0)
            if kind == framing.TASK:
                with self.lock:
                    self.waiting[ident] += 1
                self.inbox.put((ident, body, segment))
            elif kind == framing.REVOKE:
                with self.lock:
                    if self.waiting[ident] > 0:
                        _take(self.waiting, ident)
                        self.revoked[ident] += 1
                        self.chan.send(framing.REVOKED, ident)
            elif kind == framing.STORE_REPLY:
                with self.lock:
                    waiter = self.replies.pop(ident, None)
                if waiter is not None:
                    waiter.put(body)
            elif kind == framing.INIT:
                self.inbox.put((_INIT, body, None))
            elif kind == framing.SHUTDOWN:
                break
        # The host is gone or said goodbye: wake everyone who waits on it.
        with self.lock:
            waiters, self.replies = list(self.replies.values()), {}
        for w in waiters:
            w.put(None)
        self.inbox.put(None)

    # -- the store's transport: any thread may ask; the reader routes the reply ----------------------
    def store_request(self, payload: bytes) -> bytes:
        waiter: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        with self.lock:
            self.store_seq += 1
            seq = self.store_seq
            self.replies[seq] = waiter
        self.chan.send(framing.STORE_REQ, seq, payload)
        reply = waiter.get()
        if reply is None:
            os._exit(0)  # the host is gone
        return reply

    # -- the main thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self.chan.send(framing.HELLO, 0, _hello())
        threading.Thread(target=self.read_loop, name="slither-worker-reader", daemon=True).start()
        first = self.inbox.get()
        if first is None or first[0] != _INIT:
            os._exit(0)
        try:
            self.init(pickle.loads(first[1]) if first[1] else {})
        except BaseException as exc:
            import traceback

            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.chan.send(framing.INIT_FAILED, 0, text.encode("utf-8", "replace"))
            os._exit(EXIT_INIT_FAILED)
        self.chan.send(framing.READY, 0)

    def init(self, spec: dict[str, Any]) -> None:
        self.max_result_bytes = apply_init(spec, self.store_request)

    def serve(self) -> None:
        inbox, lock, chan = self.inbox, self.lock, self.chan
        # A result whose next task is already waiting goes out with that task's STARTED, in one write.
        held: tuple[int, int, Encoded] | None = None
        while True:
            if held is not None and inbox.empty():
                _send(chan, *held)
                held = None
            task = inbox.get()
            if task is None:
                if held is not None:
                    _send(chan, *held)
                return
            ident, body, segment = task
            with lock:
                if self.revoked[ident] > 0:
                    _take(self.revoked, ident)
                    continue
                _take(self.waiting, ident)
                if held is not None and held[2].segment is None:
                    chan.send_many([(held[0], held[1], held[2].data), (framing.STARTED, ident, b"")])
                    held = None
                elif held is not None:
                    _send(chan, *held)
                    held = None
                    chan.send(framing.STARTED, ident)
                else:
                    chan.send(framing.STARTED, ident)
            del task
            ok, payload = execute(body, self.max_result_bytes, fd=None if segment is None else segment.fd, shared=True)
            del body
            if segment is not None:
                segment.close()  # the mapping (if the task's objects still live) keeps the memory
            held = (framing.RESULT_OK if ok else framing.RESULT_ERR, ident, payload)
            del payload


def _send(chan: framing.Channel, kind: int, ident: int, payload: Encoded) -> None:
    """One result frame; its segment (if any) travels with it and is closed here once sent."""
    chan.send(kind, ident, payload.data, payload.fd)
    if payload.segment is not None:
        payload.segment.close()


def _take(counts: collections.Counter[int], ident: int) -> None:
    counts[ident] -= 1
    if counts[ident] <= 0:
        del counts[ident]


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
            "python": "{}.{}.{}".format(*sys.version_info[:3]),
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
