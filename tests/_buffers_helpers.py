"""Worker-side functions for test_buffers.py (importable by name in the workers)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def echo(x: Any) -> Any:
    return x


def mutate_and_sum(a: Any) -> float:
    a[...] = 7
    return float(a.sum())


def info(x: Any) -> tuple[str, bool, int]:
    """Type name, writability and size of what arrived."""
    view = memoryview(x) if not hasattr(x, "flags") else None
    writable = bool(x.flags.writeable) if view is None else not view.readonly
    return type(x).__name__, writable, len(bytes(view)) if view is not None else int(x.nbytes)


def make_array(n: int, fill: float = 1.0) -> Any:
    import numpy as np

    return np.full(n, fill)


def make_bytes(n: int) -> bytes:
    return b"z" * n


def hold_and_die(a: Any) -> None:
    """Touches its input (mapped) and is killed while holding it."""
    assert a[-1] == a[-1]
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def hold_and_sleep(a: Any) -> None:
    assert a[-1] == a[-1]
    time.sleep(60)
