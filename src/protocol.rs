//! Frames between the host and a worker, on the worker's two private sockets: its channel (fd 3 in the
//! worker) carries every frame but those in [`ON_CONTROL`], which travel on its control channel (fd 4).
//!
//! Why two: the worker's main thread reads its own tasks from the channel (no hand-off between threads on the
//! latency path), while its reader thread must still hear a REVOKE or a store reply when the main thread is
//! busy running user code; the reader thread reads only the control channel.
//!
//! Every frame is `u8 kind | u64 id | u64 length | payload` (little-endian, 17-byte header; `length` counts
//! the payload only). The worker side (`python/slither/_worker/framing.py`) mirrors the kinds and the header;
//! a contract test compares both with [`describe`], which the binding exports as `_slither.PROTOCOL`.
//!
//! A frame is judged before its payload is read: an unknown kind or a length over the configured limit can
//! never make the host allocate or wait for bytes that will not come (see [`check_header`]).
//!
//! Large buffers do not travel in the byte stream: a TASK or RESULT_OK frame whose kind has [`WITH_SEGMENT`]
//! set carries exactly one file descriptor (a memfd holding the payload's out-of-band pickle buffers) as
//! SCM_RIGHTS ancillary data on the send that begins the frame. The kernel owns the descriptor while it is in
//! flight, so nothing leaks if either side dies. On Linux a stream `recvmsg` never reads past the end of an
//! skb that carried descriptors, so a frame's descriptor arrives no later than the frame's first byte.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Host → worker: run a batch (`id` = batch id; payload = pickled task).
pub const TASK: u8 = 1;
/// Host → worker: finish and exit.
pub const SHUTDOWN: u8 = 2;
/// Host → worker, on the control channel: answer to a store request (`id` = the worker's request id).
pub const STORE_REPLY: u8 = 3;
/// Host → worker: the start-up payload (sys.path, init function), sent right after HELLO.
pub const INIT: u8 = 4;
/// Host → worker, on the control channel: give batch `id` back if it has not started. Its payload is the
/// u64 (little-endian) number of the TASK frame to give back, counted from 1 over the frames the worker
/// process was sent (a batch may be sent to one worker twice). Answered by REVOKED, or by STARTED (too late).
pub const REVOKE: u8 = 5;
/// Worker → host: first frame, JSON `{"pid", "python", "gil", "free_threaded_build"}`.
pub const HELLO: u8 = 10;
/// Worker → host: init done, ready for tasks.
pub const READY: u8 = 11;
/// Worker → host: init raised; payload is the formatted traceback (UTF-8). The worker then exits.
pub const INIT_FAILED: u8 = 12;
/// Worker → host: a batch succeeded; payload = pickled results.
pub const RESULT_OK: u8 = 13;
/// Worker → host: a batch failed; payload = pickled error description.
pub const RESULT_ERR: u8 = 14;
/// Worker → host: a store request (`id` = request id); answered with STORE_REPLY.
pub const STORE_REQ: u8 = 15;
/// Worker → host, answering a REVOKE that came too late: the worker had taken batch `id` and runs (or ran) it.
/// (A batch's start itself is no frame: the worker writes it into its started word, see `pool::spawn`.)
pub const STARTED: u8 = 16;
/// Worker → host: batch `id` was given back unstarted after a REVOKE.
pub const REVOKED: u8 = 17;

/// The worker's started word (16 bytes of shared memory, see `pool::spawn`) as a Python `struct` format,
/// little-endian u64s: the number of the last TASK frame it began, and the bytes of shared-memory segments
/// it keeps for reuse (its segment cache, mapped in it: not counted against `max_memory_per_worker`).
pub const STARTED_WORD_FORMAT: &str = "<QQ";
/// Where each field of the started word is, in bytes.
pub const STARTED_FRAME_AT: usize = 0;
pub const STARTED_CACHED_AT: usize = 8;
/// The started word's size in bytes.
pub const STARTED_WORD_BYTES: usize = 16;

/// Host → worker kinds sent on the control channel; every other frame goes on the channel.
pub const ON_CONTROL: &[u8] = &[REVOKE, STORE_REPLY];

/// Set on a TASK or RESULT_OK kind: one descriptor (a shared-memory segment) travels with the frame.
pub const WITH_SEGMENT: u8 = 0x80;

/// Every kind, with its name, for the contract test and for error messages.
pub const KINDS: &[(&str, u8)] = &[
    ("TASK", TASK),
    ("SHUTDOWN", SHUTDOWN),
    ("STORE_REPLY", STORE_REPLY),
    ("INIT", INIT),
    ("REVOKE", REVOKE),
    ("HELLO", HELLO),
    ("READY", READY),
    ("INIT_FAILED", INIT_FAILED),
    ("RESULT_OK", RESULT_OK),
    ("RESULT_ERR", RESULT_ERR),
    ("STORE_REQ", STORE_REQ),
    ("STARTED", STARTED),
    ("REVOKED", REVOKED),
];

/// Kinds a worker may send.
pub const FROM_WORKER: &[u8] = &[
    HELLO,
    READY,
    INIT_FAILED,
    RESULT_OK,
    RESULT_ERR,
    STORE_REQ,
    STARTED,
    REVOKED,
];

pub const HEADER_LEN: usize = 17;
/// The header as a Python `struct` format (the worker's side must use exactly this).
pub const HEADER_FORMAT: &str = "<BQQ";
/// Default for the largest payload in either direction (bytes); configurable per pool (`max_frame_bytes`).
pub const DEFAULT_MAX_FRAME: u64 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub id: u64,
    pub len: u64,
}

pub fn encode_header(kind: u8, id: u64, len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind;
    h[1..9].copy_from_slice(&id.to_le_bytes());
    h[9..].copy_from_slice(&len.to_le_bytes());
    h
}

pub fn decode_header(h: &[u8; HEADER_LEN]) -> Header {
    Header {
        kind: h[0],
        id: u64::from_le_bytes(h[1..9].try_into().unwrap()),
        len: u64::from_le_bytes(h[9..].try_into().unwrap()),
    }
}

pub fn kind_name(kind: u8) -> String {
    KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("unknown kind {kind}"))
}

/// A shared-memory segment (a memfd) travelling with a frame, shared by every copy of its batch: the
/// descriptor closes when the last holder drops it.
#[derive(Debug, Clone)]
pub struct Segment(Arc<OwnedFd>);

impl Segment {
    pub fn new(fd: OwnedFd) -> Segment {
        Segment(Arc::new(fd))
    }

    /// The segment's size in bytes (0 if the descriptor cannot be inspected).
    pub fn size(&self) -> u64 {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open for as long as `self` lives; `st` is a valid out-pointer.
        if unsafe { libc::fstat(self.0.as_raw_fd(), &mut st) } == 0 {
            st.st_size as u64
        } else {
            0
        }
    }

    /// The descriptor, owned by the caller: this one if no other holder is left, else a duplicate.
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        Arc::try_unwrap(self.0).or_else(|shared| shared.try_clone())
    }
}

impl AsRawFd for Segment {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl PartialEq for Segment {
    fn eq(&self, other: &Segment) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Splits a kind byte into the kind and whether a segment travels with the frame.
pub fn split_kind(kind: u8) -> (u8, bool) {
    (kind & !WITH_SEGMENT, kind & WITH_SEGMENT != 0)
}

/// Why a header from a worker cannot be valid, judged before its payload is read.
pub fn check_header(h: &Header, max_frame: u64) -> Result<(), String> {
    let (kind, segment) = split_kind(h.kind);
    if segment && kind != RESULT_OK {
        return Err(format!(
            "the worker sent a {} frame (id {}) marked as carrying a shared-memory segment; only RESULT_OK may",
            kind_name(kind),
            h.id
        ));
    }
    if !FROM_WORKER.contains(&kind) {
        return Err(format!(
            "the worker sent a frame of {} (id {}, {} bytes): not a frame a worker sends; \
             something in the worker wrote to its channel (fd 3)",
            kind_name(h.kind),
            h.id,
            h.len
        ));
    }
    if h.len > max_frame {
        return Err(format!(
            "the worker announced a {} frame of {} bytes, over max_frame_bytes={}",
            kind_name(kind),
            h.len,
            max_frame
        ));
    }
    Ok(())
}

/// Encodes one frame into one buffer (header and payload).
pub fn encode_frame(kind: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&encode_header(kind, id, payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// Writes one frame (blocking), header and payload in one vectored write where the OS allows.
pub fn write_frame<W: Write>(w: &mut W, kind: u8, id: u64, payload: &[u8]) -> io::Result<()> {
    let h = encode_header(kind, id, payload.len() as u64);
    let mut bufs = [io::IoSlice::new(&h), io::IoSlice::new(payload)];
    let mut slices: &mut [io::IoSlice<'_>] = &mut bufs;
    while !slices.is_empty() {
        let n = w.write_vectored(slices)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut slices, n);
    }
    w.flush()
}

/// Reads one frame (blocking; for tests and tools). `Ok(None)` on a clean end of stream before a header.
pub fn read_frame<R: Read>(r: &mut R, max_frame: u64) -> io::Result<Option<(Header, Vec<u8>)>> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut h[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let header = decode_header(&h);
    if header.len > max_frame {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame over the limit"));
    }
    let mut payload = vec![0u8; header.len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some((header, payload)))
}

/// The wire format as data: `(header format, header length, [(kind name, number)])`.
pub fn describe() -> (&'static str, usize, &'static [(&'static str, u8)]) {
    (HEADER_FORMAT, HEADER_LEN, KINDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, TASK, 42, b"hello").unwrap();
        write_frame(&mut buf, SHUTDOWN, 0, b"").unwrap();
        let mut r = &buf[..];
        let (h, p) = read_frame(&mut r, 1 << 20).unwrap().unwrap();
        assert_eq!((h.kind, h.id, p.as_slice()), (TASK, 42, &b"hello"[..]));
        let (h, p) = read_frame(&mut r, 1 << 20).unwrap().unwrap();
        assert_eq!((h.kind, h.id, p.len()), (SHUTDOWN, 0, 0));
        assert!(read_frame(&mut r, 1 << 20).unwrap().is_none());
    }

    #[test]
    fn lengths_are_64_bit() {
        let h = decode_header(&encode_header(RESULT_OK, 7, (5u64 << 32) + 3));
        assert_eq!(h.len, (5u64 << 32) + 3);
    }

    #[test]
    fn truncated_header_is_an_error() {
        let mut r: &[u8] = &[1, 0, 0];
        assert!(read_frame(&mut r, 1 << 20).is_err());
    }

    #[test]
    fn impossible_headers_are_named() {
        let stray = decode_header(b"hello, world!\n\0\0\0");
        let why = check_header(&stray, 1 << 20).unwrap_err();
        assert!(why.contains("not a frame a worker sends"), "{why}");
        let huge = Header {
            kind: RESULT_OK,
            id: 1,
            len: 1 << 40,
        };
        assert!(check_header(&huge, 1 << 32)
            .unwrap_err()
            .contains("over max_frame_bytes"));
        let fine = Header {
            kind: STARTED,
            id: 1,
            len: 0,
        };
        assert!(check_header(&fine, 0).is_ok());
    }
}
