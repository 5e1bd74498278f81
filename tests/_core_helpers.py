"""Worker-importable functions for the core's failure-input tests (tests/test_core.py)."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import time


def segfault() -> None:
    ctypes.string_at(0)


def helper_then_segfault(how: str, pid_file: str) -> None:
    """Starts a helper process that sleeps (holding the worker's channel), writes its pid, then segfaults."""
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
    elif how == "multiprocessing":
        import multiprocessing

        p = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        p.start()
        pid = p.pid
    else:
        os.system(f"sleep 60 & echo $! > {pid_file}.sh")
        for _ in range(200):
            if os.path.exists(f"{pid_file}.sh") and open(f"{pid_file}.sh").read().strip():
                break
            time.sleep(0.01)
        pid = int(open(f"{pid_file}.sh").read())
    with open(pid_file, "w") as f:
        f.write(str(pid))
    segfault()


def start_sleeper() -> int:
    """A child process of the worker that would outlive it."""
    return subprocess.Popen(["sleep", "60"]).pid


def c_loop() -> None:
    """Never returns to Python: a regular expression that backtracks for ever, holding the interpreter."""
    import re

    re.match(r"(a+)+$", "a" * 64 + "b")


def write_to_channel(what: str) -> str:
    fd = int(os.environ["SLITHER_FD"])
    if what == "stray":
        os.write(fd, b"hello from user code\n" * 3)
    elif what == "huge":
        os.write(fd, struct.pack("<BQQ", 13, 1, 1 << 60))
    elif what == "dup2":
        os.dup2(fd, 1)
        print("a print that lands on the channel")
        sys.stdout.flush()
    elif what == "unknown-id":
        os.write(fd, struct.pack("<BQQ", 13, 987654321, 0))
    time.sleep(5)
    return "unreachable"


def escape_group_and_sleep(seconds: float) -> None:
    os.setpgid(0, 0)
    time.sleep(seconds)


def echo(x):
    return x


def nbytes(b: bytes) -> int:
    return len(b)


def make_bytes(n: int) -> bytes:
    return b"x" * n
