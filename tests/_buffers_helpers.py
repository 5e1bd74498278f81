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


def announce_segment_without_descriptor() -> None:
    """Writes a RESULT_OK header marked as carrying a segment, with no descriptor, on the channel."""
    import struct

    os.write(3, struct.pack("<BQQ", 13 | 0x80, 1, 0))
    time.sleep(60)


def send_stray_descriptor() -> None:
    """Sends a store request (a frame the host answers) with a descriptor no frame claims."""
    import array
    import socket
    import struct

    sock = socket.socket(fileno=os.dup(3))
    fd = os.memfd_create("stray", os.MFD_CLOEXEC)
    sock.sendmsg([struct.pack("<BQQ", 15, 1, 0)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    time.sleep(60)


def slow_then_echo(pair: tuple[int, Any]) -> Any:
    i, a = pair
    if i == 0:
        time.sleep(1.5)
    return a



_kept: list[Any] = []


def keep(a: Any) -> None:
    """Holds its input (mapped from the host's segment) past the task."""
    _kept.append(a)


def fills(arrays: list[Any]) -> list[tuple[float, bool]]:
    """Each array's first value, and whether all of it still has that value."""
    return [(float(a[0]), bool((a == a[0]).all())) for a in arrays]


def kept_fills() -> list[tuple[float, bool]]:
    """:func:`fills` of the inputs this worker kept."""
    return fills(_kept)


def segments_held() -> tuple[int, int]:
    """The worker's cached segments: (count, bytes)."""
    from slither._worker import segments

    return segments.held()


def make_view(n: int) -> memoryview:
    """A large memoryview result: it arrives as a view of the segment, which stays leased while it lives."""
    return memoryview(bytearray(b"z" * n))


def large_result_without_descriptors(n: int) -> memoryview:
    """A large result from a worker that has no descriptor left to make its segment with (RLIMIT_NOFILE at
    what is open): the result cannot travel, and the error must say why."""
    import resource

    from slither._worker import segments

    segments.trim()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    globals()["_nofile"] = (soft, hard)
    lowest_free = os.dup(0)  # a new descriptor takes the lowest free number: with the limit there, none is left
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    return memoryview(bytearray(n))


def restore_descriptors() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, globals()["_nofile"])
