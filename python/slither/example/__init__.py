"""The five demos: each runs one workload through slither's isolated workers and as naive threaded code
in the same interpreter, and reports, with measured numbers, what each got right.

``python -m slither.example`` lists them; ``python -m slither.example NAME`` runs one.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

EXAMPLES = {
    "text_analysis": "slither.example.text_analysis",
    "batch_stats": "slither.example.batch_stats",
    "data_etl": "slither.example.data_etl",
    "ml_scoring": "slither.example.ml_scoring",
    "image_pipeline": "slither.example.image_pipeline",
}


def load(name: str) -> ModuleType:
    if name not in EXAMPLES:
        raise KeyError(f"no example named {name!r}; choose from {', '.join(EXAMPLES)}")
    return importlib.import_module(EXAMPLES[name])


def run(name: str, *, size: str = "default", workers: int | None = None, baselines: bool = True,
        baseline_python: list[str] | None = None, seed: int = 42) -> Any:
    """Runs one example and returns its report (text with ``print``, HTML in Jupyter, ``.to_json()``)."""
    from slither.example._harness import Context

    ctx = Context(size=size, seed=seed, baselines=baselines, baseline_python=list(baseline_python or []))
    if workers is not None:
        ctx.workers = workers
    return load(name).run(ctx)


def missing_packages(module: ModuleType) -> list[str]:
    """The pip names of the packages this example needs that are not importable."""
    missing = []
    for import_name, pip_name in getattr(module, "REQUIRES", []):
        if importlib.util.find_spec(import_name) is None:
            missing.append(pip_name)
    return missing

