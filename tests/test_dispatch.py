"""Batching strategies (property tests), ordering through a real pool, outcomes, progress."""

from __future__ import annotations

import pytest
import slither
from hypothesis import given, settings
from hypothesis import strategies as st

items_st = st.lists(st.integers(0, 50), max_size=200)


@given(items_st, st.integers(1, 20))
def test_fixed_batches_concatenate_back(items, size):
    plan = slither.FixedBatch(size).plan(items)
    assert [i for b in plan for i in b] == list(range(len(items)))
    assert all(0 < len(b) <= size for b in plan)


@given(items_st, st.integers(1, 100))
def test_weighted_batches_are_bounded(items, limit):
    plan = slither.WeightedBatch(limit, weight=lambda x: x).plan(items)
    assert [i for b in plan for i in b] == list(range(len(items)))
    for b in plan:
        assert b
        total = sum(items[i] for i in b)
        assert total <= limit or len(b) == 1
    # A batch closes only when the next item would overflow it.
    for b, nxt in zip(plan, plan[1:]):
        assert sum(items[i] for i in b) + items[nxt[0]] > limit


@given(items_st, st.none() | st.integers(1, 10))
def test_key_partition_groups_in_first_seen_order(items, max_size):
    plan = slither.KeyPartition(key=lambda x: x % 5, max_size=max_size).plan(items)
    assert sorted(i for b in plan for i in b) == list(range(len(items)))
    for b in plan:
        assert b and len({items[i] % 5 for i in b}) == 1
        assert b == sorted(b)
        if max_size:
            assert len(b) <= max_size
    first_seen = list(dict.fromkeys(x % 5 for x in items))
    keys_in_plan = list(dict.fromkeys(items[b[0]] % 5 for b in plan))
    if max_size is None:
        assert keys_in_plan == first_seen


@pytest.fixture(scope="module")
def mpool():
    with slither.Pool(2) as p:
        yield p


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=80),
       st.sampled_from(["fixed", "weighted", "key"]))
def test_ordered_results_for_every_strategy(mpool, items, which):
    batching = {
        "fixed": slither.FixedBatch(3),
        "weighted": slither.WeightedBatch(10, weight=lambda x: x + 1),
        "key": slither.KeyPartition(key=lambda x: x % 3),
    }[which]
    assert mpool.map_batches("_helpers:batch_double", items, batching=batching) == [x * 2 for x in items]
    assert mpool.map("_helpers:inc", items, batching=batching) == [x + 1 for x in items]


def test_unordered_yields_as_batches_complete(mpool):
    def slow_first(x):
        import time

        if x == 0:
            time.sleep(0.5)
        return x

    got = list(mpool.imap(slow_first, range(10), batch_size=1, ordered=False))
    assert sorted(got) == list(range(10))
    # Only the batch queued behind the slow one on the same worker (pipelining) may come after it.
    assert got.index(0) >= len(got) - 2


def test_outcome_covers_every_input_once(mpool):
    out = mpool.dispatch("_helpers:fail_on", range(50), batch_size=4, on_error="skip",
                         batching=None)
    assert sorted(out.indices + [f.index for f in out.failures]) == list(range(50))
    assert out.stats.items == 50 and out.stats.succeeded == 49 and out.stats.failed == 1


def test_batch_size_and_batching_are_exclusive(mpool):
    with pytest.raises(slither.ConfigError, match="either"):
        mpool.map("_helpers:inc", [1], batch_size=2, batching=slither.FixedBatch(2))


def test_progress_without_and_with_tqdm(mpool, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert mpool.map("_helpers:inc", range(100), progress=True) == list(range(1, 101))
    err = capsys.readouterr().err
    assert "100/100" in err and "items/s" in err  # range(100) has a length: total and ETA
    monkeypatch.undo()
    pytest.importorskip("tqdm")
    assert mpool.map("_helpers:inc", range(10), progress=True) == list(range(1, 11))


@pytest.mark.timeout(60)
def test_ordered_results_of_a_strategy_that_regroups_its_input_do_not_wait_for_ever(pool):
    out = pool.map(abs, range(100), batching=slither.KeyPartition(key=lambda x: x % 10), max_in_flight=2)
    assert out == list(range(100))
