"""Per-item truth: every item ends as its own result or its own Failure, and nothing a task does can end,
exit or mislead the host. One test (or a few) per case of issue 14, with real workers."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import slither
from slither import errors
from slither._native import _slither
from slither.chaos import killing_workers

H = "_items_helpers"


def _script(tmp_path, body: str) -> subprocess.CompletedProcess[str]:
    """Runs ``body`` as a user's script (its classes and functions live in ``__main__``)."""
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=90, cwd=tmp_path)


# 1 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_stop_iteration_fails_its_item_and_keeps_positions(pool):
    out = pool.dispatch(f"{H}:stop_on", range(6), batch_size=6)
    assert out.results == [0, 1, 2, 4, 5] and out.indices == [0, 1, 2, 4, 5]
    (f,) = out.failures
    assert f.index == 3 and isinstance(f.exception, slither.TaskError)
    assert isinstance(f.exception.__cause__, StopIteration)
    assert "stop_on" in f.traceback
    # Raised from imap, a StopIteration would end the caller's loop silently: it arrives as a TaskError.
    with pytest.raises(slither.TaskError, match="StopIteration"):
        list(pool.imap(f"{H}:stop_on", range(6), batch_size=6))


# 2 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("fn", "kwargs", "original"), [
    ("exit_on", {}, SystemExit),
    ("interrupt_on", {}, KeyboardInterrupt),
    ("generator_exit_on", {}, GeneratorExit),
    ("custom_base_on", {}, BaseException),
])
def test_base_exceptions_are_their_items_failure(pool, fn, kwargs, original):
    out = pool.dispatch(f"{H}:{fn}", range(6), batch_size=6)
    assert out.results == [0, 1, 2, 4, 5]
    (f,) = out.failures
    assert f.kind == "error" and isinstance(f.exception, slither.TaskError)
    assert isinstance(f.exception.__cause__, original)
    with pytest.raises(slither.TaskError):
        pool.map(f"{H}:{fn}", range(6), batch_size=6)
    assert all(w.restarts == 0 for w in pool.stats().workers), "no worker died for it"


@pytest.mark.timeout(60)
def test_sys_exit_codes_reach_the_host_as_data(pool):
    with pytest.raises(slither.TaskError, match=r"SystemExit\(3\)") as info:
        pool.call(f"{H}:exit_on", 3, code=3)
    cause = info.value.__cause__
    assert isinstance(cause, SystemExit) and cause.code == 3
    assert isinstance(cause.__cause__, errors.RemoteTraceback) and "exit_on" in cause.__cause__.text
    fut = pool.submit(f"{H}:exit_on", 3, code=0)
    with pytest.raises(slither.TaskError, match=r"SystemExit\(0\)"):
        fut.result(timeout=30)


@pytest.mark.timeout(60)
def test_a_script_whose_task_exits_still_prints_its_results(tmp_path):
    run = _script(tmp_path, f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import slither

        def task(x):
            if x == 2:
                sys.exit(3)
            return x * 10

        if __name__ == "__main__":
            with slither.Pool(2) as pool:
                try:
                    pool.map(task, range(5), batch_size=5)
                except Exception as exc:
                    print("map raised", type(exc).__name__)
                out = pool.dispatch(task, range(5), batch_size=5)
            print("results", out.results, "failed", [f.index for f in out.failures])
    """)
    assert run.returncode == 0, run.stderr
    assert "map raised TaskError" in run.stdout
    assert "results [0, 10, 30, 40] failed [2]" in run.stdout


@pytest.mark.timeout(60)
def test_os_exit_0_is_a_crash_not_a_success(pool):
    with pytest.raises(slither.WorkerCrashed, match="exited with code 0 while running"):
        pool.call(f"{H}:hard_exit_0", 1)
    out = pool.dispatch(f"{H}:hard_exit_0", [1])
    (f,) = out.failures
    assert f.kind == "crash" and f.exit_code == 0 and "exited with code 0" in str(f)


# 3 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_exceptions_defined_in_main_come_back_as_their_own_type(tmp_path):
    run = _script(tmp_path, """
        import slither

        class MyError(Exception):
            pass

        class NeedsArgs(Exception):
            def __init__(self, what, count):
                super().__init__(f"{what} x{count}")
                self.what, self.count = what, count

        def raise_mine(x):
            raise MyError(f"mine {x}")

        def raise_needs_args(x):
            raise NeedsArgs("widget", x)

        if __name__ == "__main__":
            with slither.Pool(2) as pool:
                try:
                    pool.map(raise_mine, [1])
                except MyError as exc:
                    print("caught MyError:", exc)
                try:
                    pool.call(raise_needs_args, 7)
                except NeedsArgs as exc:
                    print("caught NeedsArgs:", exc.what, exc.count)
    """)
    assert run.returncode == 0, run.stderr
    assert "caught MyError: mine 1" in run.stdout
    assert "caught NeedsArgs: widget 7" in run.stdout


# 4 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_one_unpicklable_result_fails_only_its_item(pool):
    out = pool.dispatch(f"{H}:lock_on", range(6), batch_size=6)
    assert out.results == [0, 1, 2, 4, 5]
    (f,) = out.failures
    assert f.index == 3 and f.kind == "serialization" and isinstance(f.exception, slither.SerializationError)
    assert "item 3" in str(f.exception) and "lock" in str(f.exception)


@pytest.mark.timeout(60)
def test_submit_and_broadcast_name_the_argument_that_will_not_pickle(pool):
    lock = threading.Lock()
    with pytest.raises(slither.SerializationError, match="argument 1"):
        pool.submit(f"{H}:identity", 0, lock)
    with pytest.raises(slither.SerializationError, match="keyword argument 'guard'"):
        pool.broadcast(f"{H}:identity", guard=lock)
    with pytest.raises(slither.SerializationError, match="argument 0"):
        pool.call(f"{H}:identity", lock)


# 5 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
@pytest.mark.parametrize("batch_size", [None, 500])
def test_a_poison_item_costs_only_itself_under_retry(pool, batch_size):
    before = sum(w.restarts for w in pool.stats().workers)
    out = pool.dispatch(f"{H}:segfault_on", range(5000), batch_size=batch_size,
                        on_error=slither.Retry(attempts=2, backoff=0.01, then="skip"))
    crashes = sum(w.restarts for w in pool.stats().workers) - before
    (f,) = out.failures
    assert f.index == 1234 and f.kind == "crash" and f.signal == "SIGSEGV"
    assert out.results == [x for x in range(5000) if x != 1234]
    biggest = 5000 if batch_size is None else batch_size
    assert f.attempts >= 2
    assert crashes <= math.ceil(math.log2(biggest)) + 2, crashes


@pytest.mark.timeout(120)
def test_under_skip_a_crash_costs_its_batch(pool):
    out = pool.dispatch(f"{H}:segfault_on", range(1200, 1300), batch_size=10)
    assert sorted(f.index for f in out.failures) == list(range(30, 40))
    assert all(f.attempts == 1 for f in out.failures)


# 6 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_single_call_can_be_bounded_without_taking_a_keyword(pool):
    assert pool.call(f"{H}:echo_timeout", 1, timeout=5) == (1, 5)  # the function's own keyword
    pids = {w.pid for w in pool.workers_info()}
    t0 = time.monotonic()
    with pytest.raises(slither.BatchTimeout):
        pool.options(timeout=0.5).call(f"{H}:sleep_for", 60)
    assert time.monotonic() - t0 < 30
    fut = pool.options(timeout=0.5).submit(f"{H}:sleep_for", 60)
    with pytest.raises(slither.BatchTimeout):
        fut.result(timeout=30)
    assert pool.wait_ready(30)
    assert {w.pid for w in pool.workers_info()} != pids, "the overrunning workers were replaced"
    assert pool.options(timeout=30).call(f"{H}:echo_timeout", 2, timeout=7) == (2, 7)
    with pytest.raises(slither.ConfigError, match="timeout"):
        pool.options(timeout=0)


@pytest.mark.timeout(60)
def test_a_session_call_can_be_bounded(pool):
    with pool.session() as s:
        with pytest.raises(slither.BatchTimeout):
            s.options(timeout=0.5).call(f"{H}:sleep_for", 60)
        with pytest.raises(slither.SessionLost):
            s.call(f"{H}:sleep_for", 0)


# 7 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_close_from_another_thread_lets_a_running_map_finish():
    pool = slither.Pool(2)
    got: dict[str, object] = {}
    started = threading.Event()

    def run() -> None:
        try:
            got["results"] = pool.map(f"{H}:slow", _announce(range(40), started), batch_size=1, max_in_flight=2)
        except BaseException as exc:  # recorded for the assertion below
            got["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(30)
    pool.close()
    t.join(30)
    assert "error" not in got, got.get("error")
    assert got["results"] == list(range(40))
    with pytest.raises(slither.PoolClosed):
        pool.map(f"{H}:slow", [1])


def _announce(items, event):
    for i, x in enumerate(items):
        if i == 4:
            event.set()
        yield x


@pytest.mark.timeout(60)
def test_terminate_says_which_batches_were_killed_mid_run_and_which_never_started():
    pool = slither.Pool(2)
    got: dict[str, object] = {}

    def run() -> None:
        got["outcome"] = pool.dispatch(f"{H}:sleep_for", [30] * 20, batch_size=1, max_in_flight=20)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 20
    while pool.stats().in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    pool.terminate()
    t.join(30)
    failures = got["outcome"].failures  # type: ignore[attr-defined]
    assert len(failures) == 20 and all(f.kind == "aborted" for f in failures)
    mid = [f for f in failures if "killed mid-run" in str(f.exception)]
    never = [f for f in failures if "never started" in str(f.exception)]
    assert len(mid) == 2 and len(never) == 18


# 8 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("policy", ["skip", "retry", slither.Retry(attempts=3, then="skip")])
def test_a_function_that_cannot_be_found_fails_the_call_whatever_the_policy(pool, policy):
    t0 = time.monotonic()
    with pytest.raises(AttributeError, match="sqaure"):
        pool.map("_helpers:sqaure", range(100), on_error=policy, batch_size=10)
    with pytest.raises(ModuleNotFoundError):
        pool.dispatch("no_such_module_xyz:f", range(10), on_error=policy)
    assert time.monotonic() - t0 < 10, "no retries of a function that does not exist"


# 9 -----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_per_item_exceptions_count_as_failures(pool):
    pool.dispatch("_helpers:fail_on", range(10), batch_size=10, on_error="skip")
    assert sum(w.failures for w in pool.stats().workers) == 1


@pytest.mark.timeout(60)
def test_messages_say_each_thing_once(pool):
    with pytest.raises(slither.BatchLengthError) as info:
        pool.map_batches("_helpers:batch_wrong_length", range(4), batch_size=4)
    text = str(info.value)
    batch = text.split("batch ")[-1].split(")")[0]
    assert text.count(f"batch {batch}") == 1, text
    out = pool.dispatch("_helpers:inc", [1, threading.Lock()], batch_size=2)
    (f,) = out.failures
    assert "on the host in batch" not in str(f) and "before reaching a worker" in str(f)


def test_a_worker_death_without_an_exit_status_is_not_called_code_none():
    from slither._decode import failure_of

    c = _slither.Completion(batch=3, tag=0, worker=1, pid=0, kind="crashed")
    kind, exc, _ = failure_of(c, "batch 3 of f (8 items)")
    assert kind == "crash" and "None" not in str(exc) and "died" in str(exc)


# 11 ----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_items_whose_class_is_defined_in_main_travel_by_value(tmp_path):
    run = _script(tmp_path, """
        from dataclasses import dataclass
        import slither

        @dataclass
        class Point:
            x: float
            y: float

        def moved(p, dx=1.0):
            return Point(p.x + dx, p.y)

        if __name__ == "__main__":
            points = [Point(i, -i) for i in range(10)]
            with slither.Pool(2) as pool:
                out = pool.map(moved, points, batch_size=4)
                single = pool.call(moved, Point(1, 1), dx=Point(2, 2).x)
            assert all(isinstance(p, Point) for p in out), [type(p) for p in out]
            print("ok", [p.x for p in out], single)
    """)
    assert run.returncode == 0, run.stderr
    assert "ok [1.0, 2.0, 3.0" in run.stdout and "Point(x=3, y=1)" in run.stdout


@pytest.mark.timeout(60)
def test_an_item_the_workers_cannot_unpickle_fails_alone(pool, tmp_path, monkeypatch):
    (tmp_path / "host_only_mod.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers started without this directory
    import host_only_mod

    items = [1, 2, host_only_mod.Thing(), 4]
    out = pool.dispatch("_helpers:inc", items, batch_size=4)
    assert out.results == [2, 3, 5]
    (f,) = out.failures
    assert f.index == 2 and f.kind == "serialization" and "host_only_mod" in str(f.exception)


# 12 ----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_an_exception_whose_str_raises_fails_only_its_item(pool):
    out = pool.dispatch(f"{H}:bad_str_on", range(6), batch_size=6)
    assert out.results == [0, 1, 2, 4, 5]
    (f,) = out.failures
    assert f.index == 3 and "BadStr" in str(f)
    assert all(w.restarts == 0 for w in pool.stats().workers)


# 13 ----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_waiting_retry_costs_no_host_cpu(pool):
    cpu0 = time.process_time()
    t0 = time.monotonic()
    out = pool.dispatch(f"{H}:fail_or_sleep", ["bad", 2.0], batch_size=1, max_in_flight=1,
                        on_error=slither.Retry(attempts=2, backoff=0.2, then="skip"))
    cpu = time.process_time() - cpu0
    assert out.results == [2.0] and [f.index for f in out.failures] == [0]
    assert time.monotonic() - t0 >= 2.0
    assert cpu < 0.5, f"the host burned {cpu:.2f} s of CPU while a retry waited for room"


# Shape -------------------------------------------------------------------------------------------------
def test_sessions_share_the_dispatcher_and_pins_leave_the_public_signatures():
    for name in ("imap", "imap_batches", "dispatch"):
        assert "_pin" not in inspect.signature(getattr(slither.Pool, name)).parameters
    import slither.session as session_module

    assert "slither.pool" not in {getattr(v, "__module__", "") for v in vars(session_module).values()}


@pytest.mark.timeout(120)
def test_eight_dispatching_threads_under_chaos_finish():
    with slither.Pool(2) as pool:
        outs: list[object] = [None] * 8

        def run(k: int) -> None:
            outs[k] = pool.dispatch("_helpers:spin_batch", range(5000), per="batch", batch_size=100,
                                    on_error=slither.Retry(attempts=50, backoff=0.05, then="skip"))

        threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        with killing_workers(pool, every=0.1, seed=1) as chaos:
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
        assert chaos.kills > 0 and not any(t.is_alive() for t in threads)
        for out in outs:
            covered = sorted(out.indices + [f.index for f in out.failures])  # type: ignore[attr-defined]
            assert covered == list(range(5000))
