"""Fault injection for your own tests and benchmarks: kill a pool's workers while work runs.

``with killing_workers(pool, every=0.1) as chaos:`` starts a thread that sends SIGKILL to one randomly
chosen ready worker every ``every`` seconds until the block ends (the thread is joined on exit);
``chaos.kills`` counts the signals delivered. It is how slither's own tests check that every item ends
as a result or a :class:`~slither.Failure` while workers die, and a user's code can be checked the same way.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Chaos", "killing_workers"]


@dataclass
class Chaos:
    """What :func:`killing_workers` did: ``kills`` signals delivered so far."""

    kills: int = 0


@contextlib.contextmanager
def killing_workers(pool: Any, *, every: float = 0.1, seed: int | None = None,
                    sig: signal.Signals = signal.SIGKILL) -> Iterator[Chaos]:
    """Kills one random ready worker of ``pool`` every ``every`` seconds while the block runs.

    Args:
        pool: a :class:`slither.Pool` (anything with ``workers_info()``).
        every: seconds between two kills (> 0).
        seed: seeds the choice of worker, for a repeatable sequence.
        sig: the signal sent (default SIGKILL: no cleanup runs in the worker).

    Yields a :class:`Chaos` whose ``kills`` counts the signals delivered. Raises ValueError when ``every``
    is not a positive, finite number.
    """
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every < float("inf"):
        raise ValueError(f"every must be a positive, finite number of seconds, got {every!r}")
    stop = threading.Event()
    chaos = Chaos()
    rng = random.Random(seed)

    def kill() -> None:
        while not stop.wait(every):
            pids = [w.pid for w in pool.workers_info() if w.state == "ready"]
            if not pids:
                continue
            try:
                os.kill(rng.choice(pids), sig)
            except ProcessLookupError:
                continue  # it died on its own between the listing and the signal
            chaos.kills += 1

    thread = threading.Thread(target=kill, name="slither-chaos", daemon=True)
    thread.start()
    try:
        yield chaos
    finally:
        stop.set()
        thread.join()
