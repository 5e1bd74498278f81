"""Bad input gets a typed error that names the culprit, and loses nothing else."""

from __future__ import annotations

import threading

import pytest
import slither
from slither.errors import RemoteTraceback


class _HostOnly(Exception):
    """An exception class the worker can pickle by value but the host can rebuild: used as a control."""


def test_exception_type_and_remote_traceback(pool):
    with pytest.raises(ValueError, match="bad item 3") as info:
        pool.map("_helpers:fail_on", range(6))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on" in cause.text and "worker" in cause.text and "pid" in cause.text
    assert info.value.failure.index == 3
    assert pool.map("_helpers:inc", [1]) == [2]


def test_exception_of_a_local_class_travels_by_value(pool):
    def raise_local(_):
        class Local(Exception):
            pass

        raise Local("only in the worker")

    with pytest.raises(Exception, match="only in the worker") as info:
        pool.map(raise_local, [1])
    assert type(info.value).__name__ == "Local"


def test_exception_whose_pickling_fails(pool):
    def raise_unpicklable(_):
        class Bad(Exception):
            def __init__(self):
                super().__init__("unpicklable")
                self.lock = threading.Lock()

        raise Bad()

    with pytest.raises(slither.TaskError, match="unpicklable"):
        pool.map(raise_unpicklable, [1])


def test_unpicklable_item_names_its_index_and_loses_nothing_else(pool):
    items = [1, 2, threading.Lock(), 4]
    out = pool.dispatch("_helpers:inc", items, batch_size=4)
    assert out.results == [2, 3, 5]
    (f,) = out.failures
    assert f.index == 2 and f.kind == "serialization" and isinstance(f.exception, slither.SerializationError)
    assert "item 2" in str(f.exception)
    with pytest.raises(slither.SerializationError, match="item 2"):
        pool.map("_helpers:inc", items)


def test_unpicklable_result_names_the_result(pool):
    def make_lock(_):
        return threading.Lock()

    with pytest.raises(slither.SerializationError, match="result of item 0"):
        pool.map(make_lock, [1])
    assert pool.map("_helpers:inc", [1]) == [2]


def test_batch_function_wrong_length_and_type(pool):
    with pytest.raises(slither.BatchLengthError, match="returned 3 results for a batch of 4"):
        pool.map_batches("_helpers:batch_wrong_length", range(4), batch_size=4)
    with pytest.raises(slither.BatchLengthError, match="returned tuple"):
        pool.map_batches("_helpers:batch_not_list", range(4), batch_size=4)


def test_unknown_function_and_failing_import(pool, tmp_path, monkeypatch):
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pool.call("_helpers:nope")
    with pytest.raises(ModuleNotFoundError):
        pool.call("no_such_module_xyz:f")
    with pytest.raises(slither.ConfigError, match="module:function"):
        pool.call("not-a-reference")
    assert pool.call("_helpers:inc", 1) == 2


def test_sys_exit_and_recursion_are_errors_not_crashes(pool):
    import sys

    def exits(_):
        sys.exit(4)

    def recurse(n):
        return recurse(n + 1)

    with pytest.raises(slither.TaskError, match=r"SystemExit\(4\)") as info:
        pool.map(exits, [1])
    assert isinstance(info.value.__cause__, SystemExit) and info.value.__cause__.code == 4
    with pytest.raises(RecursionError):
        pool.map(recurse, [0])
    assert all(w.restarts == 0 for w in pool.stats().workers)


def test_result_larger_than_the_limit():
    with slither.Pool(1, max_result_bytes=1000) as p:
        with pytest.raises(slither.SerializationError, match="exceeds the pool.s limit of 1,000 bytes .max_result_bytes"):
            p.call(bytes, 10_000)
        assert p.call(bytes, 10) == bytes(10)


def test_skip_records_every_failure(pool):
    out = pool.dispatch("_helpers:fail_on", range(10), on_error="skip", batch_size=3)
    assert out.results == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert [f.index for f in out.failures] == [3]
    assert out.failures[0].traceback and "ValueError" in out.failures[0].traceback
    assert out.by_index()[3] is out.failures[0]


def test_bad_options_are_config_errors(pool):
    with pytest.raises(slither.ConfigError, match="on_error"):
        pool.map("_helpers:inc", [1], on_error="ignore")
    with pytest.raises(slither.ConfigError, match="max_in_flight"):
        pool.map("_helpers:inc", [1], max_in_flight=0)
    with pytest.raises(slither.ConfigError, match="FixedBatch size"):
        slither.FixedBatch(0)
    with pytest.raises(slither.ConfigError, match="timeout"):
        pool.map("_helpers:inc", [1], batch_timeout=-1)
