//! Frames to one worker, in order, never blocking the caller.
//!
//! Any thread may send (a host thread submitting, the supervisor answering a store request). A frame is
//! written at once with a non-blocking send when nothing is queued ahead of it: no thread hand-off on the
//! latency path. What the socket does not take now waits in the queue; the worker's writer task on the
//! supervisor's runtime finishes it when the socket becomes writable. Frames are queued under one mutex, so
//! their order on the wire is the order they were queued in (the scheduler queues while holding its own
//! lock and writes after releasing it).
//!
//! A frame with a shared-memory segment has the segment's descriptor attached (SCM_RIGHTS) to the first
//! `sendmsg` that writes any of its bytes, so the descriptor reaches the worker with the frame's first byte.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::protocol::{encode_header, Segment, HEADER_LEN, WITH_SEGMENT};

struct Pending {
    header: [u8; HEADER_LEN],
    payload: Arc<Vec<u8>>,
    /// Attached to the frame's first write, then dropped here (the batch keeps its own handle).
    segment: Option<Segment>,
    /// Bytes of header and payload already written.
    done: usize,
}

impl Pending {
    fn len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Pending>,
    closed: bool,
}

pub(crate) enum Flushed {
    /// Everything is written.
    Empty,
    /// The socket is full; wait until it is writable.
    Blocked,
    /// The worker's end is gone; nothing more will be written.
    Closed,
}

pub(crate) struct Outbox {
    fd: RawFd,
    queue: Mutex<Queue>,
    /// Wakes the writer task when frames wait in the queue.
    pub wake: Notify,
}

impl Outbox {
    /// `fd` must stay open as long as the outbox is used (the worker task owns the socket and closes the
    /// outbox before dropping it).
    pub fn new(socket: &impl AsRawFd) -> Outbox {
        Outbox {
            fd: socket.as_raw_fd(),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one frame behind every frame sent before it and writes what the socket takes now.
    pub fn send(&self, kind: u8, id: u64, payload: Arc<Vec<u8>>) {
        if self.queue(kind, id, payload, None) {
            self.write_queued();
        }
    }

    /// Queues one frame behind every frame queued before it, without writing; true when the queue was empty
    /// (then the caller must call [`Outbox::write_queued`], which may happen after it released other locks:
    /// the order on the wire is the order of `queue` calls either way).
    pub fn queue(&self, kind: u8, id: u64, payload: Arc<Vec<u8>>, segment: Option<Segment>) -> bool {
        let mut q = self.lock();
        if q.closed {
            return false;
        }
        let kind = if segment.is_some() { kind | WITH_SEGMENT } else { kind };
        q.frames.push_back(Pending {
            header: encode_header(kind, id, payload.len() as u64),
            payload,
            segment,
            done: 0,
        });
        q.frames.len() == 1
    }

    /// Writes what the socket takes now; what it does not take is left to the worker's writer task.
    pub fn write_queued(&self) {
        let mut q = self.lock();
        match flush(self.fd, &mut q) {
            Flushed::Empty | Flushed::Closed => {}
            Flushed::Blocked => {
                drop(q);
                self.wake.notify_one();
            }
        }
    }

    /// Writes queued frames until the queue is empty or the socket is full.
    pub fn flush(&self) -> Flushed {
        flush(self.fd, &mut self.lock())
    }

    /// Stops writing for good (the worker is gone); queued frames are dropped.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.frames.clear();
        drop(q);
        self.wake.notify_one();
    }
}

fn flush(fd: RawFd, q: &mut Queue) -> Flushed {
    if q.closed {
        return Flushed::Closed;
    }
    while let Some(p) = q.frames.front_mut() {
        let (head, body): (&[u8], &[u8]) = if p.done < HEADER_LEN {
            (&p.header[p.done..], &p.payload[..])
        } else {
            (&[], &p.payload[p.done - HEADER_LEN..])
        };
        let iov = [
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: body.as_ptr() as *mut libc::c_void,
                iov_len: body.len(),
            },
        ];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = 2;
        // Room for one descriptor's control message, aligned for cmsghdr.
        let mut control = [0u64; 4];
        if let Some(segment) = &p.segment {
            let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
            debug_assert!(space <= std::mem::size_of_val(&control));
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space as _;
            // SAFETY: msg_control points at `space` writable, aligned bytes, enough for one cmsghdr and one fd.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, segment.as_raw_fd());
            }
        }
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::WouldBlock => return Flushed::Blocked,
                std::io::ErrorKind::Interrupted => continue,
                _ => {
                    q.closed = true;
                    q.frames.clear();
                    return Flushed::Closed;
                }
            }
        }
        p.done += n as usize;
        if n > 0 {
            p.segment = None;
        }
        if p.done >= p.len() {
            q.frames.pop_front();
        }
    }
    Flushed::Empty
}
