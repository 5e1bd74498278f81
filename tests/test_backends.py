"""Behaviour shared by both backends: the same tests against local worker processes and Ray actors.

The Ray leg needs ``pip install "slither[ray]"`` and starts a local Ray limited to this machine's cores
(``nox -s ray``); without Ray it is skipped with that message.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest
import slither

BACKENDS = ["local", "ray"]


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason='the Ray backend needs Ray: pip install "slither[ray]"')
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(params=BACKENDS)
def bpool(request):
    if request.param == "ray":
        request.getfixturevalue("ray_runtime")
    store = slither.Store()
    store.put("cfg", "answer", 41)
    with slither.Pool(2, backend=request.param, store=store) as pool:
        yield pool


@pytest.fixture(autouse=True)
def no_leaked_children(request):
    # Ray keeps its own long-lived processes (raylet, workers); the local backend's leak check lives in conftest.
    yield


def _read_store(_):
    from slither.worker import store

    return store.get("cfg", "answer") + 1


@pytest.mark.timeout(180)
def test_map_orders_and_batches(bpool):
    assert bpool.map("_helpers:inc", range(50), batch_size=7) == list(range(1, 51))
    assert bpool.map_batches("_helpers:batch_double", range(10), batch_size=4) == [x * 2 for x in range(10)]
    assert sorted(bpool.imap("_helpers:inc", range(20), batch_size=3, ordered=False)) == list(range(1, 21))
    kp = slither.KeyPartition(key=lambda x: x % 3)
    assert bpool.map("_helpers:inc", range(20), batching=kp) == list(range(1, 21))


@pytest.mark.timeout(180)
def test_errors_and_policies(bpool):
    with pytest.raises(ValueError, match="bad item 3") as info:
        bpool.map("_helpers:fail_on", range(6))
    assert isinstance(info.value.__cause__, slither.errors.RemoteTraceback)
    out = bpool.dispatch("_helpers:fail_on", range(6), batch_size=2, on_error="skip")
    assert out.results == [0, 1, 2, 4, 5] and [f.index for f in out.failures] == [3]
    with pytest.raises(slither.BatchLengthError):
        bpool.map_batches("_helpers:batch_wrong_length", range(4), batch_size=4)


@pytest.mark.timeout(180)
def test_backpressure_and_lazy_input(bpool):
    out = bpool.dispatch("_helpers:slow", range(40), batch_size=2, max_in_flight=2)
    assert out.ok and out.stats.max_in_flight_seen <= 2
    consumed = itertools.count()

    def endless():
        for i in itertools.count():
            next(consumed)
            yield i

    it = bpool.imap("_helpers:inc", endless(), batch_size=5, max_in_flight=2)
    assert [next(it) for _ in range(20)] == list(range(1, 21))
    assert next(consumed) <= 20 + (2 * 2 + 2) * 5
    it.close()


@pytest.mark.timeout(240)
def test_crash_costs_only_its_batch_and_retry_recovers(bpool, tmp_path):
    out = bpool.dispatch("_helpers:exit_on", range(8), batch_size=2, on_error="skip")
    assert [f.index for f in out.failures] == [2, 3]
    assert all(f.kind == "crash" for f in out.failures)
    assert out.results == [0, 1, 4, 5, 6, 7]
    marker = tmp_path / "once"

    def crash_once(x):
        if x == 5 and not marker.exists():
            marker.write_text("x")
            os._exit(7)
        return x

    assert bpool.dispatch(crash_once, range(8), batch_size=2, on_error="retry").results == list(range(8))


@pytest.mark.timeout(240)
def test_timeout_is_a_real_deadline(bpool):
    out = bpool.dispatch("_helpers:sleep_on", range(4), batch_size=1, timeout=1.0, on_error="skip")
    assert [f.index for f in out.failures] == [3] and out.failures[0].kind == "timeout"
    assert out.results == [0, 1, 2]


@pytest.mark.timeout(240)
def test_sessions_are_strict_and_lost_with_their_worker(bpool):
    with bpool.session() as s:
        pid = s.call("_helpers:remember", "model", "A")
        assert {s.call("_helpers:pid_of", None) for _ in range(5)} == {pid}
        assert s.call("_helpers:recall", "model") == "A"
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        with pytest.raises(slither.SessionLost):
            s.call("_helpers:recall", "model")


@pytest.mark.timeout(180)
def test_broadcast_stats_and_store(bpool):
    replies = bpool.broadcast("_helpers:pid_of", None)
    assert sorted(replies) == [0, 1] and all(r.value == r.pid for r in replies.values())
    assert bpool.call(_read_store, None) == 42
    st = bpool.stats()
    assert len(st.workers) == 2 and all(w.pid > 0 for w in st.workers)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", BACKENDS)
def test_close_lets_submitted_calls_finish(backend, request):
    if backend == "ray":
        request.getfixturevalue("ray_runtime")
    pool = slither.Pool(2, backend=backend)
    futures = [pool.submit("_helpers:slow", i, 0.2) for i in range(4)]
    pool.close()
    assert [f.result(timeout=30) for f in futures] == [0, 1, 2, 3]


def test_every_backend_satisfies_the_declared_core_interface(bpool):
    from slither._backend import Core, Run

    core = bpool._core
    assert isinstance(core, Core), type(core)
    assert isinstance(core.new_run(), Run)
    info = core.workers()
    assert all(isinstance(w, slither.WorkerInfo) for w in info)
    assert isinstance(core.stats(), slither.PoolStats)
