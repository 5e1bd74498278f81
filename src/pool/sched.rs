//! The scheduler: a pure state machine. Each method takes one event (a submit, a frame's meaning, a process
//! exit, the passing of time) and pushes the effects it calls for into a list; it does no I/O and reads no
//! clock (`now` is an argument), so its rules are unit-tested without starting a process (`sched_tests.rs`).
//!
//! ```text
//!   submit ─▶ global queue / a worker's pinned queue ─▶ sent (written, in order) ─▶ started ─▶ answered
//!                 ▲                                         │ REVOKE ... REVOKED (stolen back)
//!                 └──────── requeued: never started ◀───────┘ process exited
//! ```
//!
//! Rules:
//! - **Running, as far as the host knows**: a worker runs its batches in the order written, so the first one
//!   it holds runs from when it was written to the idle worker or from when the batch ahead answered; the
//!   worker sends no frame when it begins one (timeouts, steals and cancellation count from that moment).
//! - **Attribution**: a batch is charged with its worker's death only if the worker's started word (shared
//!   memory it writes each TASK frame's number into before running it, read after the death) says it had
//!   begun it. Every other batch goes back to the queue untouched (or, when pinned to a session, fails as
//!   `SessionLost`: the state it needed died with the worker).
//! - **No head-of-line wait**: a worker holds up to `pipeline_depth` batches so it never waits for the host;
//!   when another worker is idle with nothing queued and a held batch waits behind a run longer than
//!   `steal_after`, the held batch is revoked and given to the idle worker.
//! - **Crash loop**: only start-up failures a worker causes itself (init raised, exited or faulted before
//!   ready) count toward `crash_loop_limit`; kills from outside are replaced with backoff and never break
//!   the pool.
//! - **Strict frames**: a frame that cannot be valid (a result out of order, a STARTED or REVOKED nobody
//!   asked for, a handshake frame out of order) kills and replaces that worker with a
//!   protocol error; nothing else waits on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Completion, Job, Outcome, RunShared};
use crate::config::PoolConfig;
use crate::events::Event;
use crate::protocol;
use crate::protocol::Segment;
use crate::stats::{PoolStats, WorkerStats};

/// A batch the core holds, not yet answered.
pub(crate) struct Queued {
    pub batch: u64,
    pub job: Job,
    pub run: Arc<RunShared>,
}

/// A batch written to a worker's channel.
struct Sent {
    q: Queued,
    /// When it began running, as far as the host knows: a worker runs its batches in the order they were
    /// written, so the first one it holds runs from when it was written to an idle worker or from when the
    /// batch before it answered (or, after a lost revoke race, from the worker's STARTED). Whether it had
    /// really begun when the worker died is the worker's started word (`Exit::started_frame`).
    started: Option<Instant>,
    /// A REVOKE is on its way; the worker answers REVOKED (given back) or STARTED (too late).
    revoking: bool,
    /// Which TASK frame to this process carried it (from 1): what a REVOKE names.
    frame: u64,
}

impl Sent {
    /// The REVOKE frame that asks for this copy back.
    fn revoke(&self, worker: usize, generation: u64) -> Effect {
        Effect::Write {
            worker,
            generation,
            kind: protocol::REVOKE,
            id: self.q.batch,
            payload: Arc::new(self.frame.to_le_bytes().to_vec()),
            segment: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Spawned; waiting for hello and init.
    Starting,
    Ready,
    /// Finishing what it holds, then replaced (recycling).
    Draining,
    /// No live process; a replacement is due (possibly after a backoff).
    Dead,
    /// The pool stopped.
    Stopped,
}

impl Phase {
    pub fn accepts_pinned(self) -> bool {
        matches!(self, Phase::Ready | Phase::Draining)
    }
}

/// Why the supervisor itself ended a worker, so that its exit is not taken for a crash.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KillReason {
    Timeout { seconds: f64, batch: u64 },
    Cancelled { batch: u64 },
    Recycle,
    StartupTimeout,
    Protocol(String),
    Stop,
}

/// What a worker says about itself in its hello.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Hello {
    pub pid: u32,
    pub python: String,
    pub gil: bool,
    #[serde(default)]
    pub free_threaded_build: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerInfo {
    pub index: usize,
    pub pid: u32,
    pub generation: u64,
    pub state: Phase,
    pub python: String,
    pub gil: bool,
    pub free_threaded_build: bool,
}

/// How a worker process ended, as the supervisor saw it.
#[derive(Debug, Default)]
pub(crate) struct Exit {
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// Its last lines on stderr.
    pub stderr_tail: String,
    /// The traceback of its INIT_FAILED frame, if it sent one.
    pub init_failure: Option<String>,
    /// The number of the last TASK frame it began running, as it wrote it to its started word (None if that
    /// could not be read: what the host inferred is used then).
    pub started_frame: Option<u64>,
}

/// What the caller must do for the state machine, in order.
pub(crate) enum Effect {
    /// Write a frame on worker `worker`'s channel (only if it still holds process `generation`).
    Write {
        worker: usize,
        generation: u64,
        kind: u8,
        id: u64,
        payload: Arc<Vec<u8>>,
        /// Sent with the frame (SCM_RIGHTS), if the payload's buffers live in a shared-memory segment.
        segment: Option<Segment>,
    },
    /// Hand a completion to its run.
    Deliver {
        run: Arc<RunShared>,
        completion: Completion,
    },
    /// SIGKILL the worker process and its process group (if slot `worker` still holds `generation`).
    Kill {
        worker: usize,
        generation: u64,
    },
    /// SIGTERM the worker process and its process group (staged stop).
    Term {
        worker: usize,
        generation: u64,
    },
    /// Start a process in slot `worker` as `generation`.
    Spawn {
        worker: usize,
        generation: u64,
    },
    Emit(Event),
}

pub(crate) type Effects = Vec<Effect>;

pub(crate) struct Slot {
    pub index: usize,
    pub generation: u64,
    pub phase: Phase,
    pub pid: u32,
    hello: Hello,
    sent: VecDeque<Sent>,
    pinned: VecDeque<Queued>,
    spawned_at: Instant,
    ready_at: Option<Instant>,
    kill: Option<KillReason>,
    start_failures: u32,
    restart_at: Option<Instant>,
    pub sessions: usize,
    batches: u64,
    items: u64,
    failures: u64,
    restarts: u64,
    recycles: u64,
    batches_this_process: u64,
    /// TASK frames written to this process: the number a REVOKE names its frame by.
    tasks_written: u64,
    /// Batches that answered while a REVOKE was on its way: the worker's STARTED (too late) may follow.
    late: Vec<u64>,
    rss: u64,
    peak_rss: u64,
    mem_over: u32,
    term_sent: bool,
}

impl Slot {
    fn new(index: usize, now: Instant) -> Slot {
        Slot {
            index,
            generation: 0,
            phase: Phase::Dead,
            pid: 0,
            hello: Hello::default(),
            sent: VecDeque::new(),
            pinned: VecDeque::new(),
            spawned_at: now,
            ready_at: None,
            kill: None,
            start_failures: 0,
            restart_at: Some(now),
            sessions: 0,
            batches: 0,
            items: 0,
            failures: 0,
            restarts: 0,
            recycles: 0,
            batches_this_process: 0,
            tasks_written: 0,
            late: Vec::new(),
            rss: 0,
            peak_rss: 0,
            mem_over: 0,
            term_sent: false,
        }
    }

    /// A live process that has not been told to go.
    fn alive(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Ready | Phase::Draining) && self.pid > 0
    }

    fn running(&self) -> Option<&Sent> {
        self.sent.iter().find(|s| s.started.is_some())
    }

    fn idle(&self) -> bool {
        self.phase == Phase::Ready && self.sent.is_empty() && self.pinned.is_empty() && self.kill.is_none()
    }

    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            index: self.index,
            pid: self.pid,
            generation: self.generation,
            state: self.phase,
            python: self.hello.python.clone(),
            gil: self.hello.gil,
            free_threaded_build: self.hello.free_threaded_build,
        }
    }
}

/// One resident-memory reading of a worker, in bytes (see [`Sched::memory`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MemoryReading {
    pub rss: u64,
    pub peak: u64,
    pub cached: u64,
}

pub(crate) struct Sched {
    cfg: PoolConfig,
    init_payload: Arc<Vec<u8>>,
    pub slots: Vec<Slot>,
    queue: VecDeque<Queued>,
    next_batch: u64,
    /// No new runs (close() began); runs already open may still submit.
    pub closing: bool,
    pub stopping: bool,
    pub broken: Option<String>,
    max_outstanding: usize,
    stop_started: Option<Instant>,
    graceful: bool,
}

fn describe_exit(exit_code: Option<i32>, signal: &Option<String>) -> String {
    match (signal, exit_code) {
        (Some(s), _) => format!("killed by {s}"),
        (None, Some(c)) => format!("exited with code {c}"),
        _ => "exited".to_string(),
    }
}

/// Signals a process raises by itself when it faults (as opposed to being killed from outside).
fn self_inflicted(signal: &str) -> bool {
    matches!(
        signal,
        "SIGSEGV" | "SIGBUS" | "SIGFPE" | "SIGILL" | "SIGABRT" | "SIGSYS" | "SIGTRAP"
    )
}

impl Sched {
    pub fn new(cfg: PoolConfig, init_payload: Vec<u8>, now: Instant) -> Sched {
        Sched {
            slots: (0..cfg.workers).map(|i| Slot::new(i, now)).collect(),
            cfg,
            init_payload: Arc::new(init_payload),
            queue: VecDeque::new(),
            next_batch: 1,
            closing: false,
            stopping: false,
            broken: None,
            max_outstanding: 0,
            stop_started: None,
            graceful: false,
        }
    }

    /// Batches submitted and not answered, wherever they are.
    pub fn outstanding(&self) -> usize {
        self.queue.len() + self.slots.iter().map(|s| s.sent.len() + s.pinned.len()).sum::<usize>()
    }

    pub fn all_ready(&self) -> bool {
        self.slots.iter().all(|s| s.phase == Phase::Ready)
    }

    /// Every process gone after a stop.
    pub fn finished(&self) -> bool {
        self.stopping && self.slots.iter().all(|s| !s.alive())
    }

    fn completion(
        q: &Queued,
        worker: Option<usize>,
        pid: u32,
        outcome: Outcome,
        duration: f64,
        started: bool,
    ) -> Completion {
        Completion {
            batch: q.batch,
            tag: q.job.tag,
            worker,
            pid,
            outcome,
            duration,
            started,
        }
    }

    fn deliver(fx: &mut Effects, q: Queued, c: Completion) {
        fx.push(Effect::Deliver {
            run: q.run,
            completion: c,
        });
    }

    // -- submission ------------------------------------------------------------------------------------------

    /// Takes a batch: written at once to the least loaded ready worker with room, else queued.
    pub fn submit(&mut self, job: Job, run: Arc<RunShared>, now: Instant, fx: &mut Effects) -> u64 {
        let batch = self.next_batch;
        self.next_batch += 1;
        let q = Queued { batch, job, run };
        match q.job.pin {
            Some(pin) => {
                self.slots[pin.worker].pinned.push_back(q);
                self.fill(pin.worker, now, fx);
            }
            None => {
                let (depth, max) = (self.cfg.pipeline_depth, self.cfg.max_tasks_per_worker);
                let best = self
                    .slots
                    .iter()
                    .filter(|s| s.phase == Phase::Ready && s.kill.is_none() && has_room(s, depth, max))
                    .min_by_key(|s| (s.sent.len(), s.index))
                    .map(|s| s.index);
                match best {
                    Some(i) => self.send(i, q, now, fx),
                    None => self.queue.push_back(q),
                }
            }
        }
        self.max_outstanding = self.max_outstanding.max(self.outstanding());
        batch
    }

    /// Tops up worker `i`'s channel from its pinned queue, then from the global queue.
    fn fill(&mut self, i: usize, now: Instant, fx: &mut Effects) {
        let (depth, max) = (self.cfg.pipeline_depth, self.cfg.max_tasks_per_worker);
        loop {
            let slot = &mut self.slots[i];
            if slot.kill.is_some() || !slot.phase.accepts_pinned() || !has_room(slot, depth, max) {
                return;
            }
            let next = match slot.pinned.pop_front() {
                Some(q) => q,
                None if slot.phase == Phase::Ready => match self.queue.pop_front() {
                    Some(q) => q,
                    None => return,
                },
                None => return,
            };
            self.send(i, next, now, fx);
        }
    }

    fn fill_all(&mut self, now: Instant, fx: &mut Effects) {
        // Idle workers first, so requeued work goes where it runs at once.
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        order.sort_by_key(|&i| self.slots[i].sent.len());
        for i in order {
            self.fill(i, now, fx);
        }
    }

    fn send(&mut self, i: usize, q: Queued, now: Instant, fx: &mut Effects) {
        let slot = &mut self.slots[i];
        fx.push(Effect::Write {
            worker: i,
            generation: slot.generation,
            kind: protocol::TASK,
            id: q.batch,
            payload: q.job.payload.clone(),
            segment: q.job.segment.clone(),
        });
        slot.tasks_written += 1;
        slot.sent.push_back(Sent {
            q,
            started: None,
            revoking: false,
            frame: slot.tasks_written,
        });
        Self::begin_head(slot, now, fx);
    }

    /// The worker's first batch begins when nothing is ahead of it (see [`Sent::started`]); one being revoked
    /// waits for the worker's answer instead.
    fn begin_head(slot: &mut Slot, now: Instant, fx: &mut Effects) {
        let Some(s) = slot.sent.front_mut() else { return };
        if s.started.is_some() || s.revoking {
            return;
        }
        s.started = Some(now);
        fx.push(Effect::Emit(Event::BatchStarted {
            batch: s.q.batch,
            worker: slot.index,
            items: s.q.job.items,
        }));
        if s.q.run.is_cancelled() && slot.kill.is_none() {
            // Its run was cancelled while it waited behind another batch: it would run now, so it is killed
            // like a cancelled batch that had started.
            slot.kill = Some(KillReason::Cancelled { batch: s.q.batch });
            fx.push(Effect::Kill {
                worker: slot.index,
                generation: slot.generation,
            });
        }
    }

    /// A run was cancelled: its queued batches are dropped, its held batches revoked, and a worker running one
    /// of its batches is killed (and replaced), so an interrupted call leaves no busy worker behind.
    pub fn cancel(&mut self, run: &Arc<RunShared>, fx: &mut Effects) {
        let mine = |q: &Queued| Arc::ptr_eq(&q.run, run);
        let aborted = |q: &Queued| Self::completion(q, None, 0, Outcome::Aborted("cancelled".into()), 0.0, false);
        let mut dropped = Vec::new();
        take_matching(&mut self.queue, mine, &mut dropped);
        for slot in self.slots.iter_mut() {
            take_matching(&mut slot.pinned, mine, &mut dropped);
            for s in slot.sent.iter_mut().filter(|s| mine(&s.q)) {
                match s.started {
                    Some(_) if slot.kill.is_none() => {
                        slot.kill = Some(KillReason::Cancelled { batch: s.q.batch });
                        fx.push(Effect::Kill {
                            worker: slot.index,
                            generation: slot.generation,
                        });
                    }
                    None if !s.revoking && slot.kill.is_none() => {
                        s.revoking = true;
                        fx.push(s.revoke(slot.index, slot.generation));
                    }
                    _ => {}
                }
            }
        }
        for q in dropped {
            let c = aborted(&q);
            Self::deliver(fx, q, c);
        }
    }

    // -- a worker's life ---------------------------------------------------------------------------------------

    /// The runtime started process `pid` in slot `i` as `generation` (after an `Effect::Spawn`).
    pub fn spawned(&mut self, i: usize, generation: u64, pid: u32, now: Instant, fx: &mut Effects) {
        let slot = &mut self.slots[i];
        slot.generation = generation;
        slot.pid = pid;
        slot.phase = Phase::Starting;
        slot.spawned_at = now;
        slot.ready_at = None;
        slot.kill = None;
        slot.batches_this_process = 0;
        slot.tasks_written = 0;
        slot.late.clear();
        slot.mem_over = 0;
        slot.rss = 0;
        slot.term_sent = false;
        slot.hello = Hello::default();
        fx.push(Effect::Emit(Event::WorkerStarted {
            worker: i,
            pid,
            generation,
        }));
        if self.stopping {
            self.slots[i].kill = Some(KillReason::Stop);
            fx.push(Effect::Kill { worker: i, generation });
        }
    }

    /// The interpreter itself cannot be started: retrying would not help.
    pub fn spawn_failed(&mut self, why: String, fx: &mut Effects) {
        self.set_broken(why, fx);
    }

    fn current(&self, i: usize, generation: u64) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.generation == generation && s.alive())
    }

    pub fn hello(&mut self, i: usize, generation: u64, hello: Hello, fx: &mut Effects) {
        if !self.current(i, generation) {
            return;
        }
        let slot = &mut self.slots[i];
        if slot.phase != Phase::Starting || slot.hello.pid != 0 {
            return self.violation(i, generation, "the worker sent a second HELLO".into(), fx);
        }
        slot.hello = hello;
        fx.push(Effect::Write {
            worker: i,
            generation,
            kind: protocol::INIT,
            id: 0,
            payload: self.init_payload.clone(),
            segment: None,
        });
    }

    pub fn ready(&mut self, i: usize, generation: u64, now: Instant, fx: &mut Effects) {
        if !self.current(i, generation) {
            return;
        }
        let slot = &mut self.slots[i];
        if slot.phase != Phase::Starting || slot.hello.pid == 0 {
            return self.violation(i, generation, "the worker sent READY out of turn".into(), fx);
        }
        slot.phase = Phase::Ready;
        slot.start_failures = 0;
        slot.ready_at = Some(now);
        fx.push(Effect::Emit(Event::WorkerReady {
            worker: i,
            pid: slot.pid,
            generation,
            startup_s: (now - slot.spawned_at).as_secs_f64(),
        }));
        self.fill_all(now, fx);
    }

    /// The worker's answer to a REVOKE that came too late: it had taken batch `id` and runs (or ran) it.
    pub fn started(&mut self, i: usize, generation: u64, id: u64, now: Instant, fx: &mut Effects) {
        if !self.current(i, generation) {
            return;
        }
        let slot = &mut self.slots[i];
        if let Some(k) = slot.late.iter().position(|&b| b == id) {
            // It answered before this STARTED came (the worker's threads write both): nothing more to do.
            slot.late.swap_remove(k);
            return;
        }
        let Some(pos) = slot.sent.iter().position(|s| s.q.batch == id && s.revoking) else {
            let why = format!("the worker said it started batch {id}, which it was not asked to give back");
            return self.violation(i, generation, why, fx);
        };
        if pos != 0 {
            let why = format!(
                "the worker said it started batch {id} while batch {} had not answered",
                slot.sent[0].q.batch
            );
            return self.violation(i, generation, why, fx);
        }
        slot.sent[0].revoking = false;
        Self::begin_head(slot, now, fx);
    }

    /// A worker answered batch `id` (RESULT_OK / RESULT_ERR).
    pub fn answered(&mut self, i: usize, generation: u64, id: u64, outcome: Outcome, now: Instant, fx: &mut Effects) {
        if !self.current(i, generation) {
            return;
        }
        let slot = &mut self.slots[i];
        if slot.sent.front().is_none_or(|s| s.q.batch != id) {
            let why = format!("the worker sent a result for batch {id}, which it was not running");
            return self.violation(i, generation, why, fx);
        }
        let s = slot.sent.pop_front().expect("checked above");
        if s.revoking {
            // It lost the revoke race; the worker's STARTED for it may still come.
            slot.late.push(id);
        }
        let duration = s.started.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0);
        slot.batches += 1;
        slot.batches_this_process += 1;
        slot.items += s.q.job.items as u64;
        let ok = matches!(outcome, Outcome::Ok(_) | Outcome::OkShared(..));
        if !ok {
            slot.failures += 1;
        }
        fx.push(Effect::Emit(Event::BatchFinished {
            batch: id,
            worker: i,
            items: s.q.job.items,
            ok,
            duration_s: duration,
        }));
        // The batch behind it runs now (its start is reported after this one's end).
        Self::begin_head(slot, now, fx);
        if let Some(max) = self.cfg.max_tasks_per_worker {
            if slot.phase == Phase::Ready && slot.batches_this_process >= max && slot.sessions == 0 {
                slot.phase = Phase::Draining;
            }
        }
        let pid = slot.pid;
        let c = Self::completion(&s.q, Some(i), pid, outcome, duration, true);
        Self::deliver(fx, s.q, c);
        self.fill(i, now, fx);
        self.finish_drain(i, fx);
        self.steal(now, fx);
    }

    /// The worker gave batch `id` back unstarted.
    pub fn revoked(&mut self, i: usize, generation: u64, id: u64, now: Instant, fx: &mut Effects) {
        if !self.current(i, generation) {
            return;
        }
        let slot = &mut self.slots[i];
        let Some(pos) = slot
            .sent
            .iter()
            .position(|s| s.q.batch == id && s.revoking && s.started.is_none())
        else {
            let why = format!("the worker gave back batch {id}, which was not being revoked");
            return self.violation(i, generation, why, fx);
        };
        let s = slot.sent.remove(pos).expect("position is valid");
        Self::begin_head(slot, now, fx);
        if s.q.run.is_cancelled() {
            let c = Self::completion(
                &s.q,
                Some(i),
                slot.pid,
                Outcome::Aborted("cancelled".into()),
                0.0,
                false,
            );
            Self::deliver(fx, s.q, c);
        } else {
            fx.push(Effect::Emit(Event::BatchRequeued {
                batch: id,
                worker: i,
                reason: "given back unstarted for an idle worker".into(),
            }));
            self.queue.push_front(s.q);
        }
        // Only idle workers take it now: pipelined behind another long run it would wait (and be stolen) again.
        for w in 0..self.slots.len() {
            if self.slots[w].idle() {
                self.fill(w, now, fx);
            }
        }
        self.finish_drain(i, fx);
        self.steal(now, fx);
    }

    /// A frame that cannot be valid: the worker is killed and replaced; its running batch fails with `why`.
    pub fn violation(&mut self, i: usize, generation: u64, why: String, fx: &mut Effects) {
        if !self.current(i, generation) {
            return;
        }
        let slot = &mut self.slots[i];
        if slot.kill.is_none() || slot.kill == Some(KillReason::Recycle) {
            slot.kill = Some(KillReason::Protocol(why));
            fx.push(Effect::Kill {
                worker: slot.index,
                generation: slot.generation,
            });
        }
    }

    /// The process in slot `i` exited (seen at its exit, with its status). Charges the batch it was running,
    /// requeues what it had not started, and schedules the replacement.
    pub fn exited(&mut self, i: usize, generation: u64, exit: Exit, now: Instant, fx: &mut Effects) {
        let Exit {
            exit_code,
            signal,
            stderr_tail,
            init_failure,
            started_frame,
        } = exit;
        let Some(slot) = self.slots.get_mut(i) else { return };
        if slot.generation != generation || !slot.alive() {
            return;
        }
        let pid = slot.pid;
        let was = slot.phase;
        let kill = slot.kill.take();
        slot.phase = Phase::Dead;
        let exit_text = describe_exit(exit_code, &signal);
        let reason = match &kill {
            Some(KillReason::Timeout { .. }) => "batch timeout".to_string(),
            Some(KillReason::Cancelled { .. }) => "its batch was cancelled".to_string(),
            Some(KillReason::Recycle) => "recycled".to_string(),
            Some(KillReason::StartupTimeout) => "start-up timeout".to_string(),
            Some(KillReason::Protocol(why)) => format!("protocol error: {why}"),
            Some(KillReason::Stop) => "pool stopping".to_string(),
            None => exit_text.clone(),
        };
        fx.push(Effect::Emit(Event::WorkerExited {
            worker: i,
            pid,
            generation,
            exit_code,
            signal: signal.clone(),
            reason: reason.clone(),
        }));
        // The batch it was running, if any, and what that costs it.
        let sent: Vec<Sent> = slot.sent.drain(..).collect();
        for s in sent {
            // The worker's own word decides; without it, what the host inferred.
            let began = match started_frame {
                Some(n) => s.frame <= n,
                None => s.started.is_some(),
            };
            if !began {
                // Never started: untouched.
                self.requeue_or_lose(i, pid, s.q, fx);
                continue;
            }
            let started = s.started.unwrap_or(now);
            let duration = (now - started).as_secs_f64();
            let outcome = match &kill {
                Some(KillReason::Timeout { seconds, batch }) if *batch == s.q.batch => {
                    Some(Outcome::Timeout { seconds: *seconds })
                }
                Some(KillReason::Cancelled { batch }) if *batch == s.q.batch => {
                    Some(Outcome::Aborted("the call was cancelled".into()))
                }
                Some(KillReason::Protocol(why)) => Some(Outcome::Protocol(why.clone())),
                Some(KillReason::Stop) => Some(Outcome::Aborted("the pool was terminated while it ran".into())),
                // A kill meant for another batch, or a recycle: this one is innocent.
                Some(_) => None,
                None => Some(Outcome::Crashed {
                    exit_code,
                    signal: signal.clone(),
                }),
            };
            let slot = &mut self.slots[i];
            match outcome {
                Some(outcome) => {
                    slot.failures += 1;
                    slot.batches += 1;
                    slot.items += s.q.job.items as u64;
                    fx.push(Effect::Emit(Event::BatchFailed {
                        batch: s.q.batch,
                        worker: i,
                        items: s.q.job.items,
                        cause: reason.clone(),
                        duration_s: duration,
                    }));
                    let c = Self::completion(&s.q, Some(i), pid, outcome, duration, true);
                    Self::deliver(fx, s.q, c);
                }
                None => self.requeue_or_lose(i, pid, s.q, fx),
            }
        }
        let slot = &mut self.slots[i];
        let pinned: Vec<Queued> = slot.pinned.drain(..).collect();
        for q in pinned {
            let c = Self::completion(&q, Some(i), pid, Outcome::SessionLost, 0.0, false);
            Self::deliver(fx, q, c);
        }
        let slot = &mut self.slots[i];
        slot.sessions = 0;
        if self.stopping {
            slot.phase = Phase::Stopped;
        } else if was == Phase::Starting {
            let own_fault = init_failure.is_some()
                || kill.is_none() && signal.as_deref().is_none_or(self_inflicted)
                || matches!(kill, Some(KillReason::StartupTimeout | KillReason::Protocol(_)));
            let mut detail = init_failure.unwrap_or_else(|| reason.clone());
            if !stderr_tail.trim().is_empty() && !detail.contains(stderr_tail.trim()) {
                detail = format!("{}; its last output:\n{}", detail.trim_end(), stderr_tail.trim_end());
            }
            if own_fault {
                slot.start_failures += 1;
                if slot.start_failures >= self.cfg.crash_loop_limit {
                    let msg = format!(
                        "worker {i} failed to start {} times in a row; the last attempt: {}",
                        slot.start_failures,
                        detail.trim_end()
                    );
                    return self.set_broken(msg, fx);
                }
            }
            let failures = slot.start_failures.max(1);
            slot.restart_at = Some(now + backoff(&self.cfg, failures));
        } else {
            if kill == Some(KillReason::Recycle) {
                slot.recycles += 1;
            } else {
                slot.restarts += 1;
            }
            slot.restart_at = Some(now);
            fx.push(Effect::Emit(Event::WorkerReplaced {
                worker: i,
                old_pid: pid,
                generation,
                reason,
            }));
        }
        self.fill_all(now, fx);
        self.respawn_due(now, fx);
    }

    fn requeue_or_lose(&mut self, i: usize, pid: u32, q: Queued, fx: &mut Effects) {
        if q.run.is_cancelled() {
            let c = Self::completion(&q, Some(i), pid, Outcome::Aborted("cancelled".into()), 0.0, false);
            return Self::deliver(fx, q, c);
        }
        if self.stopping {
            let c = Self::completion(
                &q,
                Some(i),
                pid,
                Outcome::Aborted("the pool was stopped before it ran".into()),
                0.0,
                false,
            );
            return Self::deliver(fx, q, c);
        }
        if q.job.pin.is_some() {
            let c = Self::completion(&q, Some(i), pid, Outcome::SessionLost, 0.0, false);
            return Self::deliver(fx, q, c);
        }
        fx.push(Effect::Emit(Event::BatchRequeued {
            batch: q.batch,
            worker: i,
            reason: "its worker died before running it".into(),
        }));
        // Ahead of everything queued later, in the order it was submitted.
        let pos = self
            .queue
            .iter()
            .position(|o| o.batch > q.batch)
            .unwrap_or(self.queue.len());
        self.queue.insert(pos, q);
    }

    fn set_broken(&mut self, why: String, fx: &mut Effects) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(why.clone());
        fx.push(Effect::Emit(Event::PoolBroken { reason: why.clone() }));
        self.abort_all(&why, fx);
        for slot in self.slots.iter_mut().filter(|s| s.alive()) {
            slot.kill = Some(KillReason::Stop);
            fx.push(Effect::Kill {
                worker: slot.index,
                generation: slot.generation,
            });
        }
    }

    /// Fails everything not yet answered (pool broken or stopped). Batches a worker is running stay until it
    /// exits, so that their completion says they were killed mid-run.
    fn abort_all(&mut self, why: &str, fx: &mut Effects) {
        let mut lost: Vec<(Queued, Option<usize>, u32)> = self.queue.drain(..).map(|q| (q, None, 0)).collect();
        for s in &mut self.slots {
            let pid = s.pid;
            lost.extend(s.pinned.drain(..).map(|q| (q, Some(s.index), pid)));
            let mut kept = VecDeque::new();
            for sent in s.sent.drain(..) {
                if sent.started.is_some() && s.pid > 0 {
                    kept.push_back(sent);
                } else {
                    lost.push((sent.q, Some(s.index), pid));
                }
            }
            s.sent = kept;
        }
        for (q, worker, pid) in lost {
            let c = Self::completion(&q, worker, pid, Outcome::Aborted(why.to_string()), 0.0, false);
            Self::deliver(fx, q, c);
        }
    }

    // -- time ----------------------------------------------------------------------------------------------

    /// Start-up and batch deadlines, head-of-line steals, due restarts and the stages of a stop.
    pub fn tick(&mut self, now: Instant, fx: &mut Effects) {
        let startup = self.cfg.startup_timeout();
        for slot in self.slots.iter_mut() {
            if slot.kill.is_some() || !slot.alive() {
                continue;
            }
            if slot.phase == Phase::Starting && now.saturating_duration_since(slot.spawned_at) > startup {
                slot.kill = Some(KillReason::StartupTimeout);
                fx.push(Effect::Kill {
                    worker: slot.index,
                    generation: slot.generation,
                });
                continue;
            }
            if let Some(s) = slot.running() {
                if let (Some(limit), Some(t)) = (s.q.job.timeout, s.started) {
                    if now.saturating_duration_since(t) > limit {
                        slot.kill = Some(KillReason::Timeout {
                            seconds: limit.as_secs_f64(),
                            batch: s.q.batch,
                        });
                        fx.push(Effect::Kill {
                            worker: slot.index,
                            generation: slot.generation,
                        });
                    }
                }
            }
        }
        self.steal(now, fx);
        self.respawn_due(now, fx);
        self.stop_stages(now, fx);
    }

    /// Revokes batches held behind a long run while some worker idles with nothing queued.
    fn steal(&mut self, now: Instant, fx: &mut Effects) {
        if !self.queue.is_empty() || self.stopping {
            return;
        }
        let idle = self.slots.iter().filter(|s| s.idle()).count();
        let revoking: usize = self
            .slots
            .iter()
            .map(|s| s.sent.iter().filter(|x| x.revoking).count())
            .sum();
        let mut want = idle.saturating_sub(revoking);
        if want == 0 {
            return;
        }
        let steal_after = self.cfg.steal_after();
        for slot in self.slots.iter_mut() {
            if want == 0 {
                return;
            }
            if slot.kill.is_some() || !slot.phase.accepts_pinned() {
                continue;
            }
            let long = slot
                .running()
                .and_then(|s| s.started)
                .is_some_and(|t| now.saturating_duration_since(t) >= steal_after);
            if !long {
                continue;
            }
            for s in slot.sent.iter_mut().rev() {
                if want == 0 {
                    break;
                }
                if s.started.is_none() && !s.revoking && s.q.job.pin.is_none() {
                    s.revoking = true;
                    want -= 1;
                    fx.push(s.revoke(slot.index, slot.generation));
                }
            }
        }
    }

    fn respawn_due(&mut self, now: Instant, fx: &mut Effects) {
        if self.stopping || self.broken.is_some() {
            return;
        }
        for slot in self.slots.iter_mut() {
            if slot.phase == Phase::Dead && slot.restart_at.is_some_and(|t| t <= now) {
                slot.restart_at = None;
                slot.phase = Phase::Starting;
                slot.pid = 0;
                slot.spawned_at = now;
                fx.push(Effect::Spawn {
                    worker: slot.index,
                    generation: slot.generation + 1,
                });
            }
        }
    }

    /// When the state machine next needs a `tick`, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let startup = self.cfg.startup_timeout();
        let any_idle = self.queue.is_empty() && self.slots.iter().any(|s| s.idle());
        for slot in &self.slots {
            match slot.phase {
                Phase::Dead if !self.stopping && self.broken.is_none() => {
                    if let Some(t) = slot.restart_at {
                        at(t);
                    }
                }
                Phase::Starting if slot.kill.is_none() && slot.pid > 0 => at(slot.spawned_at + startup),
                _ => {}
            }
            if slot.kill.is_none() {
                if let Some(s) = slot.running() {
                    if let (Some(limit), Some(t)) = (s.q.job.timeout, s.started) {
                        at(t + limit + Duration::from_millis(1));
                    }
                    let held = slot
                        .sent
                        .iter()
                        .any(|x| x.started.is_none() && !x.revoking && x.q.job.pin.is_none());
                    if any_idle && held {
                        at(s.started.expect("running") + self.cfg.steal_after());
                    }
                }
            }
        }
        if let Some(t0) = self.stop_started {
            let grace = self.cfg.shutdown_grace();
            let term = if self.graceful { t0 + grace } else { t0 };
            at(term);
            at(term + grace);
        }
        next
    }

    // -- recycling, memory, sessions, failures -----------------------------------------------------------------

    /// A draining worker with nothing left is asked to exit; it is replaced when it does.
    fn finish_drain(&mut self, i: usize, fx: &mut Effects) {
        let slot = &mut self.slots[i];
        if slot.phase == Phase::Draining && slot.sent.is_empty() && slot.pinned.is_empty() && slot.kill.is_none() {
            slot.kill = Some(KillReason::Recycle);
            fx.push(Effect::Write {
                worker: i,
                generation: slot.generation,
                kind: protocol::SHUTDOWN,
                id: 0,
                payload: Arc::new(Vec::new()),
                segment: None,
            });
        }
    }

    /// A resident-memory reading (bytes): `rss` and `peak` as the kernel counts them, of which `cached` are
    /// the worker's own segment cache (slither's, not the user's: the limit leaves it out). With `recycle`,
    /// it counts toward `max_memory_per_worker`'s samples.
    pub fn memory(&mut self, i: usize, generation: u64, m: MemoryReading, recycle: bool, fx: &mut Effects) {
        let MemoryReading { rss, peak, cached } = m;
        let samples = self.cfg.memory_samples.max(1);
        let limit = self.cfg.max_memory_per_worker;
        let Some(slot) = self.slots.get_mut(i) else { return };
        if slot.generation != generation || !slot.alive() {
            return;
        }
        slot.rss = rss;
        slot.peak_rss = slot.peak_rss.max(peak);
        if let Some(limit) = limit.filter(|_| recycle) {
            if rss.saturating_sub(cached) > limit {
                slot.mem_over += 1;
                if slot.mem_over >= samples && slot.phase == Phase::Ready && slot.sessions == 0 {
                    slot.phase = Phase::Draining;
                }
            } else {
                slot.mem_over = 0;
            }
        }
        self.finish_drain(i, fx);
    }

    /// Per-item failures inside answered batches (the host decodes them; the core only counts).
    pub fn record_failures(&mut self, i: usize, generation: u64, count: u64) {
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.generation == generation {
                slot.failures += count;
            }
        }
    }

    /// Pins a session to the least loaded ready worker, if one is ready.
    pub fn open_session(&mut self) -> Option<(usize, u64)> {
        let slot = self
            .slots
            .iter_mut()
            .filter(|s| s.phase == Phase::Ready && s.kill.is_none())
            .min_by_key(|s| (s.sessions, s.sent.len() + s.pinned.len(), s.index))?;
        slot.sessions += 1;
        Some((slot.index, slot.generation))
    }

    pub fn close_session(&mut self, i: usize, generation: u64) {
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.generation == generation {
                slot.sessions = slot.sessions.saturating_sub(1);
            }
        }
    }

    pub fn session_alive(&self, i: usize, generation: u64) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.generation == generation && s.phase.accepts_pinned() && s.kill.is_none())
    }

    // -- stopping ----------------------------------------------------------------------------------------------

    /// Stops every worker: politely (`graceful`: a SHUTDOWN frame, then after the grace SIGTERM) or with
    /// SIGTERM at once; SIGKILL a grace later. Batches not started complete as `Aborted`.
    pub fn stop(&mut self, graceful: bool, now: Instant, fx: &mut Effects) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.closing = true;
        self.graceful = graceful;
        self.stop_started = Some(now);
        self.abort_all("the pool was stopped before it ran", fx);
        for slot in self.slots.iter_mut() {
            if !slot.alive() {
                slot.phase = Phase::Stopped;
                continue;
            }
            if slot.kill.is_none() || slot.kill == Some(KillReason::Recycle) {
                slot.kill = Some(KillReason::Stop);
            }
            if graceful {
                fx.push(Effect::Write {
                    worker: slot.index,
                    generation: slot.generation,
                    kind: protocol::SHUTDOWN,
                    id: 0,
                    payload: Arc::new(Vec::new()),
                    segment: None,
                });
            }
        }
        self.stop_stages(now, fx);
    }

    fn stop_stages(&mut self, now: Instant, fx: &mut Effects) {
        let Some(t0) = self.stop_started else { return };
        let grace = self.cfg.shutdown_grace();
        let term_at = if self.graceful { t0 + grace } else { t0 };
        for slot in self.slots.iter_mut().filter(|s| s.alive()) {
            if now >= term_at + grace {
                fx.push(Effect::Kill {
                    worker: slot.index,
                    generation: slot.generation,
                });
            } else if now >= term_at && !slot.term_sent {
                slot.term_sent = true;
                fx.push(Effect::Term {
                    worker: slot.index,
                    generation: slot.generation,
                });
            }
        }
    }

    // -- reading ------------------------------------------------------------------------------------------------

    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.slots.iter().map(Slot::info).collect()
    }

    /// (slot, generation, pid) of every live process, for memory sampling.
    pub fn live(&self) -> Vec<(usize, u64, u32)> {
        self.slots
            .iter()
            .filter(|s| s.alive())
            .map(|s| (s.index, s.generation, s.pid))
            .collect()
    }

    pub fn stats(&self, now: Instant) -> PoolStats {
        PoolStats {
            workers: self
                .slots
                .iter()
                .map(|s| WorkerStats {
                    index: s.index,
                    pid: s.pid,
                    generation: s.generation,
                    state: s.phase,
                    batches: s.batches,
                    items: s.items,
                    failures: s.failures,
                    restarts: s.restarts,
                    recycles: s.recycles,
                    uptime_s: s.ready_at.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0),
                    rss_bytes: s.rss,
                    peak_rss_bytes: s.peak_rss,
                    in_flight: s.sent.len(),
                    python: s.hello.python.clone(),
                    gil: s.hello.gil,
                    sessions: s.sessions,
                })
                .collect(),
            queued: self.queue.len() + self.slots.iter().map(|s| s.pinned.len()).sum::<usize>(),
            in_flight: self.slots.iter().map(|s| s.sent.len()).sum(),
            max_in_flight_seen: self.max_outstanding,
            broken: self.broken.clone(),
            closed: self.closing,
            transfers: Default::default(),
        }
    }
}

/// Moves the batches of `queue` that `matches` into `out`, keeping the others in order.
fn take_matching(queue: &mut VecDeque<Queued>, matches: impl Fn(&Queued) -> bool, out: &mut Vec<Queued>) {
    let (taken, kept): (Vec<Queued>, Vec<Queued>) = queue.drain(..).partition(|q| matches(q));
    queue.extend(kept);
    out.extend(taken);
}

/// Whether another batch may go on a worker's channel: within the pipeline depth, and never past the batches
/// its process may still run before it is recycled (a worker holding sessions is never recycled).
fn has_room(s: &Slot, depth: usize, max_tasks: Option<u64>) -> bool {
    s.sent.len() < depth
        && (s.sessions > 0 || max_tasks.is_none_or(|m| s.batches_this_process + (s.sent.len() as u64) < m))
}

fn backoff(cfg: &PoolConfig, failures: u32) -> Duration {
    Duration::from_secs_f64(cfg.restart_backoff * 2f64.powi(failures.saturating_sub(1).min(10) as i32))
}
