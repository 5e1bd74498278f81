//! One worker process, seen from the supervisor's runtime: a task that reads its frames and watches its exit,
//! a task per socket (channel, control channel) that finishes writes the socket could not take at once, and
//! one per output pipe.
//!
//! ```text
//!   socket readable ─▶ frames ─▶ Sched (started, answered, revoked, hello, ready) / store replies
//!   pidfd readable  ─▶ read what the worker sent before it died ─▶ kill its group ─▶ reap ─▶ Sched::exited
//! ```
//!
//! A frame is judged by its header before its payload is read (`protocol::check_header`): a worker that
//! writes garbage on its channel is killed and replaced at once, and never makes the host wait for, or
//! allocate, bytes that will not come.
//!
//! The socket is read with `recvmsg`, never `read` (which would drop descriptors): a RESULT_OK frame may bring
//! a shared-memory segment's descriptor. Descriptors wait in a queue until the header that claims them is
//! parsed; a frame whose descriptor did not come, or a descriptor no frame claims, is a protocol violation.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::outbox::{Flushed, Outbox};
use super::sched::{Exit, Hello};
use super::spawn::{has_exited, read_started_word, Spawned};
use super::{Outcome, Shared};
use crate::protocol::{self, check_header, decode_header, split_kind, Header, Segment, HEADER_LEN};

/// The last lines a worker wrote to stderr, for the message when it fails to start.
pub(crate) type Tail = Arc<Mutex<VecDeque<String>>>;
const TAIL_LINES: usize = 12;
const CHUNK: usize = 64 * 1024;

/// Registers an owned descriptor with the runtime.
fn watch<T: AsRawFd>(inner: T, interest: Interest) -> Option<AsyncFd<T>> {
    // SAFETY: every `T` here (UnixStream, File, OwnedFd) owns its descriptor and keeps it open, unchanged,
    // until it is dropped with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.ok()
}

/// Frames assembled from the bytes of a non-blocking socket.
///
/// Small frames are parsed out of one reusable read buffer (many per read); a payload is allocated once at its
/// announced size (checked against the limit first) and a large one is read straight into place.
struct Frames {
    /// The read buffer: allocated when the socket is read, freed when it is drained (an idle worker holds none,
    /// which matters with hundreds of them). Its length is the bytes received.
    scratch: Vec<u8>,
    /// Valid bytes in `scratch`, and how many of them were consumed.
    filled: usize,
    pos: usize,
    header: [u8; HEADER_LEN],
    got: usize,
    /// The frame being read: its header, its payload buffer, and how much of it is filled.
    payload: Option<(Header, Vec<u8>, usize)>,
    /// The segment of the frame being read, and descriptors received ahead of the headers that claim them.
    segment: Option<Segment>,
    fds: VecDeque<OwnedFd>,
    /// The last receive brought more descriptors than fit (the kernel closed the rest).
    truncated: bool,
}

enum Read1 {
    Frame(Header, Vec<u8>, Option<Segment>),
    /// Wait for the socket to be readable again.
    Empty,
    Eof,
    Invalid(String),
}

impl Frames {
    fn new() -> Frames {
        Frames {
            scratch: Vec::new(),
            filled: 0,
            pos: 0,
            header: [0; HEADER_LEN],
            got: 0,
            payload: None,
            segment: None,
            fds: VecDeque::new(),
            truncated: false,
        }
    }

    /// The next whole frame, reading from `sock` as needed without blocking.
    fn next(&mut self, sock: &UnixStream, max_frame: u64) -> Read1 {
        loop {
            let buffered = self.filled - self.pos;
            if let Some((h, data, done)) = &mut self.payload {
                let want = h.len as usize - *done;
                if want == 0 {
                    let (h, data, _) = self.payload.take().expect("present");
                    return Read1::Frame(h, data, self.segment.take());
                }
                if buffered > 0 {
                    let n = want.min(buffered);
                    data[*done..*done + n].copy_from_slice(&self.scratch[self.pos..self.pos + n]);
                    *done += n;
                    self.pos += n;
                    continue;
                }
                if want >= CHUNK {
                    // Large payloads are read straight into place.
                    let rest = &mut data[*done..];
                    match recv(sock, rest.as_mut_ptr(), rest.len(), &mut self.fds, &mut self.truncated) {
                        Ok(0) => return Read1::Eof,
                        Ok(n) => *done += n,
                        Err(e) => return io_end(e),
                    }
                    continue;
                }
            } else if buffered > 0 {
                let n = (HEADER_LEN - self.got).min(buffered);
                self.header[self.got..self.got + n].copy_from_slice(&self.scratch[self.pos..self.pos + n]);
                self.got += n;
                self.pos += n;
                if self.got == HEADER_LEN {
                    self.got = 0;
                    let h = decode_header(&self.header);
                    if let Err(why) = check_header(&h, max_frame) {
                        return Read1::Invalid(why);
                    }
                    if split_kind(h.kind).1 {
                        let Some(fd) = self.fds.pop_front() else {
                            return Read1::Invalid(format!(
                                "the worker sent a {} frame (id {}) announcing a shared-memory segment, \
                                 but no descriptor came with it",
                                protocol::kind_name(split_kind(h.kind).0),
                                h.id
                            ));
                        };
                        self.segment = Some(Segment::new(fd));
                    }
                    self.payload = Some((h, vec![0u8; h.len as usize], 0));
                }
                continue;
            }
            if self.truncated {
                return Read1::Invalid("the worker sent more descriptors at once than any frame may carry".into());
            }
            if self.got == 0 && self.payload.is_none() && !self.fds.is_empty() {
                // Every received header was parsed, yet descriptors wait: no frame will claim them.
                let n = self.fds.len();
                self.fds.clear();
                return Read1::Invalid(format!(
                    "the worker sent {n} file descriptor(s) that belong to no frame"
                ));
            }
            // Need more bytes in the read buffer (everything in it is consumed).
            self.pos = 0;
            self.filled = 0;
            self.scratch.clear();
            self.scratch.reserve_exact(CHUNK);
            let spare = self.scratch.spare_capacity_mut();
            match recv(
                sock,
                spare.as_mut_ptr().cast(),
                spare.len(),
                &mut self.fds,
                &mut self.truncated,
            ) {
                Ok(0) => return Read1::Eof,
                Ok(n) => {
                    // SAFETY: recvmsg initialized the first n bytes of the spare capacity.
                    unsafe { self.scratch.set_len(n) };
                    self.filled = n;
                }
                Err(e) => {
                    self.scratch = Vec::new();
                    return io_end(e);
                }
            }
        }
    }
}

/// `recvmsg` into the `len` writable bytes at `buf` (which need not be initialized), keeping any
/// descriptors that came with the bytes.
fn recv(
    sock: &UnixStream,
    buf: *mut u8,
    len: usize,
    fds: &mut VecDeque<OwnedFd>,
    truncated: &mut bool,
) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf as *mut libc::c_void,
        iov_len: len,
    };
    let mut control = [0u64; 8];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: iov and control point at live, writable buffers of the lengths given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel filled msg_control with well-formed control messages; SCM_RIGHTS data is fds
    // that are now ours (wrapped at once, so each is closed exactly once).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for k in 0..count {
                    fds.push_back(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(k))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        *truncated = true;
    }
    Ok(n as usize)
}

fn io_end(e: std::io::Error) -> Read1 {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Read1::Empty,
        _ => Read1::Eof,
    }
}

/// What the worker task keeps between frames.
struct Conn {
    sh: Arc<Shared>,
    index: usize,
    generation: u64,
    /// The control channel's outbox: store replies go there (the worker's reader thread waits for them).
    control: Arc<Outbox>,
    init_failure: Option<String>,
    /// The worker sent something that cannot be valid; ignore what follows.
    poisoned: bool,
}

impl Conn {
    fn violation(&mut self, why: String) {
        self.poisoned = true;
        let (i, g) = (self.index, self.generation);
        self.sh.apply(|s, fx| s.violation(i, g, why, fx));
    }

    fn frame(&mut self, h: Header, payload: Vec<u8>, segment: Option<Segment>) {
        let (i, g, now) = (self.index, self.generation, Instant::now());
        let kind = split_kind(h.kind).0;
        if kind == protocol::RESULT_OK {
            let size = segment.as_ref().map(Segment::size);
            self.sh.transfers.count(false, payload.len() as u64, size);
        }
        match kind {
            protocol::STARTED => self.sh.apply(|s, fx| s.started(i, g, h.id, now, fx)),
            protocol::RESULT_OK => {
                let outcome = match segment {
                    Some(seg) => Outcome::OkShared(payload, seg),
                    None => Outcome::Ok(payload),
                };
                self.sh.apply(|s, fx| s.answered(i, g, h.id, outcome, now, fx))
            }
            protocol::RESULT_ERR => self
                .sh
                .apply(|s, fx| s.answered(i, g, h.id, Outcome::Err(payload), now, fx)),
            protocol::REVOKED => self.sh.apply(|s, fx| s.revoked(i, g, h.id, now, fx)),
            protocol::STORE_REQ => match &self.sh.store {
                // Answered off the event loop: building a large table's image takes a while, and this thread
                // serves every worker. The worker waits for its reply, so order is kept.
                Some(store) => {
                    let (store, control) = (store.clone(), self.control.clone());
                    tokio::task::spawn_blocking(move || {
                        let reply = store.handle_worker_request(&payload);
                        control.send(protocol::STORE_REPLY, h.id, Arc::new(reply));
                    });
                }
                None => {
                    let reply = crate::store::no_store_reply();
                    self.control.send(protocol::STORE_REPLY, h.id, Arc::new(reply));
                }
            },
            protocol::HELLO => match serde_json::from_slice::<Hello>(&payload) {
                Ok(hello) => self.sh.apply(|s, fx| s.hello(i, g, hello, fx)),
                Err(e) => self.violation(format!("the worker sent a malformed HELLO: {e}")),
            },
            protocol::READY => self.sh.apply(|s, fx| s.ready(i, g, now, fx)),
            protocol::INIT_FAILED => self.init_failure = Some(String::from_utf8_lossy(&payload).into_owned()),
            other => self.violation(format!("the worker sent an unexpected {}", protocol::kind_name(other))),
        }
    }

    /// Handles every whole frame readable now. Returns false at end of file.
    fn read_available(&mut self, frames: &mut Frames, sock: &UnixStream) -> bool {
        let max = self.sh.cfg.max_frame_bytes;
        loop {
            if self.poisoned {
                // Discard whatever else it wrote.
                let mut sink = [0u8; 65536];
                loop {
                    match (&*sock).read(&mut sink) {
                        Ok(0) => return false,
                        Ok(_) => continue,
                        Err(_) => return true,
                    }
                }
            }
            match frames.next(sock, max) {
                Read1::Frame(h, payload, segment) => self.frame(h, payload, segment),
                Read1::Empty => return true,
                Read1::Eof => return false,
                Read1::Invalid(why) => self.violation(why),
            }
        }
    }
}

/// Serves worker `index` (process `generation`) until it exits; then reports the exit to the scheduler.
pub(crate) async fn serve(
    sh: Arc<Shared>,
    index: usize,
    generation: u64,
    sp: Spawned,
    outbox: Arc<Outbox>,
    control: Arc<Outbox>,
    tail: Tail,
) {
    let pid = sp.pid;
    // Readable only: a writable interest would wake this thread every time the worker drains its socket.
    let writer_end = sp.channel.try_clone().ok();
    // The control channel is only written (the worker answers on its channel); it stays open until the
    // outbox is closed below.
    let control_end = sp.control;
    let started_word = sp.started_word;
    let control_writer = tokio::spawn(write_queued(control_end.try_clone().ok(), control.clone()));
    let Some(sock) = watch(sp.channel, Interest::READABLE).map(Arc::new) else {
        return;
    };
    if let Some(out) = sp.stdout {
        tokio::spawn(forward(OwnedFd::from(out), index, pid, None));
    }
    if let Some(err) = sp.stderr {
        tokio::spawn(forward(OwnedFd::from(err), index, pid, Some(tail.clone())));
    }
    let writer = tokio::spawn(write_queued(writer_end, outbox.clone()));
    let exit = wait_exit(pid, sp.pidfd);
    tokio::pin!(exit);
    let mut conn = Conn {
        sh: sh.clone(),
        index,
        generation,
        control: control.clone(),
        init_failure: None,
        poisoned: false,
    };
    let mut frames = Frames::new();
    let mut open = true;
    // End of file while the process still runs: it is exiting (its descriptors close first) or it closed
    // its channel. Wait for the exit a moment, then treat it as a broken worker.
    let eof_grace = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(eof_grace);
    loop {
        tokio::select! {
            biased;
            _ = &mut exit => break,
            guard = sock.readable(), if open => {
                let Ok(mut guard) = guard else { break };
                open = conn.read_available(&mut frames, sock.get_ref());
                guard.clear_ready();
                if !open {
                    eof_grace.as_mut().reset((Instant::now() + Duration::from_secs(1)).into());
                }
            }
            _ = &mut eof_grace, if !open && !conn.poisoned => {
                conn.violation("the worker closed its channel (fd 3) while still running".into());
            }
        }
    }
    // What it sent before it died still counts (a result written just before exiting).
    if open {
        conn.read_available(&mut frames, sock.get_ref());
    }
    outbox.close();
    control.close();
    writer.abort();
    control_writer.abort();
    drop(control_end);
    let (exit_code, signal) = sh.bury(pid);
    let stderr_tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    let init_failure = conn.init_failure.take();
    let now = Instant::now();
    let exit = Exit {
        exit_code,
        signal,
        stderr_tail,
        init_failure,
        started_frame: read_started_word(&started_word),
    };
    // The scheduler learns of the exit before the pid is released: nothing can see the slot as live after.
    sh.apply(|s, fx| s.exited(index, generation, exit, now, fx));
    sh.reap(index, generation, pid);
}

/// Resolves when the process has exited (it is left unreaped: its pid and group stay ours until we reap).
async fn wait_exit(pid: u32, pidfd: Option<OwnedFd>) {
    if let Some(fd) = pidfd.and_then(|fd| watch(fd, Interest::READABLE)) {
        if let Ok(mut g) = fd.readable().await {
            g.retain_ready();
        }
        return;
    }
    // No pidfd (an old kernel): poll without reaping.
    while !has_exited(pid) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finishes frames the socket did not take at once. It watches the socket for room only while frames wait,
/// so a socket with nothing queued never wakes the supervisor.
async fn write_queued(sock: Option<UnixStream>, outbox: Arc<Outbox>) {
    let Some(sock) = sock else { return };
    loop {
        outbox.wake.notified().await;
        let mut room: Option<AsyncFd<UnixStream>> = None;
        loop {
            match outbox.flush() {
                Flushed::Empty => break,
                Flushed::Closed => return,
                Flushed::Blocked => {
                    if room.is_none() {
                        room = sock.try_clone().ok().and_then(|s| watch(s, Interest::WRITABLE));
                    }
                    let Some(r) = &room else { return };
                    match r.writable().await {
                        Ok(mut g) => g.clear_ready(),
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

/// Forwards a worker's output pipe to the host's stderr, line by line, with a `[w<i> pid <p>]` prefix.
async fn forward(fd: OwnedFd, index: usize, pid: u32, tail: Option<Tail>) {
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let Some(afd) = watch(std::fs::File::from(fd), Interest::READABLE) else {
        return;
    };
    let prefix = format!("[w{index} pid {pid}] ");
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    let emit = |line: &[u8]| {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(prefix.as_bytes());
        let _ = err.write_all(line);
        if !line.ends_with(b"\n") {
            let _ = err.write_all(b"\n");
        }
        if let Some(t) = &tail {
            if let Ok(mut t) = t.lock() {
                t.push_back(String::from_utf8_lossy(line).trim_end().to_string());
                while t.len() > TAIL_LINES {
                    t.pop_front();
                }
            }
        }
    };
    loop {
        let Ok(mut guard) = afd.readable().await else { break };
        match guard.try_io(|f| f.get_ref().read(&mut buf)) {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    emit(&line);
                }
            }
            Err(_would_block) => continue,
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_header, RESULT_OK, STARTED, WITH_SEGMENT};
    use std::io::Write;

    /// Sends `bytes` on `sock` with `fd` attached (SCM_RIGHTS), as a worker's sendmsg would.
    fn send_with_fd(sock: &UnixStream, bytes: &[u8], fd: RawFd) {
        let iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let mut control = [0u64; 4];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &iov as *const libc::iovec as *mut libc::iovec;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
            assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), bytes.len() as isize);
        }
    }

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn memfd(size: i64) -> OwnedFd {
        let fd = unsafe { libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        assert_eq!(unsafe { libc::ftruncate(fd, size) }, 0);
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    #[test]
    fn a_segment_arrives_with_its_frame() {
        let (w, h) = pair();
        let mut bytes = encode_header(STARTED, 1, 0).to_vec();
        bytes.extend_from_slice(&encode_header(RESULT_OK | WITH_SEGMENT, 1, 3));
        bytes.extend_from_slice(b"abc");
        let fd = memfd(4096);
        // The descriptor rides on the send that begins the second frame.
        (&w).write_all(&bytes[..HEADER_LEN]).unwrap();
        send_with_fd(&w, &bytes[HEADER_LEN..], fd.as_raw_fd());
        let mut frames = Frames::new();
        assert!(matches!(frames.next(&h, 1 << 20), Read1::Frame(hd, _, None) if hd.kind == STARTED));
        match frames.next(&h, 1 << 20) {
            Read1::Frame(hd, payload, Some(seg)) => {
                assert_eq!((split_kind(hd.kind).0, payload.as_slice()), (RESULT_OK, &b"abc"[..]));
                assert_eq!(seg.size(), 4096);
            }
            _ => panic!("expected a frame with its segment"),
        }
        assert!(matches!(frames.next(&h, 1 << 20), Read1::Empty));
    }

    #[test]
    fn a_segment_that_did_not_come_is_a_violation() {
        let (w, h) = pair();
        (&w).write_all(&encode_header(RESULT_OK | WITH_SEGMENT, 1, 0)).unwrap();
        let mut frames = Frames::new();
        assert!(matches!(frames.next(&h, 1 << 20), Read1::Invalid(why) if why.contains("no descriptor came")));
    }

    #[test]
    fn a_stray_descriptor_is_a_violation() {
        let (w, h) = pair();
        let fd = memfd(0);
        send_with_fd(&w, &encode_header(STARTED, 1, 0), fd.as_raw_fd());
        let mut frames = Frames::new();
        assert!(matches!(frames.next(&h, 1 << 20), Read1::Frame(..)));
        assert!(matches!(frames.next(&h, 1 << 20), Read1::Invalid(why) if why.contains("belong to no frame")));
    }

    #[test]
    fn only_results_may_carry_a_segment() {
        let h = Header {
            kind: STARTED | WITH_SEGMENT,
            id: 1,
            len: 0,
        };
        assert!(check_header(&h, 1 << 20).unwrap_err().contains("only RESULT_OK"));
    }
}
