//! The reaper: a tiny `/bin/sh` process per pool that outlives the host only to clean up after it.
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

// POSIX sh, not Python: it starts in about a millisecond where an interpreter takes tens, on the critical
// path of every pool's start. `groups` holds " pgid pgid ... " (numbers written by the host only).
const SCRIPT: &str = r#"
trap '' INT TERM HUP PIPE QUIT
groups=' '
while IFS= read -r line; do
  g=${line#?}
  case $line in
    +*) groups="$groups$g ";;
    -*) case $groups in *" $g "*) groups="${groups%% "$g" *} ${groups#* "$g" }";; esac;;
  esac
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
"#;

pub(crate) struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    /// Starts the reaper (`/bin/sh`).
    pub fn start() -> std::io::Result<Reaper> {
        let mut cmd = Command::new("/bin/sh");
        // process_group rather than a pre_exec setpgid: without a pre_exec closure std can use posix_spawn
        // (vfork-like) instead of fork, which copies the host's page tables.
        cmd.args(["-c", SCRIPT])
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
