"""A user's script against slither's public API. `nox -s typing` checks it with mypy --strict and
pyright --strict: it must pass both unchanged, and the assert_type lines pin what each call returns."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from typing import Any, Literal, assert_type

import slither
from slither import Failure, FixedBatch, Outcome, Pool, Retry, Store, WorkerCrashed


def square(x: int) -> int:
    return x * x


def lengths(batch: list[str]) -> list[int]:
    return [len(s) for s in batch]


def power(base: int, exponent: int) -> int:
    return int(base**exponent)


def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


def decide(failure: Failure) -> Literal["raise", "skip", "retry"]:
    return "retry" if failure.kind == "crash" and failure.attempts < 3 else "skip"


async def awaiting() -> None:
    with Pool(workers=1) as pool:
        assert_type(await pool.acall(greet, "async", punctuation="."), str)
        async for value in pool.aimap(square, range(3), ordered=False, batch_timeout=30.0):
            assert_type(value, int)
        assert_type(await pool.amap(square, range(3)), list[int])


def main() -> None:
    store = Store()
    store.put("config", "threshold", 0.5)
    with Pool(workers=2, store=store, max_tasks_per_worker=100) as pool:
        squares = pool.map(square, range(10))
        assert_type(squares, list[int])
        streamed = pool.imap(square, [1, 2, 3], ordered=False, on_error="skip")
        assert_type(streamed, Iterator[int])
        sizes = pool.map_batches(lengths, ["a", "bb"], batching=FixedBatch(2))
        assert_type(sizes, list[int])
        by_name = pool.map("math:sqrt", [1.0, 4.0])  # by name: the checker cannot know the result type
        assert_type(by_name, list[Any])
        outcome = pool.dispatch(square, range(5), on_error=Retry(attempts=2, then="skip"))
        assert_type(outcome, Outcome[int])
        per_batch = pool.dispatch(lengths, ["x", "yy"], per="batch", on_error=decide)
        assert_type(per_batch, Outcome[int])
        for failure in outcome.failures:
            print(failure.index, failure.kind, failure.describe())
        hello = pool.call(greet, "slither", punctuation="?")
        assert_type(hello, str)
        assert_type(pool.options(timeout=5).call(greet, "bounded"), str)
        assert_type(pool.options(timeout=5).submit(square, 2), concurrent.futures.Future[int])
        future = pool.submit(square, 7)
        assert_type(future, concurrent.futures.Future[int])
        powers = pool.map(power, [2, 3], [3, 2])  # several iterables are zipped, as in Executor.map
        assert_type(powers, list[int])
        assert_type(pool.starmap(greet, [("a",), ("b",)], chunksize=1), list[str])
        assert_type(pool.imap_unordered(square, range(4), on_error="skip"), Iterator[int])
        assert_type(pool.apply(square, (3,)), int)
        print(pool.apply_async(square, (4,)).get(timeout=10))
        with pool.session("model") as session:
            assert_type(session.map(square, [1, 2]), list[int])
            assert_type(session.call(greet, "session"), str)
        for worker in pool.stats().workers:
            print(worker.pid, worker.restarts, worker.peak_rss_bytes)
    asyncio.run(awaiting())
    try:
        with slither.Pool(workers=1, processes=None, initializer=None) as single:
            print(single.call(square, 3))
    except WorkerCrashed as exc:
        print(exc)
    except slither.SlitherError:
        raise
    with slither.ProcessPoolExecutor(max_workers=2) as executor:  # the stdlib's lazy map
        assert_type(executor.map(square, range(3), timeout=30), Iterator[int])
        assert_type(executor.map(power, [2], [3], chunksize=4), Iterator[int])
        assert_type(executor.submit(square, 2), concurrent.futures.Future[int])


if __name__ == "__main__":
    main()
