"""The floor: the same loops over a bare pipe between two Python processes, with no pool at all.

The child reads length-prefixed pickles from stdin, applies the function, writes the pickled reply.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import time

_CHILD = r"""
import pickle, struct, sys
sys.path.insert(0, {path!r})
import workloads
r, w = sys.stdin.buffer, sys.stdout.buffer
H = struct.Struct("<I")
while True:
    h = r.read(4)
    if not h:
        break
    fn, mode, data = pickle.loads(r.read(H.unpack(h)[0]))
    f = getattr(workloads, fn)
    out = [f(x) for x in data] if mode == "map" else f(data)
    p = pickle.dumps(out, 5)
    w.write(H.pack(len(p)) + p)
    w.flush()
"""
H = struct.Struct("<I")


class Pipe:
    def __init__(self) -> None:
        import os

        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(path=here)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.w = self.proc.stdin
        self.r = self.proc.stdout

    def roundtrip(self, fn: str, mode: str, data):
        p = pickle.dumps((fn, mode, data), 5)
        self.w.write(H.pack(len(p)) + p)
        self.w.flush()
        n = H.unpack(self.r.read(4))[0]
        return pickle.loads(self.r.read(n))

    def close(self) -> None:
        self.w.close()
        self.proc.wait(10)


def items_per_s(n: int, chunk: int) -> float:
    pipe = Pipe()
    try:
        items = list(range(n))
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            pipe.roundtrip("inc", "map", items[i : i + chunk])
        return n / (time.perf_counter() - t0)
    finally:
        pipe.close()


def call_latencies(n: int) -> list[float]:
    pipe = Pipe()
    try:
        for _ in range(50):
            pipe.roundtrip("ident", "call", 1)
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            pipe.roundtrip("ident", "call", i)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        pipe.close()


def echo_mb_per_s(n: int, size: int) -> float:
    pipe = Pipe()
    try:
        payload = b"x" * size
        t0 = time.perf_counter()
        for _ in range(n):
            pipe.roundtrip("echo", "call", payload)
        return n * size / 2**20 / (time.perf_counter() - t0)
    finally:
        pipe.close()
