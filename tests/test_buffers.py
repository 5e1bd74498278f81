"""Large buffers travel through shared memory (a memfd per payload, sent with its frame), both ways, with real
worker processes: every supported type round-trips, the receiver's copy is private, the stats say which
path a payload took, and crashes and timeouts release the segments."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import sysconfig
import time

import _buffers_helpers
import psutil
import pytest
import slither
from slither import _slither
from slither._worker import buffers, framing, loop, segments

try:
    import numpy as np
except ImportError:  # 3.13t without a numpy wheel: the numpy cases skip, the rest run
    np = None

needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed for this interpreter")
BIG = buffers.THRESHOLD * 4  # bytes: well above the threshold
SMALL = buffers.THRESHOLD // 4
H = "_buffers_helpers"


def _unreleased() -> int:
    """Payload segments of this process that something still reads: the cache gives back every segment no
    lease holds (``segments.trim``), so what stays open is held by a reader (or leaked)."""
    segments.trim()
    return _memfds()


def _memfds() -> int:
    """Open descriptors of this process that are slither payload segments."""
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if "slither-payload" in os.readlink(f"/proc/self/fd/{name}"):
                n += 1
        except OSError:
            pass
    return n


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.fixture(scope="module")
def pool():
    with slither.Pool(2) as p:
        yield p


def test_the_frame_flag_matches_the_core():
    assert framing.SEGMENT == _slither.PROTOCOL["segment_flag"]


@needs_numpy
@pytest.mark.timeout(60)
def test_a_large_array_goes_through_a_segment_both_ways_and_small_ones_stay_in_band(pool):
    before = pool.stats().transfers
    a = np.arange(BIG // 8, dtype=np.float64)
    b = pool.call(f"{H}:echo", a)
    assert isinstance(b, np.ndarray) and b.dtype == a.dtype and (b == a).all()
    after = pool.stats().transfers
    assert after.sent_shared == before.sent_shared + 1
    assert after.sent_shared_bytes - before.sent_shared_bytes >= a.nbytes
    assert after.received_shared == before.received_shared + 1
    assert after.received_shared_bytes - before.received_shared_bytes >= a.nbytes
    small = np.arange(SMALL // 8, dtype=np.float64)
    assert (pool.call(f"{H}:echo", small) == small).all()
    last = pool.stats().transfers
    assert last.sent_shared == after.sent_shared and last.received_shared == after.received_shared
    assert last.sent_inband == after.sent_inband + 1 and last.received_inband == after.received_inband + 1


@needs_numpy
@pytest.mark.timeout(60)
@pytest.mark.parametrize("dtype", ["float64", "int8", "complex128", "uint16", "bool", "float32"])
@pytest.mark.parametrize("size", [SMALL, BIG])
def test_arrays_of_any_dtype_and_size_round_trip(pool, dtype, size):
    a = (np.arange(size // np.dtype(dtype).itemsize) % 7).astype(dtype)
    b = pool.call(f"{H}:echo", a)
    assert b.dtype == a.dtype and b.shape == a.shape and (b == a).all()
    assert b.flags.writeable


@needs_numpy
@pytest.mark.timeout(60)
def test_fortran_order_and_non_contiguous_arrays_round_trip(pool):
    f = np.asfortranarray(np.arange(BIG // 8, dtype=np.float64).reshape(-1, 64))
    g = pool.call(f"{H}:echo", f)
    assert g.flags.f_contiguous and (g == f).all()
    strided = np.arange(BIG // 4, dtype=np.float64).reshape(-1, 64)[:, ::2]
    assert not strided.flags.c_contiguous and not strided.flags.f_contiguous
    s = pool.call(f"{H}:echo", strided)
    assert s.shape == strided.shape and (s == strided).all()


@needs_numpy
@pytest.mark.timeout(60)
def test_a_worker_writing_its_input_does_not_change_the_hosts_array_and_results_are_writable(pool):
    a = np.zeros(BIG // 8)
    assert pool.call(f"{H}:mutate_and_sum", a) == 7.0 * a.size
    assert not a.any(), "the worker's write reached the host's array"
    r = pool.call(f"{H}:make_array", BIG // 8, 3.0)
    assert r.flags.writeable
    r[0] = 5.0  # private to the host: copy-on-write over the received segment
    assert r[0] == 5.0 and r[1] == 3.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [SMALL, BIG])
def test_bytes_bytearray_memoryview_and_picklebuffer_round_trip(pool, size):
    data = bytes(range(256)) * (size // 256)
    assert pool.call(f"{H}:echo", data) == data
    got = pool.call(f"{H}:echo", bytearray(data))
    assert type(got) is bytearray and got == data
    view = pool.call(f"{H}:echo", memoryview(data))
    assert isinstance(view, memoryview) and bytes(view) == data
    typed = memoryview(bytearray(data)).cast("i")
    back = pool.call(f"{H}:echo", typed)
    assert back.format == "i" and back.tolist() == typed.tolist()
    pb = pool.call(f"{H}:echo", pickle.PickleBuffer(bytearray(data)))
    assert bytes(memoryview(pb)) == data
    # Many items in one batch, and in results: each comes back equal, whatever path the batch took.
    items = [data, bytearray(data), (data, 1), {"k": data}]
    out = pool.map(f"{H}:echo", items, batch_size=4)
    assert out[0] == data and out[1] == data and out[2] == (data, 1) and out[3] == {"k": data}


@pytest.mark.timeout(60)
def test_large_bytes_results_come_back_through_a_segment(pool):
    before = pool.stats().transfers
    assert pool.call(f"{H}:make_bytes", BIG) == b"z" * BIG
    assert pool.stats().transfers.received_shared == before.received_shared + 1


@pytest.mark.timeout(60)
def test_cloudpickle_by_value_payloads_keep_their_buffers_out_of_band(pool):
    data = b"q" * BIG
    # A lambda goes by value with cloudpickle; its large argument still takes the shared path.
    before = pool.stats().transfers
    assert pool.map(lambda b: len(b), [data, data], batch_size=2) == [BIG, BIG]
    assert pool.stats().transfers.sent_shared == before.sent_shared + 1


@needs_numpy
@pytest.mark.timeout(120)
def test_pandas_frames_round_trip_when_installed(pool):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(BIG // 8, dtype=np.float64), "b": np.arange(BIG // 8)})
    back = pool.call(f"{H}:echo", df)
    pd.testing.assert_frame_equal(back, df)


@needs_numpy
@pytest.mark.timeout(120)
def test_results_the_host_keeps_are_never_written_again_and_dropped_ones_are_reused():
    # The worker writes each result into a cached segment; one the host still maps is leased and never
    # written again, one the host let go is (a stream of results stops making new segments).
    n = BIG // 8
    with slither.Pool(1) as pool:
        kept = [pool.call(f"{H}:make_array", n, float(i)) for i in range(12)]
        for _ in range(12):
            pool.call(f"{H}:make_array", n, -1.0)
        assert _buffers_helpers.fills(kept) == [(float(i), True) for i in range(12)]
        held, _ = pool.call(f"{H}:segments_held")
        assert held >= 12  # one per kept result, at least
        del kept
        for _ in range(30):
            pool.call(f"{H}:make_array", n, -2.0)
        assert pool.call(f"{H}:segments_held")[0] == held  # the let-go ones were written again


@needs_numpy
@pytest.mark.timeout(120)
def test_inputs_a_worker_keeps_are_never_written_again_and_let_go_ones_are_reused():
    n = BIG // 8
    with slither.Pool(1) as pool:
        for i in range(10):
            pool.call(f"{H}:keep", np.full(n, float(i)))
        for _ in range(10):
            pool.call(f"{H}:echo", np.full(n, -1.0))
        assert pool.call(f"{H}:kept_fills") == [(float(i), True) for i in range(10)]
        held = segments.held()[0]
        for _ in range(30):
            pool.call(f"{H}:echo", np.full(n, -2.0))
        assert segments.held()[0] == held >= 1


@pytest.mark.timeout(120)
def test_a_workers_segment_cache_does_not_count_against_max_memory_per_worker():
    # Results the host keeps hold their segments in the worker's cache, mapped there (resident): 4 x 48 MiB
    # over a 160 MiB limit. The limit is for the user's memory, so the worker is not replaced for slither's.
    n = 48 << 20
    with slither.Pool(1, max_memory_per_worker=160 << 20) as pool:
        kept = [pool.call(f"{H}:make_view", n) for _ in range(4)]
        assert pool.call(f"{H}:segments_held")[1] >= 4 * n
        time.sleep(2.0)  # ten memory samples; three in a row over the limit would replace the worker
        worker = pool.stats().workers[0]
        assert worker.rss_bytes > 160 << 20  # the kernel's count, as shown, includes the cache
        assert worker.recycles == 0
        assert all(bytes(k) == b"z" * n for k in kept)


@needs_numpy
@pytest.mark.timeout(120)
def test_payloads_kept_by_their_receivers_never_hold_more_than_max_segments_descriptors():
    # Each kept payload leases its segment: the writer then makes another, and keeps at most MAX_SEGMENTS of
    # them (each holds a descriptor); the rest travel in segments of their own, as without the cache.
    n = 3 * segments.MAX_SEGMENTS
    with slither.Pool(1) as pool:
        results = [pool.call(f"{H}:make_view", SMALL * 5) for _ in range(n)]
        assert pool.call(f"{H}:segments_held")[0] == segments.MAX_SEGMENTS
        for i in range(n):
            pool.call(f"{H}:keep", np.full(SMALL * 5 // 8, float(i)))
        assert segments.held()[0] == segments.MAX_SEGMENTS
        assert all(bytes(r) == b"z" * (SMALL * 5) for r in results)
        assert pool.call(f"{H}:kept_fills")[-n:] == [(float(i), True) for i in range(n)]


@pytest.mark.timeout(60)
def test_an_idle_worker_gives_back_the_segments_nobody_reads():
    with slither.Pool(1) as pool:
        kept = pool.call(f"{H}:make_view", BIG)
        for _ in range(3):
            pool.call(f"{H}:make_view", BIG)  # dropped at once: its segment is free again
        assert pool.call(f"{H}:segments_held") == (2, 2 * BIG)
        time.sleep(loop.IDLE_TRIM_S + 1)
        assert pool.call(f"{H}:segments_held") == (1, BIG)  # the one the host still reads stays
        assert bytes(kept) == b"z" * BIG


@pytest.mark.timeout(60)
def test_a_result_whose_segment_cannot_be_made_fails_with_the_reason():
    with slither.Pool(1) as pool:
        with pytest.raises(slither.SerializationError, match="Too many open files"):
            pool.call(f"{H}:large_result_without_descriptors", BIG)
        pool.call(f"{H}:restore_descriptors")
        assert bytes(pool.call(f"{H}:make_view", BIG)) == b"z" * BIG


@pytest.mark.parametrize("text", ["512M", "1e9", "", "-1"])
def test_a_malformed_segment_cache_setting_is_a_config_error_naming_it(monkeypatch, text):
    with pytest.raises(slither.ConfigError, match="SLITHER_SEGMENT_CACHE.*env="):
        slither.Pool(1, env={"SLITHER_SEGMENT_CACHE": text})
    monkeypatch.setenv("SLITHER_SEGMENT_CACHE", text)
    with pytest.raises(slither.ConfigError, match="SLITHER_SEGMENT_CACHE.*environment"):
        slither.Pool(1)


@pytest.mark.timeout(60)
def test_a_payload_over_the_cache_gets_a_segment_of_its_own(monkeypatch):
    segments.trim()
    before = segments.held()
    monkeypatch.setattr(segments, "SEGMENT_CACHE", before[1] + 3 * BIG // 2)
    out = buffers.dumps(pickle.PickleBuffer(bytearray(2 * BIG)))  # over what is left: its own memfd, not kept
    assert out.fd is not None and segments.held() == before
    assert bytes(buffers.loads(out.data, out.fd)) == bytes(2 * BIG)
    out.release()
    out = buffers.dumps(pickle.PickleBuffer(bytearray(BIG)))  # fits: kept for the next payload
    assert segments.held() == (before[0] + 1, before[1] + BIG)
    out.release()
    segments.trim()
    assert segments.held() == before


@pytest.mark.timeout(60)
def test_a_forked_child_never_writes_its_parents_segments():
    code = f"""
import os
import pickle
from slither._worker import buffers, segments
parent = buffers.dumps(pickle.PickleBuffer(bytearray(b"p" * {BIG})))
assert segments.held()[0] == 1
pid = os.fork()
if pid == 0:
    ok = segments.held() == (0, 0)
    child = buffers.dumps(pickle.PickleBuffer(bytearray(b"c" * {BIG})))
    os._exit(0 if ok and child.fd is not None else 1)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
assert bytes(buffers.loads(parent.data, parent.fd)) == b"p" * {BIG}
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=50)


@pytest.mark.timeout(120)
def test_a_timeout_while_a_segment_is_in_use_releases_it():
    payload = b"t" * (64 << 20)
    with slither.Pool(1) as pool:
        with pytest.raises(slither.BatchTimeout):
            pool.options(timeout=1.0).call(f"{H}:hold_and_sleep", payload)
        assert pool.call(f"{H}:echo", 1) == 1
    assert _unreleased() == 0


@pytest.mark.timeout(600)
def test_workers_killed_while_holding_a_256_mib_input_leak_nothing():
    rounds = int(os.environ.get("SLITHER_KILL_ROUNDS", "100"))
    big = bytearray(256 << 20)
    me = psutil.Process()
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    with slither.Pool(1) as pool:
        for _ in range(3):  # warm up: allocator and mapping state settle
            with pytest.raises(slither.WorkerCrashed):
                pool.call(f"{H}:hold_and_die", big)
        assert pool.call(f"{H}:echo", 1) == 1  # its replacement is up: count with a live worker both times
        fds, maps, rss = me.num_fds(), _maps(), me.memory_info().rss
        for _ in range(rounds):
            with pytest.raises(slither.WorkerCrashed):
                pool.call(f"{H}:hold_and_die", big)
        assert pool.call(f"{H}:echo", 2) == 2
        assert _unreleased() == 0
        assert me.num_fds() <= fds + 2, f"descriptors grew from {fds} to {me.num_fds()}"
        assert _maps() <= maps + 16, f"mappings grew from {maps} to {_maps()}"
        grown = me.memory_info().rss - rss
        assert grown < 128 << 20, f"RSS grew by {grown >> 20} MiB over {rounds} kills"
    if os.path.isdir("/dev/shm"):
        # Other programs on the machine come and go in /dev/shm; nothing new may be ours.
        new = set(os.listdir("/dev/shm")) - shm_before
        assert not [n for n in new if "slither" in n or str(os.getpid()) in n], new


@needs_numpy
@pytest.mark.timeout(900)
@pytest.mark.skipif(psutil.virtual_memory().available < (16 << 30),
                    reason="needs about 16 GiB of free memory for a 4.5 GiB array both ways")
@pytest.mark.skipif(os.environ.get("SLITHER_BIG_TESTS") != "1",
                    reason="set SLITHER_BIG_TESTS=1 to send a 4.5 GiB array both ways (takes a minute)")
def test_payloads_over_4_gib_travel_both_ways():
    n = (9 << 29) // 8  # 4.5 GiB of float64
    a = np.ones(n)
    with slither.Pool(1) as pool:
        b = pool.call(f"{H}:echo", a)
        assert b.shape == a.shape and b[0] == 1.0 and b[-1] == 1.0
        assert pool.stats().transfers.received_shared_bytes >= a.nbytes


def test_free_threaded_build_is_reported_for_context():
    # Not a check of the path: records which leg ran (numpy cases skip where no wheel exists).
    assert sysconfig.get_config_var("Py_GIL_DISABLED") in (None, 0, 1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fn", ["announce_segment_without_descriptor", "send_stray_descriptor"])
def test_a_worker_that_breaks_the_descriptor_rules_is_replaced_with_a_protocol_error(fn):
    with slither.Pool(1) as pool:
        pid = pool.workers_info()[0].pid
        with pytest.raises(slither.ProtocolError, match="descriptor"):
            pool.call(f"{H}:{fn}")
        assert pool.call(f"{H}:echo", 3) == 3
        assert pool.workers_info()[0].pid != pid


class _Registered:
    def __init__(self, v: int) -> None:
        self.v = v


def test_reducers_registered_with_copyreg_after_import_still_apply():
    import copyreg

    calls = []

    def reduce(obj):
        calls.append(obj.v)
        return _Registered, (obj.v + 1,)

    copyreg.pickle(_Registered, reduce)
    try:
        back = buffers.loads(buffers.dumps(_Registered(1)).data, None)
    finally:
        del copyreg.dispatch_table[_Registered]
    assert calls == [1] and back.v == 2


@needs_numpy
@pytest.mark.timeout(120)
def test_batches_queued_behind_a_slow_one_keep_their_segments_wherever_they_run():
    # Batches pipelined behind the slow first one may be taken back and sent to the idle worker: each copy
    # carries the same segment, and every result matches.
    arrays = [np.full(BIG // 8, float(i)) for i in range(8)]
    with slither.Pool(2) as pool:
        out = pool.map(f"{H}:slow_then_echo", list(enumerate(arrays)), batch_size=1)
        assert [int(a[0]) for a in out] == list(range(8))
        assert all((a == i).all() for i, a in enumerate(out))
        del out  # before 3.13 each live result's mapping holds a descriptor of its segment
        assert _unreleased() == 0


def test_a_segment_that_could_shrink_or_is_short_is_refused_not_mapped():
    import fcntl
    import struct

    layout = struct.pack("<I", 1) + struct.pack("<Q", 1 << 20) + pickle.dumps(None)
    loose = os.memfd_create("loose", os.MFD_CLOEXEC)
    short = os.memfd_create("short", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(loose, 1 << 20)
        with pytest.raises(ValueError, match="not sealed"):
            buffers.loads(layout, loose)
        os.ftruncate(short, 4096)
        fcntl.fcntl(short, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        with pytest.raises(ValueError, match="holds 4,096 bytes"):
            buffers.loads(layout, short)
    finally:
        os.close(loose)
        os.close(short)


def test_a_payload_read_back_out_of_its_segment_runs_the_same_without_one():
    # What the Ray backend does (Ray moves the buffers its own way): the segment's buffers read back and
    # given to execute() beside the pickle; the reply stays in band.
    from slither import _payload
    from slither._worker.execute import execute

    data = b"r" * BIG
    enc = _payload.dumps((("name", f"{H}:echo"), "call", [((data,), {})]))
    assert enc.segment is not None
    body, bufs = buffers.detach(enc.data, enc.fd)
    ok, reply = execute(body, buffers=bufs)
    assert ok and reply.segment is None and pickle.loads(reply.data) == data
