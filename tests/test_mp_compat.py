"""multiprocessing.Pool habits: starmap, imap_unordered, apply_async / map_async and their AsyncResult, the
constructor spellings, keyword typos, configuration mistakes, and a multiprocessing program run unchanged."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import slither
from _dropin_helpers import add, nap

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_starmap_and_imap_unordered(pool):
    assert pool.starmap(add, [(1, 2), (3, 4), ("a", "b")]) == [3, 7, "ab"]
    assert pool.starmap("_dropin_helpers:add", [(1, 1)] * 5, chunksize=2) == [2] * 5
    assert sorted(pool.imap_unordered(abs, range(-20, 0), chunksize=3)) == list(range(1, 21))
    with pytest.raises(KeyError):
        pool.starmap(dict().__getitem__, [("missing",)])


def test_apply_and_apply_async(pool):
    assert pool.apply(add, (2, 3)) == 5
    assert pool.apply(dict, (), {"a": 1}) == {"a": 1}
    r = pool.apply_async(nap, (0.3, "late"))
    assert not r.ready()
    with pytest.raises(ValueError, match="not ready"):
        r.successful()
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.01)
    with pytest.raises(TimeoutError):  # also the builtin, as concurrent.futures raises
        r.get(timeout=0.01)
    r.wait(30)
    assert r.ready() and r.successful() and r.get(0) == "late"
    bad = pool.apply_async(int, ("x",))
    bad.wait(30)
    assert not bad.successful()
    with pytest.raises(ValueError, match="invalid literal"):
        bad.get()


def test_callbacks_and_map_async(pool):
    got, failed = [], []
    done = threading.Event()
    pool.apply_async(add, (1, 1), callback=got.append)
    pool.apply_async(int, ("x",), error_callback=lambda e: (failed.append(e), done.set()))
    r = pool.map_async(abs, range(-5, 0), chunksize=2, callback=got.append)
    assert r.get(timeout=30) == [5, 4, 3, 2, 1]
    s = pool.starmap_async(add, [(1, 2), (3, 4)])
    assert s.get(timeout=30) == [3, 7]
    assert done.wait(30)
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(map(str, got)) == ["2", "[5, 4, 3, 2, 1]"]
    assert isinstance(failed[0], ValueError)
    with pytest.raises(TypeError, match="did you mean batch_size"):
        pool.map_async(abs, [1], batchsize=2)


@pytest.mark.timeout(60)
def test_constructor_spellings_of_multiprocessing_and_executor(tmp_path):
    with slither.Pool(processes=2, initializer="_helpers:init_set", initargs=("mp",)) as p:
        assert p.size == 2
        assert {r.value for r in p.broadcast("_helpers:recall", "init").values()} == {"mp"}
    with slither.Pool(max_workers=1, maxtasksperchild=1) as p:
        # A worker is replaced after each batch (maxtasksperchild counts batches in slither).
        pids = {p.call(os.getpid) for _ in range(3)}
        assert len(pids) == 3
    with slither.Pool(1, max_tasks_per_child=2) as p:
        assert p.size == 1


def test_unknown_keywords_name_the_closest_valid_one():
    with pytest.raises(TypeError, match="did you mean workers=") as e:
        slither.Pool(worker=2)
    assert "worker" in str(e.value)
    with pytest.raises(TypeError, match="did you mean initializer="):
        slither.Pool(initialiser=print)
    with pytest.raises(TypeError, match="did you mean max_tasks_per_worker="):
        slither.Pool(max_task_per_worker=3)
    with pytest.raises(TypeError, match="valid keywords"):
        slither.Pool(zzz=1)
    with pytest.raises(TypeError, match="both workers= and its alias processes="):
        slither.Pool(2, processes=3)


@pytest.mark.parametrize(("kwargs", "named", "expected"), [
    ({"store": {"a": 1}}, "store", "slither.Store"),
    ({"workers": 0}, "workers", "positive integer"),
    ({"workers": "2"}, "workers", "positive integer"),
    ({"processes": -1}, "workers", "positive integer"),
    ({"workers": True}, "workers", "positive integer"),
    ({"env": {"A": 1}}, "env", "dict of str to str"),
    ({"env": ["A=1"]}, "env", "dict of str to str"),
    ({"init": 42}, "init", "callable"),
    ({"initargs": "abc"}, "init_args", "tuple or list"),
    ({"maxtasksperchild": 0}, "max_tasks_per_worker", "positive integer"),
    ({"max_memory_per_worker": -5}, "max_memory_per_worker", "positive integer"),
    ({"max_result_bytes": 0}, "max_result_bytes", "positive integer"),
    ({"startup_timeout": 0}, "startup_timeout", "positive number of seconds"),
    ({"shutdown_grace": -1}, "shutdown_grace", "non-negative number of seconds"),
    ({"forward_output": "yes"}, "forward_output", "True or False"),
    ({"backend": "dask"}, "backend", "'local' or 'ray'"),
    ({"address": "ray://x"}, "address", "backend='ray'"),
    ({"python": ""}, "python", "path to a Python interpreter"),
])
def test_configuration_mistakes_are_config_errors_naming_the_argument(kwargs, named, expected):
    with pytest.raises(slither.ConfigError) as e:
        slither.Pool(**kwargs)
    assert named in str(e.value) and expected in str(e.value)
    assert isinstance(e.value, ValueError)


def test_close_then_join(pool):
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    r = pool.map_async(nap, [0.2, 0.2])
    pool.close()
    pool.join()
    assert r.ready() and r.get() == [None, None]


MP_PROGRAM = """
    import os
    import sys
    from multiprocessing import Pool, TimeoutError

    def init(tag):
        os.environ["TAG"] = tag

    def work(x):
        return f"{os.environ['TAG']}:{x * x}"

    def pair(a, b):
        return a * 10 + b

    if __name__ == "__main__":
        if sys.argv[1] == "slither":
            from slither import Pool  # the only line that changes
        pool = Pool(processes=2, initializer=init, initargs=("m",), maxtasksperchild=100)
        print(pool.map(work, range(5)))
        print(pool.map(work, range(6), chunksize=2)[-1])
        print(pool.starmap(pair, [(1, 2), (3, 4)]))
        print(list(pool.imap(work, range(3))))
        print(sorted(pool.imap_unordered(work, range(3))))
        r = pool.apply_async(pair, (5, 6))
        print(r.get(timeout=60), r.ready(), r.successful())
        print(pool.map_async(work, [7]).get(60))
        results = []
        pool.apply_async(work, (8,), callback=results.append).wait(60)
        pool.close()
        pool.join()
        print(results)
"""


@pytest.mark.timeout(180)
def test_a_multiprocessing_program_runs_unchanged(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(MP_PROGRAM))
    runs = [subprocess.run([sys.executable, str(script), which], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path) for which in ("stdlib", "slither")]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    assert runs[1].stdout == runs[0].stdout
    assert "['m:0', 'm:1', 'm:4', 'm:9', 'm:16']" in runs[1].stdout


def test_a_multiprocessing_context_is_accepted_and_workers_stay_fresh_interpreters():
    with slither.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        assert ex.submit(abs, -2).result(timeout=30) == 2
    with slither.Pool(processes=1, context=multiprocessing.get_context("fork")) as pool:
        assert pool.map(abs, [-1]) == [1]
    with pytest.raises(slither.ConfigError, match="mp_context must be a multiprocessing context"):
        slither.Pool(1, mp_context="spawn")


def test_work_after_shutdown_is_a_runtime_error_as_in_concurrent_futures():
    ex = slither.ProcessPoolExecutor(max_workers=1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="closed") as info:
        ex.submit(abs, 1)
    assert isinstance(info.value, slither.PoolClosed)
