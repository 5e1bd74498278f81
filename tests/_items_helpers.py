"""Worker-importable task functions for tests/test_items.py (imported by name in the workers)."""

from __future__ import annotations

import os
import sys
import threading
import time


def stop_on(x, bad=3):
    if x == bad:
        next(iter([]))
    return x


def exit_on(x, bad=3, code=0):
    if x == bad:
        sys.exit(code)
    return x


def interrupt_on(x, bad=3):
    if x == bad:
        raise KeyboardInterrupt
    return x


def generator_exit_on(x, bad=3):
    if x == bad:
        raise GeneratorExit("from user code")
    return x


class Custom(BaseException):
    pass


def custom_base_on(x, bad=3):
    if x == bad:
        raise Custom("a BaseException of its own")
    return x


def hard_exit_0(x):
    os._exit(0)


def lock_on(x, bad=3):
    return threading.Lock() if x == bad else x


def identity(*args, **kwargs):
    return args, kwargs


def echo_timeout(x, timeout=None):
    return (x, timeout)


def sleep_for(seconds):
    time.sleep(seconds)
    return os.getpid()


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ is broken")


def bad_str_on(x, bad=3):
    if x == bad:
        raise BadStr()
    return x


def segfault_on(x, bad=frozenset({1234})):
    if x in bad:
        import ctypes

        ctypes.string_at(0)
    return x


def fail_or_sleep(x):
    if x == "bad":
        raise ValueError("always fails")
    time.sleep(x)
    return x


def slow(x, seconds=0.05):
    time.sleep(seconds)
    return x
