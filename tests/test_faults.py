"""Fault isolation: a crash costs exactly its batch; timeouts are real; retries, recycling, shutdown."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import slither
from slither.chaos import killing_workers


def _full(pool):
    assert pool.wait_ready(timeout=30)
    st = pool.stats()
    return all(w.state == "ready" for w in st.workers)


@pytest.mark.parametrize(
    ("fn", "check"),
    [
        ("_helpers:segfault_on", lambda f: f.signal == "SIGSEGV"),
        ("_helpers:exit_on", lambda f: f.exit_code == 3 and f.signal is None),
    ],
)
def test_crash_fails_only_its_batch(pool, fn, check):
    out = pool.dispatch(fn, range(12), batch_size=2, on_error="skip")
    assert [f.index for f in out.failures] == [2, 3]
    assert all(f.kind == "crash" and check(f) for f in out.failures)
    assert out.results == [x for x in range(12) if x not in (2, 3)]
    assert _full(pool)
    assert sum(w.restarts for w in pool.stats().workers) == 1


def test_crash_under_raise_names_the_cause(pool):
    with pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
        pool.map("_helpers:segfault_on", range(6), batch_size=1)
    assert pool.map("_helpers:inc", range(3)) == [1, 2, 3]


def test_sigkill_from_outside(pool):
    session = pool.session()
    victim = session.pid
    session.close()

    def kill_soon():
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)

    t = threading.Thread(target=kill_soon)
    t.start()
    out = pool.dispatch("_helpers:sleep_on", [3, 3, 3, 3], batch_size=1, on_error="skip",
                        batch_timeout=5.0)
    t.join()
    killed = [f for f in out.failures if f.kind == "crash"]
    assert killed and all(f.signal == "SIGKILL" and f.pid == victim for f in killed)
    assert _full(pool)


@pytest.mark.timeout(60)
def test_crash_loop_stops_the_pool_with_one_clear_error():
    t0 = time.monotonic()
    with pytest.raises(slither.PoolBroken, match="(?s)failed to start 3 times.*init failed on purpose"):
        slither.Pool(2, init="_helpers:init_raises")
    assert time.monotonic() - t0 < 30
    with pytest.raises(slither.PoolBroken, match="No module named"):
        slither.Pool(1, init="no_such_module_abc:f")


@pytest.mark.parametrize("fn", ["_helpers:sleep_on", "_helpers:spin_on"])
def test_timeout_kills_and_replaces_the_worker(pool, fn):
    before = sum(w.restarts for w in pool.stats().workers)
    out = pool.dispatch(fn, range(6), batch_size=1, batch_timeout=0.5, on_error="skip")
    assert [f.index for f in out.failures] == [3]
    assert out.failures[0].kind == "timeout" and isinstance(out.failures[0].exception, slither.BatchTimeout)
    assert out.results == [0, 1, 2, 4, 5]
    assert _full(pool)
    assert sum(w.restarts for w in pool.stats().workers) == before + 1
    with pytest.raises(slither.BatchTimeout, match="timeout"):
        pool.map(fn, [3], batch_timeout=0.3)


def test_retry_runs_a_crashed_batch_again_on_a_live_worker(pool, tmp_path):
    marker = tmp_path / "crashed-once"

    def crash_once(x):
        if x == 3 and not marker.exists():
            marker.write_text("x")
            os._exit(9)
        return x

    out = pool.dispatch(crash_once, range(8), batch_size=2, on_error="retry")
    assert out.ok and out.results == list(range(8))
    assert out.stats.retried_batches == 1


def test_retry_gives_up_then_skips_or_raises(pool):
    out = pool.dispatch("_helpers:fail_on", range(6), batch_size=2,
                        on_error=slither.Retry(attempts=3, backoff=0.01, then="skip"))
    assert [f.index for f in out.failures] == [3]
    assert out.failures[0].attempts == 3
    with pytest.raises(ValueError):
        pool.map("_helpers:fail_on", range(6), on_error=slither.Retry(attempts=2, backoff=0.01))


def test_callable_policy_decides(pool):
    seen = []

    def policy(failure):
        seen.append(failure)
        return "retry" if failure.attempts < 2 else "skip"

    out = pool.dispatch("_helpers:fail_on", range(6), batch_size=6, on_error=policy)
    assert [f.index for f in out.failures] == [3]
    assert [f.attempts for f in seen] == [1, 2]
    with pytest.raises(slither.ConfigError, match="returned 'maybe'"):
        pool.map("_helpers:fail_on", range(6), on_error=lambda f: "maybe")


def test_recycling_by_task_count_loses_nothing():
    with slither.Pool(2, max_tasks_per_worker=3) as p:
        out = p.map("_helpers:pid_of", range(40), batch_size=2)
        assert len(out) == 40
        assert len(set(out)) > 2
        assert p.wait_ready(30)
        assert sum(w.recycles for w in p.stats().workers) >= 4


def test_recycling_by_memory_loses_nothing():
    with slither.Pool(1, max_memory_per_worker=80 * 2**20) as p:
        pids = []
        for i in range(8):
            pids.append(p.call("_helpers:grow", i))
            pids.append(p.call("_helpers:pid_of", i))
            time.sleep(0.3)
        assert p.wait_ready(30)
        assert p.stats().workers[0].recycles >= 1


def test_close_lets_in_flight_batches_finish():
    p = slither.Pool(2)
    futs = [p.submit("_helpers:slow", i, 0.2) for i in range(4)]
    time.sleep(0.05)
    p.close()
    assert [f.result(timeout=10) for f in futs] == [0, 1, 2, 3]


@pytest.mark.timeout(180)
def test_chaos_every_input_ends_as_result_or_failure():
    n = 100_000
    with slither.Pool(2) as p:
        with killing_workers(p, every=0.1, seed=1) as chaos:
            out = p.dispatch("_helpers:spin_batch", range(n), per="batch", batch_size=200,
                             on_error=slither.Retry(attempts=50, backoff=0.0, then="skip"))
        assert chaos.kills > 0
        covered = sorted(out.indices + [f.index for f in out.failures])
        assert covered == list(range(n))
        by_index = out.by_index()
        assert all(by_index[i] == i + 1 for i in out.indices)
        assert p.wait_ready(30)
        assert all(w.state == "ready" for w in p.stats().workers)


@pytest.mark.parametrize("every", [0, -1, float("inf"), float("nan"), "0.1", None, True])
def test_killing_workers_rejects_an_interval_that_is_not_a_positive_number(pool, every):
    with pytest.raises(ValueError, match="every must be a positive"):
        with killing_workers(pool, every=every):
            pass


@pytest.mark.parametrize("kwargs", [{"attempts": 1.5}, {"attempts": True}, {"attempts": 0}, {"backoff": -1},
                                    {"backoff": "x"}, {"backoff": float("nan")}, {"then": "bogus"}])
def test_retry_rejects_bad_values_naming_them(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(slither.ConfigError, match=name):
        slither.Retry(**kwargs)
