//! The scheduler's state, guarded by one mutex: worker slots, the global queue, and the rules that move a
//! batch from a queue onto a worker's channel.

use serde::Serialize;
use std::collections::VecDeque;
use std::process::Child;
use std::sync::Arc;
use std::time::Instant;

use super::outbox::Outbox;
use super::{Completion, Job, Outcome, RunShared, Shared};
use crate::events::Event;
use crate::stats::{PoolStats, WorkerStats};

/// A batch waiting in the core, not yet written to a worker.
pub(crate) struct Queued {
    pub batch: u64,
    pub job: Job,
    pub run: Arc<RunShared>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Spawned; waiting for hello and init.
    Starting,
    Ready,
    /// Finishing what it holds, then replaced (recycling).
    Draining,
    /// Exited; a replacement is due (possibly after a backoff).
    Dead,
    /// The pool stopped.
    Stopped,
}

impl Phase {
    pub fn accepts_pinned(self) -> bool {
        matches!(self, Phase::Ready | Phase::Draining)
    }
}

/// Why the supervisor itself ended a worker, so its exit is not charged as a crash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum KillReason {
    Timeout {
        seconds: f64,
        batch: u64,
    },
    Recycle,
    StartupTimeout,
    Stop,
    /// The run of the batch it was executing was cancelled.
    Cancelled {
        batch: u64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub index: usize,
    pub pid: u32,
    pub generation: u64,
    pub state: Phase,
    pub python: String,
    pub gil: bool,
    pub free_threaded_build: bool,
}

pub(crate) struct Slot {
    pub index: usize,
    pub generation: u64,
    pub phase: Phase,
    pub pid: u32,
    pub python: String,
    pub gil: bool,
    pub free_threaded_build: bool,
    pub child: Option<Child>,
    pub outbox: Option<Outbox>,
    /// Batches written to the worker and not answered, oldest (executing) first.
    pub sent: VecDeque<Queued>,
    pub head_since: Option<Instant>,
    /// Batches of sessions pinned to this worker, waiting for room on its channel.
    pub pinned: VecDeque<Queued>,
    pub spawned_at: Instant,
    pub ready_at: Option<Instant>,
    pub kill_reason: Option<KillReason>,
    pub start_failures: u32,
    pub restart_at: Option<Instant>,
    pub sessions: usize,
    pub batches: u64,
    pub items: u64,
    pub failures: u64,
    pub restarts: u64,
    pub batches_this_process: u64,
    pub rss: u64,
    pub peak_rss: u64,
    pub mem_over: u32,
}

impl Slot {
    fn new(index: usize) -> Slot {
        Slot {
            index,
            generation: 0,
            phase: Phase::Dead,
            pid: 0,
            python: String::new(),
            gil: true,
            free_threaded_build: false,
            child: None,
            outbox: None,
            sent: VecDeque::new(),
            head_since: None,
            pinned: VecDeque::new(),
            spawned_at: Instant::now(),
            ready_at: None,
            kill_reason: None,
            start_failures: 0,
            restart_at: Some(Instant::now()),
            sessions: 0,
            batches: 0,
            items: 0,
            failures: 0,
            restarts: 0,
            batches_this_process: 0,
            rss: 0,
            peak_rss: 0,
            mem_over: 0,
        }
    }

    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            index: self.index,
            pid: self.pid,
            generation: self.generation,
            state: self.phase,
            python: self.python.clone(),
            gil: self.gil,
            free_threaded_build: self.free_threaded_build,
        }
    }

    /// Whether another batch may go on this worker's channel: within the pipeline depth, and never past the
    /// batches its process may still run before it is recycled.
    fn has_room(&self, depth: usize, max_tasks: Option<u64>) -> bool {
        // A worker holding sessions is never recycled (that would lose their state), so it is never held back.
        self.sent.len() < depth
            && (self.sessions > 0 || max_tasks.is_none_or(|m| self.batches_this_process + (self.sent.len() as u64) < m))
    }

    pub fn write(&self, kind: u8, id: u64, payload: Arc<Vec<u8>>) {
        if let Some(out) = &self.outbox {
            out.send(kind, id, payload);
        }
    }
}

pub(crate) struct State {
    pub slots: Vec<Slot>,
    pub queue: VecDeque<Queued>,
    pub next_batch: u64,
    pub closed: bool,
    pub stopping: bool,
    pub broken: Option<String>,
    pub max_outstanding: usize,
}

impl State {
    pub fn new(workers: usize) -> State {
        State {
            slots: (0..workers).map(Slot::new).collect(),
            queue: VecDeque::new(),
            next_batch: 1,
            closed: false,
            stopping: false,
            broken: None,
            max_outstanding: 0,
        }
    }

    /// Batches submitted and not answered, wherever they are.
    pub fn outstanding(&self) -> usize {
        self.queue.len() + self.slots.iter().map(|s| s.sent.len() + s.pinned.len()).sum::<usize>()
    }

    pub fn enqueue(&mut self, q: Queued, sh: &Shared) {
        match q.job.pin {
            Some(pin) => {
                self.slots[pin.worker].pinned.push_back(q);
                self.fill(pin.worker, sh);
            }
            None => {
                let (depth, max) = (sh.cfg.pipeline_depth, sh.cfg.max_tasks_per_worker);
                // The ready worker holding the fewest batches, if it has room.
                let best = self
                    .slots
                    .iter()
                    .filter(|s| s.phase == Phase::Ready && s.has_room(depth, max))
                    .min_by_key(|s| (s.sent.len(), s.index))
                    .map(|s| s.index);
                match best {
                    Some(i) => self.send(i, q, sh),
                    None => self.queue.push_back(q),
                }
            }
        }
        self.max_outstanding = self.max_outstanding.max(self.outstanding());
    }

    /// Tops up worker `i`'s channel from its pinned queue, then from the global queue.
    pub fn fill(&mut self, i: usize, sh: &Shared) {
        let (depth, max) = (sh.cfg.pipeline_depth, sh.cfg.max_tasks_per_worker);
        loop {
            let slot = &mut self.slots[i];
            if !slot.has_room(depth, max) || !matches!(slot.phase, Phase::Ready | Phase::Draining) {
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
            self.send(i, next, sh);
        }
    }

    fn send(&mut self, i: usize, q: Queued, sh: &Shared) {
        let slot = &mut self.slots[i];
        if slot.sent.is_empty() {
            slot.head_since = Some(Instant::now());
            sh.events.emit(|| Event::BatchStarted {
                batch: q.batch,
                worker: i,
                items: q.job.items,
            });
        }
        slot.write(crate::protocol::TASK, q.batch, q.job.payload.clone());
        slot.sent.push_back(q);
    }

    /// A worker answered its oldest batch. Returns the completion to deliver, if the ids match.
    pub fn answered(
        &mut self,
        i: usize,
        id: u64,
        outcome: Outcome,
        sh: &Shared,
    ) -> Option<(Arc<RunShared>, Completion)> {
        let now = Instant::now();
        let slot = &mut self.slots[i];
        if slot.sent.front().map(|q| q.batch) != Some(id) {
            return None;
        }
        let q = slot.sent.pop_front()?;
        let duration = slot.head_since.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0);
        slot.head_since = if slot.sent.is_empty() { None } else { Some(now) };
        slot.batches += 1;
        slot.batches_this_process += 1;
        slot.items += q.job.items as u64;
        let ok = matches!(outcome, Outcome::Ok(_));
        if !ok {
            slot.failures += 1;
        }
        sh.events.emit(|| Event::BatchFinished {
            batch: id,
            worker: i,
            items: q.job.items,
            ok,
            duration_s: duration,
        });
        if let Some(next) = slot.sent.front() {
            sh.events.emit(|| Event::BatchStarted {
                batch: next.batch,
                worker: i,
                items: next.job.items,
            });
        }
        let pid = slot.pid;
        if let Some(max) = sh.cfg.max_tasks_per_worker {
            if slot.phase == Phase::Ready && slot.batches_this_process >= max && slot.sessions == 0 {
                slot.phase = Phase::Draining;
            }
        }
        self.fill(i, sh);
        self.maybe_finish_drain(i);
        let c = Completion {
            batch: id,
            tag: q.job.tag,
            worker: Some(i),
            pid,
            outcome,
            duration,
        };
        Some((q.run, c))
    }

    /// A draining worker with nothing left is asked to exit; the supervisor replaces it.
    pub fn maybe_finish_drain(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.phase == Phase::Draining && slot.sent.is_empty() && slot.pinned.is_empty() && slot.kill_reason.is_none()
        {
            slot.kill_reason = Some(KillReason::Recycle);
            slot.write(crate::protocol::SHUTDOWN, 0, Arc::new(Vec::new()));
        }
    }

    /// The process in slot `i` is gone. Charges its executing batch (if any) with `head_outcome`, puts batches it
    /// never started back at the front of the global queue (or fails them as `SessionLost` when pinned), and
    /// fails the slot's pinned queue. Returns the completions to deliver.
    pub fn worker_gone(
        &mut self,
        i: usize,
        head_outcome: Option<Outcome>,
        events: &crate::events::EventBus,
    ) -> Vec<(Arc<RunShared>, Completion)> {
        let now = Instant::now();
        let mut out = Vec::new();
        let slot = &mut self.slots[i];
        let pid = slot.pid;
        let duration = slot.head_since.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0);
        slot.head_since = None;
        slot.outbox = None;
        let mut sent: VecDeque<Queued> = std::mem::take(&mut slot.sent);
        if let (Some(outcome), Some(head)) = (head_outcome, sent.front()) {
            let _ = head;
            let q = sent.pop_front().unwrap();
            if !matches!(outcome, Outcome::Aborted(_)) {
                slot.failures += 1;
            }
            let cause = match &outcome {
                Outcome::Crashed { signal: Some(s), .. } => format!("worker killed by {s}"),
                Outcome::Crashed { exit_code, .. } => format!("worker exited with code {}", exit_code.unwrap_or(-1)),
                Outcome::Timeout { seconds } => format!("timeout after {seconds} s"),
                other => format!("{other:?}"),
            };
            events.emit(|| Event::BatchFailed {
                batch: q.batch,
                worker: i,
                items: q.job.items,
                cause,
                duration_s: duration,
            });
            slot.batches += 1;
            slot.items += q.job.items as u64;
            out.push((
                q.run,
                Completion {
                    batch: q.batch,
                    tag: q.job.tag,
                    worker: Some(i),
                    pid,
                    outcome,
                    duration,
                },
            ));
        }
        let lost = |q: Queued| {
            let c = Completion {
                batch: q.batch,
                tag: q.job.tag,
                worker: Some(i),
                pid,
                outcome: Outcome::SessionLost,
                duration: 0.0,
            };
            (q.run, c)
        };
        let mut requeue = Vec::new();
        for q in sent {
            if q.run.is_cancelled() {
                q.run.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            } else if q.job.pin.is_some() {
                out.push(lost(q));
            } else {
                requeue.push(q);
            }
        }
        for q in std::mem::take(&mut slot.pinned) {
            out.push(lost(q));
        }
        slot.sessions = 0;
        for q in requeue.into_iter().rev() {
            events.emit(|| Event::BatchRequeued {
                batch: q.batch,
                worker: i,
                reason: "its worker died before running it".into(),
            });
            self.queue.push_front(q);
        }
        out
    }

    /// Fails everything not yet answered (pool broken or stopped).
    pub fn abort_all(&mut self, why: &str) -> Vec<(Arc<RunShared>, Completion)> {
        let mut all: Vec<(Queued, Option<usize>, u32)> = self.queue.drain(..).map(|q| (q, None, 0)).collect();
        for s in &mut self.slots {
            let pid = s.pid;
            all.extend(s.sent.drain(..).map(|q| (q, Some(s.index), pid)));
            all.extend(s.pinned.drain(..).map(|q| (q, Some(s.index), pid)));
        }
        all.into_iter()
            .map(|(q, worker, pid)| {
                let c = Completion {
                    batch: q.batch,
                    tag: q.job.tag,
                    worker,
                    pid,
                    outcome: Outcome::Aborted(why.to_string()),
                    duration: 0.0,
                };
                (q.run, c)
            })
            .collect()
    }

    pub fn drop_queued_of(&mut self, run: &Arc<RunShared>) {
        let mine = |q: &Queued| Arc::ptr_eq(&q.run, run);
        let mut dropped = 0;
        self.queue.retain(|q| {
            let m = mine(q);
            dropped += m as usize;
            !m
        });
        for s in &mut self.slots {
            s.pinned.retain(|q| {
                let m = mine(q);
                dropped += m as usize;
                !m
            });
        }
        run.in_flight.fetch_sub(dropped, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn stats(&self) -> PoolStats {
        let now = Instant::now();
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
                    uptime_s: s.ready_at.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0),
                    rss_bytes: s.rss,
                    peak_rss_bytes: s.peak_rss,
                    in_flight: s.sent.len(),
                    python: s.python.clone(),
                    gil: s.gil,
                    sessions: s.sessions,
                })
                .collect(),
            queued: self.queue.len() + self.slots.iter().map(|s| s.pinned.len()).sum::<usize>(),
            in_flight: self.slots.iter().map(|s| s.sent.len()).sum(),
            max_in_flight_seen: self.max_outstanding,
            broken: self.broken.clone(),
            closed: self.closed,
        }
    }
}

/// Hands completions to their runs; call with the state lock released.
pub(crate) fn deliver(list: Vec<(Arc<RunShared>, Completion)>) {
    for (run, c) in list {
        run.deliver(c);
    }
}
