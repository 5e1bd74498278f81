//! The reaper: a tiny process per pool that outlives the host only to clean up after it.
//!
//! Workers die with the host through the parent-death signal, but what a worker forked (a `Popen`, a
//! `multiprocessing` child, `os.system("... &")`) does not. The reaper holds the read end of a pipe whose
//! write end only the host holds; the host tells it each worker's process group as it starts and ends.
//! When the host is gone, however it went (even SIGKILL), the pipe reaches end of file and the reaper
//! SIGKILLs every group still listed, then exits. It runs in its own process group and ignores the signals
//! a terminal sends, so a Ctrl-C aimed at the host cannot take it first. Processes that left their worker's
//! group (`setsid`, `setpgid`) are out of its reach.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

const SCRIPT: &str = r#"
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
groups = set()
for line in sys.stdin.buffer:
    op, pgid = line[:1], line[1:].strip()
    if op == b"+":
        groups.add(int(pgid))
    elif op == b"-":
        groups.discard(int(pgid))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"#;

pub(crate) struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    /// Starts the reaper with `python` (any interpreter will do: it uses only the standard library).
    pub fn start(python: &str) -> std::io::Result<Reaper> {
        let mut cmd = Command::new(python);
        // process_group rather than a pre_exec setpgid: without a pre_exec closure std can use posix_spawn
        // (vfork-like) instead of fork, which copies the host's page tables; that took milliseconds on the
        // critical path of every pool's start.
        cmd.args(["-S", "-E", "-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        Ok(Reaper { child, stdin })
    }

    fn tell(&mut self, line: String) {
        if let Some(w) = self.stdin.as_mut() {
            if w.write_all(line.as_bytes()).is_err() {
                self.stdin = None;
            }
        }
    }

    /// A worker started: its process group is `pid`.
    pub fn add(&mut self, pid: u32) {
        self.tell(format!("+{pid}\n"));
    }

    /// A worker's group was killed; its id may be reused once the worker is reaped.
    pub fn remove(&mut self, pid: u32) {
        self.tell(format!("-{pid}\n"));
    }

    /// The pool stopped: the reaper exits (killing any group still listed) and is reaped.
    pub fn finish(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}
