"""The floors: the same loops over a bare pipe between two Python processes, with no pool at all.

- ``Pipe``: the child reads length-prefixed pickles from stdin, applies the function, writes the pickled reply
  (the Python limit: what one tiny pickled call costs with no scheduler, no threads, no framing beyond a length).
- ``ping_pong``: one byte back and forth with ``os.read``/``os.write`` and no pickling (the transport limit).
"""

from __future__ import annotations

import os
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
    w.write(H.pack(len(p)))
    w.write(p)
    w.flush()
"""
H = struct.Struct("<I")


class Pipe:
    def __init__(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(path=here)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.w = self.proc.stdin
        self.r = self.proc.stdout

    def roundtrip(self, fn: str, mode: str, data):
        p = pickle.dumps((fn, mode, data), 5)
        self.w.write(H.pack(len(p)))
        self.w.write(p)
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


def echo_mb_per_s(n: int, size: int, chunk: int = 8) -> float:
    """The pools' echo run over one pipe: ``chunk`` distinct payloads per round trip.

    Distinct objects matter: a list holding one object ``chunk`` times is pickled as one object and
    ``chunk - 1`` memo references, so it moves a ``chunk``-th of the bytes it claims.
    """
    pipe = Pipe()
    try:
        payloads = [bytes([i % 251]) * size for i in range(n)]
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            pipe.roundtrip("echo", "map", payloads[i : i + chunk])
        return n * size / 2**20 / (time.perf_counter() - t0)
    finally:
        pipe.close()


_PONG = r"""
import os
while True:
    b = os.read(0, 1)
    if not b:
        break
    os.write(1, b)
"""


def ping_pong(n: int) -> list[float]:
    """Round-trip times of one byte between two Python processes over a pair of pipes."""
    proc = subprocess.Popen([sys.executable, "-c", _PONG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    w, r = proc.stdin.fileno(), proc.stdout.fileno()
    try:
        for _ in range(200):
            os.write(w, b"x")
            os.read(r, 1)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(w, b"x")
            os.read(r, 1)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        proc.stdin.close()
        proc.wait(10)
