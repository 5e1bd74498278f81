//! The pool: a fixed number of worker slots, each holding one live Python process at a time.
//!
//! ```text
//!  submit(job) ─▶ State (one Mutex) ─ global queue / per-slot pinned queue ─▶ slot outbox ─▶ worker
//!                     ▲                                                               │
//!                     └── reader thread per worker: results, store requests, EOF ◀────┘
//!  supervisor thread: spawns every worker (so the parent-death signal is tied to a thread that lives as long as the
//!                     pool), reaps exits, attributes crashes and timeouts to the batch at the head of the worker's
//!                     queue, requeues batches that never started, restarts with backoff, recycles, stops in stages.
//! ```
//!
//! A worker holds up to `pipeline_depth` batches so it never waits for the host; it runs them in order, so the
//! oldest unanswered batch is the one executing. That is what a crash or a deadline is charged to.

mod outbox;
mod reader;
mod spawn;
mod state;
mod supervisor;
#[cfg(test)]
mod tests;

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::stats::PoolStats;
use crate::store::Store;
pub use state::{Phase, WorkerInfo};
use state::{Queued, State};
use supervisor::Command;

/// What the host asks a worker to run. `payload` is opaque (pickled by the Python layer).
#[derive(Debug, Clone)]
pub struct Job {
    /// The caller's own key for this batch (e.g. its position in the run).
    pub tag: u64,
    pub payload: Arc<Vec<u8>>,
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
    /// The pool stopped (broken or terminated) before the batch ran.
    Aborted(String),
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub batch: u64,
    pub tag: u64,
    pub worker: Option<usize>,
    pub pid: u32,
    pub outcome: Outcome,
    /// Seconds from the moment the batch became its worker's current batch to its answer.
    pub duration: f64,
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
        if !self.cancelled.load(Ordering::Acquire) {
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

pub(crate) struct Shared {
    pub cfg: PoolConfig,
    pub init_payload: Vec<u8>,
    pub state: Mutex<State>,
    pub changed: Condvar,
    pub commands: Sender<Command>,
    pub store: Option<Arc<Store>>,
    pub events: EventBus,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Pool {
    /// Starts the supervisor, which spawns every worker. Use [`Pool::wait_ready`] to wait for their hello.
    pub fn start(cfg: PoolConfig, init_payload: Vec<u8>, store: Option<Arc<Store>>) -> Result<Pool> {
        cfg.validate()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(cfg.workers)),
            cfg,
            init_payload,
            changed: Condvar::new(),
            commands: tx,
            store,
            events: EventBus::default(),
        });
        let sup_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("slither-supervisor".into())
            .spawn(move || supervisor::run(sup_shared, rx))
            .map_err(Error::from)?;
        Ok(Pool {
            shared,
            supervisor: Mutex::new(Some(handle)),
        })
    }

    /// Waits up to `slice` for every worker to be ready. `Ok(true)` when all are, `Ok(false)` to call again.
    pub fn wait_ready(&self, slice: Duration) -> Result<bool> {
        self.wait_until(slice, |st| {
            if let Some(why) = &st.broken {
                return Some(Err(Error::PoolBroken(why.clone())));
            }
            if st.closed {
                return Some(Err(Error::PoolClosed));
            }
            st.slots.iter().all(|s| s.phase == Phase::Ready).then_some(Ok(true))
        })
    }

    /// Waits on the scheduler's condition until `done` has an answer, or `slice` passes (`Ok(false)`).
    fn wait_until(&self, slice: Duration, mut done: impl FnMut(&mut State) -> Option<Result<bool>>) -> Result<bool> {
        let deadline = Instant::now() + slice;
        let mut st = self.shared.lock();
        loop {
            if let Some(answer) = done(&mut st) {
                return answer;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.shared.cfg
    }

    pub fn size(&self) -> usize {
        self.shared.cfg.workers
    }

    pub fn new_run(&self) -> Run {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(RunShared {
            tx,
            cancelled: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_seen: AtomicUsize::new(0),
        });
        Run { shared, rx }
    }

    /// Queues one batch for `run`; returns its pool-wide batch id. Never blocks on a worker.
    pub fn submit(&self, run: &Run, job: Job) -> Result<u64> {
        let mut st = self.shared.lock();
        if let Some(why) = &st.broken {
            return Err(Error::PoolBroken(why.clone()));
        }
        if st.closed {
            return Err(Error::PoolClosed);
        }
        if let Some(pin) = job.pin {
            let slot = st.slots.get(pin.worker).ok_or(Error::NoSuchWorker(pin.worker))?;
            if slot.generation != pin.generation || !slot.phase.accepts_pinned() {
                return Err(Error::SessionLost {
                    worker: pin.worker,
                    generation: pin.generation,
                });
            }
        }
        let n = run.shared.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        run.shared.max_seen.fetch_max(n, Ordering::AcqRel);
        let batch = st.next_batch;
        st.next_batch += 1;
        let q = Queued {
            batch,
            job,
            run: run.shared.clone(),
        };
        st.enqueue(q, &self.shared);
        Ok(batch)
    }

    /// Cancels a run: its completions stop, its batches that no worker has started are dropped, and a worker
    /// running one of its batches is killed and replaced, so an interrupted call leaves no busy worker behind.
    pub fn cancel(&self, run: &Run) {
        run.shared.cancelled.store(true, Ordering::Release);
        let mut st = self.shared.lock();
        st.drop_queued_of(&run.shared);
        for slot in st.slots.iter_mut() {
            let head = slot
                .sent
                .front()
                .filter(|q| Arc::ptr_eq(&q.run, &run.shared))
                .map(|q| q.batch);
            if let (Some(batch), None, Phase::Ready | Phase::Draining) = (head, slot.kill_reason, slot.phase) {
                slot.kill_reason = Some(state::KillReason::Cancelled { batch });
                spawn::signal_group(slot.pid, libc::SIGKILL);
            }
        }
    }

    /// Pins a new session to the least loaded ready worker.
    pub fn open_session(&self) -> Result<Pin> {
        let mut st = self.shared.lock();
        if let Some(why) = &st.broken {
            return Err(Error::PoolBroken(why.clone()));
        }
        if st.closed {
            return Err(Error::PoolClosed);
        }
        let slot = st
            .slots
            .iter_mut()
            .filter(|s| s.phase == Phase::Ready)
            .min_by_key(|s| (s.sessions, s.sent.len() + s.pinned.len(), s.index))
            .ok_or_else(|| Error::PoolBroken("no worker is ready".into()))?;
        slot.sessions += 1;
        Ok(Pin {
            worker: slot.index,
            generation: slot.generation,
        })
    }

    pub fn close_session(&self, pin: Pin) {
        let mut st = self.shared.lock();
        if let Some(slot) = st.slots.get_mut(pin.worker) {
            if slot.generation == pin.generation {
                slot.sessions = slot.sessions.saturating_sub(1);
            }
        }
    }

    /// Whether a pinned session's worker is still the process it was pinned to.
    pub fn session_alive(&self, pin: Pin) -> bool {
        let st = self.shared.lock();
        st.slots
            .get(pin.worker)
            .is_some_and(|s| s.generation == pin.generation && s.phase.accepts_pinned())
    }

    /// One entry per worker slot: index, pid, generation, phase, interpreter.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared.lock().slots.iter().map(|s| s.info()).collect()
    }

    /// Statistics, with resident memory read from the OS now rather than at the last tick.
    pub fn stats(&self) -> PoolStats {
        supervisor::sample_memory(&self.shared, false);
        self.shared.lock().stats()
    }

    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    pub fn event_receiver(&self) -> Receiver<Event> {
        self.shared.events.receiver()
    }

    /// Stops accepting work. Returns once every submitted batch has answered, or after `slice`
    /// (`Ok(false)`: call again). Then call [`Pool::shutdown`].
    pub fn drain(&self, slice: Duration) -> Result<bool> {
        self.wait_until(slice, |st| {
            st.closed = true;
            (st.outstanding() == 0 || st.broken.is_some()).then_some(Ok(true))
        })
    }

    /// Stops every worker: politely (`graceful`: a SHUTDOWN frame first) or at once, then SIGTERM to each
    /// process group, a bounded grace, then SIGKILL. Unanswered batches complete as `Aborted`. Idempotent.
    pub fn shutdown(&self, graceful: bool) {
        let handle = self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else { return };
        self.shared.lock().closed = true;
        let _ = self.shared.commands.send(Command::Stop { graceful });
        let _ = handle.join();
    }

    pub fn is_stopped(&self) -> bool {
        self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}
