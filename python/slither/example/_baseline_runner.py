"""``python -m slither.example._baseline_runner NAME SIZE THREADS SEED``: run an example's threaded baselines
in this interpreter and print, as one JSON line, ``{"rows": [...]}`` or ``{"skipped": why}`` when a
package the baselines need is missing here. Used for ``--baseline-python`` (stdlib only).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from dataclasses import asdict

from slither.example._baselines import run_baselines
from slither.example._report import interpreter_label


def main(argv: list[str]) -> int:
    name, size, threads, seed = argv[0], argv[1], int(argv[2]), int(argv[3])
    workload = importlib.import_module(f"slither.example.workloads.{name}")
    missing = [pip for mod, pip in getattr(workload, "BASELINE_REQUIRES", []) if importlib.util.find_spec(mod) is None]
    if missing:
        why = (f"{', '.join(missing)} not importable in {interpreter_label()} "
               f"(install with: {sys.executable} -m pip install {' '.join(missing)})")
        print(json.dumps({"skipped": why}))
        return 0
    data = workload.generate(size, seed)
    rows = run_baselines(name, data, workload.expected(data), threads)
    print(json.dumps({"rows": [asdict(r) for r in rows]}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
