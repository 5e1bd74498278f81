"""Warm start (``Pool(preload=[...])``): workers forked from a template interpreter that imported the preload
once. Real processes throughout: the template's imports, separate workers with their own group and channel,
crashes, timeouts, recycling, sessions, the store, stats, a killed template, a bad preload, a killed host,
and no zombie or child left behind."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import psutil
import pytest
import slither
from _helpers import gone, survivors_of_host_kill

HERE = os.path.dirname(os.path.abspath(__file__))
PRELOAD = ["_warm_preload"]


def _template_pids() -> list[int]:
    """The host's template processes (children running ``-m slither._worker.template``)."""
    out = []
    for p in psutil.Process().children():
        try:
            if "slither._worker.template" in p.cmdline():
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def _template() -> int:
    pids = _template_pids()
    assert len(pids) == 1, pids
    return pids[0]


def _wait(cond, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.01)
    return cond()


def _each_worker(pool: slither.Pool) -> list[dict]:
    """whoami() from every worker once (a session per worker pins each call)."""
    sessions = [pool.session() for _ in range(len(pool.workers_info()))]
    try:
        return [s.call("_warm_helpers:whoami") for s in sessions]
    finally:
        for s in sessions:
            s.close()


def _zombies_of(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children() if c.status() == psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.timeout(60)
def test_preload_is_imported_once_and_each_worker_is_its_own_process(tmp_path):
    log = tmp_path / "imports.log"
    env = {"SLITHER_TEST_PRELOAD_LOG": str(log)}
    with slither.Pool(3, preload=PRELOAD, env=env, init="_warm_helpers:mark_init", init_args=("i",)) as pool:
        template = _template()
        assert log.read_text().split() == [str(template)], "the preload ran somewhere else than the template, once"
        seen = _each_worker(pool)
        pids = {w["pid"] for w in seen}
        assert pids == {w.pid for w in pool.workers_info()} and len(pids) == 3
        for w in seen:
            assert w["ppid"] == template, "a worker was not forked from the template"
            assert w["pgid"] == w["pid"], "a forked worker is not the leader of its own process group"
            assert w["socket"], "fd 3 is not the worker's channel socket"
            assert w["preloaded_by"] == template, "the preload module is not the template's copy"
            assert w["init"] == f"i:{w['pid']}", "init did not run in the forked worker itself"
        assert len({w["channel"] for w in seen}) == 3, "workers share a channel"
        assert sorted(w["index"] for w in seen) == [0, 1, 2]
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
        # The template never runs init or tasks, and the host never imported the preload.
        assert "_warm_preload" not in sys.modules
    assert log.read_text().split() == [str(template)]
    assert gone(template), "the template outlived its pool"


@pytest.mark.timeout(60)
def test_without_preload_workers_are_the_hosts_children_and_there_is_no_template():
    with slither.Pool(2) as pool:
        assert _template_pids() == []
        assert {w["ppid"] for w in _each_worker(pool)} == {os.getpid()}


@pytest.mark.timeout(60)
def test_a_forked_worker_that_segfaults_is_a_crash_with_its_signal_and_is_replaced_by_a_fork():
    with slither.Pool(2, preload=PRELOAD) as pool:
        template = _template()
        with pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
            pool.call("_warm_helpers:segfault")
        assert pool.wait_ready(timeout=30)
        seen = _each_worker(pool)
        assert {w["ppid"] for w in seen} == {template}
        assert pool.map(abs, [-4, -5]) == [4, 5]
        assert _wait(lambda: not _zombies_of(template), 5), "an exited worker lingers as a zombie"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["fork", "multiprocessing", "system"])
def test_a_forked_workers_crash_is_seen_at_exit_even_when_its_helper_holds_the_channel(tmp_path, how):
    pid_file = str(tmp_path / "helper.pid")
    with slither.Pool(2, preload=PRELOAD) as pool:
        t0 = time.monotonic()
        with pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
            pool.call("_core_helpers:helper_then_segfault", how, pid_file)
        assert time.monotonic() - t0 < 10, "the crash was not seen when the worker exited"
        helper = int(open(pid_file).read())
        assert _wait(lambda: gone(helper), 1.0), "the helper outlived its forked worker's process group"
        assert pool.wait_ready(timeout=30)
        assert all(w.state == "ready" for w in pool.stats().workers)
        assert pool.map("_core_helpers:echo", range(4)) == [0, 1, 2, 3]


@pytest.mark.timeout(120)
def test_a_batch_sent_to_a_forked_worker_that_was_just_killed_is_requeued_not_charged():
    with slither.Pool(2, preload=PRELOAD) as pool:
        for i in range(20):
            assert pool.wait_ready(timeout=30)
            os.kill(pool.workers_info()[i % 2].pid, signal.SIGKILL)
            futs = [pool.submit("_core_helpers:echo", j) for j in range(4)]
            assert [f.result(timeout=30) for f in futs] == list(range(4)), f"try {i}"


@pytest.mark.timeout(60)
def test_a_forked_worker_exiting_reports_its_exit_code():
    with slither.Pool(1, preload=PRELOAD) as pool:
        with pytest.raises(slither.WorkerCrashed, match="code 7"):
            pool.call(os._exit, 7)
        assert pool.call(abs, -1) == 1


@pytest.mark.timeout(60)
def test_a_timeout_kills_the_forked_worker_and_its_child():
    with slither.Pool(2, preload=PRELOAD) as pool:
        template = _template()
        with pytest.raises(slither.BatchTimeout):
            pool.map("_warm_helpers:sleep", [30], batch_timeout=0.5)
        assert pool.wait_ready(timeout=30)
        assert {w["ppid"] for w in _each_worker(pool)} == {template}


@pytest.mark.timeout(60)
def test_recycled_workers_are_forked_again_without_importing_again(tmp_path):
    log = tmp_path / "imports.log"
    with slither.Pool(2, preload=PRELOAD, env={"SLITHER_TEST_PRELOAD_LOG": str(log)},
                      max_tasks_per_worker=2) as pool:
        template = _template()
        out = pool.map("_warm_helpers:whoami", range(16), batch_size=1)
        assert len({w["pid"] for w in out}) >= 6, "workers were not recycled"
        assert {w["ppid"] for w in out} == {template}
        assert all(w["preloaded_by"] == template for w in out)
        assert log.read_text().split() == [str(template)]
        assert _wait(lambda: not _zombies_of(template), 5), "recycled workers linger as zombies"


@pytest.mark.timeout(60)
def test_sessions_and_stats_hold_for_forked_workers():
    with slither.Pool(2, preload=PRELOAD) as pool:
        with pool.session() as s:
            pid = s.call("_helpers:remember", "model", "A")
            assert s.call("_helpers:recall", "model") == "A"
            assert s.call("_warm_helpers:whoami")["pid"] == pid
        stats = pool.stats()
        live = {w["pid"] for w in _each_worker(pool)}
        assert {w.pid for w in stats.workers} == live
        for w in stats.workers:
            assert w.rss_bytes > 1 << 20, "resident memory of a forked worker was not read"
            assert w.rss_bytes == pytest.approx(psutil.Process(w.pid).memory_info().rss, rel=0.5)


@pytest.mark.timeout(60)
def test_the_store_is_reachable_from_a_forked_worker():
    store = slither.Store()
    store.put("cfg", "k", 41)
    with slither.Pool(1, preload=PRELOAD, store=store) as pool:
        assert pool.call(_store_get, "cfg", "k") == 41
        pool.call(_store_put, "cfg", "w", 7)
    assert store.get("cfg", "w") == 7


def _store_get(table, key):
    import slither.worker

    return slither.worker.store.get(table, key)


def _store_put(table, key, value):
    import slither.worker

    slither.worker.store.put(table, key, value)


@pytest.mark.timeout(90)
def test_a_killed_template_is_restarted_and_running_workers_keep_running():
    with slither.Pool(2, preload=PRELOAD) as pool:
        old = _template()
        before = {w["pid"] for w in _each_worker(pool)}
        os.kill(old, signal.SIGKILL)
        assert _wait(lambda: gone(old), 5)
        # The running workers were not taken with it.
        assert {w["pid"] for w in _each_worker(pool)} == before
        assert pool.map(abs, [-1, -2, -3, -4]) == [1, 2, 3, 4]
        new = _wait(lambda: [p for p in _template_pids() if p != old], 30)
        assert new, "the template was not restarted"
        # Once the new template is ready, a replacement is forked from it (the first replacements may still be
        # fresh interpreters while it imports).
        def replacement_parent():
            victim = pool.workers_info()[0].pid
            os.kill(victim, signal.SIGKILL)
            assert _wait(lambda: pool.workers_info()[0].pid != victim and pool.wait_ready(timeout=30), 30)
            return psutil.Process(pool.workers_info()[0].pid).ppid()

        assert _wait(lambda: replacement_parent() == new[0], 30), "replacements are not forked from the new template"
        assert pool.map(abs, [-5]) == [5]


@pytest.mark.timeout(150)
def test_a_template_that_keeps_failing_to_restart_is_given_up_and_workers_start_fresh(tmp_path, capfd):
    flag = tmp_path / "broken"
    with slither.Pool(2, preload=["_warm_flaky_preload"], env={"SLITHER_TEST_BREAK_PRELOAD": str(flag)}) as pool:
        old = _template()
        flag.write_text("")
        os.kill(old, signal.SIGKILL)
        # Each restart fails to import; after crash_loop_limit (3) in a row no template is started again.
        err = []

        def given_up():
            err.append(capfd.readouterr().err)
            return "workers start as fresh interpreters from now on" in "".join(err)

        assert _wait(given_up, 90), "".join(err)  # three interpreter starts: generous on a loaded machine
        assert 'could not import "_warm_flaky_preload"' in "".join(err)
        time.sleep(0.3)
        assert _template_pids() == [], "a template that keeps failing is restarted for ever"
        victim = pool.workers_info()[0].pid
        os.kill(victim, signal.SIGKILL)
        assert _wait(lambda: pool.workers_info()[0].pid != victim and pool.wait_ready(timeout=30), 30)
        assert psutil.Process(pool.workers_info()[0].pid).ppid() == os.getpid(), "the replacement was not fresh"
        assert pool.map(abs, [-1, -2]) == [1, 2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("module", "named"), [
    ("_warm_no_such_module", "No module named '_warm_no_such_module'"),
    ("_warm_bad_preload", "RuntimeError: the model file is missing"),
])
def test_a_preload_that_fails_to_import_is_a_config_error_at_construction(module, named):
    t0 = time.monotonic()
    with pytest.raises(slither.ConfigError, match=named) as info:
        slither.Pool(2, preload=["json", module])
    assert module in str(info.value)
    assert time.monotonic() - t0 < 30
    assert _template_pids() == []


@pytest.mark.parametrize("bad", ["numpy", [""], ["not a module"], [3], None])
def test_preload_must_be_a_list_of_module_names(bad):
    with pytest.raises(slither.ConfigError, match="preload"):
        slither.Pool(1, preload=bad)


def test_a_bad_preload_entry_is_named_by_its_position():
    with pytest.raises(slither.ConfigError, match=r"preload\[1\] must be a module name .*got None"):
        slither.Pool(1, preload=["json", None])


@pytest.mark.timeout(60)
def test_host_sigkill_leaves_no_descendant_of_a_forked_worker():
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {HERE!r})
        import slither
        pool = slither.Pool(2, preload=["_warm_preload"])
        s0, s1 = pool.session(), pool.session()
        sleeper = s0.call("_warm_helpers:start_sleeper")
        threading.Thread(target=s1.call, args=("_core_helpers:c_loop",), daemon=True).start()
        time.sleep(0.5)
        import psutil
        template = psutil.Process(s0.pid).ppid()
        print(" ".join(str(p) for p in (sleeper, s0.pid, s1.pid, template)), flush=True)
        time.sleep(60)
    """)
    assert survivors_of_host_kill(script, 4) == [], "a forked worker, its child or the template outlived the host"


def _numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        pytest.skip("numpy is not installed for this interpreter")


def _sklearn():
    _numpy()
    try:
        import sklearn  # noqa: F401
    except ImportError:
        pytest.skip("scikit-learn has no wheel for this interpreter (e.g. 3.13t); its preload test cannot run")


@pytest.mark.timeout(120)
def test_forked_workers_have_their_own_numpy_random_state():
    _numpy()
    with slither.Pool(2, preload=["numpy"]) as pool:
        draws = {}
        for _ in range(20):
            pid, x = pool.call("_warm_helpers:numpy_draw")
            draws.setdefault(pid, x)
            if len(draws) == 2:
                break
        out = [s.call("_warm_helpers:numpy_draw") for s in (pool.session(), pool.session())]
        assert len({p for p, _ in out}) == 2
        assert out[0][1] != out[1][1], "forked workers share the template's numpy random state"


@pytest.mark.timeout(120)
def test_scikit_learn_preloaded_fits_in_forked_workers_and_a_crash_is_replaced_warm():
    _sklearn()
    with slither.Pool(2, preload=["numpy", "sklearn.linear_model"]) as pool:
        template = _template()
        assert all(s > 0.9 for s in pool.map("_warm_helpers:fit_score", range(4)))
        with pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
            pool.call("_warm_helpers:segfault")
        assert pool.map("_warm_helpers:fit_score", range(2)) == pool.map("_warm_helpers:fit_score", range(2))
        assert {w["ppid"] for w in _each_worker(pool)} == {template}


@pytest.mark.timeout(60)
def test_a_preload_that_hangs_is_named_as_the_likely_cause():
    with pytest.raises(slither.PoolBroken, match=r"preload=\['_warm_slow_preload'\].*template"):
        slither.Pool(1, preload=["_warm_slow_preload"], startup_timeout=2)
