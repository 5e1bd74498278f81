"""The worker's main loop: the main thread takes its tasks from the channel; a reader thread serves the control channel.

::

    fd 3 (channel) ─▶ main thread: INIT, TASK n ─▶ started word := n, run ─▶ RESULT_OK/RESULT_ERR ─▶ fd 3
    fd 4 (control) ─▶ reader thread ─┬─ REVOKE(id, n) ─▶ TASK n not taken yet? REVOKED(id): it will never run
                                     │                   taken: STARTED(id): too late, it runs or ran
                                     └─ STORE_REPLY ──▶ the store request waiting for it (user code, any thread)
    fd 5 (started word) ◀─ main thread; read by the host when this process has died

The main thread reads its own tasks (no hand-off between threads between a task's arrival and its run), and
a task's start costs a store into shared memory, not a frame: the host infers when the first batch it holds
here began and learns from the started word, after a death, whether it had (what a crash is charged to). The
reader thread keeps answering while a task runs: a batch the host pipelined behind a long run can be taken
back for an idle worker, and store replies reach user code whatever thread asked. TASK frames are numbered
from 1 in the order they arrive (the host counts the same way); a REVOKE names the frame it wants back and
whether that frame runs is decided under one lock. Task semantics (what ``"item"``, ``"batch"`` and
``"call"`` mean) are in ``execute.py``. A task or result whose large buffers travel in a shared-memory
segment carries its descriptor (``buffers.py``); a task's segment is closed once the task is loaded (its
mapping keeps the memory), or when it is revoked.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py imports re and enum, milliseconds of every worker start
import faulthandler
import mmap
import os
import queue
import sys
import sysconfig
import threading

from slither._worker import framing, segments
from slither._worker.buffers import Encoded
from slither._worker.execute import execute
from slither._worker.functions import resolve
from slither._worker.segments import Segment

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any, NoReturn

EXIT_INIT_FAILED = 3
EXIT_PROTOCOL = 4


# Seconds without a task after which a worker gives back the cached segments nobody reads (segments.py).
IDLE_TRIM_S = 5.0


class Worker:
    def __init__(self, chan: framing.Channel, control: framing.Channel, started_word: int) -> None:
        self.chan = chan
        self.control = control
        # The host reads it only after this process died; no lock: one writer, and a death orders everything.
        self.started = mmap.mmap(started_word, framing.STARTED_WORD.size)
        self.lock = threading.Lock()
        # TASK frames the main thread has taken from the channel (run or skipped), and the numbers of frames
        # given back before it took them.
        self.taken = 0
        self.revoked: set[int] = set()
        self.replies: dict[int, queue.SimpleQueue[bytes | None]] = {}
        self.store_seq = 0
        self.max_result_bytes = 1 << 30

    # -- the reader thread: the control channel ------------------------------------------------------
    def read_loop(self) -> None:
        while True:
            try:
                frame = self.control.recv()
            except framing.ProtocolViolation as exc:
                _violation(exc)
            if frame is None:
                break
            kind, ident, body, fd = frame
            if fd is not None:
                _violation(framing.ProtocolViolation(f"a descriptor came with frame {kind} on the control channel"))
            if kind == framing.REVOKE:
                number = int.from_bytes(body, "little")
                with self.lock:
                    if number > self.taken:
                        self.revoked.add(number)
                        self.chan.send(framing.REVOKED, ident)
                    else:  # the main thread took it (after sending every earlier result)
                        self.chan.send(framing.STARTED, ident)
            elif kind == framing.STORE_REPLY:
                with self.lock:
                    waiter = self.replies.pop(ident, None)
                if waiter is not None:
                    waiter.put(body)
            else:
                _violation(framing.ProtocolViolation(f"frame {kind} (id {ident}) came on the control channel"))
        # The host is gone: wake everyone who waits on it.
        with self.lock:
            waiters, self.replies = list(self.replies.values()), {}
        for w in waiters:
            w.put(None)

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

    # -- the main thread: the channel ----------------------------------------------------------------
    def start(self) -> None:
        self.chan.send(framing.HELLO, 0, _hello())
        # Before init: an init function may read the store.
        threading.Thread(target=self.read_loop, name="slither-worker-reader", daemon=True).start()
        first = self._recv()
        if first is None or first[0] != framing.INIT:
            os._exit(0)
        try:
            self.init(pickle.loads(first[2]) if first[2] else {})
        except BaseException as exc:
            import traceback

            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.chan.send(framing.INIT_FAILED, 0, text.encode("utf-8", "replace"))
            os._exit(EXIT_INIT_FAILED)
        self.chan.send(framing.READY, 0)

    def init(self, spec: dict[str, Any]) -> None:
        self.max_result_bytes = apply_init(spec, self.store_request)

    def _recv(self) -> tuple[int, int, bytes | bytearray, int | None] | None:
        try:
            return self.chan.recv()
        except framing.ProtocolViolation as exc:
            _violation(exc)

    def serve(self) -> None:
        chan, lock, started = self.chan, self.lock, self.started
        while True:
            if segments.holding() and not chan.wait(IDLE_TRIM_S):
                segments.trim()  # idle: the segments nobody reads go back to the system
            frame = self._recv()
            if frame is None or frame[0] == framing.SHUTDOWN:
                return
            kind, ident, body, fd = frame
            del frame
            segment = None if fd is None else Segment(fd, 0)
            if kind != framing.TASK:
                _violation(framing.ProtocolViolation(f"unexpected frame {kind} (id {ident}) on the channel"))
            with lock:
                self.taken += 1
                number = self.taken
                skip = number in self.revoked
                self.revoked.discard(number)
            if skip:
                if segment is not None:
                    segment.close()
                continue
            framing.U64.pack_into(started, framing.STARTED_FRAME_AT, number)
            ok, payload = execute(body, self.max_result_bytes, fd=None if segment is None else segment.fd, shared=True)
            del body
            if segment is not None:
                segment.close()  # the mapping (if the task's objects still live) keeps the memory
            _send(chan, framing.RESULT_OK if ok else framing.RESULT_ERR, ident, payload)
            del payload


def _violation(exc: BaseException) -> NoReturn:
    print(f"slither worker: {exc}", file=sys.stderr, flush=True)
    os._exit(EXIT_PROTOCOL)


def _send(chan: framing.Channel, kind: int, ident: int, payload: Encoded) -> None:
    """One result frame; its segment (if any) travels with it and is closed here once sent."""
    chan.send(kind, ident, payload.data, payload.fd)
    if payload.segment is not None:
        payload.segment.close()


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
    control = framing.Channel(int(os.environ["SLITHER_CONTROL_FD"]))
    worker = Worker(framing.Channel(fd), control, int(os.environ["SLITHER_STARTED_FD"]))
    started = worker.started
    # The host counts this process's memory without its segment cache (max_memory_per_worker).
    segments.report_to(lambda cached: framing.U64.pack_into(started, framing.STARTED_CACHED_AT, cached))
    worker.start()
    worker.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
