"""Running an example's threaded baselines in this interpreter (stdlib only).

On a GIL build the unsafe baselines run with ``sys.setswitchinterval(1e-6)`` so that the GIL switches
threads often enough for read-modify-write races to show at all; the row's note says so. A free-threaded
build with the GIL off needs no such help.

Whether a race shows in one pass depends on how the threads happen to be scheduled (on a loaded machine
one thread may finish before the other starts). A workload that sets ``RACE_PASSES = n`` has its unsafe
baseline run n times in all: the row's wall time and checks are the first pass's, and one more check
counts how many of the n passes broke an invariant.
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
        passes = getattr(workload, "RACE_PASSES", 1) if mode.startswith("unsafe") else 1
        try:
            (invariants, note), wall, mem = measure(fn)
            broken = int(not all(i["ok"] for i in invariants))
            broken += sum(1 for _ in range(passes - 1) if not all(i["ok"] for i in fn()[0]))
        finally:
            sys.setswitchinterval(previous)
        if passes > 1:
            invariants = [*invariants, {"name": f"passes that broke an invariant (of {passes})", "expected": 0,
                                        "observed": broken, "ok": broken == 0}]
            note = f"{note}; wall and the other checks are the first pass's"
        if amplified:
            note = f"{note}; GIL switch interval {AMPLIFIED_SWITCH_INTERVAL:g} s to let races show"
        rows.append(Row(mode, interpreter_label(), [Invariant(**i) for i in invariants], wall, mem, note))
    return rows
