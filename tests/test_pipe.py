"""The Pipe: every input ends in exactly one bucket or in failures; stages after a router are explicit."""

from __future__ import annotations

import threading

import pytest
import slither
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slither.errors import ConfigError
from slither.pipe import DROP, Many, PipeError


@pytest.fixture(scope="module")
def mpool():
    with slither.Pool(2) as p:
        yield p


def test_definition_is_validated():
    p = slither.Pipe("p").local("a", lambda x: x)
    with pytest.raises(ConfigError, match="already has a stage"):
        p.local("a", lambda x: x)
    r = p.router("r", [(bool, "yes")])
    with pytest.raises(ConfigError, match="router is last"):
        r.local("after", lambda x: x)
    with pytest.raises(ConfigError, match="add a router first"):
        p.branch("yes", slither.Pipe("b"))
    with pytest.raises(ConfigError, match="predicate, bucket_name"):
        p.router("bad", [("not callable", "x")])
    with pytest.raises(ConfigError, match="pass pool="):
        slither.Pipe("w").worker("w", "m:f").run([1])


def test_local_router_drop_and_many_without_pool():
    pipe = (slither.Pipe("p")
            .local("prep", lambda x: DROP if x == 0 else (Many([x, x]) if x == 1 else x))
            .router("r", [(lambda x: x % 2 == 0, "even")]))
    res = pipe.run(range(6))
    assert res.outputs == {"dropped": [0], "default": [1, 1, 3, 5], "even": [2, 4]}
    assert res.counts["prep"] == {"in": 6, "out": 6, "failed": 0}


def test_stage_after_router_runs_as_branch(mpool):
    branch = slither.Pipe("neg").local("negate", lambda x: -x).router("r2", lambda x: "small" if x > -50 else "large")
    pipe = (slither.Pipe("p").worker("x10", "_pipe_helpers:times_ten", batch_size=4)
            .router("r", [(lambda v: v >= 30, "big")]).branch("big", branch))
    res = pipe.run(range(8), pool=mpool)
    assert sorted(res.outputs["default"]) == [0, 10, 20]
    assert sorted(res.outputs["big/small"]) == [-40, -30]
    assert sorted(res.outputs["big/large"]) == [-70, -60, -50]
    assert res.counts["big/negate"]["in"] == 5


def test_skip_fails_only_the_failing_batch(mpool):
    pipe = slither.Pipe("p").worker("w", "_pipe_helpers:fail_if_contains", batch_size=5, on_error="skip")
    res = pipe.run(range(30), pool=mpool)
    assert sorted(f.item for f in res.failures) == list(range(10, 15))
    assert all(f.stage == "w" and isinstance(f.error, ValueError) for f in res.failures)
    assert sorted(res.outputs["default"]) == [x for x in range(30) if not 10 <= x < 15]


def test_route_failures_to_a_bucket(mpool):
    pipe = slither.Pipe("p").worker("w", "_pipe_helpers:fail_if_contains", batch_size=5, route="rejected")
    res = pipe.run(range(20), pool=mpool)
    assert sorted(res.outputs["rejected"]) == list(range(10, 15))
    assert not res.failures


def test_raise_gives_partial_results(mpool):
    pipe = slither.Pipe("p").worker("w", "_pipe_helpers:fail_if_contains", batch_size=5, max_in_flight=1)
    with pytest.raises(PipeError) as info:
        pipe.run(range(30), pool=mpool)
    assert info.value.stage == "w"
    assert isinstance(info.value.__cause__, ValueError)
    assert set(info.value.partial.outputs.get("default", [])) <= set(range(10))


def test_context_and_store_snapshot(mpool):
    store = slither.Store()
    store.put("cfg", "k", 5)
    seen = []

    def prep(x, ctx):
        seen.append(ctx.run_id)
        return x + ctx.store.get("cfg", "k")

    res = slither.Pipe("p").local("prep", prep).run([1, 2], store=store)
    assert res.outputs["default"] == [6, 7] and len(set(seen)) == 1 and seen[0] == res.run_id


def test_concurrent_runs_of_one_pipe(mpool):
    pipe = slither.Pipe("p").worker("w", "_pipe_helpers:times_ten", batch_size=7)
    out = {}

    def go(k):
        out[k] = sorted(pipe.run(range(k * 100, k * 100 + 50), pool=mpool).outputs["default"])

    threads = [threading.Thread(target=go, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert out[k] == [x * 10 for x in range(k * 100, k * 100 + 50)]


def test_stream_yields_as_items_complete(mpool):
    pipe = slither.Pipe("p").worker("w", "_pipe_helpers:times_ten", batch_size=3)
    got = sorted(x for _, x in pipe.stream(range(10), pool=mpool))
    assert got == [x * 10 for x in range(10)]


@pytest.mark.timeout(300)
def test_stream_memory_is_bounded_over_a_ten_million_item_generator(mpool):
    from slither.example._measure import rss_bytes

    pipe = (slither.Pipe("p").local("inc", lambda x: x + 1)
            .worker("w", "_pipe_helpers:times_ten", batch_size=5000, max_in_flight=4)
            .router("r", [(lambda v: v % 20 == 0, "tens")]))
    count = 0
    early = None
    peak = 0
    for count, _ in enumerate(pipe.stream(iter(range(10_000_000)), pool=mpool), 1):
        if count % 500_000 == 0:
            rss = rss_bytes()
            if count == 1_000_000:
                early = rss
            peak = max(peak, rss)
    assert count == 10_000_000
    # Holding the items would take hundreds of MiB; streaming through bounded buffers keeps the host flat.
    assert peak - early < 40 * 2**20, (early, peak)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 60),
    drop_mod=st.integers(2, 9),
    fail_mod=st.integers(2, 9),
    batch=st.integers(1, 8),
    policy=st.sampled_from(["skip", "route"]),
)
def test_every_item_ends_exactly_once(pool, n, drop_mod, fail_mod, batch, policy):
    def prep(x):
        return DROP if x % drop_mod == 1 else x

    def work(items):
        if any(x % fail_mod == 0 and x > 0 for x in items):
            raise ValueError("injected")
        return items

    kw = {"route": "failed"} if policy == "route" else {"on_error": "skip"}
    pipe = (slither.Pipe("p").local("prep", prep).worker("w", work, batch_size=batch, **kw)
            .router("r", [(lambda x: x % 2 == 0, "even")]))
    res = pipe.run(range(n), pool=pool)
    ended = [x for bucket in res.outputs.values() for x in bucket] + [f.item for f in res.failures]
    assert sorted(ended) == list(range(n))


def test_per_batch_local_stage_with_wrong_output_accounts_for_its_items():
    pipe = slither.Pipe("p").local("halve", lambda chunk: chunk[: len(chunk) // 2], per_batch=True, batch_size=4)
    with pytest.raises(PipeError, match="returned 2 results for 4 items") as info:
        pipe.run(range(4))
    assert sorted(f.item for f in info.value.partial.failures) == [0, 1, 2, 3]
