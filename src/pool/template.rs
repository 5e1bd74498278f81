//! The pool's template process (`preload`): a fresh interpreter that imported the heavy modules once and
//! forks workers on request, so a replacement costs a fork instead of an interpreter start plus imports.
//!
//! ```text
//!   supervisor ── fork {env, places} + fds (channel, control, started word, stdout, stderr) ──▶ template ── fork() ──▶ worker (own group)
//!              ◀──────────────────── {"pid": N} ────────────────────
//!   worker's pidfd readable ─▶ status {pid} ─▶ {"code"|"signal"} ─▶ Sched::exited ─▶ reap {pid}
//! ```
//!
//! The template is started like a worker (by the supervisor thread, its own process group, the parent-death
//! signal, its control socket as fd 3). A forked worker is the template's child, not the host's: the host
//! watches its exit through a pidfd (it opens it itself; the pid cannot be reused before the template reaps
//! it, and the template reaps only when asked), learns its exit status from the template, and asks for the
//! reap once the scheduler knows. Forked workers get no parent-death signal (it would follow the template,
//! whose death must not take running workers with it); the reaper kills their groups if the host dies, and
//! their channel reaches end of file.
//!
//! Every exchange is one request and at most one reply on a SOCK_SEQPACKET pair, all on the supervisor thread.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::spawn::{own_group_with_fds, pidfd_open, signal_name, HostFds, Spawned, FIRST_FD};
use super::Shared;
use crate::config::PoolConfig;

/// How long the supervisor waits for the template's answer to a fork or status request before it gives
/// the template up (kills and restarts it).
const REPLY_WITHIN: Duration = Duration::from_secs(5);

pub(crate) struct Template {
    child: Child,
    ctl: OwnedFd,
    /// Set once the process was reaped: its pid and group id may be reused, never signal them again.
    ended: Option<std::process::ExitStatus>,
}

#[derive(Deserialize, Default)]
struct Reply {
    pid: Option<u32>,
    code: Option<i32>,
    signal: Option<i32>,
    error: Option<String>,
}

/// Why a fork request gave no worker.
pub(crate) enum ForkFailed {
    /// The template answered that fork() failed (e.g. a process limit): it is fine, this start is not.
    Refused(String),
    /// The template is gone or did not answer: replace it.
    Broken(std::io::Error),
}

impl From<std::io::Error> for ForkFailed {
    fn from(e: std::io::Error) -> Self {
        ForkFailed::Broken(e)
    }
}

/// What the template said after its imports.
pub(crate) enum Started {
    Ready,
    /// A preload module failed to import: its name and the exception's last line.
    ImportFailed(String, String),
    /// It exited or stopped answering before saying anything.
    Died(String),
}

fn io_err(why: impl Into<String>) -> std::io::Error {
    std::io::Error::other(why.into())
}

fn seqpacket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Template {
    /// Starts the template process (call on the supervisor thread: the parent-death signal is bound to it).
    /// It imports `cfg.preload` in the background; see [`Template::wait_started`].
    pub fn start(cfg: &PoolConfig) -> std::io::Result<Template> {
        let (host_end, template_end) = seqpacket_pair()?;
        let template_fd = template_end.as_raw_fd();
        let mut cmd = Command::new(&cfg.python);
        cmd.args(["-m", "slither._worker.template"])
            .args(&cfg.preload)
            .envs(&cfg.env)
            .env("PYTHONUNBUFFERED", "1")
            .env(
                "SLITHER_TEMPLATE_PATH",
                serde_json::to_string(&cfg.preload_path).unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if cfg.forward_output {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        if let Some(dir) = &cfg.cwd {
            cmd.current_dir(dir);
        }
        own_group_with_fds(&mut cmd, [template_fd]);
        let child = cmd.spawn()?;
        drop(template_end);
        Ok(Template {
            child,
            ctl: host_end,
            ended: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The control socket, for waiting on it without blocking (a restarted template's READY).
    pub fn control_fd(&self) -> RawFd {
        self.ctl.as_raw_fd()
    }

    /// Waits up to `within` for the template's first word: READY or the import that failed.
    pub fn wait_started(&mut self, within: Duration) -> Started {
        match self.recv(within) {
            Ok(msg) if msg == b"R" => Started::Ready,
            Ok(msg) if msg.first() == Some(&b'E') => {
                let text = String::from_utf8_lossy(&msg[1..]).into_owned();
                let (module, why) = text.split_once('\0').unwrap_or(("?", &text));
                Started::ImportFailed(module.to_string(), why.to_string())
            }
            Ok(_) => Started::Died("it sent an unexpected first message".into()),
            Err(e) => Started::Died(self.death_note(&e)),
        }
    }

    /// Why the template is unusable, naming its exit status when it has one.
    fn death_note(&mut self, e: &std::io::Error) -> String {
        std::thread::sleep(Duration::from_millis(20));
        match self.reaped() {
            Some(st) => {
                use std::os::unix::process::ExitStatusExt;
                match (st.code(), st.signal()) {
                    (Some(c), _) => format!("it exited with code {c} (its stderr is above)"),
                    (_, Some(s)) => format!("it was killed by {}", signal_name(s)),
                    _ => "it exited".into(),
                }
            }
            _ => format!("{e}"),
        }
    }

    /// Whether the process has exited (reaped here if so): a template killed from outside is not news.
    fn exited(&mut self) -> bool {
        self.reaped().is_some()
    }

    /// Its exit status if it exited (reaping it).
    fn reaped(&mut self) -> Option<std::process::ExitStatus> {
        if self.ended.is_none() {
            self.ended = self.child.try_wait().ok().flatten();
        }
        self.ended
    }

    /// Forks worker `index` (process `generation`). The worker's channel, control channel, stdout and stderr are
    /// created here and their worker ends passed over the template's socket.
    pub fn fork(&mut self, cfg: &PoolConfig, index: usize, generation: u64) -> Result<Spawned, ForkFailed> {
        let (host, worker) = HostFds::new()?;
        let mut fds: Vec<OwnedFd> = worker.into();
        // Where the child places each descriptor passed (the worker's own, then stdout and stderr if forwarded).
        let mut places: Vec<i32> = (FIRST_FD..).take(fds.len()).collect();
        let mut readers = Vec::new();
        if cfg.forward_output {
            for out in [1, 2] {
                let (r, w) = pipe()?;
                readers.push(r);
                fds.push(w);
                places.push(out);
            }
        }
        let mut env: BTreeMap<&str, String> = HostFds::env().collect();
        env.insert("SLITHER_WORKER_INDEX", index.to_string());
        env.insert("SLITHER_WORKER_GENERATION", generation.to_string());
        // Its parent is the template, not the host: the start-up parent check does not apply.
        env.insert("SLITHER_PARENT_PID", "0".into());
        let req = serde_json::json!({"op": "fork", "env": env, "places": places});
        self.send(req.to_string().as_bytes(), &fds)?;
        drop(fds);
        let reply = self.reply()?;
        let pid = match (reply.pid, reply.error) {
            (Some(pid), _) if pid > 0 => pid,
            (_, Some(why)) => return Err(ForkFailed::Refused(why)),
            _ => return Err(io_err("the template sent a malformed fork reply").into()),
        };
        let mut readers = readers.into_iter();
        let (stdout, stderr) = (readers.next(), readers.next());
        Ok(host.spawned(pid, stdout.map(ChildStdout::from), stderr.map(ChildStderr::from)))
    }

    /// How forked worker `pid` ended (it has exited and is not reaped yet): `(exit code, signal name)`.
    pub fn status(&mut self, pid: u32) -> std::io::Result<(Option<i32>, Option<String>)> {
        let req = serde_json::json!({"op": "status", "pid": pid});
        self.send(req.to_string().as_bytes(), &[])?;
        let r = self.reply()?;
        Ok((r.code, r.signal.map(signal_name)))
    }

    /// Asks the template to reap forked worker `pid` (its pid may be reused afterwards).
    pub fn reap(&mut self, pid: u32) -> std::io::Result<()> {
        let req = serde_json::json!({"op": "reap", "pid": pid});
        self.send(req.to_string().as_bytes(), &[])
    }

    fn reply(&mut self) -> std::io::Result<Reply> {
        let msg = self.recv(REPLY_WITHIN)?;
        serde_json::from_slice(&msg).map_err(|e| io_err(format!("the template sent a malformed reply: {e}")))
    }

    fn send(&self, data: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(raw.as_slice()) as u32) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8).max(1)];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !raw.is_empty() {
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space as _;
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(raw.as_slice()) as u32) as _;
                std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c) as *mut RawFd, raw.len());
            }
        }
        loop {
            let n = unsafe { libc::sendmsg(self.ctl.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// One message, waiting up to `within`. End of file (the template is gone) and the wait running out are
    /// errors.
    fn recv(&self, within: Duration) -> std::io::Result<Vec<u8>> {
        let deadline = Instant::now() + within;
        let fd = self.ctl.as_raw_fd();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let r = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Err(io_err(format!(
                    "the template did not answer within {:.1} s",
                    within.as_secs_f64()
                )));
            }
            let mut buf = vec![0u8; 64 * 1024];
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io_err("the template process is gone"));
            }
            buf.truncate(n as usize);
            return Ok(buf);
        }
    }

    /// Ends the template (its forked workers are not in its group and keep running) and reaps it.
    pub fn kill(mut self) {
        if self.ended.is_some() {
            return;
        }
        unsafe {
            libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pool's template, as the supervisor keeps it: the current process, whether it said READY, and how many
/// in a row died before they did (a template that keeps dying is given up; workers then start fresh).
pub(crate) struct Warm {
    current: Option<Template>,
    ready: bool,
    /// Bumped at each (re)start, so a watch task of an earlier template does nothing.
    epoch: u64,
    failures: u32,
    disabled: bool,
}

/// Starts the pool's template and waits for its imports (on the supervisor thread, before any worker starts).
/// Err: why the pool cannot start (a preload module that does not import is a configuration error).
pub(crate) fn start(sh: &Arc<Shared>) -> Result<(), String> {
    let cfg = &sh.cfg;
    if pidfd_open(std::process::id()).is_none() {
        // Without pidfds the host could not watch a forked worker's exit (it is not the host's child).
        eprintln!("slither: this kernel has no pidfd_open (Linux 5.3+); preload= is ignored and workers start fresh");
        return Ok(());
    }
    let mut t = Template::start(cfg)
        .map_err(|e| format!("could not start the preload template interpreter {:?}: {e}", cfg.python))?;
    match t.wait_started(cfg.startup_timeout()) {
        Started::Ready => {}
        Started::ImportFailed(module, why) => {
            t.kill();
            return Err(format!(
                "preload module {module:?} failed to import in the worker interpreter: {why}"
            ));
        }
        Started::Died(why) => {
            t.kill();
            return Err(format!("the preload template process did not become ready: {why}"));
        }
    }
    sh.reaper_add(t.pid());
    let mut warm = Warm {
        current: Some(t),
        ready: true,
        epoch: 0,
        failures: 0,
        disabled: false,
    };
    tend(sh, &mut warm);
    *sh.warm.lock().unwrap_or_else(|p| p.into_inner()) = Some(warm);
    Ok(())
}

/// Forks a worker from the template when one is ready. None: start a fresh interpreter instead (no preload,
/// the template is restarting, or the fork failed: the template is then restarted).
pub(crate) fn fork(sh: &Arc<Shared>, index: usize, generation: u64) -> Option<Spawned> {
    let mut guard = sh.warm.lock().unwrap_or_else(|p| p.into_inner());
    let warm = guard.as_mut()?;
    if !warm.ready {
        return None;
    }
    let t = warm.current.as_mut()?;
    match t.fork(&sh.cfg, index, generation) {
        Ok(sp) => {
            sh.forked.lock().unwrap_or_else(|p| p.into_inner()).insert(sp.pid);
            Some(sp)
        }
        Err(ForkFailed::Refused(why)) => {
            eprintln!("slither: the preload template could not fork worker {index} ({why}); starting it fresh");
            None
        }
        Err(ForkFailed::Broken(e)) => {
            if !t.exited() {
                eprintln!("slither: the preload template failed a fork request ({e}); restarting it");
            }
            replace(sh, warm, false);
            None
        }
    }
}

/// How forked worker `pid` ended; None if it was not forked. `(None, None)` when the template that forked it
/// is gone (its status went with it).
pub(crate) fn status(sh: &Arc<Shared>, pid: u32) -> Option<(Option<i32>, Option<String>)> {
    if !sh.forked.lock().unwrap_or_else(|p| p.into_inner()).contains(&pid) {
        return None;
    }
    let mut guard = sh.warm.lock().unwrap_or_else(|p| p.into_inner());
    let Some(warm) = guard.as_mut().filter(|w| w.ready) else {
        return Some((None, None));
    };
    let t = warm.current.as_mut()?;
    match t.status(pid) {
        Ok(st) => Some(st),
        Err(_) => {
            replace(sh, warm, false);
            Some((None, None))
        }
    }
}

/// Reaps forked worker `pid` through the template. False if it was not forked.
pub(crate) fn reap(sh: &Arc<Shared>, pid: u32) -> bool {
    if !sh.forked.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid) {
        return false;
    }
    let mut guard = sh.warm.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = guard.as_mut().filter(|w| w.ready).and_then(|w| w.current.as_mut()) {
        let _ = t.reap(pid);
    }
    true
}

/// Ends the template when the pool stops (after every worker was reaped).
pub(crate) fn stop(sh: &Arc<Shared>) {
    let warm = sh.warm.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = warm.and_then(|w| w.current) {
        sh.reaper_remove(t.pid());
        t.kill();
    }
}

/// Drops the current template (dead, or not answering) and starts the next, unless templates keep dying
/// before they are ready: then workers start as fresh interpreters for the rest of the pool's life.
fn replace(sh: &Arc<Shared>, warm: &mut Warm, died_starting: bool) {
    if let Some(t) = warm.current.take() {
        sh.reaper_remove(t.pid());
        t.kill();
    }
    warm.ready = false;
    warm.epoch += 1;
    warm.failures = if died_starting { warm.failures + 1 } else { 0 };
    if warm.disabled || sh.lock().stopping {
        return;
    }
    if warm.failures >= sh.cfg.crash_loop_limit {
        warm.disabled = true;
        eprintln!(
            "slither: the preload template failed to start {} times in a row; workers start as fresh \
             interpreters from now on",
            warm.failures
        );
        return;
    }
    match Template::start(&sh.cfg) {
        Ok(t) => {
            sh.reaper_add(t.pid());
            warm.current = Some(t);
            tend(sh, warm);
        }
        Err(e) => {
            eprintln!("slither: could not restart the preload template: {e}; workers start as fresh interpreters");
            warm.disabled = true;
        }
    }
}

/// Watches the current template from the supervisor's runtime: its exit (restart it) and, while it starts,
/// its READY.
fn tend(sh: &Arc<Shared>, warm: &mut Warm) {
    let Some(t) = warm.current.as_ref() else { return };
    let epoch = warm.epoch;
    let pidfd = pidfd_open(t.pid()).and_then(register);
    let ctl = if warm.ready {
        None
    } else {
        let fd = unsafe { libc::fcntl(t.control_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        (fd >= 0)
            .then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            .and_then(register)
    };
    let sh = sh.clone();
    tokio::spawn(async move {
        let mut ctl = ctl;
        loop {
            let died = tokio::select! {
                _ = exited(pidfd.as_ref()) => true,
                r = readable(ctl.as_ref()), if ctl.is_some() => !r,
            };
            let mut guard = sh.warm.lock().unwrap_or_else(|p| p.into_inner());
            let Some(warm) = guard.as_mut().filter(|w| w.epoch == epoch) else {
                return;
            };
            if died {
                let starting = !warm.ready;
                replace(&sh, warm, starting);
                return;
            }
            // Its first word arrived.
            ctl = None;
            let Some(t) = warm.current.as_mut() else { return };
            match t.wait_started(Duration::ZERO) {
                Started::Ready => {
                    warm.ready = true;
                    warm.failures = 0;
                }
                Started::ImportFailed(module, why) => {
                    eprintln!("slither: the restarted preload template could not import {module:?}: {why}");
                    replace(&sh, warm, true);
                    return;
                }
                Started::Died(_) => {
                    replace(&sh, warm, true);
                    return;
                }
            }
        }
    });
}

fn register(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd keeps its descriptor open, unchanged, until it is dropped with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
}

/// Resolves when the process behind `pidfd` exits (never, without a pidfd: a dead template is then found by
/// its next request failing).
async fn exited(pidfd: Option<&AsyncFd<OwnedFd>>) {
    match pidfd {
        Some(fd) => {
            if let Ok(mut g) = fd.readable().await {
                g.retain_ready();
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when `fd` has a message to read (true) or cannot be watched (false).
async fn readable(fd: Option<&AsyncFd<OwnedFd>>) -> bool {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    loop {
        let Ok(mut g) = fd.readable().await else {
            return false;
        };
        let mut p = libc::pollfd {
            fd: fd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // A wake-up with nothing to read is not the template's first word.
        if unsafe { libc::poll(&mut p, 1, 0) } > 0 {
            g.retain_ready();
            return true;
        }
        g.clear_ready();
    }
}
