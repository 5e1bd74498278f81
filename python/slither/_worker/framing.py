"""Frames on the worker's private channel (fd 3), mirroring ``src/protocol.rs``.

Every frame is ``u8 kind | u64 id | u64 length | payload`` (little-endian, a 17-byte header; ``length``
counts the payload). A contract test compares these constants with the Rust ones
(``slither._slither.PROTOCOL``), so the two cannot drift apart.

A TASK or RESULT_OK kind with ``SEGMENT`` set carries one descriptor (a shared-memory segment, see
``buffers.py``) as SCM_RIGHTS data on the send that begins the frame. The channel is read with ``recvmsg``
(a plain read would drop descriptors); a descriptor waits until the header that claims it is parsed.
"""

from __future__ import annotations

import array
import collections
import os
import socket
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

SEGMENT = 0x80

_SMALL = 65536
_FD_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)


class ProtocolViolation(Exception):
    """The host sent descriptors that do not match its frames."""


class Channel:
    """Frames over a raw file descriptor: one reading thread, any number of sending threads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        # Our own descriptor of the same socket (the socket object closes what it holds): recvmsg and sendmsg.
        self._sock = socket.socket(fileno=os.dup(fd))
        self._buf = bytearray()
        self._fds: collections.deque[int] = collections.deque()
        self._wlock = threading.Lock()

    def send(self, kind: int, ident: int, payload: bytes | bytearray | memoryview = b"",
             segment: int | None = None) -> None:
        """One frame; ``segment`` (a descriptor, borrowed) travels with it, marked in its kind."""
        if segment is not None:
            header = HEADER.pack(kind | SEGMENT, ident, len(payload))
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [segment]))]
            with self._wlock:
                sent = self._sock.sendmsg([header, payload], rights)
                if sent < len(header):
                    self._write_all(header[sent:])
                    self._write_all(payload)
                else:
                    self._write_all(memoryview(payload)[sent - len(header) :])
            return
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
            chunk, ancdata, flags, _ = self._sock.recvmsg(max(n - len(self._buf), 262144), _FD_SPACE)
            for level, typ, data in ancdata:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                    self._fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise ProtocolViolation("the host sent more descriptors at once than fit")
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv(self) -> tuple[int, int, bytes, int | None] | None:
        """The next frame ``(kind, id, payload, segment descriptor or None)``, or None at end of file (the
        host is gone). The descriptor is the caller's to close. Call from one thread only."""
        if not self._buf and self._fds:
            raise ProtocolViolation(f"the host sent {len(self._fds)} descriptor(s) that belong to no frame")
        if not self._fill(HEADER_LEN):
            return None
        kind, ident, length = HEADER.unpack_from(self._buf)
        segment = None
        if kind & SEGMENT:
            kind &= ~SEGMENT
            if not self._fds:
                raise ProtocolViolation(f"frame {kind} (id {ident}) announced a segment that did not come")
            segment = self._fds.popleft()
        if not self._fill(HEADER_LEN + length):
            return None
        payload = bytes(self._buf[HEADER_LEN : HEADER_LEN + length])
        del self._buf[: HEADER_LEN + length]
        return kind, ident, payload, segment
