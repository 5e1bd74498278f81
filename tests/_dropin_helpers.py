"""Worker-importable functions for the drop-in tests (executor, multiprocessing, asyncio, progress)."""

from __future__ import annotations

import os
import time


def nap(seconds, value=None):
    time.sleep(seconds)
    return value


def nap_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def touch(path, value=None):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return value


def add(a, b):
    return a + b


def nap_and_touch(path, seconds):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def started_nap(arg):
    """``arg`` is ``(path, seconds)``: records this worker's pid in ``path`` when it starts, then sleeps."""
    path, seconds = arg
    return nap_and_touch(path, seconds)


def nap_then_touch(seconds, path):
    """Sleeps, then records that it finished by creating ``path``; returns ``seconds``."""
    time.sleep(seconds)
    with open(path, "a"):
        pass
    return seconds


def fail_on(x, bad):
    if x == bad:
        raise KeyError(x)
    return x
