//! The reader thread of one worker process: it does the hello/init handshake, then hands results to the
//! scheduler and answers store requests. (Frames to the worker go through its outbox.)

use serde::Deserialize;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use super::state::{deliver, Phase};
use super::supervisor::Command;
use super::{Outcome, Shared};
use crate::events::Event;
use crate::protocol::{self, read_frame};

#[derive(Deserialize)]
struct Hello {
    pid: u32,
    python: String,
    gil: bool,
    #[serde(default)]
    free_threaded_build: bool,
}

pub(crate) fn start_reader(sh: Arc<Shared>, index: usize, generation: u64, stream: UnixStream) {
    let _ = std::thread::Builder::new()
        .name(format!("slither-w{index}-rx"))
        .spawn(move || {
            let why = serve(&sh, index, generation, stream);
            let _ = sh.commands.send(Command::Gone { index, generation, why });
        });
}

/// Runs until the worker's channel closes; returns what the worker said last if it failed to start.
fn serve(sh: &Arc<Shared>, index: usize, generation: u64, stream: UnixStream) -> Option<String> {
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    // Handshake: HELLO, then INIT is sent, then READY or INIT_FAILED.
    let hello = match read_frame(&mut r) {
        Ok(Some(f)) if f.kind == protocol::HELLO => f,
        Ok(Some(f)) => return Some(format!("worker sent frame kind {} before its hello", f.kind)),
        _ => return Some("worker exited before its hello".into()),
    };
    let Ok(h) = serde_json::from_slice::<Hello>(&hello.payload) else {
        return Some("worker sent a malformed hello".into());
    };
    {
        let mut st = sh.lock();
        let slot = &mut st.slots[index];
        if slot.generation != generation {
            return None;
        }
        slot.python = h.python;
        slot.gil = h.gil;
        slot.free_threaded_build = h.free_threaded_build;
        if slot.pid != h.pid {
            slot.pid = h.pid;
        }
        slot.write(protocol::INIT, 0, Arc::new(sh.init_payload.clone()));
    }
    match read_frame(&mut r) {
        Ok(Some(f)) if f.kind == protocol::READY => {}
        Ok(Some(f)) if f.kind == protocol::INIT_FAILED => {
            return Some(String::from_utf8_lossy(&f.payload).into_owned());
        }
        Ok(Some(f)) => return Some(format!("worker sent frame kind {} instead of ready", f.kind)),
        _ => return Some("worker exited during start-up (init or imports)".into()),
    }
    {
        let mut st = sh.lock();
        let slot = &mut st.slots[index];
        if slot.generation != generation {
            return None;
        }
        slot.phase = Phase::Ready;
        slot.start_failures = 0;
        let now = Instant::now();
        slot.ready_at = Some(now);
        let startup = (now - slot.spawned_at).as_secs_f64();
        let pid = slot.pid;
        sh.events.emit(|| Event::WorkerReady {
            worker: index,
            pid,
            generation,
            startup_s: startup,
        });
        st.fill(index, sh);
        sh.changed.notify_all();
    }
    loop {
        let frame = match read_frame(&mut r) {
            Ok(Some(f)) => f,
            _ => return None,
        };
        match frame.kind {
            protocol::RESULT_OK | protocol::RESULT_ERR => {
                let outcome = if frame.kind == protocol::RESULT_OK {
                    Outcome::Ok(frame.payload)
                } else {
                    Outcome::Err(frame.payload)
                };
                let done = {
                    let mut st = sh.lock();
                    if st.slots[index].generation != generation {
                        return None;
                    }
                    let done = st.answered(index, frame.id, outcome, sh);
                    sh.changed.notify_all();
                    done
                };
                deliver(done.into_iter().collect());
            }
            protocol::STORE_REQ => {
                let reply = match &sh.store {
                    Some(store) => store.handle_worker_request(&frame.payload),
                    None => crate::store::no_store_reply(),
                };
                let st = sh.lock();
                let slot = &st.slots[index];
                if slot.generation == generation {
                    slot.write(protocol::STORE_REPLY, frame.id, Arc::new(reply));
                }
            }
            _ => return None,
        }
    }
}
