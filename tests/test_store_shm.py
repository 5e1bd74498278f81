"""Workers read the store from shared memory: local lookups, consistent snapshots across tables under a
storm of reloads, the host's API on both sides, and no segment left behind when either side is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time

import psutil
import pytest
import slither

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


# -- worker-side helpers (imported by name in the workers) ----------------------------------------
def _count_requests(store):
    sent = []
    send = store._send

    def counting(payload):
        sent.append(payload[0])
        return send(payload)

    store._send = counting
    return sent


def _reads_without_asking(n):
    from slither.worker import store

    assert store.reads_locally
    first = store.get("cfg", "k")
    store.snapshot("cfg", "other")  # maps "other" (never written) once
    sent = _count_requests(store)
    values = {repr(store.get("cfg", "k")) for _ in range(n)}
    snaps = {repr(store.snapshot("cfg", "other").get("cfg", "k")) for _ in range(n)}
    return first, values, snaps, list(sent)


def _read_after_change(_):
    from slither.worker import store

    sent = _count_requests(store)
    return store.get("cfg", "k"), store.get("cfg", "k"), store.version("cfg"), list(sent)


def _reads_after_a_change_of_a_64_key_table(_):
    from slither.worker import store

    sent = _count_requests(store)
    values = [store.get("wide", 0) for _ in range(8)]
    return values, list(sent)


def _read_pairs_until_stopped():
    """Snapshots of tables a and b until the host sets ctl/stop; every value in them must be one reload's."""
    from slither.worker import store

    assert store.reads_locally
    store.update("ctl", "started", lambda k: k + 1, default=0)
    n = torn = backwards = 0
    seen = set()
    last = (0, 0)
    while not store.get("ctl", "stop", False):
        if n % 3 == 0:
            # Single-table reads map a and b separately, so the images held may be of different moments;
            # the snapshot below must notice and not combine them.
            store.get("a", "x"), store.get("b", "x")
        with store.snapshot("a", "b") as s:
            a, b = s.get("a", "x"), s.get("b", "x")
            if not (a == s.get("a", "y") == b == s.get("b", "y")):
                torn += 1
            versions = (s.version("a"), s.version("b"))
            if n % 64 == 0 and len({v if isinstance(v, int) else v[0] for _, v in s.items("a")} | {b}) != 1:
                torn += 1
        backwards += versions < last
        last = versions
        seen.add(a)
        n += 1
    return {"reads": n, "torn": torn, "backwards": backwards, "distinct": len(seen)}


def _use_the_whole_api(_):
    from slither.worker import store

    out = {}
    out["put"] = store.put("w", "a", 1)
    out["put_many"] = store.put_many("w", {"b": 2, ("t", 3): [3]})
    out["get"] = (store.get("w", "a"), store.get("w", ("t", 3)), store.get("w", "zz", "dflt"))
    out["keys"] = sorted(map(repr, store.keys("w")))
    out["items"] = sorted(map(repr, store.items("w")))
    out["len"] = store.len("w")
    out["delete"] = (store.delete("w", "b"), store.delete("w", "b"))
    out["update"] = store.update("w", "a", lambda v: v + 10)
    out["reload"] = store.reload("r", lambda: {"x": 1})
    out["reload_tables"] = store.reload_tables({"r": {"x": 2}, "s": {"y": 3}})
    out["version"] = (store.version("w"), store.version("r"), store.version("never"))
    out["tables"] = store.tables()
    snap = store.snapshot("r", "s")
    out["snapshot"] = (snap.get("r", "x"), snap.get("s", "y"), snap.tables(), snap.len("s"))
    try:
        snap.get("w", "a")
    except KeyError as exc:
        out["unnamed"] = str(exc)
    try:
        store.reload("r", [1, 2])
    except TypeError as exc:
        out["bad_reload"] = str(exc)
    out["after_bad_reload"] = store.get("r", "x")
    return out


def _large_values(_):
    from slither.worker import store

    big = store.get("big", "mib")
    return len(big), big[:3], store.len("big")


# -- tests ----------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_worker_reads_are_local_until_the_table_changes():
    st = slither.Store()
    st.put("cfg", "k", {"v": 1})
    with slither.Pool(1, store=st) as pool:
        first, values, snaps, sent = pool.call(_reads_without_asking, 2000)
        assert first == {"v": 1} and values == {repr({"v": 1})} and snaps == {repr({"v": 1})}
        assert sent == [], "reads of an unchanged table ask the host nothing"
        v = st.put("cfg", "k", {"v": 2})
        new, again, version, sent = pool.call(_read_after_change, None)
        assert (new, again, version) == ({"v": 2}, {"v": 2}, v)
        assert sent == [slither._worker.storecodec.MAP], "one MAP request, then local again"


@pytest.mark.timeout(60)
def test_a_changed_large_table_is_asked_about_until_asking_has_cost_a_new_image():
    from slither._worker import storecodec as codec

    st = slither.Store()
    st.reload("wide", dict.fromkeys(range(64), 0))  # 64 entries: 64 // 16 = 4 requests before a new image
    with slither.Pool(1, store=st) as pool:
        first = pool.call(_reads_after_a_change_of_a_64_key_table, None)
        assert first == ([0] * 8, [codec.ATTACH, codec.MAP])
        st.put("wide", 0, 1)
        values, sent = pool.call(_reads_after_a_change_of_a_64_key_table, None)
    assert values == [1] * 8
    assert sent == [codec.GET] * 4 + [codec.MAP], "four answers from the host, then the new image, then local"


@pytest.mark.timeout(60)
def test_worker_store_has_the_hosts_api():
    st = slither.Store()
    with slither.Pool(1, store=st) as pool:
        out = pool.call(_use_the_whole_api, None)
    assert out["put"] == 1 and out["put_many"] == 2
    assert out["get"] == (1, [3], "dflt")
    assert out["keys"] == sorted(map(repr, ["a", "b", ("t", 3)]))
    assert out["len"] == 3 and out["delete"] == (True, False) and out["update"] == 11
    assert out["reload"] == 1 and out["reload_tables"] == {"r": 2, "s": 1}
    assert out["version"] == (st.version("w"), 2, 0)
    assert out["tables"] == ["r", "s", "w"] == st.tables()
    assert out["snapshot"] == (2, 3, ["r", "s"], 1)
    assert "'w' is not in this snapshot" in out["unnamed"]
    assert "reload needs a mapping" in out["bad_reload"] and out["after_bad_reload"] == 2
    assert st.get("w", "a") == 11 and st.get("s", "y") == 3


@pytest.mark.timeout(60)
def test_a_mebibyte_value_reads_whole():
    st = slither.Store()
    st.put("big", "mib", b"abc" + bytes(1 << 20))
    with slither.Pool(1, store=st) as pool:
        assert pool.call(_large_values, None) == ((1 << 20) + 3, b"abc", 1)


@pytest.mark.timeout(300)
def test_worker_snapshots_never_mix_versions_during_10000_reloads_from_8_threads():
    if FREE_THREADED:
        assert not sys._is_gil_enabled(), "the free-threaded leg runs this with the GIL off"
    st = slither.Store()
    st.reload_tables({"a": {"x": 0, "y": 0}, "b": {"x": 0, "y": 0}, "ctl": {"stop": False}})
    with slither.Pool(2, store=st) as pool:
        result: dict = {}

        def read():
            try:
                result.update(pool.broadcast(_read_pairs_until_stopped))
            except BaseException as exc:  # reported below, with the workers' traceback
                result["error"] = exc

        readers = threading.Thread(target=read)
        readers.start()
        deadline = time.monotonic() + 60
        while st.get("ctl", "started", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # every worker is reading before the storm starts

        blob = bytes(4096)

        def reload(k):
            # Table a (over 64 KiB) reaches the workers as a shared segment, table b inside the reply.
            for i in range(1250):
                value = k * 10_000 + i + 1
                pad = {f"p{j}": (value, blob) for j in range(20)}
                st.reload_tables({"a": {"x": value, "y": value, **pad}, "b": {"x": value, "y": value}})

        writers = [threading.Thread(target=reload, args=(k,)) for k in range(8)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        st.put("ctl", "stop", True)
        readers.join(120)
        assert not readers.is_alive()
    assert st.version("a") == st.version("b") == 10_001
    assert "error" not in result, result.get("error")
    stats = [reply.value for reply in result.values()]
    assert len(stats) == 2
    for s in stats:
        assert s["torn"] == 0 and s["backwards"] == 0, s
        assert s["distinct"] >= 3, f"the worker read while the reloads happened: {s}"


HOST = textwrap.dedent("""
    import sys, time, slither
    def read():
        from slither.worker import store
        assert store.reads_locally
        return store.get("t", "k"), store.snapshot("t", "u").version("t")
    st = slither.Store()
    st.put("t", "k", "v" * 100_000)
    pool = slither.Pool(2, store=st)
    print(" ".join(str(r.pid) for r in pool.broadcast(read).values()), flush=True)
    time.sleep(60)
""")


def _segments():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _wait_gone(pids, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and
                                              psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        time.sleep(0.05)
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.timeout(90)
def test_sigkill_of_the_host_leaves_no_segment_behind():
    before = _segments()
    host = subprocess.Popen([sys.executable, "-c", HOST], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        line = host.stdout.readline()
        pids = [int(p) for p in line.split()] if line.strip() else []
        assert len(pids) == 2, line
        assert _segments() == before, "memfds have no name in /dev/shm"
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        assert _wait_gone(pids) == [], "workers die with their host, and their mappings with them"
        assert _segments() == before
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def _pid_and_read(_):
    import os

    from slither.worker import store

    return os.getpid(), store.get("t", "k")[0], store.reads_locally


@pytest.mark.timeout(60)
def test_sigkill_of_a_worker_leaves_no_segment_and_its_replacement_maps_again():
    before = _segments()
    st = slither.Store()
    st.put("t", "k", (1, bytes(100_000)))  # large enough to be a shared segment
    with slither.Pool(1, store=st) as pool:
        pid, value, local = pool.call(_pid_and_read, None)
        assert (value, local) == (1, True)
        os.kill(pid, signal.SIGKILL)
        st.put("t", "k", (2, bytes(100_000)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                new_pid, value, local = pool.call(_pid_and_read, None)
                break
            except slither.errors.SlitherError:
                time.sleep(0.1)
        assert new_pid != pid and (value, local) == (2, True)
    assert _segments() == before


def test_a_worker_that_cannot_map_the_hosts_memory_asks_instead():
    from slither._worker import storecodec as codec
    from slither._worker.store_client import WorkerStore

    st = slither.Store()
    st.reload_tables({"a": {"x": 1}, "b": {"x": 1}})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def elsewhere(payload):
        # As a host on another machine would look: its pid names no process here.
        reply = bytes(st._inner.handle_request(payload))
        if payload[0] == codec.ATTACH:
            fields = codec.split(reply[1:])
            fields[0] = codec.pack_u64(dead.pid)
            reply = codec.join(reply[0], *fields)
        return reply

    ws = WorkerStore(elsewhere)
    assert ws.get("a", "x") == 1 and not ws.reads_locally
    assert ws.snapshot("a", "b").get("b", "x") == 1 and ws.keys("a") == ["x"] and ws.version("a") == 1
    st.put("a", "x", 2)
    assert ws.get("a", "x") == 2 and ws.update("a", "x", lambda v: v + 1) == 3 and st.get("a", "x") == 3


try:
    from hypothesis import given, settings
    from hypothesis import strategies as hs

    _key = hs.one_of(hs.text(max_size=12), hs.integers(), hs.binary(max_size=12), hs.none(),
                     hs.tuples(hs.text(max_size=4), hs.integers()))
    _table = hs.dictionaries(_key, hs.one_of(hs.integers(), hs.binary(max_size=64), hs.text(max_size=20)),
                             max_size=60)

    @settings(max_examples=25, deadline=None)
    @given(_table, _table)
    def test_the_python_reader_finds_exactly_what_the_rust_image_holds(before, after):
        from slither._worker.store_client import WorkerStore

        st = slither.Store()
        ws = WorkerStore(lambda p: bytes(st._inner.handle_request(p)))
        for contents in (before, after):
            version = st.reload("t", contents)
            assert ws.reads_locally and ws.version("t") == version
            assert sorted(map(repr, ws.keys("t"))) == sorted(map(repr, st.keys("t")))
            for k in st.keys("t"):
                assert ws.get("t", k) == st.get("t", k)
            assert ws.get("t", ("absent", -1), "none") == "none" and ws.len("t") == st.len("t")
except ImportError:  # hypothesis is a dev dependency
    pass
