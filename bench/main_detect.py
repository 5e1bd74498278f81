"""What sending ``__main__`` objects by value costs: the check on every batch, and the by-value path.

Every batch payload is pickled by reference and then searched once for ``b"__main__"`` (issue 14, item
11); only a payload that mentions it is pickled again with cloudpickle. This measures, in one run:

- the common case: pickle alone vs pickle + the search, per batch, for several item shapes;
- the by-value case: a batch of dataclass instances defined in ``__main__`` (pickle + cloudpickle);
- for scale, the wall time of ``pool.map`` over the same common batches.

    python bench/main_detect.py [--batches N]
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import dataclass
from typing import Any

from slither import _payload


@dataclass
class Point:
    """Defined in ``__main__`` when this file runs as a script: workers cannot import it by name."""

    x: float
    y: float


def _per_call(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    ref = ("name", "_helpers:inc")
    shapes: dict[str, list[Any]] = {
        "64 ints": list(range(64)),
        "1024 ints": list(range(1024)),
        "256 short str": [f"item-{i}" for i in range(256)],
        "256 dict records": [{"id": i, "name": f"n{i}", "score": i * 0.5} for i in range(256)],
        "16 x 64 KiB bytes": [bytes(65536) for _ in range(16)],
    }
    print(f"{'batch':<20} {'pickle':>12} {'+ search':>12} {'overhead':>10}")
    for name, batch in shapes.items():
        task = (ref, "item", batch)
        plain = _per_call(lambda task=task: pickle.dumps(task, pickle.HIGHEST_PROTOCOL), args.batches)
        checked = _per_call(lambda task=task: _payload.dumps(task), args.batches)
        print(f"{name:<20} {plain * 1e6:>10.1f}µs {checked * 1e6:>10.1f}µs {100 * (checked - plain) / plain:>9.1f}%")
    points = [Point(i, -i) for i in range(256)]
    task = (ref, "item", points)
    plain = _per_call(lambda: pickle.dumps(task, pickle.HIGHEST_PROTOCOL), args.batches)
    by_value = _per_call(lambda: _payload.dumps(task), args.batches)
    print(f"{'256 __main__ Points':<20} {plain * 1e6:>10.1f}µs {by_value * 1e6:>10.1f}µs  (by value, cloudpickle)")

    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import slither

    with slither.Pool(2) as pool:
        items = list(range(64 * args.batches))
        pool.map("_helpers:inc", items[:1000], batch_size=64)
        t0 = time.perf_counter()
        pool.map("_helpers:inc", items, batch_size=64)
        wall = time.perf_counter() - t0
    print(f"pool.map of {len(items)} ints in batches of 64: {wall * 1e3:.1f} ms "
          f"({wall / args.batches * 1e6:.1f} µs per batch)")


if __name__ == "__main__":
    main()
