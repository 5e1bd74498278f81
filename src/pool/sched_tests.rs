//! The scheduler's rules, without a process: events in, effects out, time passed in by hand.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sched::{Effect, Effects, Exit, Hello, Phase, Sched};
use super::{Completion, Job, Outcome, Pin, RunShared};
use crate::config::PoolConfig;
use crate::protocol::{REVOKE, SHUTDOWN, TASK};

fn run() -> (Arc<RunShared>, crossbeam_channel::Receiver<Completion>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let rs = Arc::new(RunShared {
        tx,
        cancelled: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        max_seen: AtomicUsize::new(0),
    });
    (rs, rx)
}

fn job(tag: u64) -> Job {
    Job {
        tag,
        payload: Arc::new(vec![tag as u8]),
        segment: None,
        items: 1,
        timeout: None,
        pin: None,
    }
}

struct T {
    s: Sched,
    now: Instant,
    fx: Effects,
}

impl T {
    fn new(workers: usize, tweak: impl FnOnce(&mut PoolConfig)) -> T {
        let mut cfg = PoolConfig {
            workers,
            ..PoolConfig::default()
        };
        tweak(&mut cfg);
        let now = Instant::now();
        let mut t = T {
            s: Sched::new(cfg, b"init".to_vec(), now),
            now,
            fx: Vec::new(),
        };
        t.tick();
        let spawns = spawns(&t.take());
        assert_eq!(spawns.len(), workers, "every slot is spawned at start");
        for (w, g) in spawns {
            t.bring_up(w, g);
        }
        t
    }

    fn bring_up(&mut self, w: usize, g: u64) {
        let pid = 1000 + 10 * w as u32 + g as u32;
        self.s.spawned(w, g, pid, self.now, &mut self.fx);
        let hello = Hello {
            pid,
            python: "3.11.7".into(),
            gil: true,
            free_threaded_build: false,
        };
        self.s.hello(w, g, hello, &mut self.fx);
        self.s.ready(w, g, self.now, &mut self.fx);
        self.take();
    }

    fn tick(&mut self) {
        self.s.tick(self.now, &mut self.fx);
    }

    fn later(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.tick();
    }

    fn take(&mut self) -> Effects {
        std::mem::take(&mut self.fx)
    }

    fn submit(&mut self, rs: &Arc<RunShared>, j: Job) -> u64 {
        self.s.submit(j, rs.clone(), self.now, &mut self.fx)
    }

    fn gen(&self, w: usize) -> u64 {
        self.s.slots[w].generation
    }

    /// Worker `w` (its current generation) answers a REVOKE of batch `id`: too late, it started it.
    fn start(&mut self, w: usize, id: u64) {
        let g = self.gen(w);
        self.s.started(w, g, id, self.now, &mut self.fx);
    }

    /// Worker `w` answers batch `id` with an empty success.
    fn answer_ok(&mut self, w: usize, id: u64) {
        let g = self.gen(w);
        self.s.answered(w, g, id, Outcome::Ok(vec![]), self.now, &mut self.fx);
    }

    /// Worker `w` gives batch `id` back unstarted.
    fn revoked(&mut self, w: usize, id: u64) {
        let g = self.gen(w);
        self.s.revoked(w, g, id, self.now, &mut self.fx);
    }

    /// Worker `w` exits; its started word could not be read (the host's inference decides).
    fn exit(&mut self, w: usize, code: Option<i32>, signal: Option<&str>) {
        self.exit_with_word(w, code, signal, None);
    }

    /// Worker `w` exits with `started_frame` in its started word.
    fn exit_with_word(&mut self, w: usize, code: Option<i32>, signal: Option<&str>, started_frame: Option<u64>) {
        let g = self.gen(w);
        let exit = Exit {
            exit_code: code,
            signal: signal.map(str::to_string),
            started_frame,
            ..Exit::default()
        };
        self.s.exited(w, g, exit, self.now, &mut self.fx);
    }
}

/// Frames written: (worker, kind, id).
fn writes(fx: &Effects) -> Vec<(usize, u8, u64)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Write { worker, kind, id, .. } => Some((*worker, *kind, *id)),
            _ => None,
        })
        .collect()
}

/// Workers spawned: (worker, generation).
fn spawns(fx: &Effects) -> Vec<(usize, u64)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Spawn { worker, generation } => Some((*worker, *generation)),
            _ => None,
        })
        .collect()
}

fn delivered(fx: &Effects) -> Vec<(u64, Outcome, bool)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Deliver { completion: c, .. } => Some((c.tag, c.outcome.clone(), c.started)),
            _ => None,
        })
        .collect()
}

fn kills(fx: &Effects) -> Vec<usize> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Kill { worker, .. } => Some(*worker),
            _ => None,
        })
        .collect()
}

#[test]
fn batches_go_to_the_least_loaded_worker_then_pipeline_then_queue() {
    let mut t = T::new(2, |_| {});
    let (rs, _rx) = run();
    let ids: Vec<u64> = (0..5).map(|i| t.submit(&rs, job(i))).collect();
    let w = writes(&t.take());
    assert_eq!(
        w,
        vec![
            (0, TASK, ids[0]),
            (1, TASK, ids[1]),
            (0, TASK, ids[2]),
            (1, TASK, ids[3])
        ],
        "depth 2 on each worker, the fifth waits"
    );
    assert_eq!(t.s.outstanding(), 5);
    // Worker 0 answers its first: it gets the queued one.
    t.answer_ok(0, ids[0]);
    let fx = t.take();
    assert_eq!(writes(&fx), vec![(0, TASK, ids[4])]);
    assert_eq!(delivered(&fx), vec![(0, Outcome::Ok(vec![]), true)]);
}

#[test]
fn a_held_batch_behind_a_long_run_is_revoked_for_an_idle_worker() {
    let mut t = T::new(2, |c| c.steal_after = 0.005);
    let (rs, _rx) = run();
    let _long = t.submit(&rs, job(0));
    let a = t.submit(&rs, job(1));
    let held = t.submit(&rs, job(2));
    t.take();
    t.later(1);
    t.answer_ok(1, a);
    // Worker 1 is idle now, but the long run has been running only 1 ms: not yet.
    assert!(writes(&t.take()).is_empty());
    let due = t.s.next_deadline().expect("a steal deadline");
    assert!(due <= t.now + Duration::from_millis(5));
    t.later(5);
    assert_eq!(writes(&t.take()), vec![(0, REVOKE, held)]);
    // The worker gives it back unstarted; it goes to the idle worker at once.
    t.revoked(0, held);
    assert_eq!(writes(&t.take()), vec![(1, TASK, held)]);
}

/// Two workers, `steal_after` 0: worker 1 answers and idles, so the batch held behind worker 0's long run is
/// asked back at once. Returns the table, the run (and its receiver), and the long and held batches.
fn held_batch_asked_back() -> (T, Arc<RunShared>, crossbeam_channel::Receiver<Completion>, u64, u64) {
    let (rs, rx) = run();
    let mut t = T::new(2, |c| c.steal_after = 0.0);
    let long = t.submit(&rs, job(0));
    let one = t.submit(&rs, job(1));
    let held = t.submit(&rs, job(2));
    t.take();
    t.answer_ok(1, one);
    assert_eq!(writes(&t.take()), vec![(0, REVOKE, held)]);
    (t, rs, rx, long, held)
}

#[test]
fn a_revoke_that_loses_the_race_leaves_the_batch_where_it_runs() {
    let (mut t, _rs, _rx, long, held) = held_batch_asked_back();
    // Too late: the worker had finished the long one and started the held one.
    t.answer_ok(0, long);
    t.start(0, held);
    t.answer_ok(0, held);
    let fx = t.take();
    assert!(kills(&fx).is_empty(), "losing a revoke race is not a protocol error");
    assert_eq!(delivered(&fx).len(), 2);
}

#[test]
fn a_too_late_answer_may_come_after_the_result() {
    // The worker's reader thread says STARTED while its main thread sends the result: either may come first.
    let (mut t, _rs, _rx, long, held) = held_batch_asked_back();
    t.answer_ok(0, long);
    t.answer_ok(0, held);
    t.start(0, held);
    let fx = t.take();
    assert!(kills(&fx).is_empty(), "{:?}", kills(&fx));
    assert_eq!(delivered(&fx).len(), 2);
    // Once: a second STARTED for it is a protocol error.
    t.start(0, held);
    assert_eq!(kills(&t.take()), vec![0]);
}

#[test]
fn a_cancelled_batch_never_runs_on_for_nobody() {
    for revoked_first in [true, false] {
        let mut t = T::new(1, |_| {});
        let (rs, _rx) = run();
        let (other, _rx2) = run();
        let first = t.submit(&other, job(0));
        let held = t.submit(&rs, job(1));
        t.take();
        rs.cancelled.store(true, std::sync::atomic::Ordering::Release);
        if revoked_first {
            // Cancelled while its batch waits behind another run's: it is asked back...
            t.s.cancel(&rs, &mut t.fx);
            assert_eq!(writes(&t.take()), vec![(0, REVOKE, held)]);
            t.answer_ok(0, first);
            assert!(kills(&t.take()).is_empty(), "it waits for the worker's answer");
            // ...but the worker had already taken it: killed.
            t.start(0, held);
        } else {
            // The run's flag is set, its cancel not applied yet, when the batch ahead answers: the held batch
            // would begin now; killed instead.
            t.answer_ok(0, first);
        }
        assert_eq!(kills(&t.take()).len(), 1, "revoked first: {revoked_first}");
    }
}

#[test]
fn a_crash_is_charged_only_to_the_batch_the_worker_had_started() {
    let mut t = T::new(2, |_| {});
    let (rs, _rx) = run();
    let _running = t.submit(&rs, job(0));
    let _on_other = t.submit(&rs, job(1));
    let behind = t.submit(&rs, job(2));
    t.take();
    // Its started word says frame 1 (`running`) began; frame 2 (`behind`) never did.
    t.exit_with_word(0, None, Some("SIGSEGV"), Some(1));
    let fx = t.take();
    let d = delivered(&fx);
    assert_eq!(d.len(), 1, "only the started batch fails: {d:?}");
    assert_eq!(
        d[0],
        (
            0,
            Outcome::Crashed {
                exit_code: None,
                signal: Some("SIGSEGV".into())
            },
            true
        )
    );
    // The batch behind it went back to the queue and on to the other worker, which has room.
    assert!(writes(&fx).contains(&(1, TASK, behind)));
    assert_eq!(t.s.slots[0].phase, Phase::Starting, "a replacement is spawned at once");
}

#[test]
fn a_worker_killed_before_it_started_anything_costs_nothing() {
    let mut t = T::new(1, |_| {});
    let (rs, _rx) = run();
    let id = t.submit(&rs, job(0));
    t.take();
    // Written to an idle worker (the host counts it as running), but its started word says it never began.
    t.exit_with_word(0, None, Some("SIGKILL"), Some(0));
    assert!(delivered(&t.take()).is_empty(), "nothing is charged");
    assert_eq!(t.s.outstanding(), 1);
    // The replacement gets the very batch, written again.
    let g = t.gen(0);
    t.s.spawned(0, g + 1, 99, t.now, &mut t.fx);
    t.s.hello(
        0,
        g + 1,
        Hello {
            pid: 99,
            ..Hello::default()
        },
        &mut t.fx,
    );
    t.s.ready(0, g + 1, t.now, &mut t.fx);
    assert!(writes(&t.take()).contains(&(0, TASK, id)));
}

#[test]
fn pinned_batches_of_a_dead_worker_fail_as_session_lost() {
    let mut t = T::new(2, |_| {});
    let (rs, _rx) = run();
    let (w, g) = t.s.open_session().unwrap();
    let mut j = job(5);
    j.pin = Some(Pin {
        worker: w,
        generation: g,
    });
    let running = t.submit(&rs, j.clone());
    t.submit(&rs, j);
    t.take();
    t.exit(w, Some(1), None);
    let _ = running;
    let d = delivered(&t.take());
    assert_eq!(d.len(), 2);
    assert!(matches!(d[0].1, Outcome::Crashed { .. }));
    assert_eq!(d[1].1, Outcome::SessionLost);
    assert!(!t.s.session_alive(w, g));
}

#[test]
fn recycling_counts_apart_from_restarts() {
    let mut t = T::new(1, |c| c.max_tasks_per_worker = Some(2));
    let (rs, _rx) = run();
    let a = t.submit(&rs, job(0));
    let b = t.submit(&rs, job(1));
    let c = t.submit(&rs, job(2));
    assert_eq!(writes(&t.take()).len(), 2, "never more than it may still run");
    for id in [a, b] {
        t.answer_ok(0, id);
    }
    assert_eq!(writes(&t.take()), vec![(0, SHUTDOWN, 0)]);
    t.exit(0, Some(0), None);
    let st = t.s.stats(t.now);
    assert_eq!((st.workers[0].recycles, st.workers[0].restarts), (1, 0));
    let g = t.gen(0);
    t.take();
    t.bring_up(0, g + 1);
    assert_eq!(t.s.outstanding(), 1);
    let _ = c;
}

#[test]
fn only_self_inflicted_start_failures_count_toward_the_crash_loop() {
    let mut t = T::new(1, |c| {
        c.crash_loop_limit = 2;
        c.restart_backoff = 0.001;
    });
    // Killed from outside while starting, ten times: never broken.
    for _ in 0..10 {
        t.exit(0, None, Some("SIGKILL"));
        t.later(100);
        let spawns = spawns(&t.take());
        assert_eq!(spawns.len(), 1);
        t.s.spawned(0, spawns[0].1, 77, t.now, &mut t.fx);
    }
    assert!(t.s.broken.is_none());
    // Its own failures: an exit code before ready, twice.
    t.exit(0, Some(1), None);
    t.later(100);
    let g = t.gen(0) + 1;
    t.take();
    t.s.spawned(0, g, 78, t.now, &mut t.fx);
    t.exit(0, Some(1), None);
    let why = t.s.broken.clone().expect("broken after two self-inflicted failures");
    assert!(why.contains("failed to start 2 times in a row"), "{why}");
    assert!(why.contains("exited with code 1"), "{why}");
}

#[test]
fn frames_that_cannot_be_valid_kill_the_worker() {
    let mut t = T::new(1, |_| {});
    let (rs, _rx) = run();
    let id = t.submit(&rs, job(0));
    let behind = t.submit(&rs, job(1));
    t.take();
    t.answer_ok(0, behind);
    assert_eq!(kills(&t.take()), vec![0], "a result out of order");
    let _ = id;
    let mut t = T::new(1, |_| {});
    let id = t.submit(&rs, job(0));
    t.start(0, id);
    assert_eq!(kills(&t.take()), vec![0], "a STARTED nobody asked for");
    t.exit(0, None, Some("SIGKILL"));
    let d = delivered(&t.take());
    assert!(
        matches!(&d[0].1, Outcome::Protocol(why) if why.contains("started batch")),
        "{d:?}"
    );
}

#[test]
fn a_deadline_kills_and_charges_only_its_batch() {
    let mut t = T::new(1, |_| {});
    let (rs, _rx) = run();
    let mut j = job(0);
    j.timeout = Some(Duration::from_millis(100));
    let _id = t.submit(&rs, j);
    let behind = t.submit(&rs, job(1));
    t.take();
    t.later(50);
    assert!(kills(&t.take()).is_empty());
    t.later(60);
    assert_eq!(kills(&t.take()), vec![0]);
    t.exit(0, None, Some("SIGKILL"));
    let d = delivered(&t.take());
    assert_eq!(d, vec![(0, Outcome::Timeout { seconds: 0.1 }, true)]);
    assert_eq!(t.s.outstanding(), 1, "the batch behind it is requeued: {behind}");
}

#[test]
fn terminate_says_which_batches_ran_and_which_never_started() {
    let mut t = T::new(1, |_| {});
    let (rs, _rx) = run();
    let running = t.submit(&rs, job(0));
    t.submit(&rs, job(1));
    t.submit(&rs, job(2));
    t.take();
    let _ = running;
    t.s.stop(false, t.now, &mut t.fx);
    let fx = t.take();
    let d = delivered(&fx);
    assert_eq!(d.len(), 2);
    assert!(d
        .iter()
        .all(|(_, o, started)| matches!(o, Outcome::Aborted(_)) && !started));
    t.exit(0, None, Some("SIGTERM"));
    let d = delivered(&t.take());
    assert_eq!(d.len(), 1);
    assert!(matches!(&d[0], (0, Outcome::Aborted(why), true) if why.contains("while it ran")));
    assert!(t.s.finished());
}

#[test]
fn a_batch_given_back_waits_for_an_idle_worker_rather_than_behind_another_long_run() {
    let mut t = T::new(2, |c| c.steal_after = 0.0);
    let (rs, _rx) = run();
    let long0 = t.submit(&rs, job(0));
    let long1 = t.submit(&rs, job(1));
    let held = t.submit(&rs, job(2));
    t.take();
    let _ = long0;
    // Worker 1 finishes: idle, the held batch on worker 0 is asked back.
    t.answer_ok(1, long1);
    assert_eq!(writes(&t.take()), vec![(0, REVOKE, held)]);
    // Before the answer, worker 1 gets a long run of its own.
    let other = t.submit(&rs, job(3));
    t.take();
    t.revoked(0, held);
    assert!(writes(&t.take()).is_empty(), "no worker is idle: it waits in the queue");
    t.answer_ok(1, other);
    assert_eq!(writes(&t.take()), vec![(1, TASK, held)]);
}
