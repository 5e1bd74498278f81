"""Frames on the worker's private channel (fd 3), mirroring `src/protocol.rs`.

Every frame is ``u32 length | u8 kind | u64 id | payload`` (little-endian), ``length`` counting kind,
id and payload.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<IBQ")

# host -> worker
TASK = 1
SHUTDOWN = 2
STORE_REPLY = 3
INIT = 4
# worker -> host
HELLO = 10
READY = 11
INIT_FAILED = 12
RESULT_OK = 13
RESULT_ERR = 14
STORE_REQ = 15


class Channel:
    """Blocking frame reader/writer over a raw file descriptor."""

    def __init__(self, fd: int) -> None:
        import os

        self._fd = fd
        self._read = os.read
        self._write = os.write
        self._buf = bytearray()

    def send(self, kind: int, ident: int, payload: bytes | bytearray | memoryview = b"") -> None:
        header = HEADER.pack(len(payload) + 9, kind, ident)
        if len(payload) < 65536:
            self._write_all(header + bytes(payload))
        else:
            self._write_all(header)
            self._write_all(payload)

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._write(self._fd, view)
            view = view[n:]

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self._read(self._fd, max(n - len(self._buf), 262144))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv(self) -> tuple[int, int, bytes] | None:
        """The next frame, or None at end of file (the host is gone)."""
        if not self._fill(13):
            return None
        length, kind, ident = HEADER.unpack_from(self._buf)
        if not self._fill(4 + length):
            return None
        payload = bytes(self._buf[13 : 4 + length])
        del self._buf[: 4 + length]
        return kind, ident, payload
