//! Sending frames to one worker, in order, without ever blocking the scheduler.
//!
//! A small frame to a worker with nothing queued is written at once by the caller with a non-blocking send:
//! no thread hand-off on the latency path. Anything else (a large frame, a full socket buffer, frames
//! already queued) goes to the worker's writer thread, which may block on the socket. Frames are
//! accepted only while the scheduler lock is held, so their order is the order batches were assigned.

use crossbeam_channel::{Receiver, Sender};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::{header, write_frame};

/// Frames up to this size may be written directly by the caller.
const DIRECT_MAX: usize = 64 * 1024;

enum Outgoing {
    Frame {
        kind: u8,
        id: u64,
        payload: Arc<Vec<u8>>,
    },
    /// The unsent tail of a frame whose direct write was cut short.
    Rest(Vec<u8>),
}

struct Wire {
    stream: UnixStream,
    /// Held while bytes are being written, by the writer thread or a direct sender.
    writing: Mutex<()>,
    /// Frames handed to the writer thread and not yet fully written.
    queued: AtomicUsize,
}

pub(crate) struct Outbox {
    wire: Arc<Wire>,
    tx: Sender<Outgoing>,
}

impl Outbox {
    /// Starts the worker's writer thread; it ends when the outbox is dropped.
    pub fn start(index: usize, stream: UnixStream) -> Outbox {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wire = Arc::new(Wire {
            stream,
            writing: Mutex::new(()),
            queued: AtomicUsize::new(0),
        });
        let thread_wire = wire.clone();
        let _ = std::thread::Builder::new()
            .name(format!("slither-w{index}-tx"))
            .spawn(move || drain(&thread_wire, rx));
        Outbox { wire, tx }
    }

    /// Queues one frame behind every frame sent before it. Never blocks on the socket.
    pub fn send(&self, kind: u8, id: u64, payload: Arc<Vec<u8>>) {
        if payload.len() <= DIRECT_MAX && self.wire.queued.load(Ordering::Acquire) == 0 {
            if let Ok(_guard) = self.wire.writing.try_lock() {
                let mut bytes = Vec::with_capacity(payload.len() + 13);
                bytes.extend_from_slice(&header(kind, id, payload.len()));
                bytes.extend_from_slice(&payload);
                match send_nonblocking(&self.wire.stream, &bytes) {
                    Ok(n) if n == bytes.len() => return,
                    Ok(n) => {
                        bytes.drain(..n);
                        self.wire.queued.fetch_add(1, Ordering::AcqRel);
                        let _ = self.tx.send(Outgoing::Rest(bytes));
                        return;
                    }
                    // The worker is gone; its reader notices and the supervisor takes over.
                    Err(_) => return,
                }
            }
        }
        self.wire.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send(Outgoing::Frame { kind, id, payload });
    }
}

fn drain(wire: &Wire, rx: Receiver<Outgoing>) {
    let mut stream = &wire.stream;
    while let Ok(msg) = rx.recv() {
        let _guard = wire.writing.lock().unwrap_or_else(|p| p.into_inner());
        let ok = match msg {
            Outgoing::Frame { kind, id, payload } => write_frame(&mut stream, kind, id, &payload).is_ok(),
            Outgoing::Rest(bytes) => stream.write_all(&bytes).and_then(|_| stream.flush()).is_ok(),
        };
        wire.queued.fetch_sub(1, Ordering::AcqRel);
        if !ok {
            break;
        }
    }
}

/// Writes what the socket takes right now; `Ok(0)`.. when it is full.
fn send_nonblocking(stream: &UnixStream, bytes: &[u8]) -> std::io::Result<usize> {
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n >= 0 {
        return Ok(n as usize);
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::WouldBlock {
        Ok(0)
    } else {
        Err(err)
    }
}
