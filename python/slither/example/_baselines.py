"""Running an example's threaded baselines in this interpreter (stdlib only).

On a GIL build the unsafe baselines run with ``sys.setswitchinterval(1e-6)`` so that the GIL switches
threads often enough for read-modify-write races to show at all; the row's note says so. A free-threaded
build with the GIL off needs no such help.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from slither.example._measure import measure
from slither.example._report import Invariant, Row, gil_enabled, interpreter_label

AMPLIFIED_SWITCH_INTERVAL = 1e-6


def run_baselines(name: str, data: Any, expected: Any, threads: int, *, amplify: bool = True) -> list[Row]:
    """Each baseline mode of the example, measured (wall time, memory growth) on ``data``."""
    workload = importlib.import_module(f"slither.example.workloads.{name}")
    rows = []
    for mode, fn in workload.baselines(data, expected, threads):
        previous = sys.getswitchinterval()
        amplified = amplify and gil_enabled() and mode.startswith("unsafe")
        if amplified:
            sys.setswitchinterval(AMPLIFIED_SWITCH_INTERVAL)
        try:
            (invariants, note), wall, mem = measure(fn)
        finally:
            sys.setswitchinterval(previous)
        if amplified:
            note = f"{note}; GIL switch interval {AMPLIFIED_SWITCH_INTERVAL:g} s to let races show"
        rows.append(Row(mode, interpreter_label(), [Invariant(**i) for i in invariants], wall, mem, note))
    return rows
