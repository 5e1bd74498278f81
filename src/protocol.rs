//! Frames between the host and a worker, on the worker's private socket (fd 3 in the worker).
//!
//! Every frame is `u32 length (LE) | u8 kind | u64 id (LE) | payload`, where `length` counts
//! kind, id and payload. The worker side (`python/slither/_worker/framing.py`) mirrors this with
//! `struct.Struct("<IBQ")`; the kinds are listed once here and once there.

use std::io::{self, Read, Write};

/// Host → worker: run a batch (`id` = batch id; payload = pickled task).
pub const TASK: u8 = 1;
/// Host → worker: finish and exit.
pub const SHUTDOWN: u8 = 2;
/// Host → worker: answer to a store request (`id` = the worker's request id).
pub const STORE_REPLY: u8 = 3;
/// Host → worker: the start-up payload (sys.path, init function), sent right after HELLO.
pub const INIT: u8 = 4;
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

pub const HEADER_LEN: usize = 13;
/// Frames larger than this are refused (a corrupt length must not make us allocate terabytes).
pub const MAX_FRAME: usize = 1 << 34;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub id: u64,
    pub payload: Vec<u8>,
}

pub fn header(kind: u8, id: u64, payload_len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let len = (payload_len + 9) as u64;
    // Lengths above u32::MAX use the escape 0xFFFF_FFFF followed by... nothing: we cap at u32.
    h[..4].copy_from_slice(&(len.min(u32::MAX as u64) as u32).to_le_bytes());
    h[4] = kind;
    h[5..].copy_from_slice(&id.to_le_bytes());
    h
}

/// Writes one frame with a single vectored write where the OS allows it.
pub fn write_frame<W: Write>(w: &mut W, kind: u8, id: u64, payload: &[u8]) -> io::Result<()> {
    if payload.len() + 9 > u32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the 4 GiB frame limit", payload.len()),
        ));
    }
    let h = header(kind, id, payload.len());
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

/// Reads one frame; `Ok(None)` on a clean end of stream before a header.
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Option<Frame>> {
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
    let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
    if !(9..=MAX_FRAME).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    let kind = h[4];
    let id = u64::from_le_bytes(h[5..].try_into().unwrap());
    let mut payload = vec![0u8; len - 9];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { kind, id, payload }))
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
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(Frame {
                kind: TASK,
                id: 42,
                payload: b"hello".to_vec()
            })
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(Frame {
                kind: SHUTDOWN,
                id: 0,
                payload: vec![]
            })
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_header_is_an_error() {
        let mut r: &[u8] = &[1, 0, 0];
        assert!(read_frame(&mut r).is_err());
    }

    #[test]
    fn absurd_length_is_refused() {
        let mut buf = vec![3, 0, 0, 0];
        buf.extend_from_slice(&[0; 9]);
        assert!(read_frame(&mut &buf[..]).is_err());
    }
}
