"""Large buffers without copies: pickle protocol 5 with out-of-band buffers in one shared-memory segment.

::

    dumps(obj) ─▶ pickle (protocol 5, buffer_callback) ─┬─ buffers < THRESHOLD: stay in the pickle (in band)
                                                         └─ buffers ≥ THRESHOLD: copied once into ONE memfd
                                                            (reused when nobody reads it: segments.py)
    frame payload = layout (count, lengths) + the small in-band pickle; the memfd travels with the frame
    (SCM_RIGHTS), so the kernel owns it in flight and a crash on either side leaves nothing behind.

    loads(payload, fd) ─▶ mmap(MAP_PRIVATE) ─▶ pickle.loads(buffers=[views of the mapping]): no copy

The receiver's mapping is private (copy-on-write): arrays come out writable, and writes never reach the
sender's memory. The mapping lives as long as the objects that view it. Shared by the host and the worker
(stdlib only; cloudpickle when the pickle must carry functions or classes by value).

``bytes`` and ``bytearray`` are pickled in band by the C pickler whatever hooks exist, so large ones that
are items, call arguments or results themselves (or directly inside them) are wrapped to travel out of
band; deeper ones stay in band. ``memoryview`` (not picklable by plain pickle) travels as a buffer.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py imports re and enum, milliseconds of every worker start
import collections
import copyreg
import fcntl
import io
import mmap
import os
import struct
import sys
from collections.abc import Callable

from slither._worker.segments import CHUNK, SEALS, Segment, write

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 5
# Buffers at or above this size go into the shared segment (bench/buffers.py measures the crossover).
THRESHOLD = 256 * 1024
_ALIGN = 64
_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")


class Encoded:
    """One payload: the frame's bytes, and the segment that travels with it (None: all in band)."""

    __slots__ = ("data", "segment")

    def __init__(self, data: bytes, segment: Segment | None = None) -> None:
        self.data = data
        self.segment = segment

    @property
    def fd(self) -> int | None:
        return None if self.segment is None else self.segment.fd

    def release(self) -> None:
        """Closes our descriptor of the segment (once handed over: the core keeps its own until the batch
        completes), so that nothing that holds this payload, e.g. a traceback, holds the memory."""
        if self.segment is not None:
            self.segment.close()

    def __len__(self) -> int:
        return len(self.data)


# -- what travels out of band ------------------------------------------------------------------------------
def _rebuild(kind: type, buf: Any) -> Any:
    return kind(buf)


def _rebuild_view(buf: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(buf)
    if view.format != "B":
        view = view.cast("B")
    return view if (fmt == "B" and len(shape) == 1) else view.cast(fmt, shape)


class _Wrapped:
    """A large bytes or bytearray, pickled as a buffer (rebuilt as its own type: one copy out of the mapping)."""

    __slots__ = ("obj",)

    def __init__(self, obj: bytes | bytearray) -> None:
        self.obj = obj

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _rebuild, (type(self.obj), pickle.PickleBuffer(self.obj))


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    data: Any = pickle.PickleBuffer(view) if view.c_contiguous else view.tobytes()
    return _rebuild_view, (data, view.format, tuple(view.shape or ()))


def wrap(value: Any, threshold: int) -> Any:
    """``value`` with a large bytes/bytearray replaced by a wrapper that pickles it out of band."""
    t = type(value)
    if (t is bytes or t is bytearray) and len(value) >= threshold:
        return _Wrapped(value)
    return value


_MAY_HOLD_BYTES = frozenset({bytes, bytearray, tuple, list, dict})


def wrap_all(values: list[Any], threshold: int) -> list[Any]:
    """``values`` with each large bytes/bytearray wrapped (a list, a tuple or a dict's values, one level);
    ``values`` itself if none is."""
    if _MAY_HOLD_BYTES.isdisjoint(map(type, values)):
        return values  # the common case (numbers, strings, arrays...), decided in C without a Python loop
    out = []
    changed = False
    for v in values:
        t = type(v)
        if t is tuple or t is list:
            inner = [wrap(x, threshold) for x in v]
            if any(w is not x for w, x in zip(inner, v)):
                v, changed = t(inner), True
        elif t is dict:
            wrapped = {k: wrap(x, threshold) for k, x in v.items()}
            if any(wrapped[k] is not x for k, x in v.items()):
                v, changed = wrapped, True
        else:
            w = wrap(v, threshold)
            if w is not v:
                v, changed = w, True
        out.append(v)
    return out if changed else values


_cloud_pickler: type | None = None


def _cloud() -> type:
    global _cloud_pickler
    if _cloud_pickler is None:
        import cloudpickle

        class CloudPickler(cloudpickle.Pickler):  # type: ignore[misc, name-defined]
            dispatch_table = collections.ChainMap(
                {memoryview: _reduce_memoryview}, cloudpickle.Pickler.dispatch_table
            )

        _cloud_pickler = CloudPickler
    return _cloud_pickler


def dumps(obj: Any, by_value: bool = False, threshold: int = THRESHOLD) -> Encoded:
    """``obj`` pickled (by value with cloudpickle if ``by_value``), its large buffers in one segment.

    Raises what pickling raises.
    """
    big: list[memoryview] = []

    def keep_in_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: pickle copies it in band
            return True
        if raw.nbytes < threshold:
            return True
        big.append(raw)
        return False

    if by_value:
        out = io.BytesIO()
        _cloud()(out, PROTOCOL, buffer_callback=keep_in_band).dump(obj)
        data = out.getvalue()
    else:
        try:
            data = pickle.dumps(obj, PROTOCOL, buffer_callback=keep_in_band)
        except TypeError as exc:
            if "memoryview" not in str(exc):
                raise
            # Plain pickle refuses memoryviews: once more with them reduced (copyreg's table as it is now,
            # so reducers registered at any time still apply). The common case above stays all in C.
            big.clear()
            out = io.BytesIO()
            pickler = pickle.Pickler(out, PROTOCOL, buffer_callback=keep_in_band)
            pickler.dispatch_table = {**copyreg.dispatch_table, memoryview: _reduce_memoryview}
            pickler.dump(obj)
            data = out.getvalue()
    if not big:
        return Encoded(data)
    return pack(data, big)


def pack(data: bytes, buffers: list[memoryview]) -> Encoded:
    """The payload for in-band ``data`` and out-of-band ``buffers``: buffers copied once into a new memfd."""
    head = bytearray(_COUNT.pack(len(buffers)))
    offsets = []
    size = 0
    for b in buffers:
        head += _LEN.pack(b.nbytes)
        offsets.append(size)
        size += -(-b.nbytes // _ALIGN) * _ALIGN
    segment = write(buffers, offsets, size)
    return Encoded(bytes(head) + data, segment)


def loads(payload: bytes, fd: int | None, load: Callable[..., Any] = pickle.loads) -> Any:
    """The object of a payload; ``fd`` (the segment, if any) is only borrowed: the caller closes it."""
    if fd is None:
        return load(payload)
    lengths, start = _layout(payload)
    size = sum(-(-n // _ALIGN) * _ALIGN for n in lengths)
    _check(fd, size)
    whole = _map(fd, size)
    views = []
    at = 0
    for n in lengths:
        views.append(whole[at : at + n])
        at += -(-n // _ALIGN) * _ALIGN
    del whole
    return load(memoryview(payload)[start:], buffers=views)


def _check(fd: int, size: int) -> None:
    """Refuses a segment that could end under a mapping of ``size`` bytes: unsealed, or too short."""
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if seals & SEALS != SEALS:
        raise ValueError("the shared-memory segment is not sealed against resizing")
    actual = os.fstat(fd).st_size
    if actual < size:
        raise ValueError(f"the shared-memory segment holds {actual:,} bytes, its payload announces {size:,}")


def _layout(payload: bytes) -> tuple[list[int], int]:
    (count,) = _COUNT.unpack_from(payload)
    lengths = [_LEN.unpack_from(payload, _COUNT.size + i * _LEN.size)[0] for i in range(count)]
    return lengths, _COUNT.size + count * _LEN.size


def detach(payload: bytes, fd: int) -> tuple[bytes, list[bytearray]]:
    """The in-band pickle and its buffers read out of the segment, for a transport without segments (Ray,
    whose object store moves large buffers its own way): ``pickle.loads(data, buffers=buffers)``."""
    lengths, start = _layout(payload)
    _check(fd, sum(-(-n // _ALIGN) * _ALIGN for n in lengths))
    out = []
    at = 0
    for n in lengths:
        buf = bytearray(n)
        view = memoryview(buf)
        done = 0
        while done < n:
            got = os.preadv(fd, [view[done : done + CHUNK]], at + done)
            if got <= 0:
                raise OSError(f"the segment ended {n - done} bytes early")
            done += got
        out.append(buf)
        at += -(-n // _ALIGN) * _ALIGN
    return payload[start:], out


def _map(fd: int, size: int) -> memoryview:
    """The segment mapped privately (copy-on-write): writable here, never visible to the sender."""
    flags, prot = mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE
    if sys.version_info >= (3, 13):
        # No descriptor of its own: the mapping alone keeps the segment's memory.
        m = mmap.mmap(fd, size, flags=flags, prot=prot, trackfd=False)
    else:
        # Before 3.13 every mmap object keeps a duplicate descriptor while it lives, so a host holding many
        # results holds as many descriptors: lift the soft limit to the hard one, once (as Ray and others do).
        _lift_fd_limit()
        m = mmap.mmap(fd, size, flags=flags, prot=prot)
    return memoryview(m)


_lifted = False


def _lift_fd_limit() -> None:
    global _lifted
    if _lifted:
        return
    _lifted = True
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, OSError, ValueError):
        pass
