"""Functions run in the workers of tests/test_warm.py (importable by name there)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys


def whoami(_=None) -> dict:
    """This worker's identity: pid, parent, group, channel, and whether the preload module is here."""
    st = os.fstat(int(os.environ["SLITHER_FD"]))
    mod = sys.modules.get("_warm_preload")
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "channel": (st.st_dev, st.st_ino),
        "socket": stat.S_ISSOCK(st.st_mode),
        "preloaded_by": getattr(mod, "IMPORTED_BY", None),
        "index": int(os.environ["SLITHER_WORKER_INDEX"]),
        "init": os.environ.get("WARM_INIT_RAN"),
    }


def mark_init(tag: str) -> None:
    os.environ["WARM_INIT_RAN"] = f"{tag}:{os.getpid()}"


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def sleep(seconds: float) -> int:
    import time

    time.sleep(seconds)
    return os.getpid()


def start_sleeper() -> int:
    return subprocess.Popen(["sleep", "60"]).pid


def numpy_draw(_=None) -> tuple[int, float]:
    import numpy

    return os.getpid(), float(numpy.random.random())


def fit_score(seed: int) -> float:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return float(LogisticRegression().fit(x, y).score(x, y))
