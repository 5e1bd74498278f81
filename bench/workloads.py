"""Functions every engine runs, importable by name in any worker process."""

from __future__ import annotations


def inc(x):
    return x + 1


def ident(x):
    return x


def cpu_1ms(x):
    """About a millisecond of pure-Python work on this machine's class of CPU."""
    acc = 0
    for i in range(12_000):
        acc += (i * x) % 7
    return acc


def echo(b):
    return b


def inc_batch(items):
    return [x + 1 for x in items]


def spin_batch(items):
    """About 40 µs of pure-Python work per item, so a chaos run lasts long enough to be killed often."""
    out = []
    for x in items:
        acc = 0
        for i in range(500):
            acc += i ^ x
        out.append(x + 1)
    return out
