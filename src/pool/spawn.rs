//! Starting one worker process: a private socketpair end as fd 3, its own process group, the parent-death
//! signal, and its stdout/stderr forwarded line by line to the host's stderr with a `[w<i> pid <p>]` prefix.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::config::PoolConfig;
use crate::error::Result;

/// The fd number the worker finds its channel on.
pub const CHANNEL_FD: i32 = 3;

pub(crate) struct Spawned {
    pub child: Child,
    pub channel: UnixStream,
}

pub(crate) fn spawn_worker(cfg: &PoolConfig, index: usize, generation: u64) -> Result<Spawned> {
    let (host_end, worker_end) = UnixStream::pair()?;
    let worker_fd = worker_end.as_raw_fd();
    let parent = std::process::id();
    let mut cmd = Command::new(&cfg.python);
    cmd.args(&cfg.args)
        .envs(&cfg.env)
        .env("SLITHER_FD", CHANNEL_FD.to_string())
        .env("SLITHER_WORKER_INDEX", index.to_string())
        .env("SLITHER_WORKER_GENERATION", generation.to_string())
        .env("SLITHER_PARENT_PID", parent.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(if cfg.forward_output {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if cfg.forward_output {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    // Only async-signal-safe calls between fork and exec.
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
            if worker_fd == CHANNEL_FD {
                let flags = libc::fcntl(CHANNEL_FD, libc::F_GETFD);
                libc::fcntl(CHANNEL_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(worker_fd, CHANNEL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        crate::error::Error::PoolBroken(format!("could not start worker interpreter {:?}: {e}", cfg.python))
    })?;
    drop(worker_end);
    let pid = child.id();
    if let Some(out) = child.stdout.take() {
        forward(out, index, pid);
    }
    if let Some(err) = child.stderr.take() {
        forward(err, index, pid);
    }
    Ok(Spawned {
        child,
        channel: host_end,
    })
}

fn forward(stream: impl Read + Send + 'static, index: usize, pid: u32) {
    let _ = std::thread::Builder::new()
        .name(format!("slither-w{index}-out"))
        .spawn(move || {
            let mut reader = BufReader::with_capacity(64 * 1024, stream);
            let mut line = Vec::new();
            let prefix = format!("[w{index} pid {pid}] ");
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if !line.ends_with(b"\n") {
                            line.push(b'\n');
                        }
                        let mut err = std::io::stderr().lock();
                        let _ = err.write_all(prefix.as_bytes());
                        let _ = err.write_all(&line);
                    }
                }
            }
        });
}

/// Sends `sig` to the worker's whole process group (what it forked goes too).
pub(crate) fn signal_group(pid: u32, sig: i32) {
    if pid > 0 {
        unsafe {
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
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}
