"""Frames on the worker's private sockets (channel on fd 3, control channel on fd 4), mirroring ``src/protocol.rs``.

Every frame is ``u8 kind | u64 id | u64 length | payload`` (little-endian, a 17-byte header; ``length``
counts the payload). A contract test compares these constants with the Rust ones
(``slither._slither.PROTOCOL``), so the two cannot drift apart.

A TASK or RESULT_OK kind with ``SEGMENT`` set carries one descriptor (a shared-memory segment, see
``buffers.py``) as SCM_RIGHTS data on the send that begins the frame. The channel is read with ``recvmsg``
(a plain read would drop descriptors); a descriptor waits until the header that claims it is parsed.
"""

from __future__ import annotations

import _socket as socket  # the C module itself: socket.py imports enum and selectors (milliseconds per start)
import array
import collections
import os
import select
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

# host -> worker kinds that travel on the control channel (read by the worker's reader thread)
ON_CONTROL = (REVOKE, STORE_REPLY)

# The started word (fd 5), little-endian u64s: the number of the last TASK frame the main thread began (read by
# the host after a death), and the bytes of segments this worker keeps for reuse (segments.py; the host's memory
# sampling leaves them out of max_memory_per_worker).
STARTED_WORD_FORMAT = "<QQ"
STARTED_WORD = struct.Struct(STARTED_WORD_FORMAT)
STARTED_FRAME_AT = 0
STARTED_CACHED_AT = 8
U64 = struct.Struct("<Q")

SEGMENT = 0x80

_SMALL = 65536
_SCRATCH = 65536  # the reused read buffer; larger payloads get their own
_FD_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)


class ProtocolViolation(Exception):
    """The host sent descriptors that do not match its frames."""


class Channel:
    """Frames over a raw file descriptor: one reading thread, any number of sending threads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        # Our own descriptor of the same socket (the socket object closes what it holds): recvmsg and sendmsg.
        self._sock = socket.socket(fileno=os.dup(fd))
        self._scratch = bytearray(_SCRATCH)
        self._view = memoryview(self._scratch)
        self._start = self._end = 0  # unread bytes: _scratch[_start:_end]
        self._fds: collections.deque[int] = collections.deque()
        self._wlock = threading.Lock()

    def close(self) -> None:
        """Closes this channel's own descriptor (the one it was given stays open)."""
        self._sock.close()

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

    def _receive(self, view: memoryview) -> int:
        """One ``recvmsg`` into ``view``; descriptors that came with it wait in ``_fds``. 0 at end of file."""
        n, ancdata, msg_flags, _ = self._sock.recvmsg_into([view], _FD_SPACE)
        for level, typ, data in ancdata:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                self._fds.extend(fds)
        if msg_flags & socket.MSG_CTRUNC:
            raise ProtocolViolation("the host sent more descriptors at once than fit")
        return n

    def _buffered(self) -> int:
        return self._end - self._start

    def wait(self, timeout: float) -> bool:
        """Whether a frame's bytes are here or arrive within ``timeout`` seconds (then ``recv`` will not block
        for its start)."""
        return self._end > self._start or bool(select.select([self._fd], [], [], timeout)[0])

    def _read_more(self, room: int) -> bool:
        """Reads into the scratch buffer, first moving what is unread to its front if fewer than ``room`` bytes
        are free behind it. False at end of file."""
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._scratch) - self._start < room:
            n = self._end - self._start
            self._scratch[:n] = self._view[self._start : self._end]
            self._start, self._end = 0, n
        got = self._receive(self._view[self._end :])
        self._end += got
        return got > 0

    def recv(self) -> tuple[int, int, bytes | bytearray, int | None] | None:
        """The next frame ``(kind, id, payload, segment descriptor or None)``, or None at end of file (the
        host is gone). The descriptor is the caller's to close. Call from one thread only.

        Frames are read into one reused scratch buffer (many small frames per read, no allocation per read);
        a payload larger than it is read straight into its own buffer, once (then it is a ``bytearray``).
        """
        if self._start == self._end and self._fds:
            raise ProtocolViolation(f"the host sent {len(self._fds)} descriptor(s) that belong to no frame")
        while self._buffered() < HEADER_LEN:
            if not self._read_more(HEADER_LEN):
                return None
        kind, ident, length = HEADER.unpack_from(self._scratch, self._start)
        segment = None
        if kind & SEGMENT:
            kind &= ~SEGMENT
            if not self._fds:
                raise ProtocolViolation(f"frame {kind} (id {ident}) announced a segment that did not come")
            segment = self._fds.popleft()
        frame = HEADER_LEN + length
        if frame <= len(self._scratch):
            while self._buffered() < frame:
                if not self._read_more(frame):
                    return None
            begin = self._start + HEADER_LEN
            self._start += frame
            return kind, ident, bytes(self._view[begin : begin + length]), segment
        payload = bytearray(length)
        into = memoryview(payload)
        have = self._buffered() - HEADER_LEN
        into[:have] = self._view[self._start + HEADER_LEN : self._end]
        self._start = self._end = 0
        while have < length:
            got = self._receive(into[have:])
            if not got:
                return None
            have += got
        return kind, ident, payload, segment
