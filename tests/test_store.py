"""The store: copies on read, versions, atomic reload, snapshots, torn-read freedom, worker access."""

from __future__ import annotations

import threading

import pytest
import slither


def test_values_are_copies_and_versions_increase():
    st = slither.Store()
    v0 = st.version("t")
    st.put("t", "k", [1, 2])
    got = st.get("t", "k")
    got.append(3)
    assert st.get("t", "k") == [1, 2]
    assert st.version("t") > v0
    assert st.get("t", "missing", "dflt") == "dflt"
    st.put_many("t", {"a": 1, ("x", 2): 2})
    assert sorted(map(repr, st.keys("t"))) == sorted(map(repr, ["k", "a", ("x", 2)]))
    assert st.len("t") == 3
    assert st.delete("t", "a") and not st.delete("t", "a")


def test_bad_key_is_a_clear_type_error():
    st = slither.Store()
    with pytest.raises(TypeError, match="store keys"):
        st.put("t", [1], 1)


def test_failed_reload_changes_nothing():
    st = slither.Store()
    v = st.reload("t", {"a": 1})

    def loader():
        raise RuntimeError("source unavailable")

    with pytest.raises(RuntimeError):
        st.reload("t", loader)
    assert st.get("t", "a") == 1 and st.version("t") == v
    with pytest.raises(slither.SerializationError, match="'b'"):
        st.reload("t", {"a": 2, "b": threading.Lock()})
    assert st.get("t", "a") == 1 and st.version("t") == v


def test_update_is_serialized_across_threads():
    st = slither.Store()

    def work():
        for _ in range(300):
            st.update("c", "n", lambda v: v + 1, default=0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert st.get("c", "n") == 1200


def test_snapshot_is_consistent_across_tables():
    st = slither.Store()
    st.put("schema", "current", "v1")
    st.put("meta", "version", 1)
    with st.snapshot() as snap:
        st.put("schema", "current", "v2")
        st.put("meta", "version", 2)
        assert (snap.get("schema", "current"), snap.get("meta", "version")) == ("v1", 1)
    assert (st.get("schema", "current"), st.get("meta", "version")) == ("v2", 2)


@pytest.mark.timeout(120)
def test_no_torn_reads_from_eight_threads_during_10000_reloads():
    st = slither.Store()
    st.reload("pair", {"a": 0, "b": 0})
    stop = threading.Event()
    torn = []
    versions_ok = []

    def reader():
        bad = 0
        last = 0
        monotonic = True
        while not stop.is_set():
            with st.snapshot() as s:
                if s.get("pair", "a") != s.get("pair", "b"):
                    bad += 1
                v = s.version("pair")
                monotonic &= v >= last
                last = v
        torn.append(bad)
        versions_ok.append(monotonic)

    readers = [threading.Thread(target=reader) for _ in range(8)]
    for t in readers:
        t.start()
    for i in range(1, 10_001):
        st.reload("pair", {"a": i, "b": i})
    stop.set()
    for t in readers:
        t.join()
    assert sum(torn) == 0
    assert all(versions_ok)
    assert st.get("pair", "a") == 10_000


def _worker_pairs(n):
    from slither.worker import store

    bad = 0
    for _ in range(n):
        s = store.snapshot("pair")
        if s.get("pair", "a") != s.get("pair", "b"):
            bad += 1
    return bad


def _worker_incr(_):
    from slither.worker import store

    return store.update("c", "n", lambda v: v + 1, default=0)


@pytest.mark.timeout(120)
def test_workers_read_consistent_snapshots_and_update_serially():
    st = slither.Store()
    st.reload("pair", {"a": 0, "b": 0})
    stop = threading.Event()

    def reloader():
        i = 0
        while not stop.is_set():
            i += 1
            st.reload("pair", {"a": i, "b": i})

    with slither.Pool(2, store=st) as pool:
        t = threading.Thread(target=reloader)
        t.start()
        try:
            torn = pool.map(_worker_pairs, [500] * 8, batch_size=1)
        finally:
            stop.set()
            t.join()
        assert sum(torn) == 0
        pool.map(_worker_incr, range(100), batch_size=3)
        st.update("c", "n", lambda v: v + 1)
    assert st.get("c", "n") == 101


def test_worker_without_store_gets_a_clear_error():
    def use_store(_):
        from slither._worker.store_client import WorkerStore  # noqa: F401
        from slither.worker import store

        return store

    with slither.Pool(1) as pool:
        assert pool.call(use_store, None) is None


def test_each_write_returns_the_version_it_created_under_eight_threads():
    st = slither.Store()
    got: list[int] = []
    lock = threading.Lock()

    def write(k):
        mine = []
        for i in range(200):
            if i % 3 == 0:
                mine.append(st.put("t", (k, i), i))
            elif i % 3 == 1:
                mine.append(st.put_many("t", {(k, i): i}))
            else:
                mine.append(st.reload_tables({"t": {(k, i): i}})["t"])
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 1601)), "every write reports its own version, none another writer's"


def test_reload_tables_returns_each_new_version():
    st = slither.Store()
    st.put("a", "k", 1)
    assert st.reload_tables({"a": {"k": 2}, "b": lambda: {"k": 3}}) == {"a": 2, "b": 1}
    assert st.snapshot("a", "b").get("b", "k") == 3


@pytest.mark.timeout(120)
def test_snapshots_share_a_large_tables_structure_instead_of_copying_it():
    psutil = pytest.importorskip("psutil")
    st = slither.Store()
    st.reload("big", {i: i for i in range(100_000)})
    rss = psutil.Process().memory_info().rss
    kept = []
    for i in range(1000):
        st.put("big", i, -i)
        kept.append(st.snapshot())
    grown = psutil.Process().memory_info().rss - rss
    # A copy per write would keep 1000 copies of a 100,000-key map alive here: gigabytes.
    assert grown < 256 << 20, f"{grown >> 20} MiB for 1000 snapshots"
    assert kept[0].get("big", 0) == 0 and kept[0].get("big", 1) == 1 and kept[-1].get("big", 999) == -999
