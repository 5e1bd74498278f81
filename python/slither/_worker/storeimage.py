"""The store's shared memory, read inside a worker (stdlib only: os, fcntl, mmap, struct, zlib).

The host keeps a version header per store and, per table a worker has asked for, a sealed image of one
version (layouts in ``src/store/header.rs`` and ``src/store/image.rs``). Both are memfds in the host; a
worker opens ``/proc/<host pid>/fd/<n>`` read-only and maps it::

    get(table, key): header[slot] == image.version ? ──yes──▶ look the key up in the mapped image
                                                      └─no──▶ ask the host for the current image, map it

An image is immutable once the worker can see it: the host writes it completely, unmaps it and seals it
against any change, and the worker checks the seals, the length, the store, the slot and the version
before trusting what it mapped. Anything that does not check out raises ``Unavailable`` and the caller
asks the host instead. A small image (64 KiB at most) comes inside the host's reply instead of as a
descriptor, with the same layout.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
import struct
import zlib
from collections.abc import Iterator

from slither._worker import storecodec as codec

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

_SEALED = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
_HEADER_MAGIC = int.from_bytes(b"SLSTHDR1", "little")
_FIRST_SLOT_WORD = 8
_IMAGE_HEAD = struct.Struct("=8s7Q")  # magic, store id, slot, version, count, buckets, entries offset, -
_ENTRY = struct.Struct("<IQ")  # key length, value length
_SEQLOCK_TRIES = 64
MEMO_MAX = 1 << 16
# Reading several header slots between two reads of the sequence relies on loads not being reordered with
# each other, which x86 guarantees; elsewhere a multi-table snapshot asks the host (one small round trip).
ORDERED_LOADS = os.uname().machine.lower() in {"x86_64", "amd64", "i386", "i686"}


class Unavailable(Exception):
    """A segment could not be opened or is not the one expected (stale, replaced, another machine)."""


def _open(pid: int, fd: int, length: int, sealed: bool) -> mmap.mmap:
    try:
        # O_NONBLOCK: should the descriptor be something else than our memfd (a pid from another machine,
        # say), opening a FIFO must not wait for a writer.
        f = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise Unavailable(f"cannot open the host's segment: {exc}") from exc
    try:
        st = os.fstat(f)
        if not stat.S_ISREG(st.st_mode) or st.st_size != length or length == 0:
            raise Unavailable("not the segment the host described")
        seals = fcntl.fcntl(f, fcntl.F_GET_SEALS)  # fails on anything but a memfd
        if sealed and seals & _SEALED != _SEALED:
            raise Unavailable("the image is not sealed")
        return mmap.mmap(f, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    except OSError as exc:
        raise Unavailable(f"cannot map the host's segment: {exc}") from exc
    finally:
        os.close(f)


class Header:
    """The host's version header: the current version of every table by slot, updated in place."""

    def __init__(self, pid: int, fd: int, length: int, store_id: int) -> None:
        self.pid = pid
        mm = _open(pid, fd, length, sealed=False)
        # A 'Q' memoryview reads each word with one aligned 8-byte load, so a version is never torn.
        words = memoryview(mm).cast("Q")
        if words[0] != _HEADER_MAGIC or words[2] != store_id:
            raise Unavailable("not this store's version header")
        self._mm = mm
        self._words = words
        self.slots = words[_FIRST_SLOT_WORD:]

    def versions(self, slots: list[int]) -> list[int] | None:
        """The versions of several slots as they stood together at one moment, or None if that cannot be
        read without the host (writes kept racing, or this CPU may reorder loads)."""
        if not ORDERED_LOADS:
            return None
        words, table = self._words, self.slots
        for _ in range(_SEQLOCK_TRIES):
            before = words[1]
            if before & 1:
                continue
            out = [table[s] for s in slots]
            if words[1] == before:
                return out
        return None


class Image:
    """One version of one table: a mapped segment, or the bytes of a small image sent in the reply.

    Lookups are remembered per image (up to ``MEMO_MAX`` keys): an image never changes, so a key read
    again costs one dict lookup, and a new version starts with an empty memo.
    """

    __slots__ = ("_buckets", "_buf", "_count", "_first", "_mask", "_memo", "_view", "slot", "version")

    def __init__(self, buf: mmap.mmap | bytes, store_id: int, slot: int, version: int) -> None:
        if len(buf) < _IMAGE_HEAD.size:
            raise Unavailable("not a store image")
        magic, sid, got_slot, got_version, count, buckets, first, _ = _IMAGE_HEAD.unpack_from(buf, 0)
        if magic != b"SLSTIMG1" or (sid, got_slot, got_version) != (store_id, slot, version):
            raise Unavailable("the image was replaced before it could be opened")
        self._buf = buf
        self._view = memoryview(buf)
        self._buckets = self._view[64 : 64 + 8 * buckets].cast("Q")
        self._mask = buckets - 1
        self._count = count
        self._first = first
        self._memo: dict[Any, memoryview | None] = {}
        self.slot = slot
        self.version = version

    @classmethod
    def mapped(cls, header: Header, fd: int, length: int, store_id: int, slot: int, version: int) -> Image:
        return cls(_open(header.pid, fd, length, sealed=True), store_id, slot, version)

    def raw(self, key: bytes) -> memoryview | None:
        """The encoded value under an encoded ``key`` (a view into the image, not a copy), or None."""
        buf, buckets, mask = self._buf, self._buckets, self._mask
        b = zlib.crc32(key) & mask
        while True:
            at = buckets[b]
            if not at:
                return None
            klen, vlen = _ENTRY.unpack_from(buf, at)
            start = at + 12
            if klen == len(key) and buf[start : start + klen] == key:
                return self._view[start + klen : start + klen + vlen]
            b = (b + 1) & mask

    def find(self, key: Any) -> memoryview | None:
        """The encoded value under a store key as the user wrote it (keys equal in Python encode the same)."""
        try:
            return self._memo[key]
        except (KeyError, TypeError):  # TypeError: unhashable, and encode_key will say what is wrong
            pass
        raw = self.raw(codec.encode_key(key))
        if len(self._memo) < MEMO_MAX:
            self._memo[key] = raw
        return raw

    def entries(self) -> Iterator[tuple[bytes, memoryview]]:
        buf, view, at = self._buf, self._view, self._first
        for _ in range(self._count):
            klen, vlen = _ENTRY.unpack_from(buf, at)
            start = at + 12
            yield buf[start : start + klen], view[start + klen : start + klen + vlen]
            at = start + klen + vlen

    def __len__(self) -> int:
        return self._count
