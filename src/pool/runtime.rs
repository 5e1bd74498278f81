//! The pool's supervisor thread: one single-threaded tokio runtime, for the pool's whole life.
//!
//! It spawns every worker (here, so the parent-death signal is bound to a thread that outlives them all),
//! runs one task per worker (frames, exit) plus its writer and output tasks, ticks the scheduler at its next
//! deadline (batch and start-up timeouts, restarts, head-of-line steals, the stages of a stop), samples
//! resident memory, and talks to the reaper. Host threads never wait for this thread: they apply their own
//! events to the scheduler and write small frames themselves; they send it only `Stop`.
//!
//! Why tokio: a pool of 256 workers is 256 sockets, pidfds and pipes to watch at once; one event loop
//! watches them all on one thread, where v1 needed four threads per worker and a 10 ms polling tick.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::outbox::Outbox;
use super::reaper::Reaper;
use super::sched::MemoryReading;
use super::spawn::spawn_worker;
use super::template;
use super::worker::{serve, Tail};
use super::Shared;
use crate::stats::read_rss;

pub(crate) enum Command {
    Stop { graceful: bool },
    Spawn { worker: usize, generation: u64 },
}

const MEMORY_EVERY: Duration = Duration::from_millis(200);

pub(crate) fn run(sh: Arc<Shared>, cmds: UnboundedReceiver<Command>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            sh.apply(|s, fx| s.spawn_failed(format!("could not start the supervisor's event loop: {e}"), fx));
            return;
        }
    };
    rt.block_on(supervise(sh, cmds));
}

async fn supervise(sh: Arc<Shared>, mut cmds: UnboundedReceiver<Command>) {
    *sh.reaper.lock().unwrap_or_else(|p| p.into_inner()) = Reaper::start().ok();
    if !sh.cfg.preload.is_empty() {
        // Before any worker starts: with a template that imported the preload, every worker is forked from it.
        if let Err(why) = template::start(&sh) {
            let _ = sh.preload_error.set(why.clone());
            sh.apply(|s, fx| s.spawn_failed(why, fx));
        }
    }
    let mut memory = tokio::time::interval(MEMORY_EVERY);
    memory.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channel_open = true;
    loop {
        let now = Instant::now();
        sh.apply(|s, fx| s.tick(now, fx));
        let (finished, deadline) = {
            let s = sh.lock();
            (s.finished(), s.next_deadline())
        };
        if finished {
            break;
        }
        // Far enough to mean "no deadline"; the loop wakes for commands, exits (through the worker tasks'
        // own scheduler calls) and memory samples anyway.
        let wake = deadline.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            cmd = cmds.recv(), if channel_open => match cmd {
                Some(Command::Stop { graceful }) => {
                    let now = Instant::now();
                    sh.apply(|s, fx| s.stop(graceful, now, fx));
                }
                Some(Command::Spawn { worker, generation }) => spawn_slot(&sh, worker, generation),
                None => {
                    channel_open = false;
                    let now = Instant::now();
                    sh.apply(|s, fx| s.stop(false, now, fx));
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = memory.tick() => sample_memory(&sh, true),
        }
    }
    template::stop(&sh);
    if let Some(reaper) = sh.reaper.lock().unwrap_or_else(|p| p.into_inner()).take() {
        reaper.finish();
    }
}

/// Starts a process in slot `worker` (on this thread: see the module docs) and its task.
pub(crate) fn spawn_slot(sh: &Arc<Shared>, worker: usize, generation: u64) {
    // Forked from the preload template when it is ready; a fresh interpreter otherwise.
    let spawned = match template::fork(sh, worker, generation) {
        Some(sp) => Ok(sp),
        None => spawn_worker(&sh.cfg, worker, generation),
    };
    match spawned {
        Ok(sp) => {
            let pid = sp.pid;
            let outbox = Arc::new(Outbox::new(&sp.channel));
            let control = Arc::new(Outbox::new(&sp.control));
            let tail: Tail = Arc::new(Mutex::new(Default::default()));
            sh.install(
                worker,
                generation,
                pid,
                outbox.clone(),
                control.clone(),
                sp.started_word.clone(),
            );
            sh.reaper_add(pid);
            tokio::spawn(serve(sh.clone(), worker, generation, sp, outbox, control, tail));
            let now = Instant::now();
            sh.apply(|s, fx| s.spawned(worker, generation, pid, now, fx));
        }
        Err(e) => {
            let why = e.to_string();
            sh.apply(|s, fx| s.spawn_failed(why, fx));
        }
    }
}

/// Reads every live worker's resident memory (outside the scheduler's lock). Only the supervisor's own
/// samples (`recycle`) count toward recycling, so reading stats often cannot hasten a recycle.
pub(crate) fn sample_memory(sh: &Arc<Shared>, recycle: bool) {
    let live = sh.lock().live();
    let readings: Vec<_> = live
        .into_iter()
        .filter_map(|(i, g, pid)| {
            let (rss, peak) = read_rss(pid)?;
            let cached = sh.cached_bytes(i, g);
            Some((i, g, MemoryReading { rss, peak, cached }))
        })
        .collect();
    if readings.is_empty() {
        return;
    }
    sh.apply(|s, fx| {
        for (i, g, m) in readings {
            s.memory(i, g, m, recycle, fx);
        }
    });
}
