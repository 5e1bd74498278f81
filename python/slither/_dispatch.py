"""The dispatch engine: the one loop behind map, imap, map_batches, imap_batches and dispatch.

::

    iterable ─▶ batching (lazy) ─▶ pickle (_payload) ─▶ core.submit ─┐   at most max_in_flight batches out
                                                                     ▼
    caller ◀── in order (_ordering) / as completed ◀── run.next() ◀──┘   blocks: GIL released, Ctrl-C checked
                          └── completion (_decode) ─▶ failures ─▶ policy (_retry): raise | skip | retry / split

Every input item leaves as a result or a Failure; nothing is dropped. Results travel in chunks
``(start, values, None)`` covering input positions ``start .. start + len(values)``, and failures one by
one as ``(index, None, Failure)``, so the per-item cost in the host stays a list extend. The loop never
polls: it blocks on the run until a completion arrives or the earliest retry is due.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from slither import _decode, _payload, errors
from slither._functions import describe, function_ref
from slither._ordering import Entry, Reorder, width
from slither._progress import Progress, total_of
from slither._retry import Batch, RetryQueue, check_policy, delay, plan
from slither.batching import AutoBatch, Batching
from slither.outcome import Failure, RunStats

if TYPE_CHECKING:
    from slither._dispatcher import Dispatcher
    from slither._slither import Completion


class Engine:
    """One dispatch over one pool. Iterate ``entries()``; read ``stats()`` afterwards."""

    def __init__(
        self,
        dispatcher: Dispatcher,
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
        self.dispatcher = dispatcher
        self.core = dispatcher.core
        self.fn_name = describe(fn)
        self.ref = function_ref(fn)
        dispatcher.check_transferable(self.ref, fn)
        self.ref_hits = _payload.ref_mentions(self.ref)
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
        # Drop-in surfaces (map's overall timeout, the awaitables): a monotonic deadline past which the loop
        # raises TimeoutError, and a bound on each wait so that interrupt() from another thread is seen.
        self.deadline = deadline
        self.poll = poll
        self.interrupted: BaseException | None = None
        self.run = self.core.new_run()
        self.live: dict[int, Batch] = {}
        self.retries = RetryQueue()
        self.next_tag = 0
        self.batches = 0
        self.items = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.started = time.perf_counter()
        self.wall = 0.0

    # -- submission ---------------------------------------------------------------------------
    def _new_batch(self, indices: Sequence[int], items: list[Any], attempts: int = 1, charged: int = 0) -> Batch:
        tag = self.next_tag
        self.next_tag += 1
        return Batch(tag, indices, items, attempts, charged)

    def _submit(self, batch: Batch, ready: list[Entry]) -> None:
        try:
            payload = _payload.dumps((self.ref, self.mode, batch.items), self.ref_hits)
        except Exception:
            payload = self._drop_unpicklable(batch, ready)
            if payload is None:
                return
        self.live[batch.tag] = batch
        try:
            self.core.submit(self.run, batch.tag, payload.data, len(batch.items), self.timeout, self.pin, payload.fd)
        except errors.SerializationError as exc:
            # Over the pool's max_frame_bytes. In item mode the items travel in halves until only an item that
            # is too large on its own fails; a batch function's batch is one unit and fails whole.
            del self.live[batch.tag]
            if self.mode == "item" and len(batch.items) > 1:
                half = len(batch.items) // 2
                for lo, hi in ((0, half), (half, len(batch.items))):
                    part = self._new_batch(batch.indices[lo:hi], batch.items[lo:hi], batch.attempts, batch.charged)
                    self._submit(part, ready)
                return
            span = str(batch.indices[0]) if len(batch.indices) == 1 else f"{batch.indices[0]}..{batch.indices[-1]}"
            err = errors.SerializationError(f"item(s) {span} of {self.fn_name}: {exc}")
            self._fail(batch, "serialization", err, None, ready, retryable=False)
        except errors.SessionLost:
            del self.live[batch.tag]
            exc = errors.SessionLost(f"the session's worker {self.pin[0] if self.pin else '?'} died or was replaced")
            self._fail(batch, "session_lost", exc, None, ready, retryable=False)
        except BaseException:
            del self.live[batch.tag]
            raise
        finally:
            payload.release()

    def _drop_unpicklable(self, batch: Batch, ready: list[Entry]) -> _payload.Encoded | None:
        """Fails the items that will not pickle (each on its own) and returns the payload of the rest."""
        good_idx: list[int] = []
        good: list[Any] = []
        for i, item in zip(batch.indices, batch.items):
            why = _payload.picklable(item)
            if why is None:
                good_idx.append(i)
                good.append(item)
                continue
            err = errors.SerializationError(
                f"item {i} ({type(item).__module__}.{type(item).__qualname__}) cannot be pickled: "
                f"{type(why).__name__}: {_decode.safe_str(why)}")
            err.__cause__ = why
            self._fail(Batch(batch.tag, [i], [item], batch.attempts, batch.charged), "serialization", err, None,
                       ready, retryable=False)
        if not good:
            return None
        batch.indices, batch.items = good_idx, good
        try:
            return _payload.dumps((self.ref, self.mode, good), self.ref_hits)
        except Exception as exc:
            err = errors.SerializationError(f"the items {good_idx[:5]}... cannot be pickled together: {exc}")
            self._fail(batch, "serialization", err, None, ready, retryable=False)
            return None

    # -- completions --------------------------------------------------------------------------
    def _complete(self, c: Completion, ready: list[Entry]) -> None:
        batch = self.live.pop(c.tag)
        if c.kind == "ok":
            self._completed_ok(c, batch, ready)
            return
        n = len(batch.items)
        what = f"batch {c.batch} of {self.fn_name} ({n} item{'s' if n != 1 else ''})"
        fkind, exc, tb = _decode.failure_of(c, what, pinned=self.pin is not None)
        info = _decode.error_info(c.data) if c.kind == "err" else {}
        if info.get("kind") == "resolve":
            # The function itself cannot be found: no policy can make any item succeed.
            raise _Raise(exc, self._failure(batch, 0, fkind, exc, c, tb))
        if info.get("kind") == "payload" and len(batch.items) > 1:
            # Some item will not unpickle in the worker: run each alone (within the window), so that only it fails.
            for i, item in zip(batch.indices, batch.items):
                self.retries.push(self._new_batch([i], [item], batch.attempts, batch.charged), 0.0)
            return
        self._fail(batch, fkind, exc, c, ready, traceback=tb,
                   retryable=fkind not in ("session_lost", "aborted", "serialization"))

    def _completed_ok(self, c: Completion, batch: Batch, ready: list[Entry]) -> None:
        try:
            values, item_errors = _decode.reply(c.data, c.segment)
        except Exception as exc:
            err = errors.SerializationError(
                f"the result of batch {c.batch} from {_decode.where(c.worker, c.pid)} cannot be unpickled in the "
                f"host: {_decode.safe_str(exc)}")
            err.__cause__ = exc
            self._fail(batch, "serialization", err, c, ready, retryable=False)
            return
        if self.auto is not None:
            self.auto.observe(len(batch.items), c.duration)
        if not item_errors:
            self._ok(batch.indices, values, ready)
            return
        self.dispatcher.record_failures(c.worker, c.pid, len(item_errors))
        at = _decode.where(c.worker, c.pid, c.batch)
        start = 0
        groups: dict[bool, tuple[list[int], list[Any], list[tuple[str, BaseException, str | None]]]] = {}
        for j in sorted(item_errors):
            if j > start:
                self._ok(batch.indices[start:j], values[start:j], ready)
            start = j + 1
            fkind, exc, tb = _decode.item_failure(item_errors[j], batch.indices[j], at)
            indices, items, each = groups.setdefault(fkind != "serialization", ([], [], []))
            indices.append(batch.indices[j])
            items.append(batch.items[j])
            each.append((fkind, exc, tb))
        if start < len(batch.indices):
            self._ok(batch.indices[start:], values[start:], ready)
        # The failed items of one batch share their history: they are retried (or not) as one batch.
        for retryable, (indices, items, each) in groups.items():
            fkind, exc, tb = each[0]
            self._fail(Batch(batch.tag, indices, items, batch.attempts, batch.charged), fkind, exc, c, ready,
                       traceback=tb, retryable=retryable, each=each)

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

    def _failure(self, batch: Batch, n: int, kind: str, exc: BaseException, c: Completion | None,
                 tb: str | None) -> Failure:
        return Failure(
            index=batch.indices[n], item=batch.items[n], batch=c.batch if c is not None else None,
            worker=c.worker if c is not None else None, pid=c.pid if c is not None else None,
            kind=kind, exception=exc, traceback=tb,  # type: ignore[arg-type]
            exit_code=c.exit_code if c is not None else None, signal=c.signal if c is not None else None,
            attempts=batch.attempts,
        )

    def _fail(
        self,
        batch: Batch,
        kind: str,
        exc: BaseException,
        c: Completion | None,
        ready: list[Entry],
        *,
        traceback: str | None = None,
        retryable: bool = True,
        each: list[tuple[str, BaseException, str | None]] | None = None,
    ) -> None:
        """Applies the policy to a batch that failed; ``each`` gives per-item (kind, exception, traceback)."""

        def failure(n: int) -> Failure:
            if each is None:
                return self._failure(batch, n, kind, exc, c, traceback)
            k, e, tb = each[n]
            return self._failure(batch, n, k, e, c, tb)

        first = failure(0)
        charged = batch.charged + 1
        verdict = plan(self.policy, first, len(batch.items), charged, retryable)
        if verdict == "raise":
            raise _Raise(exc, first)
        if verdict == "split":
            # Nobody knows yet which item killed the worker: each half runs again, uncharged.
            self.retried += 1
            self._emit_retry(c, batch, kind, split=True)
            for indices, items in batch.halves():
                again = self._new_batch(indices, items, batch.attempts + 1, batch.charged)
                self.retries.push(again, delay(self.policy, batch.charged))
            return
        if verdict == "retry":
            self.retried += 1
            self._emit_retry(c, batch, kind, split=False)
            again = self._new_batch(batch.indices, batch.items, batch.attempts + 1, charged)
            self.retries.push(again, delay(self.policy, charged))
            return
        for n in range(len(batch.indices)):
            self.failed += 1
            ready.append((batch.indices[n], None, first if n == 0 else failure(n)))

    def _emit_retry(self, c: Completion | None, batch: Batch, kind: str, split: bool) -> None:
        self.dispatcher.telemetry.emit({
            "event": "batch_retried", "batch": c.batch if c is not None else None,
            "worker": c.worker if c is not None else None, "items": len(batch.indices),
            "attempt": batch.attempts + 1, "cause": kind, "split": split})

    # -- the loop -----------------------------------------------------------------------------
    def entries(self) -> Iterator[Entry]:
        """Yields ``(start, results, None)`` chunks and ``(index, None, Failure)`` until every item is accounted for."""
        with self.dispatcher.running():
            yield from self._entries()

    def _entries(self) -> Iterator[Entry]:
        source = self.batching.batches(self.iterable)
        exhausted = False
        ready: list[Entry] = []
        order = Reorder() if self.ordered else None
        run = self.run
        window = self.max_in_flight * 2
        try:
            while True:
                # Hand over what is ready before pulling more input: a consumer that stops here has caused no
                # more reading than it needed.
                if ready:
                    if self.progress.enabled:
                        self.progress.update(sum(width(e) for e in ready))
                    out, ready = ready, []
                    yield from (order.release(out) if order is not None else out)
                # `live` counts every batch submitted and not yet handled here, including answers that
                # arrived but wait in the run's channel: that, not the core's count, bounds what is read.
                while len(self.live) < self.max_in_flight and (again := self.retries.pop_due()) is not None:
                    self._submit(again, ready)
                # Ordered output waits for its oldest batch: count what is buffered behind it too, so one slow
                # batch cannot make the host pull (and hold) the rest of the input. With nothing in flight the
                # position it waits for has not been sent yet (a strategy that regroups its input): read on.
                while not exhausted and len(self.live) < self.max_in_flight and (
                    order is None or len(self.live) + len(order) < window or not (self.live or self.retries)
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
                    if order is not None:
                        yield from order.rest()
                    break
                # Block until something can happen: a completion, or (only when the window has room for it)
                # the earliest retry falling due. A due retry behind a full window waits for a completion.
                wait = self._bound_wait(self.retries.due_in() if len(self.live) < self.max_in_flight else None)
                if not self.live:
                    time.sleep(wait or 0.0)
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
        """From another thread: cancels the run (killing workers running its batches); the loop raises ``exc``."""
        self.interrupted = exc
        self.core.cancel(self.run)

    def _bound_wait(self, wait: float | None) -> float | None:
        if self.interrupted is not None:
            raise self.interrupted
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise concurrent.futures.TimeoutError("the results did not come within the timeout; the rest was "
                                                      "cancelled")
            wait = left if wait is None else min(wait, left)
        if self.poll is not None:
            wait = self.poll if wait is None else min(wait, self.poll)
        return wait

    def stats(self) -> RunStats:
        return RunStats(
            batches=self.batches, items=self.items, succeeded=self.succeeded, failed=self.failed,
            retried_batches=self.retried, max_in_flight_seen=self.run.max_in_flight_seen, wall_s=self.wall,
        )


class _Raise(Exception):
    def __init__(self, exc: BaseException, failure: Failure) -> None:
        self.exc = exc
        self.failure = failure
