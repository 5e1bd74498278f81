"""Shared-memory segments for out-of-band buffers: made once, written again while nobody reads them.

::

    write(buffers) ─▶ a free cached segment that fits (its pages exist and are mapped: a plain memory copy)
                      or a new memfd (cached while the process keeps under SEGMENT_CACHE bytes and
                      MAX_SEGMENTS segments; otherwise it is the payload's own, as without a cache)
                   ─▶ buffers copied in ─▶ a LEASE is sent: a new open file description of the segment
                      with a shared OFD lock on it

    receiver: maps the lease (MAP_PRIVATE) and closes its descriptor; the mapping keeps the open file
              description, so the lock lives exactly as long as the receiver's objects (or its process)
    sender:   a segment is free again when no lease holds a lock on it (F_OFD_GETLK)

Writing a new memfd is bound by the kernel handing out and zeroing 4 KiB pages (shared memory gets huge
pages only where the machine enables them for shmem), several times slower than copying into pages that
already exist (bench/buffers.py); reusing segments is what makes a stream of large arrays fast. The lock
is the kernel's account of who still reads a segment: a crash, a timeout, a dropped result, a descriptor
still in flight in a socket all end or keep it without any message, and a batch sent to two workers holds
one lease in both. Nothing is named in a filesystem: a segment lives while a descriptor or a mapping
refers to it. Shared by the host and the worker (stdlib only).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import sys
import threading
from collections.abc import Callable

# Bytes of segments a process keeps for reuse (free or leased); larger payloads get a segment of their own.
# None: SLITHER_SEGMENT_CACHE from the environment, else DEFAULT_CACHE, read at the first large payload.
SEGMENT_CACHE: int | None = None
DEFAULT_CACHE = 512 << 20
# At most this many segments are kept: each holds a descriptor (two before Python 3.13: its mapping keeps
# one), and a send checks each one's lock.
MAX_SEGMENTS = 32
CHUNK = 1 << 30  # bytes: one write(2) moves at most ~2 GiB
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
_PAGE = 4096
_STEP = 8 << 20  # bytes copied into a cached segment at a time
_FLOCK = struct.Struct("hhqqi4x")  # struct flock: l_type, l_whence, l_start, l_len (0: to the end), l_pid
_WHOLE_READ = _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
_WHOLE_WRITE = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)


class Segment:
    """A descriptor of a memfd, owned: closed by :meth:`close` or when garbage collected."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def _new(capacity: int) -> int:
    fd = os.memfd_create("slither-payload", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, capacity)
        # Its size is fixed from now on: a receiver's mapping can never reach past the end (SIGBUS).
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _leased(fd: int) -> bool:
    """Whether some open file description other than ``fd``'s holds a lock on the segment."""
    got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _WHOLE_WRITE)
    return _FLOCK.unpack(got)[0] != fcntl.F_UNLCK


def _lease(fd: int) -> int:
    """A new open file description of the segment, holding a shared lock for as long as it lives."""
    lease = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.fcntl(lease, fcntl.F_OFD_SETLK, _WHOLE_READ)
    except BaseException:
        os.close(lease)
        raise
    return lease


class _Owned:
    """A segment of ours: its descriptor, its capacity (bytes) and a shared mapping we write through (kept, so
    that its pages stay mapped here: a write is a plain memory copy, without page faults)."""

    __slots__ = ("capacity", "fd", "view")

    def __init__(self, capacity: int) -> None:
        self.fd = _new(capacity)
        self.capacity = capacity
        try:
            if sys.version_info >= (3, 13):
                m = mmap.mmap(self.fd, capacity, flags=mmap.MAP_SHARED, trackfd=False)
            else:
                m = mmap.mmap(self.fd, capacity, flags=mmap.MAP_SHARED)
            self.view = memoryview(m)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        view, self.view = self.view, None
        if view is not None:
            m = view.obj
            view.release()
            m.close()
        os.close(self.fd)  # a reader's mapping, if any, keeps the memory until it goes

    def copy_in(self, buffers: list, offsets: list[int]) -> None:
        view = self.view
        for b, at in zip(buffers, offsets):
            # In steps, so that on a build with a GIL other threads run between them.
            for done in range(0, b.nbytes, _STEP):
                n = min(_STEP, b.nbytes - done)
                view[at + done : at + done + n] = b[done : done + n]


class _Cache:
    """The segments this process made and may write again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owned: list[_Owned] = []
        self.bytes = 0
        self.broken = False
        self.report: Callable[[int], None] | None = None

    def _changed(self) -> None:
        if self.report is not None:
            self.report(self.bytes)

    def take(self, size: int) -> tuple[_Owned, int] | None:
        """A segment of at least ``size`` bytes that nobody reads, already leased (so that no other thread
        takes it too) as ``(segment, lease fd)``; None when the cache cannot hold one that large, or this
        system has no OFD locks or no /proc (Linux before 3.15, a sandbox): then every payload gets its own."""
        if self.broken:
            return None
        with self.lock:
            try:
                return self._take(size)
            except OSError as exc:
                if exc.errno in (errno.ENOMEM, errno.ENOSPC, errno.EMFILE, errno.ENFILE):
                    raise
                self.broken = True
                for seg in list(self.owned):
                    self._drop(seg)
                return None

    def _take(self, size: int) -> tuple[_Owned, int] | None:
        """:meth:`take` under the lock."""
        best = None
        for seg in self.owned:
            # Up to twice the size: a small payload does not tie up a large segment.
            fits = size <= seg.capacity <= 2 * size + (1 << 20) and (
                best is None or seg.capacity < best.capacity
            )
            if fits and not _leased(seg.fd):
                best = seg
        if best is None:
            capacity = -(-size // _PAGE) * _PAGE
            if not self._room(capacity):
                return None
            best = _Owned(capacity)
            self.owned.append(best)
            self.bytes += capacity
            self._changed()
        return best, _lease(best.fd)

    def _room(self, capacity: int) -> bool:
        """Whether a new segment of ``capacity`` fits, after dropping free ones if need be (largest first)."""
        limit = cache_limit()
        if capacity > limit:
            return False

        def fits() -> bool:
            return self.bytes + capacity <= limit and len(self.owned) < MAX_SEGMENTS

        for seg in sorted(self.owned, key=lambda e: -e.capacity):
            if fits():
                break
            if not _leased(seg.fd):
                self._drop(seg)
        return fits()

    def _drop(self, seg: _Owned) -> None:
        self.owned.remove(seg)
        self.bytes -= seg.capacity
        seg.close()
        self._changed()

    def trim(self) -> None:
        """Drops the segments nobody reads (their memory goes back to the system)."""
        with self.lock:
            for seg in list(self.owned):
                if not _leased(seg.fd):
                    self._drop(seg)

    def forget(self) -> None:
        """In a forked child: the parent's segments are not ours to write."""
        for seg in self.owned:
            try:
                seg.close()
            except (OSError, BufferError):
                pass
        self.owned.clear()
        self.bytes = 0
        self.lock = threading.Lock()
        self.report = None  # the parent's, writing into memory the parent shares with its host

    def held(self) -> tuple[int, int]:
        """(segments, bytes) kept."""
        with self.lock:
            return len(self.owned), self.bytes


_cache = _Cache()
os.register_at_fork(after_in_child=_cache.forget)
trim = _cache.trim
held = _cache.held


def holding() -> bool:
    """Whether this process keeps any segment (a read without the lock: a hint)."""
    return _cache.bytes > 0


def parse_limit(text: str) -> int:
    """``SLITHER_SEGMENT_CACHE``'s value as bytes; raises ValueError naming the variable."""
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"SLITHER_SEGMENT_CACHE must be a whole number of bytes (0 or more), got {text!r}")
    return value


def cache_limit() -> int:
    """Bytes of segments this process may keep (``SEGMENT_CACHE``). Raises ValueError for a malformed
    ``SLITHER_SEGMENT_CACHE``."""
    global SEGMENT_CACHE
    if SEGMENT_CACHE is None:
        text = os.environ.get("SLITHER_SEGMENT_CACHE")
        SEGMENT_CACHE = DEFAULT_CACHE if text is None else parse_limit(text)
    return SEGMENT_CACHE


def report_to(report: Callable[[int], None]) -> None:
    """Calls ``report(bytes kept)`` whenever the cache grows or shrinks (a worker tells its host this way)."""
    _cache.report = report
    report(_cache.bytes)


def write(buffers: list, offsets: list[int], size: int) -> Segment:
    """A segment of ``size`` bytes holding each buffer at its offset, ready to send (a lease, or a new memfd
    of its own when the cache cannot hold it). Raises OSError (e.g. out of memory for the segment)."""
    taken = _cache.take(size)
    if taken is None:
        segment = Segment(_new(size), size)
        for b, at in zip(buffers, offsets):
            done = 0
            while done < b.nbytes:
                done += os.pwrite(segment.fd, b[done : done + CHUNK], at + done)
        return segment
    owned, lease = taken
    segment = Segment(lease, size)
    owned.copy_in(buffers, offsets)
    return segment
