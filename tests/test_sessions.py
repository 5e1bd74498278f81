"""Sessions (strict affinity), broadcast, stats and telemetry."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import pytest
import slither


def test_session_state_persists_on_one_worker(pool):
    with pool.session("model-a") as s:
        pids = {s.call("_helpers:remember", "model", "A") for _ in range(5)}
        assert pids == {s.pid}
        assert s.call("_helpers:recall", "model") == "A"
        assert set(s.map("_helpers:pid_of", range(20), batch_size=2)) == {s.pid}
        assert s.map_batches("_helpers:batch_double", range(6), batch_size=2) == [0, 2, 4, 6, 8, 10]
        assert s.dispatch("_helpers:inc", range(3)).results == [1, 2, 3]


def test_concurrent_sessions_from_host_threads_stay_separate():
    with slither.Pool(2) as pool:
        results = {}
        barrier = threading.Barrier(2)

        def train(name):
            with pool.session(name) as s:
                barrier.wait()
                for i in range(20):
                    s.call("_helpers:remember", f"k-{name}", f"{name}{i}")
                results[name] = (s.pid, s.call("_helpers:recall", f"k-{name}"),
                                 s.call("_helpers:recall", f"k-{'b' if name == 'a' else 'a'}"))

        threads = [threading.Thread(target=train, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results["a"][0] != results["b"][0]  # least loaded: one session per worker
        assert results["a"][1:] == ("a19", None)
        assert results["b"][1:] == ("b19", None)


def test_session_lost_after_its_worker_dies_and_can_be_reopened(pool):
    s = pool.session()
    s.call("_helpers:remember", "x", 1)
    os.kill(s.pid, signal.SIGKILL)
    assert pool.wait_ready(30)
    with pytest.raises(slither.SessionLost):
        s.call("_helpers:recall", "x")
    assert not s.alive
    s.close()
    with pool.session() as again:
        assert again.call("_helpers:recall", "x") in (None, 1)


def test_session_cleanup_runs_on_close(pool):
    s = pool.session(cleanup="_helpers:cleanup_mark")
    pid = s.pid
    s.close()
    replies = pool.broadcast("_helpers:recall", "cleaned")
    assert {r.pid: r.value for r in replies.values()}[pid] == pid


def test_broadcast_reaches_every_worker_once(pool):
    replies = pool.broadcast("_helpers:pid_of", None)
    assert sorted(replies) == [0, 1]
    assert {r.pid for r in replies.values()} == {w.pid for w in pool.workers_info()}
    assert all(r.value == r.pid for r in replies.values())
    with pytest.raises(ValueError):
        pool.broadcast("_helpers:boom", 1)


def test_stats_per_worker_and_pool(pool):
    pool.map("_helpers:inc", range(64), batch_size=8, max_in_flight=2)
    time.sleep(0.25)
    st = pool.stats()
    assert sum(w.batches for w in st.workers) >= 8
    assert sum(w.items for w in st.workers) >= 64
    for w in st.workers:
        assert w.pid > 0 and w.state == "ready" and w.uptime_s > 0
        assert w.peak_rss_bytes >= w.rss_bytes > 0
    assert st.max_in_flight_seen >= 1 and st.in_flight == 0


def test_telemetry_events_reach_subscribers(pool):
    events = []
    unsubscribe = pool.subscribe(events.append)
    pool.map("_helpers:inc", range(20), batch_size=5)
    victim = pool.workers_info()[0].pid
    os.kill(victim, signal.SIGKILL)
    assert pool.wait_ready(30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not {"worker_replaced", "worker_ready"} <= {e["event"] for e in events}:
        time.sleep(0.05)
    unsubscribe()
    kinds = {e["event"] for e in events}
    assert {"batch_started", "batch_finished", "worker_exited", "worker_replaced", "worker_ready"} <= kinds
    finished = [e for e in events if e["event"] == "batch_finished"]
    assert all(e["items"] == 5 and e["duration_s"] >= 0 for e in finished)
    exited = next(e for e in events if e["event"] == "worker_exited")
    assert exited["pid"] == victim and exited["signal"] == "SIGKILL"


def test_failed_and_retried_batches_are_events(pool, tmp_path):
    events = []
    unsubscribe = pool.subscribe(events.append)
    marker = tmp_path / "once"

    def crash_once(x):
        if x == 1 and not marker.exists():
            marker.write_text("x")
            os._exit(5)
        return x

    assert pool.dispatch(crash_once, range(4), batch_size=2, on_error="retry").ok
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "batch_failed" not in {e["event"] for e in events}:
        time.sleep(0.05)
    unsubscribe()
    failed = next(e for e in events if e["event"] == "batch_failed")
    assert "exited with code 5" in failed["cause"] and failed["items"] == 2
    retried = next(e for e in events if e["event"] == "batch_retried")
    assert retried["attempt"] == 2 and retried["cause"] == "crash"


def test_telemetry_reaches_logging_at_debug(caplog):
    with caplog.at_level(logging.DEBUG, logger="slither"):
        with slither.Pool(1) as p:
            p.map("_helpers:inc", range(3))
            time.sleep(0.5)
    assert any("batch_finished" in r.getMessage() for r in caplog.records)


def test_session_timeout_values(pool):
    # 0: a worker ready now is taken at once; None: no limit; nonsense: a ConfigError naming it.
    with pool.session(timeout=0) as s:
        assert s.call(abs, -1) == 1
    with pool.session(timeout=None) as s:
        assert s.call(abs, -2) == 2
    for bad in (-1, float("nan"), "soon"):
        with pytest.raises(slither.ConfigError, match="timeout"):
            pool.session(timeout=bad)
    assert pool.wait_ready(float("inf"))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_failing_cleanup_keeps_its_type_and_says_it_was_the_cleanup(pool):
    with pytest.raises(ModuleNotFoundError) as info:
        with pool.session("s", cleanup="no_such_module_here:fn"):
            pass
    assert any("raised by the cleanup" in n and "session s" in n for n in info.value.__notes__)
