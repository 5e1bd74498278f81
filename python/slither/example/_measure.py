"""Measuring a run: wall time and memory growth (stdlib only; runs in the host, in workers, and in other
interpreters for ``--baseline-python``).

Memory is reported as *growth*: the process's resident high-water mark during the run minus its resident
memory just before it. On Linux the kernel's high-water mark (``VmHWM``) is reset before the run by
writing 5 to ``/proc/self/clear_refs``, so the figure is exact and does not depend on what ran earlier in
the same process (``--all`` and a single run agree). Where that is not possible, a thread samples the
resident memory every 2 ms instead, and can miss a spike shorter than that.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_HWM = re.compile(rb"VmHWM:\s+(\d+) kB")


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process now, in bytes (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def high_water_bytes() -> int | None:
    """This process's resident high-water mark (``VmHWM``) in bytes, or None where the OS has none."""
    try:
        with open("/proc/self/status", "rb") as f:
            m = _HWM.search(f.read())
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def reset_high_water() -> bool:
    """Resets this process's ``VmHWM`` to its current resident memory; False where the OS cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return high_water_bytes() is not None


def mark() -> dict[str, int]:
    """Start of a measured run in this process: resets the high-water mark; returns pid and resident bytes."""
    exact = reset_high_water()
    return {"pid": os.getpid(), "rss": rss_bytes(), "exact": int(exact)}


def peak() -> dict[str, int]:
    """End of a measured run in this process: its pid and its high-water mark since :func:`mark` (bytes)."""
    return {"pid": os.getpid(), "peak": high_water_bytes() or rss_bytes()}


class _Sampler:
    def __init__(self, interval: float) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_bytes())


def measure(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Runs ``fn``; returns (result, wall seconds, growth of this process's resident memory in MiB).

    Growth is the high-water mark during the run minus the resident memory just before it.
    """
    before = mark()
    sampler = None if before["exact"] else _Sampler(0.002)
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        wall = time.perf_counter() - t0
        top = sampler.stop() if sampler is not None else peak()["peak"]
    return result, wall, max(top - before["rss"], 0) / 2**20


def run_threads(n: int, target: Callable[[int], Any]) -> None:
    """Starts ``n`` threads running ``target(k)`` and joins them (no start gate: they start as they start)."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
