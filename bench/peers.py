"""One adapter per engine: ``map(fn, items, chunk)``, ``call(fn, arg)``, ``close()``. Missing peers say so."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any

import workloads


class Serial:
    name = "serial"

    def __init__(self, workers: int) -> None:
        pass

    def map(self, fn, items, chunk):
        return [fn(x) for x in items]

    def call(self, fn, arg):
        return fn(arg)

    def close(self):
        pass


class Threads(Serial):
    name = "threads"

    def __init__(self, workers: int) -> None:
        self.ex = concurrent.futures.ThreadPoolExecutor(workers)

    def map(self, fn, items, chunk):
        return list(self.ex.map(fn, items))

    def call(self, fn, arg):
        return self.ex.submit(fn, arg).result()

    def close(self):
        self.ex.shutdown()


class MpPool(Serial):
    name = "multiprocessing.Pool"

    def __init__(self, workers: int) -> None:
        self.p = multiprocessing.get_context("spawn").Pool(workers)
        self.p.map(workloads.ident, range(workers * 2))

    def map(self, fn, items, chunk):
        return self.p.map(fn, items, chunksize=chunk)

    def call(self, fn, arg):
        return self.p.apply(fn, (arg,))

    def close(self):
        self.p.terminate()
        self.p.join()


class PPE(Serial):
    name = "ProcessPoolExecutor"

    def __init__(self, workers: int) -> None:
        self.ex = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        list(self.ex.map(workloads.ident, range(workers * 2)))

    def map(self, fn, items, chunk):
        return list(self.ex.map(fn, items, chunksize=chunk))

    def call(self, fn, arg):
        return self.ex.submit(fn, arg).result()

    def close(self):
        self.ex.shutdown(cancel_futures=True)


class Loky(PPE):
    name = "loky"

    def __init__(self, workers: int) -> None:
        from loky import get_reusable_executor

        self.ex = get_reusable_executor(max_workers=workers)
        list(self.ex.map(workloads.ident, range(workers * 2)))

    def close(self):
        pass


class Mpire(Serial):
    name = "mpire"

    def __init__(self, workers: int) -> None:
        from mpire import WorkerPool

        self.p = WorkerPool(n_jobs=workers, keep_alive=True)
        self.p.map(workloads.ident, range(workers * 2))

    def map(self, fn, items, chunk):
        return self.p.map(fn, items, chunk_size=chunk)

    def call(self, fn, arg):
        return self.p.apply(fn, (arg,))

    def close(self):
        self.p.terminate()


class Pebble(Serial):
    name = "Pebble"

    def __init__(self, workers: int) -> None:
        from pebble import ProcessPool

        self.p = ProcessPool(max_workers=workers)
        list(self.p.map(workloads.ident, range(workers * 2)).result())

    def map(self, fn, items, chunk):
        return list(self.p.map(fn, items, chunksize=chunk).result())

    def call(self, fn, arg):
        return self.p.schedule(fn, (arg,)).result()

    def close(self):
        self.p.stop()
        self.p.join()


class Slither(Serial):
    name = "slither"

    def __init__(self, workers: int) -> None:
        import slither

        self.p = slither.Pool(workers)

    def map(self, fn, items, chunk):
        return self.p.map(fn, items, batch_size=chunk)

    def call(self, fn, arg):
        return self.p.call(fn, arg)

    def close(self):
        self.p.close()


ENGINES: list[type[Serial]] = [Serial, Threads, MpPool, PPE, Loky, Mpire, Pebble, Slither]


def open_engine(cls: type[Serial], workers: int) -> tuple[Any, str | None]:
    try:
        return cls(workers), None
    except ImportError as exc:
        return None, f"not installed ({exc.name})"
