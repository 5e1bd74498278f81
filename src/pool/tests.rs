//! The pool against real worker processes (`python3 -m slither._worker` from this checkout).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use crate::config::PoolConfig;

/// A minimal pickle writer for task payloads: `(("name", "module:function"), mode, data)`.
enum P<'a> {
    S(&'a str),
    I(i32),
    T(Vec<P<'a>>),
    L(Vec<P<'a>>),
    EmptyDict,
}

fn pickle(v: &P<'_>) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, v: &P<'_>) {
        match v {
            P::S(s) => {
                out.push(b'X');
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            P::I(i) => {
                out.push(b'J');
                out.extend_from_slice(&i.to_le_bytes());
            }
            P::T(items) => {
                out.push(b'(');
                items.iter().for_each(|x| put(out, x));
                out.push(b't');
            }
            P::L(items) => {
                out.extend_from_slice(b"](");
                items.iter().for_each(|x| put(out, x));
                out.push(b'e');
            }
            P::EmptyDict => out.push(b'}'),
        }
    }
    let mut out = vec![0x80, 2];
    put(&mut out, v);
    out.push(b'.');
    out
}

fn task(function: &str, mode: &str, data: P<'_>) -> Arc<Vec<u8>> {
    Arc::new(pickle(&P::T(vec![
        P::T(vec![P::S("name"), P::S(function)]),
        P::S(mode),
        data,
    ])))
}

fn call(function: &str, args: Vec<P<'_>>) -> Arc<Vec<u8>> {
    task(function, "call", P::L(vec![P::T(vec![P::T(args), P::EmptyDict])]))
}

fn job(tag: u64, payload: Arc<Vec<u8>>) -> Job {
    Job {
        tag,
        payload,
        segment: None,
        items: 1,
        timeout: None,
        pin: None,
    }
}

/// What a result payload unpickles to, as Python's repr (checked with the interpreter itself).
fn unpickle_repr(payload: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import pickle,sys; print(repr(pickle.loads(sys.stdin.buffer.read())), end='')",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(payload).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

fn config(workers: usize) -> PoolConfig {
    let mut cfg = PoolConfig {
        workers,
        python: "python3".into(),
        forward_output: false,
        ..PoolConfig::default()
    };
    cfg.env
        .insert("PYTHONPATH".into(), format!("{}/python", env!("CARGO_MANIFEST_DIR")));
    cfg.shutdown_grace = 1.0;
    cfg
}

fn started(cfg: PoolConfig) -> Pool {
    let pool = Pool::start(cfg, Vec::new(), None).unwrap();
    assert!(
        pool.wait_ready(Duration::from_secs(30)).unwrap(),
        "workers did not become ready"
    );
    pool
}

fn next(run: &Run) -> Completion {
    run.next(Duration::from_secs(30)).expect("no completion within 30 s")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hello_ready_and_staged_shutdown_leave_no_process() {
    for graceful in [true, false] {
        let pool = started(config(2));
        let workers = pool.workers().unwrap();
        assert_eq!(workers.len(), 2);
        assert!(workers
            .iter()
            .all(|w| w.pid > 0 && w.python.starts_with('3') && w.generation == 1));
        let pids: Vec<u32> = workers.iter().map(|w| w.pid).collect();
        pool.shutdown(graceful);
        assert!(
            pids.iter().all(|&p| !alive(p)),
            "a worker outlived shutdown (graceful={graceful})"
        );
    }
}

#[test]
fn every_job_completes_once_with_its_tag() {
    let pool = started(config(2));
    let run = pool.new_run().unwrap();
    for i in 0..40 {
        pool.submit(
            &run,
            job(i, task("builtins:abs", "item", P::L(vec![P::I(-(i as i32))]))),
        )
        .unwrap();
    }
    // Workers start answering while we submit, so the peak lies between one and all forty.
    assert!((1..=40).contains(&run.max_in_flight_seen()));
    let mut tags = BTreeSet::new();
    let mut sample = None;
    for _ in 0..40 {
        let c = next(&run);
        let Outcome::Ok(payload) = c.outcome else {
            panic!("unexpected {:?}", c.outcome)
        };
        if c.tag == 7 {
            sample = Some(payload);
        }
        assert!(tags.insert(c.tag));
    }
    assert_eq!(tags, (0..40).collect());
    assert_eq!(unpickle_repr(&sample.unwrap()), "[7]");
    assert_eq!(run.in_flight(), 0);
    let stats = pool.stats().unwrap();
    assert_eq!(stats.workers.iter().map(|w| w.batches).sum::<u64>(), 40);
    assert!(stats.max_in_flight_seen >= run.max_in_flight_seen() && stats.in_flight == 0 && stats.queued == 0);
}

#[test]
fn large_payloads_cross_intact() {
    let pool = started(config(1));
    let run = pool.new_run().unwrap();
    let big = "x".repeat(3 << 20);
    pool.submit(&run, job(0, call("builtins:len", vec![P::S(&big)])))
        .unwrap();
    let Outcome::Ok(payload) = next(&run).outcome else {
        panic!()
    };
    assert_eq!(unpickle_repr(&payload), (3 << 20).to_string());
}

#[test]
fn a_crash_fails_only_its_batch_and_the_worker_is_replaced() {
    let pool = started(config(1));
    let run = pool.new_run().unwrap();
    pool.submit(&run, job(0, call("os:_exit", vec![P::I(3)]))).unwrap();
    pool.submit(&run, job(1, call("builtins:abs", vec![P::I(-5)]))).unwrap();
    let mut seen = [next(&run), next(&run)];
    seen.sort_by_key(|c| c.tag);
    assert_eq!(
        seen[0].outcome,
        Outcome::Crashed {
            exit_code: Some(3),
            signal: None
        }
    );
    let Outcome::Ok(p) = &seen[1].outcome else {
        panic!("{:?}", seen[1].outcome)
    };
    assert_eq!(unpickle_repr(p), "5");
    wait_until("replacement", || {
        pool.workers().unwrap()[0].generation == 2 && pool.workers().unwrap()[0].state == Phase::Ready
    });
    assert_eq!(pool.stats().unwrap().workers[0].restarts, 1);
}

#[test]
fn sigkill_from_outside_is_reported_with_the_signal() {
    let pool = started(config(1));
    let run = pool.new_run().unwrap();
    let pid = pool.workers().unwrap()[0].pid;
    pool.submit(&run, job(0, call("time:sleep", vec![P::I(30)]))).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let c = next(&run);
    assert_eq!(
        c.outcome,
        Outcome::Crashed {
            exit_code: None,
            signal: Some("SIGKILL".into())
        }
    );
    assert_eq!(c.pid, pid);
}

#[test]
fn a_deadline_kills_and_replaces_the_worker() {
    let pool = started(config(1));
    let run = pool.new_run().unwrap();
    let old = pool.workers().unwrap()[0].pid;
    let mut j = job(0, call("time:sleep", vec![P::I(30)]));
    j.timeout = Some(Duration::from_millis(200));
    let t0 = Instant::now();
    pool.submit(&run, j).unwrap();
    let c = next(&run);
    assert!(matches!(c.outcome, Outcome::Timeout { .. }), "{:?}", c.outcome);
    assert!(t0.elapsed() < Duration::from_secs(10));
    wait_until("replacement", || {
        pool.workers().unwrap()[0].pid != old && pool.workers().unwrap()[0].state == Phase::Ready
    });
    assert!(!alive(old));
}

#[test]
fn a_crash_loop_breaks_the_pool_after_the_limit() {
    let mut cfg = config(1);
    cfg.args = vec!["-c".into(), "import sys; sys.exit(3)".into()];
    cfg.crash_loop_limit = 3;
    cfg.restart_backoff = 0.01;
    let pool = Pool::start(cfg, Vec::new(), None).unwrap();
    let t0 = Instant::now();
    let err = loop {
        match pool.wait_ready(Duration::from_millis(100)) {
            Err(e) => break e,
            Ok(true) => panic!("a worker that exits at once became ready"),
            Ok(false) => assert!(t0.elapsed() < Duration::from_secs(20), "no crash-loop verdict"),
        }
    };
    assert!(matches!(&err, Error::PoolBroken(m) if m.contains("3 times")), "{err}");
}

#[test]
fn pinned_jobs_fail_with_session_lost_once_the_worker_died() {
    let pool = started(config(2));
    let pin = pool.open_session(Duration::from_secs(10)).unwrap();
    let pid = pool.workers().unwrap()[pin.worker].pid;
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until("death noticed", || !pool.session_alive(pin));
    let run = pool.new_run().unwrap();
    let mut j = job(0, call("builtins:abs", vec![P::I(1)]));
    j.pin = Some(pin);
    assert!(matches!(pool.submit(&run, j), Err(Error::SessionLost { .. })));
}

#[test]
fn recycling_by_task_count_loses_nothing() {
    let mut cfg = config(1);
    cfg.max_tasks_per_worker = Some(2);
    let pool = started(cfg);
    let run = pool.new_run().unwrap();
    for i in 0..8 {
        pool.submit(&run, job(i, call("os:getpid", vec![]))).unwrap();
    }
    let mut pids = BTreeSet::new();
    for _ in 0..8 {
        let Outcome::Ok(p) = next(&run).outcome else { panic!() };
        pids.insert(unpickle_repr(&p));
    }
    assert!(pids.len() >= 4, "{pids:?}");
}

#[test]
fn cancel_drops_queued_batches() {
    let pool = started(config(1));
    let run = pool.new_run().unwrap();
    for i in 0..10 {
        pool.submit(&run, job(i, call("time:sleep", vec![P::I(30)]))).unwrap();
    }
    pool.cancel(&run);
    wait_until("cancelled batches to drain", || run.in_flight() == 0);
    assert!(run.next(Duration::from_millis(100)).is_none());
    let other = pool.new_run().unwrap();
    pool.submit(&other, job(0, call("builtins:abs", vec![P::I(-2)])))
        .unwrap();
    assert!(matches!(next(&other).outcome, Outcome::Ok(_)));
}
