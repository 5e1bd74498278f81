//! Starting one worker process, and the OS calls that end it.
//!
//! A worker gets its private descriptors from fd 3 on (its channel, its control channel, see `protocol`, and
//! its started word: `WORKER_FD_VARS`), its own process group (so whatever it forks can be
//! killed with it), and the parent-death signal (bound to the spawning thread: the pool's supervisor thread,
//! which lives as long as the pool). Its stdout and stderr are pipes the supervisor forwards. Its exit is
//! watched through a pidfd, so death is seen when the process exits, not when its channel reaches end of
//! file (a forked helper may hold the channel open for ever).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Arc;

use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::protocol;

/// The first fd number a child of the pool finds its own descriptors on (3, 4, ... in order).
pub const FIRST_FD: i32 = 3;

/// A worker's descriptors, in the order they are placed at `FIRST_FD`, ..., and the environment variable that
/// tells the worker each one's number: its channel; its control channel (REVOKE and STORE_REPLY, read by its
/// reader thread); its started word, 16 bytes of shared memory where it writes the number of each TASK frame
/// before running it, read by the host when the worker has died (what a crash is charged to): a store, not a
/// frame, so a batch's start costs the worker no write and the host no wake-up (and, beside it, the bytes of
/// its segment cache, for memory sampling; layout `protocol::STARTED_WORD_FORMAT`).
pub const WORKER_FD_VARS: [&str; 3] = ["SLITHER_FD", "SLITHER_CONTROL_FD", "SLITHER_STARTED_FD"];

pub(crate) struct Spawned {
    pub pid: u32,
    /// The host's end of the worker's channel, non-blocking.
    pub channel: UnixStream,
    /// The host's end of the worker's control channel, non-blocking (written only).
    pub control: UnixStream,
    /// The worker's started word (a memfd; the worker has its own descriptor of it), shared by the worker's
    /// task (which reads it at the death) and its slot (memory sampling reads its cached bytes).
    pub started_word: Arc<OwnedFd>,
    /// Readable when the process exits (None where pidfds are unavailable: exits are then polled).
    pub pidfd: Option<OwnedFd>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// The host's ends of a new worker's private descriptors (see `WORKER_FD_VARS`).
pub(crate) struct HostFds {
    channel: UnixStream,
    control: UnixStream,
    started_word: OwnedFd,
}

impl HostFds {
    /// A new worker's descriptors: the host's ends, and the worker's ends in `WORKER_FD_VARS` order (the
    /// caller hands those to the new process and drops its own copies).
    pub fn new() -> std::io::Result<(HostFds, [OwnedFd; 3])> {
        let (channel, worker_channel) = UnixStream::pair()?;
        let (control, worker_control) = UnixStream::pair()?;
        let started_word = started_word()?;
        let worker_word = started_word.try_clone()?;
        channel.set_nonblocking(true)?;
        control.set_nonblocking(true)?;
        let host = HostFds {
            channel,
            control,
            started_word,
        };
        Ok((host, [worker_channel.into(), worker_control.into(), worker_word]))
    }

    /// `(variable, fd number)` for the worker's environment.
    pub fn env() -> impl Iterator<Item = (&'static str, String)> {
        WORKER_FD_VARS
            .iter()
            .zip(FIRST_FD..)
            .map(|(var, fd)| (*var, fd.to_string()))
    }

    /// Process `pid` holds the worker's ends now.
    pub fn spawned(self, pid: u32, stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Spawned {
        Spawned {
            pid,
            channel: self.channel,
            control: self.control,
            started_word: Arc::new(self.started_word),
            pidfd: pidfd_open(pid),
            stdout,
            stderr,
        }
    }
}

pub(crate) fn spawn_worker(cfg: &PoolConfig, index: usize, generation: u64) -> Result<Spawned> {
    let (host, worker) = HostFds::new()?;
    let output = || {
        if cfg.forward_output {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut cmd = Command::new(&cfg.python);
    cmd.args(&cfg.args)
        .envs(&cfg.env)
        .envs(HostFds::env())
        .env("SLITHER_WORKER_INDEX", index.to_string())
        .env("SLITHER_WORKER_GENERATION", generation.to_string())
        .env("SLITHER_PARENT_PID", std::process::id().to_string())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output());
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    own_group_with_fds(&mut cmd, worker.each_ref().map(|fd| fd.as_raw_fd()));
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::PoolBroken(format!("could not start worker interpreter {:?}: {e}", cfg.python)))?;
    drop(worker);
    Ok(host.spawned(child.id(), child.stdout.take(), child.stderr.take()))
    // `child` is dropped without waiting: the supervisor reaps the pid itself after seeing the exit.
}

/// Sets up `cmd`'s child as every process the pool starts: its own process group, the parent-death signal
/// (bound to the calling thread; a child whose parent already died exits), and `fds` at `FIRST_FD`, ... in order.
pub(crate) fn own_group_with_fds<const N: usize>(cmd: &mut Command, fds: [RawFd; N]) {
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
            }
            // Copies above every target first (closed at exec), so that placing one never overwrites another
            // that happens to sit at its target number; dup2 then clears close-on-exec on the placed ones.
            let mut high = [0 as RawFd; N];
            for (h, fd) in high.iter_mut().zip(fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FIRST_FD + N as RawFd);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (k, h) in high.into_iter().enumerate() {
                if libc::dup2(h, FIRST_FD + k as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A new started word: a memfd of `protocol::STARTED_WORD_BYTES`, zero (no TASK frame begun, nothing cached).
pub(crate) fn started_word() -> std::io::Result<OwnedFd> {
    // SAFETY: a constant name and flags; the result is checked.
    let raw = unsafe { libc::memfd_create(c"slither-started".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ftruncate on the descriptor just created.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), protocol::STARTED_WORD_BYTES as libc::off_t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The number of the last TASK frame the worker began, from its started word (None if it cannot be read);
/// its layout is `protocol::STARTED_WORD_FORMAT`.
pub(crate) fn read_started_word(fd: &OwnedFd) -> Option<u64> {
    read_word_field(fd, protocol::STARTED_FRAME_AT)
}

/// The bytes of segments the worker keeps for reuse, from its started word (None if it cannot be read).
pub(crate) fn read_cached_bytes(fd: &OwnedFd) -> Option<u64> {
    read_word_field(fd, protocol::STARTED_CACHED_AT)
}

fn read_word_field(fd: &OwnedFd, at: usize) -> Option<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: pread into a live 8-byte buffer.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8, at as libc::off_t) };
    (n == 8).then(|| u64::from_le_bytes(buf))
}

pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd >= 0 {
            return Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
    }
    let _ = pid;
    None
}

/// Whether `pid` has exited, without reaping it (it stays a zombie, so its pid and group id stay ours).
pub(crate) fn has_exited(pid: u32) -> bool {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // ECHILD: not our child any more (already reaped): gone.
    r != 0 || unsafe { info.si_pid() } != 0
}

/// How an exited (not yet reaped) process ended: `(exit code, signal name)`. It stays a zombie, so its pid and
/// group id stay ours.
pub(crate) fn exit_status(pid: u32) -> (Option<i32>, Option<String>) {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    if r != 0 {
        return (None, None);
    }
    let status = unsafe { info.si_status() };
    match info.si_code {
        libc::CLD_EXITED => (Some(status), None),
        libc::CLD_KILLED | libc::CLD_DUMPED => (None, Some(signal_name(status))),
        _ => (None, None),
    }
}

/// Reaps an exited process (its pid may be reused afterwards).
pub(crate) fn reap(pid: u32) {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

/// Sends `sig` to the worker process itself and to its process group: a task that left the group
/// (`setpgid`) is still hit, and so is everything the worker forked that stayed in it.
pub(crate) fn signal_worker(pid: u32, sig: i32) {
    if pid > 0 {
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
            libc::killpg(pid as libc::pid_t, sig);
        }
    }
}

pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}
