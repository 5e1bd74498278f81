"""slither's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures: ``slither_pool`` (a two-worker pool, closed after the test) and ``slither_store``.
Helper: :func:`isolated_vs_threaded` runs one workload in slither's workers and in host threads and
returns both outcomes, so a test of your own code against shared-state races reads::

    def test_counter_is_race_free(slither_pool):
        iso, thr = isolated_vs_threaded(count_words, docs, pool=slither_pool, threads=4)
        assert iso.results == [count_words(d) for d in docs]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class RunResult:
    mode: str
    results: list[Any]
    errors: list[BaseException]
    wall_s: float


def isolated_vs_threaded(
    fn: Callable[[Any], Any], items: Iterable[Any], *, pool: Any, threads: int = 4
) -> tuple[RunResult, RunResult]:
    """Runs ``fn`` over ``items`` in the pool's workers and in ``threads`` host threads (same data)."""
    data = list(items)
    t0 = time.perf_counter()
    out = pool.dispatch(fn, data, on_error="skip")
    isolated = RunResult("isolated", out.results, [f.exception for f in out.failures if f.exception],
                         time.perf_counter() - t0)

    results: list[Any] = [None] * len(data)
    errors: list[BaseException] = []
    lock = threading.Lock()
    it = iter(range(len(data)))

    def work() -> None:
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                results[i] = fn(data[i])
            except Exception as exc:
                with lock:
                    errors.append(exc)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return isolated, RunResult("threaded", results, errors, time.perf_counter() - t0)


@pytest.fixture
def slither_pool() -> Iterator[Any]:
    """A two-worker ``slither.Pool``, closed after the test."""
    import slither

    with slither.Pool(workers=2) as pool:
        yield pool


@pytest.fixture
def slither_store() -> Any:
    """A fresh ``slither.Store``."""
    import slither

    return slither.Store()
