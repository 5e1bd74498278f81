"""The dispatch engine: the one loop behind map, imap, map_batches, imap_batches and dispatch.

::

    iterable ─▶ batching (lazy) ─▶ pickle ─▶ core.submit ─┐   at most max_in_flight batches outstanding
                                                          ▼
    caller ◀── ordered buffer / as completed ◀── run.next() (GIL released, Ctrl-C checked)
                                   └── failures ─▶ policy: raise | skip | retry (resubmit only the failed items)

Every input item leaves as a result or a Failure; nothing is dropped. Results travel in chunks
``(start, values, None)`` covering input positions ``start .. start + len(values)``, and failures one by
one as ``(index, None, Failure)``, so the per-item cost in the host stays a list extend.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from slither import errors
from slither._functions import describe, function_ref
from slither._progress import Progress, total_of
from slither.batching import AutoBatch, Batching
from slither.outcome import Failure, Retry, RunStats

if TYPE_CHECKING:
    from slither._slither import Completion

PROTOCOL = pickle.HIGHEST_PROTOCOL
Entry = tuple[int, "list[Any] | None", "Failure | None"]


class _Batch:
    __slots__ = ("attempts", "indices", "items", "tag")

    def __init__(self, tag: int, indices: Sequence[int], items: list[Any], attempts: int = 1) -> None:
        self.tag = tag
        self.indices = indices
        self.items = items
        self.attempts = attempts


def decide(policy: Any, failure: Failure) -> str:
    """The policy's verdict for one failure: "raise", "skip" or "retry"."""
    if policy == "raise" or policy == "skip":
        return policy
    if policy == "retry":
        policy = Retry()
    if isinstance(policy, Retry):
        return "retry" if failure.attempts < policy.attempts else policy.then
    verdict = policy(failure)
    if verdict not in ("raise", "skip", "retry"):
        raise errors.ConfigError(f"on_error callable returned {verdict!r}; expected 'raise', 'skip' or 'retry'")
    return verdict


def check_policy(policy: Any) -> None:
    if policy in ("raise", "skip", "retry") or isinstance(policy, Retry) or callable(policy):
        return
    raise errors.ConfigError(
        f"on_error must be 'raise', 'skip', 'retry', a slither.Retry or a callable, got {policy!r}"
    )


def _retry_delay(policy: Any, attempts: int) -> float:
    base = policy.backoff if isinstance(policy, Retry) else 0.05
    return base * (2 ** (attempts - 1))


class Engine:
    """One dispatch over one pool. Iterate ``entries()``; read ``stats()`` afterwards."""

    def __init__(
        self,
        pool: Any,
        fn: str | Callable[..., Any],
        iterable: Iterable[Any],
        *,
        mode: str,
        batching: Batching,
        max_in_flight: int,
        ordered: bool,
        timeout: float | None,
        on_error: Any,
        pin: tuple[int, int] | None = None,
        progress: bool = False,
        deadline: float | None = None,
        poll: float | None = None,
    ) -> None:
        check_policy(on_error)
        if max_in_flight < 1:
            raise errors.ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.pool = pool
        self.core = pool._core
        self.fn_name = describe(fn)
        self.ref = function_ref(fn)
        check_transferable(pool, self.ref, self.fn_name)
        self.iterable = iterable
        self.mode = mode
        self.batching = batching
        self.auto = batching if isinstance(batching, AutoBatch) else None
        self.max_in_flight = max_in_flight
        self.ordered = ordered
        self.timeout = timeout
        self.policy = on_error
        self.pin = pin
        self.progress = Progress(enabled=progress, desc=self.fn_name, total=total_of(iterable))
        # Drop-in surfaces (pool.map's overall timeout, awaitables): a monotonic deadline past which the loop
        # raises TimeoutError, and a bound on each wait so that interrupt() from another thread is seen.
        self.deadline = deadline
        self.poll = poll
        self.interrupted: BaseException | None = None
        self.run = self.core.new_run()
        self.live: dict[int, _Batch] = {}
        self.retries: list[tuple[float, int, _Batch]] = []
        self.next_tag = 0
        self.batches = 0
        self.items = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.started = time.perf_counter()
        self.wall = 0.0

    # -- submission ---------------------------------------------------------------------------
    def _submit(self, batch: _Batch, ready: list[Entry]) -> None:
        try:
            payload = pickle.dumps((self.ref, self.mode, batch.items), PROTOCOL)
        except Exception:
            payload = self._drop_unpicklable(batch, ready)
            if payload is None:
                return
        self.live[batch.tag] = batch
        try:
            self.core.submit(self.run, batch.tag, payload, len(batch.items), self.timeout, self.pin)
        except errors.SessionLost:
            del self.live[batch.tag]
            exc = errors.SessionLost(f"the session's worker {self.pin[0] if self.pin else '?'} died or was replaced")
            self._fail(batch, "session_lost", exc, None, None, None, ready, retryable=False)
        except BaseException:
            del self.live[batch.tag]
            raise

    def _drop_unpicklable(self, batch: _Batch, ready: list[Entry]) -> bytes | None:
        good_idx: list[int] = []
        good: list[Any] = []
        for i, item in zip(batch.indices, batch.items):
            try:
                pickle.dumps(item, PROTOCOL)
            except Exception as exc:
                err = errors.SerializationError(f"item {i} cannot be pickled: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._fail(_Batch(batch.tag, [i], [item], batch.attempts), "serialization", err, None, None, None,
                           ready, retryable=False)
            else:
                good_idx.append(i)
                good.append(item)
        if not good:
            return None
        batch.indices, batch.items = good_idx, good
        try:
            return pickle.dumps((self.ref, self.mode, good), PROTOCOL)
        except Exception as exc:
            err = errors.SerializationError(f"batch of items {good_idx[:5]}... cannot be pickled: {exc}")
            self._fail(batch, "serialization", err, None, None, None, ready, retryable=False)
            return None

    def _new_batch(self, indices: Sequence[int], items: list[Any], attempts: int = 1) -> _Batch:
        tag = self.next_tag
        self.next_tag += 1
        return _Batch(tag, indices, items, attempts)

    # -- completions --------------------------------------------------------------------------
    def _complete(self, c: Completion, ready: list[Entry]) -> None:
        batch_id, worker, pid, kind, data = c.batch, c.worker, c.pid, c.kind, c.data
        exit_code, signal, duration = c.exit_code, c.signal, c.duration
        batch = self.live.pop(c.tag)
        if kind == "ok":
            try:
                reply = pickle.loads(data)
            except Exception as exc:
                err = errors.SerializationError(
                    f"the result of batch {batch_id} from worker {worker} (pid {pid}) cannot be unpickled in the host: {exc}"
                )
                self._fail(batch, "serialization", err, batch_id, worker, pid, ready)
                return
            if self.auto is not None:
                self.auto.observe(len(batch.items), duration)
            if self.mode == "call":
                self._ok(batch.indices, [reply], ready)
                return
            item_errors: dict[int, dict[str, Any]] = {}
            if self.mode == "item" and isinstance(reply, tuple):
                reply, item_errors = reply
            if not item_errors:
                self._ok(batch.indices, reply, ready)
                return
            failed_idx: list[int] = []
            failed_items: list[Any] = []
            first: dict[str, Any] | None = None
            for j, i in enumerate(batch.indices):
                info = item_errors.get(j)
                if info is None:
                    self._ok([i], [reply[j]], ready)
                else:
                    first = first or info
                    failed_idx.append(i)
                    failed_items.append(batch.items[j])
            if failed_idx:
                assert first is not None
                sub = _Batch(batch.tag, failed_idx, failed_items, batch.attempts)
                exc, tb = _rebuild(first, worker, pid, batch_id)
                self._fail(sub, "error", exc, batch_id, worker, pid, ready, traceback=tb, per_item=item_errors,
                           positions=[j for j in range(len(batch.indices)) if j in item_errors])
            return
        what = f"batch {batch_id} of {self.fn_name} ({len(batch.items)} items)"
        fkind, exc, tb = failure_of(c, what, pinned=self.pin is not None)
        self._fail(batch, fkind, exc, batch_id, worker, pid, ready, traceback=tb, exit_code=exit_code, signal=signal,
                   retryable=fkind not in ("session_lost", "aborted"))

    def _ok(self, indices: Sequence[int], values: list[Any], ready: list[Entry]) -> None:
        """Adds results as chunks of consecutive input positions (one chunk for contiguous batches)."""
        self.succeeded += len(values)
        if indices[-1] - indices[0] == len(indices) - 1:
            ready.append((indices[0], values, None))
            return
        start = 0
        for k in range(1, len(indices) + 1):
            if k == len(indices) or indices[k] != indices[k - 1] + 1:
                ready.append((indices[start], values[start:k], None))
                start = k

    def _fail(
        self,
        batch: _Batch,
        kind: str,
        exc: BaseException,
        batch_id: int | None,
        worker: int | None,
        pid: int | None,
        ready: list[Entry],
        *,
        traceback: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
        retryable: bool = True,
        per_item: dict[int, dict[str, Any]] | None = None,
        positions: list[int] | None = None,
    ) -> None:
        def failure(n: int) -> Failure:
            e, tb = exc, traceback
            if per_item is not None and positions is not None:
                e, tb = _rebuild(per_item[positions[n]], worker, pid, batch_id or 0)
            return Failure(
                index=batch.indices[n], item=batch.items[n], batch=batch_id or 0, worker=worker, pid=pid,
                kind=kind, exception=e, traceback=tb, exit_code=exit_code, signal=signal,  # type: ignore[arg-type]
                attempts=batch.attempts,
            )

        first = failure(0)
        verdict = decide(self.policy, first)
        if verdict == "retry" and not retryable:
            verdict = self.policy.then if isinstance(self.policy, Retry) else "skip"
        if verdict == "raise":
            raise _Raise(exc, first)
        if verdict == "retry":
            self.retried += 1
            self.pool._telemetry.emit({"event": "batch_retried", "batch": batch_id, "worker": worker,
                                       "items": len(batch.indices), "attempt": batch.attempts + 1, "cause": kind})
            again = self._new_batch(batch.indices, batch.items, batch.attempts + 1)
            due = time.monotonic() + _retry_delay(self.policy, batch.attempts)
            heapq.heappush(self.retries, (due, again.tag, again))
            return
        for n in range(len(batch.indices)):
            self.failed += 1
            ready.append((batch.indices[n], None, first if n == 0 else failure(n)))

    # -- the loop -----------------------------------------------------------------------------
    def entries(self) -> Iterator[Entry]:
        """Yields ``(start, results, None)`` chunks and ``(index, None, Failure)`` until every item is accounted for."""
        source = self.batching.batches(self.iterable)
        exhausted = False
        ready: list[Entry] = []
        buffer: dict[int, Entry] = {}
        next_index = 0
        run = self.run
        window = self.max_in_flight * 2
        try:
            while True:
                # Hand over what is ready before pulling more input: a consumer that stops here has caused no
                # more reading than it needed.
                if ready:
                    if self.progress.enabled:
                        self.progress.update(sum(1 if e[1] is None else len(e[1]) for e in ready))
                    if self.ordered:
                        for e in ready:
                            buffer[e[0]] = e
                        ready.clear()
                        while next_index in buffer:
                            e = buffer.pop(next_index)
                            yield e
                            next_index += 1 if e[1] is None else len(e[1])
                    else:
                        out, ready = ready, []
                        yield from out
                # `live` counts every batch submitted and not yet handled here, including answers that
                # arrived but wait in the run's channel: that, not the core's count, bounds what is read.
                while self.retries and self.retries[0][0] <= time.monotonic() and len(self.live) < self.max_in_flight:
                    _, _, again = heapq.heappop(self.retries)
                    self._submit(again, ready)
                # Ordered output waits for its oldest batch: count what is buffered behind it too, so one slow
                # batch cannot make the host pull (and hold) the rest of the input.
                while not exhausted and len(self.live) < self.max_in_flight and (
                    not self.ordered or len(self.live) + len(buffer) < window
                ):
                    try:
                        indices, items = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    self.batches += 1
                    self.items += len(indices)
                    self._submit(self._new_batch(indices, items), ready)
                if ready:
                    continue  # failures found while submitting (e.g. unpicklable items)
                if exhausted and not self.live and not self.retries:
                    if self.ordered and buffer:
                        # Indices skipped by a strategy that reorders (none do) would land here.
                        for i in sorted(buffer):
                            yield buffer.pop(i)
                    break
                wait = None
                if self.retries:
                    wait = max(0.0, self.retries[0][0] - time.monotonic())
                wait = self._bound_wait(wait)
                if not self.live and wait is not None:
                    time.sleep(wait)
                    continue
                c = run.next(wait)
                if c is not None:
                    self._complete(c, ready)
                    while (c := run.next(0.0)) is not None:
                        self._complete(c, ready)
        except _Raise as r:
            self.core.cancel(run)
            exc = r.exc
            try:
                exc.failure = r.failure  # type: ignore[attr-defined]
            except Exception:
                pass
            raise exc from exc.__cause__
        except BaseException:
            self.core.cancel(run)
            raise
        finally:
            self.wall = time.perf_counter() - self.started
            self.progress.close()

    def interrupt(self, exc: BaseException) -> None:
        """From another thread: cancel the run (killing workers running its batches); the loop raises ``exc``."""
        self.interrupted = exc
        self.core.cancel(self.run)

    def _bound_wait(self, wait: float | None) -> float | None:
        if self.interrupted is not None:
            raise self.interrupted
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise concurrent.futures.TimeoutError("the results did not arrive within the timeout; the remaining work was cancelled")
            wait = left if wait is None else min(wait, left)
        if self.poll is not None:
            wait = self.poll if wait is None else min(wait, self.poll)
        return wait

    def stats(self) -> RunStats:
        return RunStats(
            batches=self.batches, items=self.items, succeeded=self.succeeded, failed=self.failed,
            retried_batches=self.retried, max_in_flight_seen=self.run.max_in_flight_seen, wall_s=self.wall,
        )


def check_transferable(pool: Any, ref: tuple[str, Any], fn_name: str) -> None:
    """A function sent by value carries bytecode: refuse it when the workers run another Python version."""
    if ref[0] == "value" and not getattr(pool, "_by_value_ok", True):
        host, workers = pool._versions
        raise errors.SerializationError(
            f"{fn_name} must travel by value (it is a lambda, a closure or defined in __main__), but the workers run "
            f"Python {', '.join(workers)} and this host {host}: bytecode does not cross versions. Define it in a "
            "module the workers can import and pass it (or its 'module:function' name)."
        )


def failure_of(c: Completion, what: str, pinned: bool = False) -> tuple[str, BaseException, str | None]:
    """What a failed completion means: its Failure kind, the exception to raise or record, the remote traceback.

    ``what`` names the work in messages ("batch 12 of mod:fn (64 items)"); ``pinned`` is set for sessions,
    whose state dies with their worker, so a crash there is reported as ``SessionLost``.
    """
    batch_id, worker, pid, kind, data, exit_code, signal = c.batch, c.worker, c.pid, c.kind, c.data, c.exit_code, c.signal
    where = f"worker {worker} (pid {pid})"
    if kind == "err":
        info = _error_info(data)
        exc, tb = _rebuild(info, worker, pid, batch_id)
        fkind = {"length": "length", "serialization": "serialization", "too_large": "serialization"}.get(
            info.get("kind"), "error"
        )
        return fkind, exc, tb
    if kind == "crashed":
        cause = f"killed by {signal}" if signal else f"exited with code {exit_code}"
        hint = {"SIGSEGV": " (a segmentation fault: a bug in C code or an extension)",
                "SIGKILL": " (killed from outside, or by the kernel's out-of-memory killer)"}.get(signal or "", "")
        crashed = errors.WorkerCrashed(f"{where} died while running {what}: {cause}{hint}; it has been replaced")
        if not pinned:
            return "crash", crashed, None
        lost = errors.SessionLost(f"the session's {where} died ({cause}); its state is gone")
        lost.__cause__ = crashed
        return "crash", lost, None
    if kind == "timeout":
        return "timeout", errors.BatchTimeout(
            f"{what} overran its {data:g} s timeout on {where}; the worker was killed and replaced"), None
    if kind == "session_lost":
        return "session_lost", errors.SessionLost(f"the session's {where} died before running {what}"), None
    if kind == "protocol":
        return "crash", errors.ProtocolError(
            f"{where} broke the frame protocol while running {what}: {data}; it was killed and replaced"), None
    return "aborted", errors.PoolClosed(f"{what} was not run: {data}"), None


def single_result(c: Completion, fn_name: str, pinned: bool = False) -> Any:
    """The value of a one-call batch's completion, or the exception it stands for, raised."""
    if c.kind == "ok":
        try:
            return pickle.loads(c.data)
        except Exception as exc:
            raise errors.SerializationError(f"the result of {fn_name} cannot be unpickled in the host: {exc}") from exc
    _kind, exc, _tb = failure_of(c, fn_name, pinned)
    raise exc from exc.__cause__


class _Raise(Exception):
    def __init__(self, exc: BaseException, failure: Failure) -> None:
        self.exc = exc
        self.failure = failure


def _error_info(data: bytes) -> dict[str, Any]:
    """A worker's error description; one that will not even unpickle still becomes a description."""
    try:
        return pickle.loads(data)
    except Exception as exc:
        return {"kind": "error", "exc": None, "type": "?", "message": str(exc), "traceback": None}


def _rebuild(info: dict[str, Any], worker: int | None, pid: int | None, batch_id: int) -> tuple[BaseException, str | None]:
    """The worker's exception as an object of its own type where it unpickles, else TaskError."""
    tb = info.get("traceback")
    exc: BaseException | None = None
    raw = info.get("exc")
    if raw is not None:
        try:
            exc = pickle.loads(raw)
        except Exception:
            exc = None
    kind = info.get("kind")
    where = f"worker {worker} (pid {pid}), batch {batch_id}"
    if kind == "length":
        exc = errors.BatchLengthError(f"{info.get('message')} (batch {batch_id}, {where})")
    elif kind in ("serialization", "too_large"):
        index = info.get("index")
        which = f"result {index} of " if index is not None else "the result of "
        exc = errors.SerializationError(f"{which}batch {batch_id} cannot be sent back from {where}: {info.get('message')}")
    elif exc is None:
        exc = errors.TaskError(f"{info.get('type')}: {info.get('message')} (raised in {where})")
    if tb:
        exc.__cause__ = errors.RemoteTraceback(f"{tb}(raised in {where})\n")
    if hasattr(exc, "add_note"):
        exc.add_note(f"raised in slither {where}")
    return exc, tb
