"""Worker-importable functions for the tests (imported by name in the workers: tests/ is on sys.path)."""

from __future__ import annotations

import os
import time

_state: dict[str, object] = {}


def inc(x):
    return x + 1


def square(x):
    return x * x


def pid(_=None):
    return os.getpid()


def boom(x):
    raise ValueError(f"bad item {x}")


def fail_on(x, bad=frozenset({3})):
    if x in bad:
        raise ValueError(f"bad item {x}")
    return x


def segfault_on(x, bad=frozenset({3})):
    if x in bad:
        import ctypes

        ctypes.string_at(0)
    return x


def exit_on(x, bad=frozenset({3})):
    if x in bad:
        os._exit(3)
    return x


def sleep_on(x, bad=frozenset({3}), seconds=1000.0):
    if x in bad:
        time.sleep(seconds)
    return x


def spin_on(x, bad=frozenset({3})):
    if x in bad:
        while True:
            pass
    return x


def batch_double(items):
    return [i * 2 for i in items]


def batch_wrong_length(items):
    return items[:-1]


def batch_not_list(items):
    return tuple(items)


def remember(key, value):
    _state[key] = value
    return os.getpid()


def recall(key):
    return _state.get(key)


def state_keys():
    return sorted(_state)


def init_set(value):
    _state["init"] = value


def init_raises():
    raise RuntimeError("init failed on purpose")


def slow(x, seconds=0.0001):
    time.sleep(seconds)
    return x


def grow(x, mb=30):
    """Keeps memory alive in the worker (for recycling by memory)."""
    _state.setdefault("ballast", []).append(bytearray(mb * 2**20))
    return x


def pid_of(x):
    return os.getpid()


def cleanup_mark():
    _state["cleaned"] = os.getpid()


def spin_batch(items):
    """About 20 µs of pure-Python work per item."""
    out = []
    for x in items:
        acc = 0
        for i in range(250):
            acc += i ^ x
        out.append(x + 1)
    return out


def eventually(check, seconds=10.0):
    """Host side: polls ``check()`` every 50 ms until it is true (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gone(pid):
    """Host side: whether process ``pid`` has exited (a zombie runs nothing: it counts as gone)."""
    import psutil  # here, not at the top: workers import this module for its task functions

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids, seconds):
    """Host side: the pids of ``pids`` still alive after waiting up to ``seconds`` for all to exit."""
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if not gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in pids if not gone(p)]
    return alive


def survivors_of_host_kill(script, count, seconds=1.0):
    """Host side: runs ``script`` in a fresh interpreter (it prints ``count`` pids on one line, then waits),
    SIGKILLs that interpreter once they all run, and returns those still alive ``seconds`` later."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    with proc:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == count, line
        assert not any(gone(p) for p in pids)
        proc.kill()
        proc.wait()
        return wait_gone(pids, seconds)
