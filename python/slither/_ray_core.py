"""``Pool(backend="ray")``: the same pool API with workers as Ray actors.

``RayCore`` offers the interface of the native core (runs, submit, completions, sessions, stats), so the
dispatch loop, error policies, batching, sessions and broadcast work unchanged on a cluster:

- a worker is an actor (``max_restarts=-1``): its module globals are its state, as in a local worker;
- a session pins to one actor; when that actor dies, its generation changes and the session is lost;
- an actor's death fails only the batch it was running (``crashed``) and Ray restarts the actor;
- a batch over its ``timeout`` gets its actor killed (and restarted) and fails with ``timeout``;
- backpressure is the dispatch loop's: never more than ``max_in_flight`` unfinished object refs;
- a store is published to a store actor when the pool starts (``publish_store()`` republishes); workers
  read and write it through ``slither.worker.store`` as usual.
"""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import platform
import sys
import threading
import time
import weakref
from typing import Any

import ray

from slither import errors
from slither._native import _slither
from slither._worker.buffers import detach
from slither._worker.execute import execute
from slither._worker.loop import apply_init

Completion = _slither.Completion
_SLICE = 0.1


@ray.remote
class _StoreActor:
    def __init__(self, tables: list[tuple[str, list[tuple[bytes, bytes]]]]) -> None:
        from slither._native import _slither

        self.store = _slither.StoreCore()
        self.store.reload_many(tables)

    def request(self, payload: bytes) -> bytes:
        return bytes(self.store.handle_request(payload))

    def publish(self, tables: list[tuple[str, list[tuple[bytes, bytes]]]]) -> None:
        self.store.reload_many(tables)


@ray.remote(max_restarts=-1, max_task_retries=0)
class _WorkerActor:
    def __init__(self, index: int, init_payload: bytes, store: Any) -> None:
        os.environ["SLITHER_WORKER_INDEX"] = str(index)
        spec = pickle.loads(init_payload) if init_payload else {}
        transport = (lambda p: ray.get(store.request.remote(p))) if store is not None else None
        self.max_result_bytes = apply_init(spec, transport)

    def run(self, body: bytes, buffers: list[Any] | None = None) -> tuple[bool, bytes, int]:
        # The pid tells the host whether Ray restarted this actor since it last looked (its state is new).
        ok, payload = execute(body, self.max_result_bytes, buffers=buffers)
        return ok, payload.data, os.getpid()

    def hello(self) -> dict[str, Any]:
        gil = getattr(sys, "_is_gil_enabled", lambda: True)()
        return {"pid": os.getpid(), "python": platform.python_version(), "gil": bool(gil)}

    def rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0


class _Slot:
    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.actor = actor
        # Refs submitted to this actor, oldest (running) first; its deadline counts from head_since.
        self.queue: collections.deque[Any] = collections.deque()
        self.head_since = time.monotonic()
        self.generation = 1
        self.pid = 0
        self.python = ""
        self.gil = True
        self.sessions = 0
        self.pending = 0
        self.batches = self.items = self.failures = self.restarts = 0
        self.rss = self.peak_rss = 0
        self.started = time.monotonic()


class _Pending:
    __slots__ = ("batch", "generation", "items", "payload", "pid", "pinned", "slot", "started", "tag", "timeout")

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


class RayRun:
    """One dispatch's outstanding object refs, with the run interface the dispatch loop expects."""

    def __init__(self, core: RayCore) -> None:
        self.core = core
        self.pending: dict[Any, _Pending] = {}
        self.max_in_flight_seen = 0

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def next(self, timeout: float | None = None) -> _slither.Completion | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending:
            expired = self.core._expire(self)
            if expired is not None:
                return expired
            left = _SLICE if deadline is None else min(_SLICE, max(0.0, deadline - time.monotonic()))
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=left)
            if ready:
                done = self.core._finish(self, ready[0])
                if done is not None:
                    return done
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return None


class RayCore:
    def __init__(self, workers: int, init_payload: bytes, store: Any, address: str | None) -> None:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=True,
                     ignore_reinit_error=True, configure_logging=False)
        self._lock = threading.Lock()
        self._batch_ids = itertools.count(1)
        self._store_actor = None
        self._store = store
        if store is not None:
            self._store_actor = _StoreActor.remote(self._tables())
        self._slots = [_Slot(i, _WorkerActor.remote(i, init_payload, self._store_actor)) for i in range(workers)]
        self._max_seen = 0
        self._outstanding = 0
        self._orphans: set[Any] = set()
        self._runs: weakref.WeakSet[RayRun] = weakref.WeakSet()
        self._stopped = False

    # -- start-up and shutdown ----------------------------------------------------------------
    def wait_ready(self, timeout: float | None = None) -> bool:
        refs = [s.actor.hello.remote() for s in self._slots]
        try:
            hellos = ray.get(refs, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            return False
        except ray.exceptions.RayActorError as exc:
            raise errors.PoolBroken(f"a Ray worker actor failed to start: {exc}") from exc
        for slot, h in zip(self._slots, hellos):
            slot.pid, slot.python, slot.gil = h["pid"], h["python"], h["gil"]
        return True

    def _tables(self) -> list[tuple[str, list[tuple[bytes, bytes]]]]:
        inner = self._store._inner
        return [(t, [(bytes(k), bytes(v)) for k, v in inner.items(t)]) for t in inner.tables()]

    def publish_store(self) -> None:
        if self._store_actor is not None:
            ray.get(self._store_actor.publish.remote(self._tables()))

    def drain(self, timeout: float | None = None) -> bool:
        """Waits until every submitted batch has finished on its actor (results stay with their runs)."""
        refs = [ref for run in list(self._runs) for ref in list(run.pending)]
        if not refs:
            return True
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        return len(ready) == len(refs)

    def shutdown(self, graceful: bool) -> None:
        if self._stopped:
            return
        self._stopped = True
        for slot in self._slots:
            ray.kill(slot.actor, no_restart=True)
        if self._store_actor is not None:
            ray.kill(self._store_actor, no_restart=True)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def size(self) -> int:
        return len(self._slots)

    # -- runs ---------------------------------------------------------------------------------
    def new_run(self) -> RayRun:
        run = RayRun(self)
        self._runs.add(run)
        return run

    def submit(self, run: RayRun, tag: int, payload: bytes, items: int, timeout: float | None = None,
               pin: tuple[int, int] | None = None, segment: int | None = None) -> int:
        # Ray moves large buffers through its own object store: a payload's shared-memory segment is read
        # back into buffers that travel beside the pickle.
        task = (payload, None) if segment is None else detach(payload, segment)
        if self._stopped:
            raise errors.PoolClosed("the pool is closed")
        if timeout is not None and not timeout > 0:
            raise errors.ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
        with self._lock:
            if pin is not None:
                slot = self._slots[pin[0]]
                if slot.generation != pin[1]:
                    raise errors.SessionLost(f"the session's worker {pin[0]} died or was replaced; its state is gone")
            else:
                slot = min(self._slots, key=lambda s: (s.pending, s.index))
            self._outstanding += 1
            self._max_seen = max(self._max_seen, self._outstanding)
            batch = next(self._batch_ids)
        self._send(run, _Pending(batch=batch, tag=tag, slot=slot.index, pid=slot.pid, started=time.monotonic(),
                                 timeout=timeout, generation=slot.generation, items=items, payload=task,
                                 pinned=pin is not None))
        return batch

    def _send(self, run: RayRun, p: _Pending) -> None:
        slot = self._slots[p.slot]
        ref = slot.actor.run.remote(*p.payload)
        with self._lock:
            slot.pending += 1
            if not slot.queue:
                slot.head_since = time.monotonic()
            slot.queue.append(ref)
        run.pending[ref] = p
        run.max_in_flight_seen = max(run.max_in_flight_seen, len(run.pending))

    def _leave(self, slot: _Slot, ref: Any) -> bool:
        """Takes a ref off its actor's queue; True if it was the one running."""
        with self._lock:
            head = bool(slot.queue) and slot.queue[0] == ref
            try:
                slot.queue.remove(ref)
            except ValueError:
                pass
            if head:
                slot.head_since = time.monotonic()
            slot.pending -= 1
            return head

    def _settle(self, slot: _Slot, items: int, ok: bool) -> None:
        with self._lock:
            self._outstanding -= 1
            slot.batches += 1
            slot.items += items
            slot.failures += 0 if ok else 1

    def _dead(self, slot: _Slot, generation: int) -> None:
        with self._lock:
            if slot.generation == generation:
                slot.generation += 1
                slot.restarts += 1
                slot.sessions = 0

    def _finish(self, run: RayRun, ref: Any) -> _slither.Completion | None:
        p = run.pending.pop(ref)
        slot = self._slots[p.slot]
        was_running = self._leave(slot, ref)
        duration = time.monotonic() - p.started
        try:
            ok, payload, pid = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            self._dead(slot, p.generation)
            with self._lock:
                orphan = ref in self._orphans
                self._orphans.discard(ref)
                if was_running and not orphan:
                    # Those queued behind the batch that died never started; their errors arrive later.
                    self._orphans.update(slot.queue)
            was_running = was_running and not orphan
            if not was_running and not p.pinned:
                # It never started: it goes to a live actor, untouched, as in the local pool.
                p.slot = min(self._slots, key=lambda s: (s.pending, s.index)).index
                p.generation = self._slots[p.slot].generation
                self._send(run, p)
                return None
            self._settle(slot, p.items, False)
            self._refresh_pid(slot)
            if p.pinned and not was_running:
                return Completion(p.batch, p.tag, p.slot, p.pid, "session_lost", None, None, None, duration)
            # Ray does not say how its actor process ended: the reason is Ray's, the exit status unknown.
            why = f"Ray reports {type(exc).__name__}; its exit status is unknown"
            return Completion(p.batch, p.tag, p.slot, p.pid, "crashed", why, None, None, duration)
        if pid != slot.pid:
            # Ray restarted the actor since we last looked: whatever state it held is gone.
            self._dead(slot, p.generation)
            slot.pid = pid
            if p.pinned:
                self._settle(slot, p.items, False)
                return Completion(p.batch, p.tag, p.slot, p.pid, "session_lost", None, None, None, duration)
        self._settle(slot, p.items, ok)
        return Completion(p.batch, p.tag, p.slot, pid, "ok" if ok else "err", payload, None, None, duration)

    def _expire(self, run: RayRun) -> _slither.Completion | None:
        now = time.monotonic()
        for ref, p in list(run.pending.items()):
            slot = self._slots[p.slot]
            running = bool(slot.queue) and slot.queue[0] == ref
            if p.timeout is not None and running and now - slot.head_since > p.timeout:
                del run.pending[ref]
                self._leave(slot, ref)
                ray.kill(slot.actor, no_restart=False)
                self._settle(slot, p.items, False)
                self._dead(slot, p.generation)
                self._refresh_pid(slot)
                return Completion(p.batch, p.tag, p.slot, p.pid, "timeout", p.timeout, None, None, now - p.started)
        return None

    def _refresh_pid(self, slot: _Slot) -> None:
        """Waits for Ray to bring the actor back; its restart does not count against any batch's deadline."""
        try:
            slot.pid = ray.get(slot.actor.hello.remote(), timeout=60)["pid"]
        except Exception:
            slot.pid = 0
        slot.head_since = time.monotonic()

    def cancel(self, run: RayRun) -> None:
        for ref, p in list(run.pending.items()):
            del run.pending[ref]
            slot = self._slots[p.slot]
            if self._leave(slot, ref):
                # Running: stop it, as the local pool kills a worker running a cancelled batch.
                ray.kill(slot.actor, no_restart=False)
                self._dead(slot, p.generation)
            with self._lock:
                self._outstanding -= 1

    # -- sessions, introspection --------------------------------------------------------------
    def open_session(self, timeout: float | None = 60.0) -> tuple[int, int]:
        with self._lock:
            slot = min(self._slots, key=lambda s: (s.sessions, s.pending, s.index))
            slot.sessions += 1
            return slot.index, slot.generation

    def record_failures(self, worker: int, generation: int, count: int) -> None:
        slot = self._slots[worker]
        if slot.generation == generation:
            slot.failures += count

    def close_session(self, worker: int, generation: int) -> None:
        with self._lock:
            slot = self._slots[worker]
            if slot.generation == generation:
                slot.sessions = max(0, slot.sessions - 1)

    def session_alive(self, worker: int, generation: int) -> bool:
        return self._slots[worker].generation == generation

    def workers(self) -> list[_slither.WorkerInfo]:
        return [_slither.WorkerInfo(index=s.index, pid=s.pid, generation=s.generation, state="ready",
                                    python=s.python, gil=s.gil) for s in self._slots]

    def stats(self) -> _slither.PoolStats:
        try:
            rss = ray.get([s.actor.rss.remote() for s in self._slots], timeout=10)
        except Exception:
            rss = [s.rss for s in self._slots]
        now = time.monotonic()
        out = []
        for s, r in zip(self._slots, rss):
            s.rss, s.peak_rss = r, max(s.peak_rss, r)
            out.append(_slither.WorkerStats(
                index=s.index, pid=s.pid, generation=s.generation, state="ready", batches=s.batches, items=s.items,
                failures=s.failures, restarts=s.restarts, uptime_s=now - s.started, rss_bytes=s.rss,
                peak_rss_bytes=s.peak_rss, in_flight=s.pending, python=s.python, gil=s.gil, sessions=s.sessions))
        return _slither.PoolStats(workers=out, in_flight=self._outstanding, max_in_flight_seen=self._max_seen,
                                  closed=self._stopped)

    def set_events(self, on: bool) -> None:
        """Ray reports its own events (``ray.util.state``); slither's pool events are not recorded here."""

    def next_events(self, max: int = 1024, timeout: float = 0.0) -> list[dict[str, Any]]:
        if timeout:
            time.sleep(min(timeout, _SLICE))
        return []
