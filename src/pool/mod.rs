//! The pool: a fixed number of worker slots, each holding one live Python process at a time.
//!
//! ```text
//!  host threads ── submit / cancel / sessions ──▶ Sched (pure state machine, one mutex) ──▶ effects
//!        ▲                                           ▲                                     │ Write: frame, sent
//!        │ Run: completions (crossbeam channel)      │ frames, exits, ticks                │   under the lock
//!        └────────────── Deliver ◀───────────────────┴── supervisor thread: tokio runtime ◀┘ Kill, Spawn, Emit
//!                                                       (one task per worker; see runtime.rs, worker.rs)
//! ```
//!
//! Threads: each pool has exactly one thread of its own (the supervisor), whatever its size. Host threads
//! apply their events to the scheduler themselves and write small frames directly; completions reach them
//! through their run's channel, which they wait on with the interpreter released (in the binding).

mod outbox;
mod reaper;
mod runtime;
mod sched;
#[cfg(test)]
mod sched_tests;
mod spawn;
mod template;
#[cfg(test)]
mod tests;
mod worker;

use crossbeam_channel::{Receiver, Sender};
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::protocol::{self, Segment};
use crate::stats::PoolStats;
use crate::stats::Transfers;
use crate::store::Store;
use outbox::Outbox;
use reaper::Reaper;
use runtime::Command;
use sched::{Effect, Effects, Sched};
pub use sched::{Phase, WorkerInfo};

/// What the host asks a worker to run. `payload` is opaque (pickled by the Python layer).
#[derive(Debug, Clone)]
pub struct Job {
    /// The caller's own key for this batch (e.g. its position in the run).
    pub tag: u64,
    pub payload: Arc<Vec<u8>>,
    /// The shared-memory segment holding the payload's large buffers, sent with every copy of the TASK frame
    /// and kept open until the batch completes (a batch taken back is re-sent with it).
    pub segment: Option<Segment>,
    /// Number of items in the batch, for statistics.
    pub items: u32,
    pub timeout: Option<Duration>,
    pub pin: Option<Pin>,
}

/// Strict affinity: a worker slot and the generation of the process in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub worker: usize,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The worker's RESULT_OK payload.
    Ok(Vec<u8>),
    /// A RESULT_OK payload whose large buffers came in a shared-memory segment.
    OkShared(Vec<u8>, Segment),
    /// The worker's RESULT_ERR payload (a pickled error description).
    Err(Vec<u8>),
    /// The worker process died while running this batch.
    Crashed {
        exit_code: Option<i32>,
        signal: Option<String>,
    },
    /// The batch overran its deadline; its worker was killed and replaced.
    Timeout { seconds: f64 },
    /// The batch was pinned to a worker that died or was replaced before running it.
    SessionLost,
    /// The pool stopped (broken or terminated) or the run was cancelled.
    Aborted(String),
    /// Its worker broke the frame protocol while running it (named); the worker was killed and replaced.
    Protocol(String),
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub batch: u64,
    pub tag: u64,
    pub worker: Option<usize>,
    pub pid: u32,
    pub outcome: Outcome,
    /// Seconds from the moment the worker started the batch to its answer.
    pub duration: f64,
    /// Whether the worker had started the batch.
    pub started: bool,
}

pub(crate) struct RunShared {
    tx: Sender<Completion>,
    cancelled: AtomicBool,
    in_flight: AtomicUsize,
    max_seen: AtomicUsize,
}

impl RunShared {
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn deliver(&self, c: Completion) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !self.is_cancelled() {
            let _ = self.tx.send(c);
        }
    }
}

/// One caller's stream of batches: submit into the pool, receive completions in completion order.
pub struct Run {
    shared: Arc<RunShared>,
    rx: Receiver<Completion>,
}

impl Run {
    /// Waits up to `timeout` for the next completion of this run.
    pub fn next(&self, timeout: Duration) -> Option<Completion> {
        self.rx.recv_timeout(timeout).ok()
    }

    pub fn try_next(&self) -> Option<Completion> {
        self.rx.try_recv().ok()
    }

    /// Batches submitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The most batches this run ever had submitted and unanswered at once.
    pub fn max_in_flight_seen(&self) -> usize {
        self.shared.max_seen.load(Ordering::Acquire)
    }
}

/// The I/O side of a slot, apart from the scheduler's data: how to write to and signal its process.
#[derive(Default)]
struct SlotIo {
    generation: u64,
    pid: u32,
    outbox: Option<Arc<Outbox>>,
    /// Its control channel's: REVOKE and store replies (`protocol::ON_CONTROL`).
    control: Option<Arc<Outbox>>,
    /// Reaped: the pid (and group id) may belong to someone else now; never signal it again.
    reaped: bool,
    /// Its started word (shared with its task, which reads it at the death): its segment cache's bytes.
    word: Option<Arc<OwnedFd>>,
}

pub(crate) struct Shared {
    pub cfg: PoolConfig,
    sched: Mutex<Sched>,
    changed: Condvar,
    /// Threads waiting on `changed`: without any, a change wakes nobody (and costs no system call).
    waiters: AtomicUsize,
    io: Vec<Mutex<SlotIo>>,
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    pub store: Option<Arc<Store>>,
    pub events: EventBus,
    reaper: Mutex<Option<Reaper>>,
    supervisor: OnceLock<ThreadId>,
    /// Payloads by path (in the frame, or in a shared-memory segment), both ways.
    pub transfers: Transfers,
    /// The preload template (None without `preload`), the workers it forked and not yet reaped, and why it
    /// could not start (a configuration error, reported by `wait_ready`).
    warm: Mutex<Option<template::Warm>>,
    forked: Mutex<HashSet<u32>>,
    preload_error: OnceLock<String>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, i: usize) -> MutexGuard<'_, SlotIo> {
        self.io[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one event to the scheduler and carries out its effects. Frames are queued on their workers'
    /// outboxes while the scheduler's lock is held (so their order is the scheduler's) and written after it
    /// is released, like everything else: a send wakes the worker, and the woken process must not find the
    /// scheduler's lock still held by the thread that woke it.
    pub fn apply<T>(self: &Arc<Self>, event: impl FnOnce(&mut Sched, &mut Effects) -> T) -> T {
        let mut fx = Effects::new();
        let mut to_write: Vec<Arc<Outbox>> = Vec::new();
        let (out, rest) = {
            let mut s = self.lock();
            let out = event(&mut s, &mut fx);
            let mut rest = Vec::new();
            for e in fx {
                match e {
                    Effect::Write {
                        worker,
                        generation,
                        kind,
                        id,
                        payload,
                        segment,
                    } => {
                        let io = self.io(worker);
                        if io.generation == generation {
                            let outbox = if protocol::ON_CONTROL.contains(&kind) {
                                &io.control
                            } else {
                                &io.outbox
                            };
                            if let Some(o) = outbox {
                                if o.queue(kind, id, payload, segment) {
                                    to_write.push(o.clone());
                                }
                            }
                        }
                    }
                    other => rest.push(other),
                }
            }
            (out, rest)
        };
        for o in to_write {
            o.write_queued();
        }
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.changed.notify_all();
        }
        for e in rest {
            match e {
                Effect::Deliver { run, completion } => run.deliver(completion),
                Effect::Kill { worker, generation } => self.signal(worker, generation, libc::SIGKILL),
                Effect::Term { worker, generation } => self.signal(worker, generation, libc::SIGTERM),
                Effect::Emit(ev) => self.events.emit(|| ev),
                Effect::Spawn { worker, generation } => {
                    if self.supervisor.get() == Some(&std::thread::current().id()) {
                        runtime::spawn_slot(self, worker, generation);
                    } else {
                        let _ = self.commands.send(Command::Spawn { worker, generation });
                    }
                }
                Effect::Write { .. } => unreachable!("written above"),
            }
        }
        out
    }

    fn signal(&self, worker: usize, generation: u64, sig: i32) {
        let io = self.io(worker);
        if io.generation == generation && !io.reaped {
            spawn::signal_worker(io.pid, sig);
        }
    }

    /// Records the I/O handles of a freshly spawned process.
    fn install(
        &self,
        worker: usize,
        generation: u64,
        pid: u32,
        outbox: Arc<Outbox>,
        control: Arc<Outbox>,
        word: Arc<OwnedFd>,
    ) {
        *self.io(worker) = SlotIo {
            generation,
            pid,
            outbox: Some(outbox),
            control: Some(control),
            reaped: false,
            word: Some(word),
        };
    }

    /// The bytes of shared-memory segments a live worker keeps for reuse (0 if unknown).
    fn cached_bytes(&self, worker: usize, generation: u64) -> u64 {
        let io = self.io(worker);
        match &io.word {
            Some(word) if io.generation == generation => spawn::read_cached_bytes(word).unwrap_or(0),
            _ => 0,
        }
    }

    /// After the process exited (a zombie still): kills what it left in its group and tells the reaper. The
    /// caller reports the exit to the scheduler, then calls [`Shared::reap`].
    fn bury(self: &Arc<Self>, pid: u32) -> (Option<i32>, Option<String>) {
        let status = template::status(self, pid).unwrap_or_else(|| spawn::exit_status(pid));
        // Until the zombie is reaped its group id cannot be reused, so this reaches only its own group.
        unsafe {
            libc::killpg(pid as libc::pid_t, libc::SIGKILL);
        }
        if let Some(r) = self.reaper.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            r.remove(pid);
        }
        status
    }

    /// Reaps the process; signals meant for it are refused from here on (its pid may be reused).
    fn reap(self: &Arc<Self>, worker: usize, generation: u64, pid: u32) {
        let mut io = self.io(worker);
        if io.generation == generation {
            io.reaped = true;
            io.outbox = None;
            io.control = None;
        }
        drop(io);
        if !template::reap(self, pid) {
            spawn::reap(pid);
        }
    }

    /// Tells the reaper about a process group to kill if the host dies.
    fn reaper_add(&self, pgid: u32) {
        if let Some(r) = self.reaper.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            r.add(pgid);
        }
    }

    fn reaper_remove(&self, pgid: u32) {
        if let Some(r) = self.reaper.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            r.remove(pgid);
        }
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// The process that created the pool: a forked child must never use (or stop) it.
    owner: u32,
}

impl Pool {
    /// Starts the supervisor, which spawns every worker. Use [`Pool::wait_ready`] to wait for them.
    pub fn start(cfg: PoolConfig, init_payload: Vec<u8>, store: Option<Arc<Store>>) -> Result<Pool> {
        cfg.validate()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            sched: Mutex::new(Sched::new(cfg.clone(), init_payload, Instant::now())),
            io: (0..cfg.workers).map(|_| Mutex::new(SlotIo::default())).collect(),
            cfg,
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
            commands: tx,
            store,
            events: EventBus::default(),
            reaper: Mutex::new(None),
            supervisor: OnceLock::new(),
            transfers: Transfers::default(),
            warm: Mutex::new(None),
            forked: Mutex::new(HashSet::new()),
            preload_error: OnceLock::new(),
        });
        let sup = shared.clone();
        let handle = std::thread::Builder::new()
            .name("slither-supervisor".into())
            .spawn(move || {
                let _ = sup.supervisor.set(std::thread::current().id());
                runtime::run(sup, rx)
            })
            .map_err(Error::from)?;
        Ok(Pool {
            shared,
            supervisor: Mutex::new(Some(handle)),
            owner: std::process::id(),
        })
    }

    fn owned(&self) -> Result<()> {
        if std::process::id() == self.owner {
            Ok(())
        } else {
            Err(Error::ForkedChild { owner: self.owner })
        }
    }

    fn usable(&self, s: &Sched) -> Result<()> {
        if let Some(why) = &s.broken {
            return Err(Error::PoolBroken(why.clone()));
        }
        if s.stopping {
            return Err(Error::PoolClosed);
        }
        Ok(())
    }

    /// Waits up to `slice` for every worker slot to hold a ready process. `Ok(true)` when all do, `Ok(false)`
    /// to call again. Never true while a slot holds a dead or starting process.
    pub fn wait_ready(&self, slice: Duration) -> Result<bool> {
        self.owned()?;
        self.wait_until(slice, |s| {
            if let Some(why) = self.shared.preload_error.get() {
                return Some(Err(Error::Config(why.clone())));
            }
            if let Some(why) = &s.broken {
                return Some(Err(Error::PoolBroken(why.clone())));
            }
            if s.stopping {
                return Some(Err(Error::PoolClosed));
            }
            s.all_ready().then_some(Ok(true))
        })
    }

    /// Waits on the scheduler's condition until `done` has an answer, or `slice` passes (`Ok(false)`).
    fn wait_until<T>(&self, slice: Duration, mut done: impl FnMut(&mut Sched) -> Option<Result<T>>) -> Result<T>
    where
        T: Default,
    {
        let deadline = Instant::now() + slice;
        let mut s = self.shared.lock();
        loop {
            if let Some(answer) = done(&mut s) {
                return answer;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(T::default());
            }
            // Counted while the lock is held, so a change made after `done` looked cannot miss this waiter.
            self.shared.waiters.fetch_add(1, Ordering::AcqRel);
            s = self
                .shared
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.shared.cfg
    }

    pub fn size(&self) -> usize {
        self.shared.cfg.workers
    }

    /// A new stream of batches. Refused once `close` began (runs opened before may still submit).
    pub fn new_run(&self) -> Result<Run> {
        self.owned()?;
        {
            let s = self.shared.lock();
            self.usable(&s)?;
            if s.closing {
                return Err(Error::PoolClosed);
            }
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(RunShared {
            tx,
            cancelled: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_seen: AtomicUsize::new(0),
        });
        Ok(Run { shared, rx })
    }

    /// Queues one batch for `run`; returns its pool-wide batch id. Never blocks on a worker.
    pub fn submit(&self, run: &Run, job: Job) -> Result<u64> {
        self.owned()?;
        let limit = self.shared.cfg.max_frame_bytes;
        if job.payload.len() as u64 > limit {
            return Err(Error::FrameTooLarge {
                bytes: job.payload.len() as u64,
                limit,
            });
        }
        let rs = run.shared.clone();
        let (bytes, shared) = (job.payload.len() as u64, job.segment.as_ref().map(Segment::size));
        let id = self.shared.apply(|s, fx| {
            self.usable(s)?;
            if let Some(pin) = job.pin {
                if pin.worker >= s.slots.len() {
                    return Err(Error::NoSuchWorker(pin.worker));
                }
                if !s.session_alive(pin.worker, pin.generation) {
                    return Err(Error::SessionLost {
                        worker: pin.worker,
                        generation: pin.generation,
                    });
                }
            }
            let n = rs.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
            rs.max_seen.fetch_max(n, Ordering::AcqRel);
            Ok(s.submit(job, rs, Instant::now(), fx))
        })?;
        self.shared.transfers.count(true, bytes, shared);
        Ok(id)
    }

    /// Cancels a run: its completions stop, its batches that no worker has started are dropped, and a worker
    /// running one of its batches is killed and replaced, so an interrupted call leaves no busy worker behind.
    pub fn cancel(&self, run: &Run) {
        if self.owned().is_err() {
            return;
        }
        run.shared.cancelled.store(true, Ordering::Release);
        let rs = run.shared.clone();
        self.shared.apply(|s, fx| s.cancel(&rs, fx));
    }

    /// Pins a new session to the least loaded ready worker, waiting up to `timeout` for one to be ready
    /// (after a crash or during a recycle none may be for a moment).
    pub fn open_session(&self, timeout: Duration) -> Result<Pin> {
        self.owned()?;
        let got = self.wait_until(timeout, |s| {
            if let Err(e) = self.usable(s) {
                return Some(Err(e));
            }
            s.open_session()
                .map(|(worker, generation)| Ok(Some(Pin { worker, generation })))
        })?;
        got.ok_or_else(|| {
            Error::Timeout(format!(
                "no worker became ready to open a session on within {:.3} s",
                timeout.as_secs_f64()
            ))
        })
    }

    pub fn close_session(&self, pin: Pin) {
        if self.owned().is_ok() {
            self.shared.lock().close_session(pin.worker, pin.generation);
        }
    }

    /// Whether a pinned session's worker is still the process it was pinned to.
    pub fn session_alive(&self, pin: Pin) -> bool {
        self.owned().is_ok() && self.shared.lock().session_alive(pin.worker, pin.generation)
    }

    /// Counts per-item failures found inside an answered batch toward its worker's statistics.
    pub fn record_failures(&self, worker: usize, generation: u64, count: u64) {
        if self.owned().is_ok() {
            self.shared.lock().record_failures(worker, generation, count);
        }
    }

    /// One entry per worker slot: index, pid, generation, phase, interpreter.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.owned()?;
        Ok(self.shared.lock().workers())
    }

    /// Statistics, with resident memory read from the OS now.
    pub fn stats(&self) -> Result<PoolStats> {
        self.owned()?;
        runtime::sample_memory(&self.shared, false);
        let mut stats = self.shared.lock().stats(Instant::now());
        stats.transfers = self.shared.transfers.snapshot();
        Ok(stats)
    }

    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    pub fn event_receiver(&self) -> Receiver<Event> {
        self.shared.events.receiver()
    }

    /// Stops accepting new runs (runs already open may finish). Returns once every submitted batch has
    /// answered, or after `slice` (`Ok(false)`: call again). Then call [`Pool::shutdown`].
    pub fn drain(&self, slice: Duration) -> Result<bool> {
        self.owned()?;
        self.wait_until(slice, |s| {
            s.closing = true;
            (s.outstanding() == 0 || s.broken.is_some() || s.stopping).then_some(Ok(true))
        })
    }

    /// Stops every worker: politely (`graceful`: a SHUTDOWN frame first) or at once, then SIGTERM to each
    /// process and group, a bounded grace, then SIGKILL. Unanswered batches complete as `Aborted`, saying
    /// whether they were running. Idempotent; returns when every worker has been reaped.
    pub fn shutdown(&self, graceful: bool) {
        if self.owned().is_err() {
            return;
        }
        let handle = self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else { return };
        let _ = self.shared.commands.send(Command::Stop { graceful });
        let _ = handle.join();
    }

    pub fn is_stopped(&self) -> bool {
        self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.owned().is_err() {
            // A forked child's copy: its workers, threads and locks are the parent's. Touch nothing.
            std::mem::forget(self.shared.clone());
            return;
        }
        self.shutdown(false);
    }
}
