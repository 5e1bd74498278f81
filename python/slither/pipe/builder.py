"""Pipe definition (an immutable, validated value) and its streaming runner.

::

    input ─▶ local ─▶ worker (pool, bounded in flight) ─▶ ... ─▶ router ─▶ bucket ─▶ branch pipe? ─▶ bucket
               └──────────── failures (stage, item, error) ──────────────┘

Stages are chained generators: a worker stage pulls from the stage before it only while it has room in
flight, so memory stays bounded however long the input is. A router must be last; what follows a router
is a per-bucket continuation (``.branch(bucket, pipe)``), never an implicit stage that could be skipped.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from slither.batching import Batching
from slither.errors import ConfigError, SlitherError
from slither.pipe.result import PipeResult, StageFailure, StageStats


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
"""Returned by a local stage to drop an item on purpose; it lands in the ``"dropped"`` bucket."""


class Many(list):
    """Returned by a local stage to turn one item into several (1 → N)."""


class PipeError(SlitherError):
    """A stage failed under ``on_error="raise"``; ``partial`` holds what the run had produced."""

    def __init__(self, message: str, partial: PipeResult, stage: str) -> None:
        super().__init__(message)
        self.partial = partial
        self.stage = stage


@dataclass(frozen=True)
class StageContext:
    run_id: str
    stage: str
    session: Any
    store: Any
    """A snapshot of the run's store (consistent for the whole run), or None."""


@dataclass(frozen=True)
class _Stage:
    name: str
    kind: str  # "local" | "worker" | "router"
    fn: Any
    options: tuple[tuple[str, Any], ...] = ()

    def opt(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


_POLICIES = ("raise", "skip", "retry")


class Pipe:
    """An immutable pipeline definition; every builder method returns a new Pipe."""

    def __init__(self, name: str, _stages: tuple[_Stage, ...] = (), _branches: tuple[tuple[str, Pipe], ...] = ()):
        if not isinstance(name, str) or not name:
            raise ConfigError("a Pipe needs a non-empty name")
        self.name = name
        self._stages = _stages
        self._branches = _branches

    # -- definition ---------------------------------------------------------------------------
    def _add(self, stage: _Stage) -> Pipe:
        if any(s.name == stage.name for s in self._stages):
            raise ConfigError(f"pipe {self.name!r} already has a stage named {stage.name!r}")
        if self._stages and self._stages[-1].kind == "router":
            raise ConfigError(
                f"stage {stage.name!r} follows router {self._stages[-1].name!r} in pipe {self.name!r}: a router is "
                "last; continue a bucket with .branch(bucket, Pipe(...))"
            )
        return Pipe(self.name, (*self._stages, stage), self._branches)

    def local(self, name: str, fn: Callable[..., Any], *, per_batch: bool = False, batch_size: int = 100) -> Pipe:
        """A host callable per item (or per list of items with ``per_batch=True``).

        It may return an item, ``Many([...])`` for several, or ``DROP``. If it accepts a parameter named
        ``ctx`` it gets a :class:`StageContext`.
        """
        if not callable(fn):
            raise ConfigError(f"local stage {name!r} needs a callable")
        wants_ctx = "ctx" in inspect.signature(fn).parameters
        return self._add(_Stage(name, "local", fn, (("per_batch", per_batch), ("batch_size", batch_size),
                                                    ("ctx", wants_ctx))))

    def worker(self, name: str, fn: str | Callable[..., Any], *, batch_size: int = 50, batching: Batching | None = None,
               max_in_flight: int | None = None, timeout: float | None = None, on_error: Any = "raise",
               route: str | None = None, per: str = "batch", session: Any = None) -> Pipe:
        """Items go to the pool in batches; ``fn(batch) -> list`` (or ``fn(item)`` with ``per="item"``).

        ``on_error``: "raise", "skip", "retry" or a slither.Retry; ``route="bucket"`` sends failed items to
        that output bucket instead of ``failures``.
        """
        if per not in ("batch", "item"):
            raise ConfigError(f"worker stage {name!r}: per must be 'batch' or 'item'")
        if isinstance(on_error, str) and on_error not in _POLICIES:
            raise ConfigError(f"worker stage {name!r}: unknown on_error {on_error!r}")
        opts = (("batch_size", batch_size if batching is None else None), ("batching", batching),
                ("max_in_flight", max_in_flight), ("timeout", timeout), ("on_error", on_error), ("route", route),
                ("per", per), ("session", session))
        return self._add(_Stage(name, "worker", fn, opts))

    def router(self, name: str, routes: list[tuple[Callable[[Any], bool], str]] | Callable[[Any], str], *,
               default: str = "default") -> Pipe:
        """Ordered predicates, first match wins, unmatched to ``default``; or a function returning a bucket name."""
        if not callable(routes):
            routes = list(routes)
            for r in routes:
                if not (isinstance(r, tuple) and len(r) == 2 and callable(r[0]) and isinstance(r[1], str)):
                    raise ConfigError(f"router {name!r}: each route must be (predicate, bucket_name), got {r!r}")
        return self._add(_Stage(name, "router", routes, (("default", default),)))

    def branch(self, bucket: str, pipe: Pipe) -> Pipe:
        """Items the router sends to ``bucket`` continue through ``pipe``; they end in its buckets."""
        if not self._stages or self._stages[-1].kind != "router":
            raise ConfigError(f"pipe {self.name!r}: .branch() continues a router's bucket; add a router first")
        if any(b == bucket for b, _ in self._branches):
            raise ConfigError(f"pipe {self.name!r} already has a branch for bucket {bucket!r}")
        return Pipe(self.name, self._stages, (*self._branches, (bucket, pipe)))

    @property
    def stages(self) -> list[str]:
        return [s.name for s in self._stages]

    def __repr__(self) -> str:
        return f"<slither.Pipe {self.name!r} {' -> '.join(f'{s.kind}:{s.name}' for s in self._stages)}>"

    # -- running ------------------------------------------------------------------------------
    def run(self, items: Iterable[Any], *, pool: Any = None, session: Any = None, store: Any = None,
            on_event: Callable[[dict[str, Any]], None] | None = None) -> PipeResult:
        """Runs the whole input; returns outputs per bucket, failures, per-stage counts and timings."""
        stream = self.stream(items, pool=pool, session=session, store=store, on_event=on_event)
        try:
            for bucket, item in stream:
                stream.result.outputs.setdefault(bucket, []).append(item)
        except _StageRaised as r:
            raise PipeError(f"stage {r.stage!r} of pipe {self.name!r} failed: {r.error}", stream.result, r.stage) \
                from r.error
        return stream.result

    def stream(self, items: Iterable[Any], *, pool: Any = None, session: Any = None, store: Any = None,
               on_event: Callable[[dict[str, Any]], None] | None = None) -> PipeStream:
        """Yields ``(bucket, item)`` as items complete; ``.result`` holds failures and stats afterwards."""
        if pool is None and any(s.kind == "worker" for s in self._all_stages()):
            raise ConfigError(f"pipe {self.name!r} has worker stages: pass pool=")
        return PipeStream(self, items, pool, session, store, on_event)

    def _all_stages(self) -> Iterator[_Stage]:
        yield from self._stages
        for _, p in self._branches:
            yield from p._all_stages()


class _StageRaised(Exception):
    def __init__(self, stage: str, error: BaseException) -> None:
        self.stage = stage
        self.error = error


class PipeStream:
    """An iterator of ``(bucket, item)``; ``result`` fills in as it runs."""

    def __init__(self, pipe: Pipe, items: Iterable[Any], pool: Any, session: Any, store: Any,
                 on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.result = PipeResult(run_id=self.run_id, outputs={}, failures=[], stages=[])
        self._pool = pool
        self._session = session
        self._snapshot = store.snapshot() if store is not None else None
        self._on_event = on_event
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        self._iter = self._build(pipe, iter(items), prefix="")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self

    def __next__(self) -> tuple[str, Any]:
        try:
            return next(self._iter)
        except StopIteration:
            self.result.wall_s = time.perf_counter() - self._started
            self._event({"event": "pipe_finished", "wall_s": self.result.wall_s})
            raise

    def _event(self, ev: dict[str, Any]) -> None:
        ev = {"run_id": self.run_id, **ev}
        self.result.events.append(ev)
        if self._on_event is not None:
            self._on_event(ev)

    def _fail(self, stats: StageStats, item: Any, error: BaseException | None, failure: Any = None) -> None:
        stats.failed += 1
        self.result.failures.append(StageFailure(stats.name, item, error, failure))

    def _build(self, pipe: Pipe, source: Iterator[Any], prefix: str) -> Iterator[tuple[str, Any]]:
        stream: Iterator[Any] = source
        for stage in pipe._stages:
            stats = StageStats(prefix + stage.name, stage.kind)
            self.result.stages.append(stats)
            if stage.kind == "local":
                stream = self._local(stage, stats, stream)
            elif stage.kind == "worker":
                stream = self._worker(stage, stats, stream)
            else:
                return self._route(pipe, stage, stats, stream, prefix)
        out = _bucket_name(prefix, "default")
        return ((out, x) for x in stream)

    def _local(self, stage: _Stage, stats: StageStats, source: Iterator[Any]) -> Iterator[Any]:
        ctx = StageContext(self.run_id, stage.name, self._session, self._snapshot) if stage.opt("ctx") else None
        fn = stage.fn
        if stage.opt("per_batch"):
            size = stage.opt("batch_size", 100)
            while chunk := list(itertools.islice(source, size)):
                stats.items_in += len(chunk)
                t0 = time.perf_counter()
                try:
                    out = fn(chunk, ctx=ctx) if ctx is not None else fn(chunk)
                    if not isinstance(out, list) or len(out) != len(chunk):
                        got = f"{len(out)} results" if isinstance(out, list) else type(out).__name__
                        raise ConfigError(f"per-batch local stage {stage.name!r} returned {got} for {len(chunk)} items")
                except Exception as exc:
                    for item in chunk:
                        self._fail(stats, item, exc)
                    raise _StageRaised(stats.name, exc) from exc
                finally:
                    stats.seconds += time.perf_counter() - t0
                for item, y in zip(chunk, out):
                    yield from self._emit(stats, item, y)
            return
        for item in source:
            stats.items_in += 1
            t0 = time.perf_counter()
            try:
                out = fn(item, ctx=ctx) if ctx is not None else fn(item)
            except Exception as exc:
                stats.seconds += time.perf_counter() - t0
                self._fail(stats, item, exc)
                raise _StageRaised(stats.name, exc) from exc
            stats.seconds += time.perf_counter() - t0
            yield from self._emit(stats, item, out)

    def _emit(self, stats: StageStats, item: Any, out: Any) -> Iterator[Any]:
        if out is DROP:
            with self._lock:
                self.result.outputs.setdefault("dropped", []).append(item)
            return
        if isinstance(out, Many):
            stats.items_out += len(out)
            yield from out
            return
        stats.items_out += 1
        yield out

    def _worker(self, stage: _Stage, stats: StageStats, source: Iterator[Any]) -> Iterator[Any]:
        session = stage.opt("session") or self._session
        pin = session._pin if session is not None else None
        route = stage.opt("route")
        policy = "skip" if route is not None else stage.opt("on_error", "raise")
        counted = _Counting(source, stats)
        engine = self._pool._engine(
            stage.fn, counted, mode=stage.opt("per"), batch_size=stage.opt("batch_size"),
            batching=stage.opt("batching"), default_batch=50, max_in_flight=stage.opt("max_in_flight"),
            ordered=False, timeout=stage.opt("timeout"), on_error=policy, progress=False, pin=pin,
        )
        t0 = time.perf_counter()
        try:
            for _start, values, failure in engine.entries():
                if failure is None:
                    stats.items_out += len(values)
                    yield from values
                elif route is not None:
                    stats.failed += 1
                    self.result.outputs.setdefault(route, []).append(failure.item)
                else:
                    self._fail(stats, failure.item, failure.exception, failure)
        except _StageRaised:
            raise
        except Exception as exc:
            failure = getattr(exc, "failure", None)
            self._fail(stats, failure.item if failure is not None else None, exc, failure)
            raise _StageRaised(stats.name, exc) from exc
        finally:
            stats.seconds += time.perf_counter() - t0
            self._event({"event": "stage_finished", "stage": stats.name, "in": stats.items_in,
                         "out": stats.items_out, "failed": stats.failed})

    def _route(self, pipe: Pipe, stage: _Stage, stats: StageStats, source: Iterator[Any],
               prefix: str) -> Iterator[tuple[str, Any]]:
        routes = stage.fn
        default = stage.opt("default", "default")
        branches = dict(pipe._branches)
        # Items bound for a branch wait here and run through the branch pipe once the router's input ends:
        # a branch sees complete input, and nothing routed to it is lost or skipped.
        held: dict[str, list[Any]] = {bucket: [] for bucket in branches}
        for item in source:
            stats.items_in += 1
            t0 = time.perf_counter()
            try:
                if callable(routes):
                    bucket = routes(item)
                    if not isinstance(bucket, str):
                        raise ConfigError(f"router {stage.name!r} returned {bucket!r}, expected a bucket name")
                else:
                    bucket = next((b for pred, b in routes if pred(item)), default)
            except Exception as exc:
                stats.seconds += time.perf_counter() - t0
                self._fail(stats, item, exc)
                raise _StageRaised(stats.name, exc) from exc
            stats.seconds += time.perf_counter() - t0
            stats.items_out += 1
            if bucket in held:
                held[bucket].append(item)
            else:
                yield _bucket_name(prefix, bucket), item
        for bucket, sub in branches.items():
            items, held[bucket] = held[bucket], []
            yield from self._build(sub, iter(items), prefix=f"{prefix}{bucket}/")


def _bucket_name(prefix: str, bucket: str) -> str:
    """A branch's buckets are named after the router bucket it continues: "big", "big/other"."""
    if not prefix:
        return bucket
    return prefix.rstrip("/") if bucket == "default" else prefix + bucket


class _Counting:
    def __init__(self, source: Iterator[Any], stats: StageStats) -> None:
        self._source = source
        self._stats = stats

    def __iter__(self) -> Iterator[Any]:
        for item in self._source:
            self._stats.items_in += 1
            yield item

