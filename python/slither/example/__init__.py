"""The five demos: each runs one workload through slither's isolated workers and as naive threaded code
in the same interpreter, on the same data, and reports, with numbers measured in that run, what each got
right.

``python -m slither.example`` lists them; ``python -m slither.example NAME`` runs one;
``slither.example.run(NAME, size="small")`` returns the report (text, HTML in Jupyter, ``.to_json()``).
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
    """The example module called ``name``.

    Raises:
        ValueError: (``slither.ConfigError``) no example has that name; the message lists them.
    """
    if name not in EXAMPLES:
        from slither.errors import ConfigError

        raise ConfigError(f"no example named {name!r}; choose from {', '.join(EXAMPLES)}")
    return importlib.import_module(EXAMPLES[name])


def run(name: str, *, size: str = "default", workers: int | None = None, baselines: bool = True,
        baseline_python: list[str] | None = None, seed: int = 42, verbose: bool = False) -> Any:
    """Runs one example and returns its :class:`~slither.example._report.Report`.

    Args:
        name: one of :data:`EXAMPLES`.
        size: ``"small"``, ``"default"`` or ``"large"``.
        workers: worker processes (default: cores); the threaded baselines use as many threads.
        baselines: also run the threaded baselines in this interpreter.
        baseline_python: paths of other interpreters (e.g. ``python3.13t``) to run the baselines under too.
        seed: the data's seed; the same seed gives the same data on every side.
        verbose: print the full crash dumps of deliberately crashed workers (batch_stats).

    Raises:
        ValueError: (``slither.ConfigError``) unknown name or size, ``workers`` < 1, or a
            ``baseline_python`` that is not a usable interpreter; each message says which and what is valid.
        ModuleNotFoundError: the example needs a package that is not installed (``pip install "slither[examples]"``).
    """
    from slither.example._harness import Context, check_baseline_python

    module = load(name)
    ctx = Context(size=size, seed=seed, baselines=baselines, baseline_python=list(baseline_python or []),
                  verbose=verbose)
    if workers is not None:
        ctx.workers = workers
        ctx.__post_init__()
    for python in ctx.baseline_python:
        check_baseline_python(python)
    missing = missing_packages(module)
    if missing:
        raise ModuleNotFoundError(f"{name} needs {', '.join(missing)}: pip install \"slither[examples]\"")
    return module.run(ctx)


def missing_packages(module: ModuleType) -> list[str]:
    """The pip names of the packages this example needs that are not importable."""
    missing = []
    for import_name, pip_name in getattr(module, "REQUIRES", []):
        if importlib.util.find_spec(import_name) is None:
            missing.append(pip_name)
    return missing
