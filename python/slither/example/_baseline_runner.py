"""``python -m slither.example._baseline_runner NAME SIZE THREADS SEED``: run an example's threaded baselines
in this interpreter and print their rows as JSON. Used for ``--baseline-python`` (stdlib only)."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import asdict

from slither.example._baselines import run_baselines


def main(argv: list[str]) -> int:
    name, size, threads, seed = argv[0], argv[1], int(argv[2]), int(argv[3])
    workload = importlib.import_module(f"slither.example.workloads.{name}")
    data = workload.generate(size, seed)
    rows = run_baselines(name, data, threads)
    print(json.dumps([asdict(r) for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
