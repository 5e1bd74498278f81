"""Shared fixtures: every test that starts processes must leave none behind."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

pytest_plugins = ["pytester"]

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    # Worker-importable helpers (tests/_helpers.py) are imported by name in the workers too.
    sys.path.insert(0, HERE)


def _children() -> set[int]:
    alive = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(autouse=True)
def no_leaked_children():
    before = _children()
    yield
    deadline = time.monotonic() + 5.0
    leaked = _children() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        leaked = _children() - before
    if leaked:
        described = []
        for pid in sorted(leaked):
            try:
                described.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:160]}")
            except psutil.Error:
                described.append(str(pid))
        for pid in leaked:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        pytest.fail("test left child processes behind: " + "; ".join(described))


@pytest.fixture
def pool():
    import slither

    with slither.Pool(workers=2) as p:
        yield p
