"""Frames on the worker's private channel (fd 3), mirroring ``src/protocol.rs``.

Every frame is ``u8 kind | u64 id | u64 length | payload`` (little-endian, a 17-byte header; ``length``
counts the payload). A contract test compares these constants with the Rust ones
(``slither._slither.PROTOCOL``), so the two cannot drift apart.
"""

from __future__ import annotations

import os
import struct
import threading

HEADER_FORMAT = "<BQQ"
HEADER = struct.Struct(HEADER_FORMAT)
HEADER_LEN = HEADER.size

# host -> worker
TASK = 1
SHUTDOWN = 2
STORE_REPLY = 3
INIT = 4
REVOKE = 5
# worker -> host
HELLO = 10
READY = 11
INIT_FAILED = 12
RESULT_OK = 13
RESULT_ERR = 14
STORE_REQ = 15
STARTED = 16
REVOKED = 17

KINDS = {
    "TASK": TASK, "SHUTDOWN": SHUTDOWN, "STORE_REPLY": STORE_REPLY, "INIT": INIT, "REVOKE": REVOKE,
    "HELLO": HELLO, "READY": READY, "INIT_FAILED": INIT_FAILED, "RESULT_OK": RESULT_OK,
    "RESULT_ERR": RESULT_ERR, "STORE_REQ": STORE_REQ, "STARTED": STARTED, "REVOKED": REVOKED,
}

_SMALL = 65536


class Channel:
    """Frames over a raw file descriptor: one reading thread, any number of sending threads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._wlock = threading.Lock()

    def send(self, kind: int, ident: int, payload: bytes | bytearray | memoryview = b"") -> None:
        header = HEADER.pack(kind, ident, len(payload))
        with self._wlock:
            if len(payload) < _SMALL:
                self._write_all(header + bytes(payload))
            else:
                self._write_all(header)
                self._write_all(payload)

    def send_many(self, frames: list[tuple[int, int, bytes | bytearray | memoryview]]) -> None:
        """Several frames in one write where they are small (one wake-up for the host, not several)."""
        parts: list[bytes | bytearray | memoryview] = []
        for kind, ident, payload in frames:
            parts.append(HEADER.pack(kind, ident, len(payload)))
            parts.append(payload)
        with self._wlock:
            if sum(len(p) for p in parts) < _SMALL:
                self._write_all(b"".join(parts))
            else:
                for p in parts:
                    self._write_all(p)

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = os.read(self._fd, max(n - len(self._buf), 262144))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv(self) -> tuple[int, int, bytes] | None:
        """The next frame, or None at end of file (the host is gone). Call from one thread only."""
        if not self._fill(HEADER_LEN):
            return None
        kind, ident, length = HEADER.unpack_from(self._buf)
        if not self._fill(HEADER_LEN + length):
            return None
        payload = bytes(self._buf[HEADER_LEN : HEADER_LEN + length])
        del self._buf[: HEADER_LEN + length]
        return kind, ident, payload
