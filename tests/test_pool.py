"""The core pool: start-up, dispatch, ordering, laziness, backpressure, host threads, lifecycle."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
import slither
from _helpers import inc


def test_start_up_says_hello(pool):
    info = pool.workers_info()
    assert len(info) == pool.size == 2
    assert all(w.state == "ready" and w.pid > 0 for w in info)
    assert {w.python for w in info} == {".".join(map(str, sys.version_info[:3]))}
    expected_gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert all(w.gil == expected_gil for w in info)
    assert len({w.pid for w in info}) == 2


def test_workers_default_to_cpu_count():
    with slither.Pool() as p:
        assert p.size == (os.cpu_count() or 1)


def test_bad_worker_count_is_a_clear_error():
    with pytest.raises(slither.ConfigError, match="workers"):
        slither.Pool(0)


def test_init_runs_once_per_worker_before_first_batch():
    with slither.Pool(2, init="_helpers:init_set", init_args=("ready",)) as p:
        assert {r.value for r in p.broadcast("_helpers:recall", "init").values()} == {"ready"}


def test_map_orders_results_and_accepts_names_and_values(pool):
    assert pool.map(inc, range(100)) == list(range(1, 101))
    assert pool.map("_helpers:square", range(10), batch_size=3) == [x * x for x in range(10)]
    k = 7
    assert pool.map(lambda x: x + k, range(5)) == [7, 8, 9, 10, 11]
    assert pool.map(abs, []) == []


def test_imap_unordered_yields_everything(pool):
    got = list(pool.imap("_helpers:slow", range(20), batch_size=1, ordered=False))
    assert sorted(got) == list(range(20))


def test_map_batches_and_call_and_submit(pool):
    assert pool.map_batches("_helpers:batch_double", range(10), batch_size=4) == [x * 2 for x in range(10)]
    assert pool.call(divmod, 17, 5) == (3, 2)
    futs = [pool.submit(pow, 2, i) for i in range(10)]
    assert [f.result(timeout=30) for f in futs] == [2**i for i in range(10)]
    bad = pool.submit("_helpers:boom", 1)
    with pytest.raises(ValueError, match="bad item 1"):
        bad.result(timeout=30)


def test_functions_defined_in_main_travel_by_value(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import slither
        def triple(x):
            return 3 * x
        if __name__ == "__main__":
            with slither.Pool(2) as p:
                print(p.map(triple, range(4)))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 3, 6, 9]"


def test_input_is_consumed_lazily_with_bounded_in_flight(pool):
    consumed = itertools.count()

    def endless():
        nonlocal consumed
        for i in itertools.count():
            next(consumed)
            yield i

    for ordered in (True, False):
        consumed = itertools.count()
        it = pool.imap(inc, endless(), batch_size=10, max_in_flight=3, ordered=ordered)
        first = [next(it) for _ in range(50)]
        if ordered:
            assert first == list(range(1, 51))
        pulled = next(consumed)
        # Bounded by the batches in flight and buffered, never by the input's length.
        assert pulled <= 50 + (2 * 3 + 2) * 10, (ordered, pulled)
        it.close()
    # A slow first batch must not let the host pull ahead and buffer the input behind it.
    consumed = itertools.count()

    def slow_first(x):
        if x == 0:
            time.sleep(0.5)
        return x + 1

    it = pool.imap(slow_first, endless(), batch_size=10, max_in_flight=3)
    assert next(it) == 1
    assert next(consumed) <= 10 + 2 * 3 * 10
    it.close()
    assert pool.map(inc, [1]) == [2]


def test_max_in_flight_holds(pool):
    out = pool.dispatch("_helpers:slow", range(60), batch_size=2, max_in_flight=3)
    assert out.ok and out.stats.max_in_flight_seen <= 3
    assert pool.stats().max_in_flight_seen >= 1


def test_many_host_threads_share_one_pool(pool):
    errors = []
    results = {}

    def work(k):
        try:
            results[k] = pool.map(inc, range(k * 100, k * 100 + 100), batch_size=7)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(8):
        assert results[k] == list(range(k * 100 + 1, k * 100 + 101))


def test_ctrl_c_interrupts_a_blocked_map_and_the_pool_stays_usable(pool):
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        pool.map("_helpers:sleep_on", [3, 3, 3, 3], batch_size=1)
    assert time.monotonic() - t0 < 2.0
    timer.cancel()
    # The interrupted batches were cancelled; the pool still takes work (here on a fresh run).
    assert pool.stats().closed is False


def test_worker_output_is_prefixed_and_cannot_corrupt_the_protocol(capfd):
    def chatty(x):
        print("hello from the worker", x)
        print("x" * 1_000_000)
        os.write(1, b"raw bytes on fd 1\n")
        return x

    with slither.Pool(1) as p:
        assert p.map(chatty, range(3)) == [0, 1, 2]
        pid = p.workers_info()[0].pid
    err = capfd.readouterr().err
    assert f"[w0 pid {pid}] hello from the worker 0" in err
    assert f"[w0 pid {pid}] raw bytes on fd 1" in err


def test_close_terminate_and_gc_leave_no_process():
    p = slither.Pool(2)
    pids = [w.pid for w in p.workers_info()]
    p.close()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    with pytest.raises(slither.PoolClosed):
        p.map(inc, [1])
    p = slither.Pool(2)
    pids = [w.pid for w in p.workers_info()]
    p.terminate()
    assert not any(psutil.pid_exists(pid) for pid in pids)
    p = slither.Pool(1)
    pid = p.workers_info()[0].pid
    del p
    gc.collect()
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(pid)


@pytest.mark.timeout(60)
def test_host_sigkill_takes_every_worker_with_it(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent("""
        import sys, time, slither
        p = slither.Pool(2)
        print(" ".join(str(w.pid) for w in p.workers_info()), flush=True)
        time.sleep(60)
    """))
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in host.stdout.readline().split()]
    assert len(pids) == 2
    host.kill()
    host.wait()
    time.sleep(1.0)
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_stats_report_workers_and_memory(pool):
    pool.map(inc, range(100), batch_size=10)
    time.sleep(0.3)
    st = pool.stats()
    assert sum(w.items for w in st.workers) >= 100
    assert all(w.peak_rss_bytes > 0 and w.pid > 0 and w.state == "ready" for w in st.workers)
    assert st.in_flight == 0 and st.queued == 0
