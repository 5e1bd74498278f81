"""Free-threaded hosts: the GIL stays off, and one Pool and one Store can be shared by many host threads.

The stress tests run on every interpreter; on a free-threaded build (``nox -s tests_freethreaded``) they
run with the GIL off, where a host API that was only safe under the GIL would break.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time

import pytest
import slither

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded interpreter (nox -s tests_freethreaded)")
def test_gil_stays_off_after_import_pool_and_store():
    import slither._slither  # noqa: F401

    assert not sys._is_gil_enabled()
    store = slither.Store()
    store.put("t", "k", 1)
    with slither.Pool(2, store=store) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
        assert all(not w.gil for w in pool.workers_info())
        assert not sys._is_gil_enabled()
    assert not sys._is_gil_enabled()


@pytest.mark.timeout(120)
def test_eight_threads_share_one_pool():
    errors: list[BaseException] = []
    stop = time.monotonic() + 3.0
    counts = [0] * 8

    with slither.Pool(2) as pool:
        def work(k: int) -> None:
            try:
                while time.monotonic() < stop:
                    base = k * 1000 + counts[k]
                    got = pool.map("_helpers:inc", range(base, base + 50), batch_size=7)
                    assert got == list(range(base + 1, base + 51))
                    with pool.session() as s:
                        s.call("_helpers:remember", f"t{k}", base)
                        assert s.call("_helpers:recall", f"t{k}") == base
                    assert len(pool.broadcast("_helpers:pid_of", None)) == 2
                    st = pool.stats()
                    assert len(st.workers) == 2
                    counts[k] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert all(c > 0 for c in counts)
        assert all(w.state == "ready" for w in pool.stats().workers)


@pytest.mark.timeout(120)
def test_eight_threads_share_one_store():
    store = slither.Store()
    store.reload("pair", {"a": 0, "b": 0})
    stop = threading.Event()
    torn = [0]
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                with store.snapshot() as s:
                    if s.get("pair", "a") != s.get("pair", "b"):
                        torn[0] += 1
        except BaseException as exc:
            errors.append(exc)

    def writer(k: int) -> None:
        try:
            for i in range(500):
                store.update("counts", "n", lambda v: v + 1, default=0)
                store.reload("pair", {"a": k * 1000 + i, "b": k * 1000 + i})
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert torn[0] == 0
    assert store.get("counts", "n") == 2000


FT_PYTHON = os.path.expanduser("~/.cache/slither/python-ft/bin/python3.13t")


@pytest.mark.timeout(120)
@pytest.mark.skipif(not os.path.exists(FT_PYTHON), reason="no free-threaded interpreter built on this machine")
def test_workers_on_a_free_threaded_interpreter_from_any_host():
    with slither.Pool(2, python=FT_PYTHON) as pool:
        info = pool.workers_info()
        assert all(w.free_threaded_build and not w.gil for w in info)
        assert pool.map("_helpers:inc", range(3)) == [1, 2, 3]
        k = 3
        if sys.version_info[:2] == (3, 13):
            assert pool.map(lambda x: x * k, range(5)) == [0, 3, 6, 9, 12]
        else:
            # Bytecode does not cross Python versions: a clear error, not a crashed worker.
            with pytest.raises(slither.SerializationError, match="bytecode does not cross versions"):
                pool.map(lambda x: x * k, range(5))
            assert all(w.restarts == 0 for w in pool.stats().workers)
