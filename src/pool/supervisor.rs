//! The supervisor thread: one loop, one wake-up source (its command channel, with a tick as timeout).
//!
//! Duties: spawn every worker (here, so the parent-death signal is bound to a thread that outlives all of
//! them), reap exits and charge them to the right batch, restart with backoff, declare the pool broken on a
//! crash loop, enforce batch deadlines and start-up timeouts, sample resident memory, recycle, and stop in
//! stages (SHUTDOWN frame, SIGTERM to the process group, SIGKILL), with one deadline shared by all workers.

use crossbeam_channel::Receiver;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outbox::Outbox;
use super::reader::start_reader;
use super::spawn::{signal_group, signal_name, spawn_worker};
use super::state::{deliver, KillReason, Phase};
use super::{Outcome, Shared};
use crate::events::Event;
use crate::stats::read_rss;

pub(crate) enum Command {
    /// A worker's channel closed (`why`: what it said if it failed to start).
    Gone {
        index: usize,
        generation: u64,
        why: Option<String>,
    },
    Stop {
        graceful: bool,
    },
}

const TICK: Duration = Duration::from_millis(10);
const RSS_EVERY: Duration = Duration::from_millis(200);

pub(crate) fn run(sh: Arc<Shared>, rx: Receiver<Command>) {
    let mut last_rss = Instant::now() - RSS_EVERY;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(Command::Gone { index, generation, why }) => on_gone(&sh, index, generation, why),
            Ok(Command::Stop { graceful }) => return stop_all(&sh, graceful),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return stop_all(&sh, false),
        }
        let now = Instant::now();
        start_due(&sh, now);
        enforce_deadlines(&sh, now);
        if now - last_rss >= RSS_EVERY {
            last_rss = now;
            sample_memory(&sh, true);
        }
    }
}

fn start_due(sh: &Arc<Shared>, now: Instant) {
    let mut st = sh.lock();
    if st.stopping || st.broken.is_some() {
        return;
    }
    for i in 0..st.slots.len() {
        let slot = &mut st.slots[i];
        if slot.phase != Phase::Dead || slot.restart_at.is_none_or(|t| t > now) {
            continue;
        }
        slot.restart_at = None;
        let generation = slot.generation + 1;
        match spawn_worker(&sh.cfg, i, generation) {
            Ok(sp) => {
                let Ok(read_half) = sp.channel.try_clone() else {
                    slot.start_failures += 1;
                    slot.restart_at = Some(now + backoff(&sh.cfg, slot.start_failures));
                    continue;
                };
                slot.generation = generation;
                slot.pid = sp.child.id();
                slot.child = Some(sp.child);
                slot.outbox = Some(Outbox::start(i, sp.channel));
                slot.phase = Phase::Starting;
                slot.spawned_at = now;
                slot.ready_at = None;
                slot.kill_reason = None;
                slot.batches_this_process = 0;
                slot.mem_over = 0;
                slot.rss = 0;
                let pid = slot.pid;
                start_reader(sh.clone(), i, generation, read_half);
                sh.events.emit(|| Event::WorkerStarted {
                    worker: i,
                    pid,
                    generation,
                });
            }
            Err(e) => {
                // The interpreter itself cannot be started: no point retrying.
                let why = e.to_string();
                let lost = st.abort_all(&why);
                st.broken = Some(why.clone());
                sh.events.emit(|| Event::PoolBroken { reason: why });
                sh.changed.notify_all();
                drop(st);
                deliver(lost);
                return;
            }
        }
    }
}

fn backoff(cfg: &crate::config::PoolConfig, failures: u32) -> Duration {
    Duration::from_secs_f64(cfg.restart_backoff * 2f64.powi(failures.saturating_sub(1).min(10) as i32))
}

fn enforce_deadlines(sh: &Arc<Shared>, now: Instant) {
    let mut st = sh.lock();
    let startup = sh.cfg.startup_timeout();
    for slot in st.slots.iter_mut() {
        if slot.kill_reason.is_some() {
            continue;
        }
        match slot.phase {
            Phase::Starting if now - slot.spawned_at > startup => {
                slot.kill_reason = Some(KillReason::StartupTimeout);
                signal_group(slot.pid, libc::SIGKILL);
            }
            Phase::Ready | Phase::Draining => {
                let (Some(head), Some(since)) = (slot.sent.front(), slot.head_since) else {
                    continue;
                };
                if let Some(limit) = head.job.timeout {
                    if now - since > limit {
                        let batch = head.batch;
                        slot.kill_reason = Some(KillReason::Timeout {
                            seconds: limit.as_secs_f64(),
                            batch,
                        });
                        signal_group(slot.pid, libc::SIGKILL);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Reads every worker's resident memory. Only the supervisor's own ticks (`recycle`) count toward the
/// consecutive samples that recycle a worker, so reading stats often cannot hasten a recycle.
pub(crate) fn sample_memory(sh: &Arc<Shared>, recycle: bool) {
    let pids: Vec<(usize, u64, u32)> = {
        let st = sh.lock();
        st.slots
            .iter()
            .filter(|s| s.pid > 0 && s.child.is_some())
            .map(|s| (s.index, s.generation, s.pid))
            .collect()
    };
    // Reading /proc outside the lock: submitters never wait on the file system.
    let readings: Vec<_> = pids
        .into_iter()
        .filter_map(|(i, g, pid)| read_rss(pid).map(|r| (i, g, r)))
        .collect();
    let mut st = sh.lock();
    for (i, g, (rss, hwm)) in readings {
        let samples = sh.cfg.memory_samples.max(1);
        let limit = sh.cfg.max_memory_per_worker;
        let slot = &mut st.slots[i];
        if slot.generation != g {
            continue;
        }
        slot.rss = rss;
        slot.peak_rss = slot.peak_rss.max(hwm);
        if let Some(limit) = limit.filter(|_| recycle) {
            if rss > limit {
                slot.mem_over += 1;
                if slot.mem_over >= samples && slot.phase == Phase::Ready && slot.sessions == 0 {
                    slot.phase = Phase::Draining;
                }
            } else {
                slot.mem_over = 0;
            }
        }
        st.maybe_finish_drain(i);
    }
}

/// Reaps a child whose channel closed; kills its group if it lingers.
fn reap(mut child: Child) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < Duration::from_millis(500) => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                signal_group(child.id(), libc::SIGKILL);
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}

fn on_gone(sh: &Arc<Shared>, index: usize, generation: u64, why: Option<String>) {
    let child = {
        let mut st = sh.lock();
        let slot = &mut st.slots[index];
        if slot.generation != generation || slot.phase == Phase::Stopped {
            return;
        }
        slot.child.take()
    };
    let status = child.and_then(reap);
    let exit_code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal()).map(signal_name);
    let mut st = sh.lock();
    let stopping = st.stopping;
    let slot = &mut st.slots[index];
    let pid = slot.pid;
    let was = slot.phase;
    let reason = slot.kill_reason;
    slot.phase = Phase::Dead;
    // Group members the worker forked must not outlive it.
    signal_group(pid, libc::SIGKILL);
    // A batch we killed the worker for may have answered just before the kill landed: then the batch now at
    // the head is innocent and goes back to the queue like the others.
    let head_batch = slot.sent.front().map(|q| q.batch);
    let (head, reason_text) = match reason {
        Some(KillReason::Timeout { seconds, batch }) => (
            Some(Outcome::Timeout { seconds }).filter(|_| head_batch == Some(batch)),
            "batch timeout".to_string(),
        ),
        Some(KillReason::Recycle) => (None, "recycled".to_string()),
        Some(KillReason::Stop) => (None, "pool stopping".to_string()),
        Some(KillReason::StartupTimeout) => (None, "start-up timeout".to_string()),
        Some(KillReason::Cancelled { batch }) => (
            Some(Outcome::Aborted("the call was cancelled".into())).filter(|_| head_batch == Some(batch)),
            "its batch was cancelled".to_string(),
        ),
        None => (
            Some(Outcome::Crashed {
                exit_code,
                signal: signal.clone(),
            }),
            match (&signal, exit_code) {
                (Some(s), _) => format!("killed by {s}"),
                (None, Some(c)) => format!("exited with code {c}"),
                _ => "exited".to_string(),
            },
        ),
    };
    sh.events.emit(|| Event::WorkerExited {
        worker: index,
        pid,
        generation,
        exit_code,
        signal: signal.clone(),
        reason: reason_text.clone(),
    });
    let mut lost = st.worker_gone(index, if was == Phase::Starting { None } else { head }, &sh.events);
    let slot = &mut st.slots[index];
    if stopping {
        slot.phase = Phase::Stopped;
    } else if was == Phase::Starting {
        slot.start_failures += 1;
        let detail = why.unwrap_or_else(|| reason_text.clone());
        if slot.start_failures >= sh.cfg.crash_loop_limit {
            let msg = format!(
                "worker {index} failed to start {} times in a row; last: {}",
                slot.start_failures,
                detail.trim_end()
            );
            lost.extend(st.abort_all(&msg));
            st.broken = Some(msg.clone());
            sh.events.emit(|| Event::PoolBroken { reason: msg });
        } else {
            slot.restart_at = Some(Instant::now() + backoff(&sh.cfg, slot.start_failures));
        }
    } else {
        slot.restarts += 1;
        slot.restart_at = Some(Instant::now());
        sh.events.emit(|| Event::WorkerReplaced {
            worker: index,
            old_pid: pid,
            generation,
            reason: reason_text,
        });
    }
    // Requeued batches may go to the other workers at once.
    for i in 0..st.slots.len() {
        st.fill(i, sh);
    }
    sh.changed.notify_all();
    drop(st);
    deliver(lost);
    start_due(sh, Instant::now());
}

fn stop_all(sh: &Arc<Shared>, graceful: bool) {
    let grace = sh.cfg.shutdown_grace();
    let mut children: Vec<(usize, Child)> = Vec::new();
    {
        let mut st = sh.lock();
        st.stopping = true;
        st.closed = true;
        for slot in st.slots.iter_mut() {
            slot.kill_reason = Some(KillReason::Stop);
            if let Some(c) = slot.child.take() {
                if graceful {
                    slot.write(crate::protocol::SHUTDOWN, 0, Arc::new(Vec::new()));
                } else {
                    signal_group(c.id(), libc::SIGTERM);
                }
                children.push((slot.index, c));
            }
            slot.outbox = None;
            slot.phase = Phase::Stopped;
        }
        let lost = st.abort_all("the pool was stopped");
        sh.changed.notify_all();
        drop(st);
        deliver(lost);
    }
    let deadline = Instant::now() + grace;
    let mut signalled_term = !graceful;
    let mut kill_at = if graceful { deadline + grace } else { deadline };
    loop {
        children.retain_mut(|(_, c)| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
        if children.is_empty() {
            break;
        }
        let now = Instant::now();
        if !signalled_term && now >= deadline {
            for (_, c) in &children {
                signal_group(c.id(), libc::SIGTERM);
            }
            signalled_term = true;
            kill_at = now + grace;
        } else if signalled_term && now >= kill_at {
            for (_, c) in children.iter_mut() {
                signal_group(c.id(), libc::SIGKILL);
                let _ = c.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Whatever each worker forked into its group goes too.
    let st = sh.lock();
    for slot in &st.slots {
        signal_group(slot.pid, libc::SIGKILL);
    }
}
