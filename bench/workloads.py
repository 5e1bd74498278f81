"""Functions every engine runs, importable by name in any worker process."""

from __future__ import annotations


def inc(x):
    return x + 1


def ident(x):
    return x


def cpu_1ms(x):
    """Pure-Python work sized for about a millisecond; the benchmark reports what it measured."""
    acc = 0
    for i in range(12_000):
        acc += (i * x) % 7
    return acc


def echo(b):
    return b


def inc_batch(items):
    return [x + 1 for x in items]


def spin_batch(items):
    """Pure-Python work per item, so that a chaos run lasts long enough to be killed often."""
    out = []
    for x in items:
        acc = 0
        for i in range(500):
            acc += i ^ x
        out.append(x + 1)
    return out


def sleep(seconds):
    import time

    time.sleep(seconds)
    return seconds


def pid(_=None):
    import os

    return os.getpid()
