"""Telemetry: events from the core (worker and batch lifecycle) to Python subscribers and ``logging``.

Recording is off until someone subscribes (or the ``slither`` logger has DEBUG on when the pool
starts); with it off, the core skips building events entirely. A daemon thread pulls batches of
events with the GIL released and hands each to every subscriber as a dict with an ``"event"`` key.
``close()`` (from the pool's close, terminate and interpreter-exit hook) stops and joins that thread, so
it is never inside the interpreter while the interpreter finalizes.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("slither")
_JOIN_S = 5.0  # the pump notices close() within one 0.2 s wait; a blocking subscriber could hold it longer
Subscriber = Callable[[dict[str, Any]], None]


class Telemetry:
    def __init__(self, core: Any) -> None:
        self._core_ref = weakref.ref(core)
        self._subs: list[Subscriber] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if logger.isEnabledFor(logging.DEBUG):
            self._ensure_running()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)
        self._ensure_running()

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)
                idle = not self._subs and not logger.isEnabledFor(logging.DEBUG)
            if idle:
                core = self._core_ref()
                if core is not None:
                    core.set_events(False)

        return unsubscribe

    def emit(self, event: dict[str, Any]) -> None:
        """Publishes an event produced on the Python side (e.g. a retry decision)."""
        if self._subs or logger.isEnabledFor(logging.DEBUG):
            self._publish([event])

    def _ensure_running(self) -> None:
        core = self._core_ref()
        if core is None:
            return
        core.set_events(True)
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._pump, name="slither-telemetry", daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            core = self._core_ref()
            if core is None or core.stopped:
                return
            try:
                events = core.next_events(1024, 0.2)
            except BaseException:
                return
            del core
            if events:
                self._publish(events)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            subs = list(self._subs)
        for ev in events:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s", ev)
            for fn in subs:
                try:
                    fn(ev)
                except Exception:
                    logger.exception("slither telemetry subscriber %r raised", fn)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_S)
        if thread is not None:
            # Deliver what was recorded before the pool stopped.
            core = self._core_ref()
            if core is not None:
                try:
                    rest = core.next_events(100000, 0.0)
                except BaseException:
                    rest = []
                if rest:
                    self._publish(rest)
