"""slither.Pool as a concurrent.futures.Executor: submit, cancellable futures, map, shutdown, asyncio's executor
hooks, a ProcessPoolExecutor program run unchanged, and no abort at interpreter exit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import textwrap
import time

import pytest
import slither
from _dropin_helpers import add, fail_on, nap, nap_pid, nap_then_touch, touch
from _helpers import eventually

TESTS = os.path.dirname(os.path.abspath(__file__))


def _same_output_as_the_stdlib(tmp_path, source):
    """Runs ``source`` with the stdlib's executor, then with slither's; both succeed, print the same: that."""
    stdlib = _run_script(tmp_path, source, "stdlib")
    ours = _run_script(tmp_path, source, "slither")
    assert stdlib.returncode == 0, stdlib.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == stdlib.stdout
    return ours.stdout


def _run_script(tmp_path, source, *args, timeout=120):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=env)


def test_pool_is_an_executor(pool):
    assert isinstance(pool, concurrent.futures.Executor)
    fut = pool.submit(add, 2, b=3)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 5
    done, _ = concurrent.futures.wait([pool.submit(nap, 0.01, i) for i in range(6)], timeout=30)
    assert sorted(f.result() for f in done) == list(range(6))


@pytest.mark.timeout(60)
def test_a_call_that_has_not_started_can_be_cancelled_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    with slither.Pool(1) as pool:
        # One worker and a window of two calls in flight: the third call waits in the host.
        busy = [pool.submit(nap, 0.5, i) for i in range(2)]
        waiting = pool.submit(touch, str(marker), "ran")
        assert not waiting.running() and not waiting.done()
        assert waiting.cancel()
        assert waiting.cancelled()
        assert [f.result(timeout=30) for f in busy] == [0, 1]
        after = pool.submit(touch, str(tmp_path / "after"), "after")
        assert after.result(timeout=30) == "after"
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result(timeout=1)
    assert not marker.exists(), "a cancelled call ran"
    # A call already handed to a worker reports running and cannot be cancelled (as in the stdlib).
    with slither.Pool(1) as pool:
        running = pool.submit(nap, 0.3, "x")
        assert not running.cancel()
        assert running.result(timeout=30) == "x"


def test_map_zips_several_iterables_and_takes_chunksize(pool):
    assert pool.map(add, [1, 2, 3], [10, 20, 30, 40]) == [11, 22, 33]
    assert pool.map(add, range(10), range(10), chunksize=3) == [2 * i for i in range(10)]
    assert pool.map("_dropin_helpers:add", "ab", "cd") == ["ac", "bd"]
    assert list(pool.map(abs, [-1, -2])) == [1, 2]
    with pytest.raises(TypeError, match="at least one iterable"):
        pool.map(abs)


@pytest.mark.timeout(60)
def test_map_timeout_is_the_overall_wait_and_cancels_the_rest():
    with slither.Pool(2) as pool:
        before = {w.pid for w in pool.workers_info()}
        t0 = time.monotonic()
        with pytest.raises(concurrent.futures.TimeoutError):
            pool.map(nap, [0.05, 30, 30], timeout=1.0, chunksize=1)
        assert time.monotonic() - t0 < 10
        # The workers that were running the 30 s calls were killed and replaced; the pool goes on.
        assert eventually(lambda: not before & {w.pid for w in pool.workers_info()})
        assert pool.wait_ready(timeout=30)
        assert pool.map(abs, [-1], timeout=30) == [1]
        with pytest.raises(slither.ConfigError, match="timeout"):
            pool.map(abs, [1], timeout="soon")


def test_the_per_batch_deadline_is_batch_timeout(pool):
    with pytest.raises(slither.BatchTimeout):
        pool.map(nap, [5], batch_timeout=0.3)
    with pytest.raises(TypeError, match="batch_timeout"):
        pool.imap(nap, [5], timeout=0.3)
    with pytest.raises(TypeError, match="did you mean batch_size"):
        pool.map(abs, [1], batchsize=3)
    with pytest.raises(slither.ConfigError, match="batch_timeout must be a positive"):
        pool.map(abs, [1], batch_timeout=0)


@pytest.mark.timeout(60)
def test_shutdown_waits_or_cancels_pending_calls(tmp_path):
    pool = slither.Pool(1)
    busy = [pool.submit(nap, 0.3, i) for i in range(2)]
    pending = [pool.submit(touch, str(tmp_path / "never"), i) for i in range(3)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert [f.result() for f in busy] == [0, 1]
    assert all(f.cancelled() for f in pending)
    assert not (tmp_path / "never").exists()
    assert pool.closed
    with pytest.raises(slither.PoolClosed):
        pool.submit(abs, 1)

    pool = slither.Pool(1)
    futs = [pool.submit(nap, 0.2, i) for i in range(4)]
    t0 = time.monotonic()
    pool.shutdown(wait=False)
    assert time.monotonic() - t0 < 0.5
    assert [f.result(timeout=30) for f in futs] == [0, 1, 2, 3]
    pool.join(timeout=30)


@pytest.mark.timeout(60)
def test_terminate_fails_open_futures_saying_whether_they_started():
    pool = slither.Pool(1)
    running = pool.submit(nap, 30, "x")
    pool.submit(nap, 30, "y")
    waiting = pool.submit(nap, 30, "z")
    time.sleep(0.3)
    pool.terminate()
    with pytest.raises(slither.PoolClosed, match="killed while running"):
        running.result(timeout=10)
    with pytest.raises(slither.PoolClosed, match="never started"):
        waiting.result(timeout=10)


@pytest.mark.timeout(60)
def test_run_in_executor_and_default_executor(pool):
    host = os.getpid()

    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(pool, add, 1, 2)
        loop.set_default_executor(pool)
        b = await loop.run_in_executor(None, nap_pid, 0.01)
        c = await asyncio.to_thread(nap_pid, 0.01)  # wraps the call in a contextvars.Context.run partial
        return a, b, c

    loop = asyncio.new_event_loop()
    try:
        a, b, c = loop.run_until_complete(main())
    finally:
        loop.close()
    workers = {w.pid for w in pool.workers_info()}
    assert a == 3 and b in workers and c in workers and host not in (b, c)


PPE_PROGRAM = """
    import os
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed, wait, FIRST_COMPLETED

    def init(tag):
        os.environ["TAG"] = tag

    def work(x, y=1):
        return f"{os.environ['TAG']}:{x * y}"

    def fails(x):
        raise KeyError(x)

    def main(Executor):
        with Executor(max_workers=2, initializer=init, initargs=("t",)) as ex:
            print(list(ex.map(work, range(5), range(5), timeout=60, chunksize=2)))
            futures = {ex.submit(work, i, y=3): i for i in range(4)}
            print(sorted(f.result() for f in as_completed(futures, timeout=60)))
            done, _ = wait([ex.submit(work, 9)], timeout=60, return_when=FIRST_COMPLETED)
            print([f.result() for f in done])
            bad = ex.submit(fails, 7)
            print(type(bad.exception(timeout=60)).__name__)
            seen = []
            f = ex.submit(work, 2)
            f.add_done_callback(lambda f: seen.append(f.result()))
            f.result(timeout=60)
            ex.shutdown(wait=True)
            print(seen)

    if __name__ == "__main__":
        if sys.argv[1] == "slither":
            from slither import ProcessPoolExecutor  # the only line that changes
        main(ProcessPoolExecutor)
"""


LAZY_MAP_PROGRAM = """
    import sys
    import time
    from concurrent.futures import ProcessPoolExecutor

    def slow(x):
        time.sleep(x)
        return x

    def fails_on_3(x):
        if x == 3:
            raise KeyError(x)
        return x

    def main(Executor):
        with Executor(max_workers=2) as ex:
            results = ex.map(slow, [0.01, 3.0], timeout=0.5)  # nothing is raised here...
            print(type(results).__name__ != "list")
            try:
                for r in results:
                    print("got", r)
            except TimeoutError:                             # ...but from __next__
                print("timed out")
            it = ex.map(fails_on_3, range(6), chunksize=2)
            try:
                for r in it:
                    print("got", r)
            except KeyError as exc:
                print("raised", exc)

    if __name__ == "__main__":
        if sys.argv[1] == "slither":
            from slither import ProcessPoolExecutor
        main(ProcessPoolExecutor)
"""


@pytest.mark.timeout(180)
def test_executor_map_is_lazy_with_the_timeout_raised_from_next_as_in_the_stdlib(tmp_path):
    assert _same_output_as_the_stdlib(tmp_path, LAZY_MAP_PROGRAM).splitlines() == ["True", "got 0.01", "timed out", "got 0", "got 1", "raised 3"]  # a chunk fails whole, as in the stdlib


@pytest.mark.timeout(60)
def test_executor_map_submits_at_once_and_yields_each_result_before_the_later_ones_finish(tmp_path):
    marks = [tmp_path / f"done{i}" for i in range(3)]
    with slither.ProcessPoolExecutor(max_workers=2) as ex:
        it = ex.map(nap_then_touch, [0.05, 2.0, 0.05], [str(m) for m in marks])
        # Every call was handed over before the first next(): the third finishes while nobody reads.
        assert eventually(marks[2].exists)
        assert next(it) == 0.05
        assert not marks[1].exists(), "the first result waited for the second call"
        assert list(it) == [2.0, 0.05]
        assert list(ex.map(add, "ab", "cd")) == ["ac", "bd"]
        assert list(ex.map(add, range(7), range(7), chunksize=3)) == [2 * i for i in range(7)]
        with pytest.raises(TypeError, match="at least one iterable"):
            ex.map(abs)
        with pytest.raises(slither.ConfigError, match="chunksize"):
            ex.map(abs, [1], chunksize=0)
        # The native Pool API is unchanged on this class.
        assert ex.call(add, 1, 2) == 3
        assert ex.imap(abs, [-1, -2]).__next__() == 1


@pytest.mark.timeout(60)
def test_closing_an_executor_map_early_cancels_the_calls_not_started(tmp_path):
    marker = tmp_path / "ran"
    with slither.ProcessPoolExecutor(max_workers=1) as ex:
        # One worker and a window of two calls: the rest wait in the host, cancellable.
        it = ex.map(nap_then_touch, [0.3, 0.3, 0.3, 0.3, 0.3], [str(tmp_path / "a")] * 4 + [str(marker)])
        assert next(it) == 0.3
        it.close()
    assert not marker.exists(), "a call of a closed map ran"
    with slither.ProcessPoolExecutor(max_workers=2) as ex:
        it = ex.map(fail_on, range(4), [1] * 4)
        assert next(it) == 0
        with pytest.raises(KeyError):
            next(it)


@pytest.mark.timeout(180)
def test_a_process_pool_executor_program_runs_unchanged(tmp_path):
    assert "['t:0', 't:1', 't:4', 't:9', 't:16']" in _same_output_as_the_stdlib(tmp_path, PPE_PROGRAM)


INIT_GLOBAL_PROGRAM = """
    import sys
    from concurrent.futures import ProcessPoolExecutor

    def init(tag):
        global TAG
        TAG = tag

    def work(x):
        return f"{TAG}:{x}"

    if __name__ == "__main__":
        if sys.argv[1] == "slither":
            from slither import Pool as ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=2, initializer=init, initargs=("t",)) as ex:
            print(list(ex.map(work, range(3))))
"""


@pytest.mark.timeout(120)
def test_an_initializer_global_in_main_is_seen_by_tasks(tmp_path):
    assert _run_script(tmp_path, INIT_GLOBAL_PROGRAM, "stdlib").stdout == "['t:0', 't:1', 't:2']\n"
    ours = _run_script(tmp_path, INIT_GLOBAL_PROGRAM, "slither")
    assert ours.returncode == 0 and ours.stdout == "['t:0', 't:1', 't:2']\n", ours.stderr[-500:]


ABORT_SCRIPT = """
    import time
    import slither

    def slow(x):
        time.sleep(0.05)
        return x

    if __name__ == "__main__":
        first = slither.Pool(2)
        futures = [first.submit(slow, i) for i in range(8)]
        first.subscribe(lambda event: None)
        first.close()
        second = slither.Pool(2)  # left open: the exit hook stops it, with calls still in flight
        second.subscribe(lambda event: None)
        late = [second.submit(slow, i) for i in range(4)]
        print(sum(second.map(abs, range(-5, 0))), sum(f.result() for f in futures))
"""


@pytest.mark.timeout(600)
def test_no_abort_at_exit_after_calls_in_flight_at_close(tmp_path):
    # Calls in flight at close() and a second pool left open used to make a slither thread re-enter the
    # interpreter while it finalized: "FATAL: exception not rethrown", exit 134 (20 runs in 30 before the
    # threads were joined at close, terminate and exit).
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(ABORT_SCRIPT))
    codes = []
    for _ in range(25):
        procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=tmp_path) for _ in range(2)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            codes.append(p.returncode)
            assert p.returncode != 0 or out.strip() == "15 28", (out, err)
            assert "FATAL" not in err, err
    assert len(codes) == 50
    assert codes.count(0) == 50, f"{50 - codes.count(0)} of 50 runs failed: exit codes {sorted(set(codes))}"


def test_no_slither_thread_outlives_close():
    import threading

    def ours():
        return [t for t in threading.enumerate() if t.name.startswith("slither-")]

    before = set(ours())
    pool = slither.Pool(1)
    pool.subscribe(lambda e: None)
    futs = [pool.submit(nap, 0.05, i) for i in range(4)]
    pool.map_async(nap, [0.01] * 3)
    pool.close()
    assert [f.result() for f in futs] == [0, 1, 2, 3]
    assert set(ours()) <= before, ours()


EXIT_PROGRAM = """
    import os
    import sys
    import time
    from concurrent.futures import ProcessPoolExecutor

    def work(path):
        time.sleep(1.0)
        open(path, "w").close()

    if __name__ == "__main__":
        if sys.argv[1] == "slither":
            from slither import ProcessPoolExecutor
        how = sys.argv[2]
        ex = ProcessPoolExecutor(1)
        for i in range(3):
            ex.submit(work, os.path.join(sys.argv[3], f"done{i}"))
        if how == "no-wait":
            ex.shutdown(wait=False)
        print("script end")
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["no-shutdown", "no-wait"])
def test_calls_submitted_before_the_script_ends_finish_as_in_the_stdlib(tmp_path, how):
    for engine in ("stdlib", "slither"):
        out = tmp_path / engine
        out.mkdir()
        proc = _run_script(tmp_path, EXIT_PROGRAM, engine, how, str(out))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "script end\n"
        assert sorted(p.name for p in out.iterdir()) == ["done0", "done1", "done2"], engine
