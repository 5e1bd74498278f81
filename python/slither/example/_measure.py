"""Measuring a run: wall time and the peak resident memory the OS reports (stdlib only, Linux /proc)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int | None = None) -> int:
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def measure(fn: Callable[[], T], interval: float = 0.005) -> tuple[T, float, float]:
    """Runs ``fn``; returns (result, wall seconds, peak host RSS in MiB sampled every ``interval``)."""
    peak = [rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
    peak[0] = max(peak[0], rss_bytes())
    return result, wall, peak[0] / 2**20


def run_threads(n: int, target: Callable[[int], Any]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
