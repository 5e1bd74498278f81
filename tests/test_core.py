"""The core's failure inputs: death seen at exit, nothing orphaned, strict frames, no head-of-line wait,
crashes charged only to started batches, external kills never breaking the pool, forked children, sessions
during replacement, and a host thread count that does not grow with the pool."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
import slither
from _helpers import survivors_of_host_kill, wait_gone

HERE = os.path.dirname(os.path.abspath(__file__))


def _wait_reaped(pid: int, seconds: float = 10) -> None:
    """Until the supervisor has reaped `pid` (after it told the scheduler)."""
    deadline = time.monotonic() + seconds
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.001)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["fork", "multiprocessing", "system"])
def test_a_crash_is_seen_at_exit_even_when_a_helper_holds_the_channel(tmp_path, how):
    pid_file = str(tmp_path / "helper.pid")
    with slither.Pool(2) as pool:
        t0 = time.monotonic()
        with pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
            pool.call("_core_helpers:helper_then_segfault", how, pid_file)
        assert time.monotonic() - t0 < 10, "the crash was not seen when the worker exited"
        helper = int(open(pid_file).read())
        assert wait_gone([helper], 1.0) == [], "the helper outlived its worker's process group"
        assert pool.wait_ready(timeout=30)
        assert all(w.state == "ready" for w in pool.stats().workers)
        assert pool.map("_core_helpers:echo", range(4)) == [0, 1, 2, 3]


@pytest.mark.timeout(60)
def test_host_sigkill_leaves_no_descendant_of_a_worker():
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {HERE!r})
        import slither
        pool = slither.Pool(2)
        s0, s1 = pool.session(), pool.session()
        sleeper = s0.call("_core_helpers:start_sleeper")
        threading.Thread(target=s1.call, args=("_core_helpers:c_loop",), daemon=True).start()
        time.sleep(0.5)
        print(" ".join(str(p) for p in (sleeper, s0.pid, s1.pid)), flush=True)
        time.sleep(60)
    """)
    assert survivors_of_host_kill(script, 3) == [], "a worker or its child outlived the host"


@pytest.mark.timeout(60)
def test_payload_over_the_frame_limit_fails_alone_and_the_worker_is_unaffected():
    # str stays in the frame (large bytes would travel in a shared-memory segment, which the frame limit
    # does not bound: see test_buffers.py).
    with slither.Pool(1, max_frame_bytes=1 << 20) as pool:
        pid = pool.workers_info()[0].pid
        with pytest.raises(slither.SerializationError, match="over the pool's max_frame_bytes"):
            pool.call("_core_helpers:nbytes", "x" * (2 << 20))
        for batch_size in (1, 3, None):  # alone, in one batch with small items, batched automatically
            out = pool.dispatch("_core_helpers:nbytes", ["a", "y" * (2 << 20), "bb"], batch_size=batch_size)
            assert out.results == [1, 2], batch_size
            assert [f.index for f in out.failures] == [1]
            assert "item(s) 1 of" in str(out.failures[0].exception) and "bytes" in str(out.failures[0].exception)
        assert pool.map("_core_helpers:nbytes", ["a", "y" * (2 << 20), "bb"], on_error="skip") == [1, 2]
        # A result over the limit: a typed error from the worker, which stays.
        with pytest.raises(slither.SerializationError, match="exceeds"):
            pool.call("operator:mul", "x", 2 << 20)
        assert pool.workers_info()[0].pid == pid
        assert pool.call("_core_helpers:nbytes", b"abc") == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("what", "named"),
    [("stray", "not a frame a worker sends"), ("huge", "over max_frame_bytes"),
     ("dup2", "not a frame a worker sends"), ("unknown-id", "was not running")],
)
def test_garbage_on_the_channel_kills_only_that_worker_with_a_protocol_error(what, named):
    with slither.Pool(2) as pool, concurrent.futures.ThreadPoolExecutor(1) as host_thread:
        others = host_thread.submit(pool.map, "_core_helpers:echo", range(200), batch_size=1)
        t0 = time.monotonic()
        with pytest.raises(slither.ProtocolError, match=named):
            pool.call("_core_helpers:write_to_channel", what)
        assert time.monotonic() - t0 < 4, "the bad frame was not judged before waiting on it"
        assert others.result(timeout=30) == list(range(200))
        assert pool.wait_ready(timeout=30)
        assert pool.map("_core_helpers:echo", range(5)) == list(range(5))
    # close() returned: nothing hung on the broken worker.


@pytest.mark.timeout(60)
def test_no_batch_waits_behind_a_long_run_while_a_worker_is_idle():
    with slither.Pool(2) as pool:
        long = pool.submit(time.sleep, 8)
        time.sleep(0.3)
        shorts = [pool.submit("_core_helpers:echo", i) for i in range(20)]
        done, _ = concurrent.futures.wait(shorts, timeout=7)
        assert len(done) == 20, "short calls waited behind the long one"
        assert not long.done(), "the long call should still be running: the test proves nothing otherwise"
        assert [f.result() for f in shorts] == list(range(20))
        long.result(timeout=30)


@pytest.mark.timeout(120)
def test_a_batch_sent_to_a_worker_that_was_just_killed_is_requeued_not_charged():
    with slither.Pool(2) as pool:
        for i in range(20):
            assert pool.wait_ready(timeout=30)
            victim = pool.workers_info()[i % 2].pid
            os.kill(victim, signal.SIGKILL)
            futs = [pool.submit("_core_helpers:echo", j) for j in range(4)]
            assert [f.result(timeout=30) for f in futs] == list(range(4)), f"try {i}"


@pytest.mark.timeout(60)
def test_wait_ready_is_never_true_once_a_dead_worker_was_reaped():
    with slither.Pool(2) as pool:
        for _ in range(5):
            assert pool.wait_ready(timeout=30)
            victim = pool.workers_info()[0].pid
            os.kill(victim, signal.SIGKILL)
            _wait_reaped(victim)
            # Reaped by the supervisor: the scheduler already knows.
            assert not psutil.pid_exists(victim)
            assert victim not in {w.pid for w in pool.workers_info() if w.state == "ready"}


@pytest.mark.timeout(120)
def test_kills_from_outside_never_break_the_pool():
    """A SIGKILL of a random worker (starting or ready) every 100 ms: replaced with backoff, never broken."""
    with slither.Pool(2, init="_core_helpers:echo", init_args=(None,)) as pool, \
            concurrent.futures.ThreadPoolExecutor(1) as host_thread:
        stop = threading.Event()
        kills = 0

        def chaos():
            nonlocal kills
            while not stop.is_set():
                for p in psutil.Process().children():
                    try:
                        if "slither._worker" in " ".join(p.cmdline()[:4]):
                            p.kill()
                            kills += 1
                            break
                    except psutil.Error:
                        pass
                time.sleep(0.1)

        t = threading.Thread(target=chaos)
        t.start()
        work = host_thread.submit(pool.dispatch, "_core_helpers:echo", range(2000), batch_size=10,
                                  on_error=slither.Retry(attempts=10_000, backoff=0.01, then="skip"))
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                assert pool.stats().broken is None
                time.sleep(0.05)
        finally:
            stop.set()
            t.join()
        assert kills > 20
        out = work.result(timeout=60)
        assert out.results == list(range(2000)) and not out.failures
        assert pool.stats().broken is None
        assert pool.wait_ready(timeout=30)
        assert pool.map("_core_helpers:echo", range(3)) == [0, 1, 2]


@pytest.mark.timeout(60)
def test_a_crash_loop_names_its_cause_once():
    with pytest.raises(slither.PoolBroken) as info:
        slither.Pool(1, init="_helpers:init_raises")
    msg = str(info.value)
    assert msg.count("failed to start") == 1, msg
    assert "the pool is broken: the pool is broken" not in msg
    assert "init failed on purpose" in msg


@pytest.mark.timeout(60)
def test_a_forked_child_cannot_use_the_parents_pool_and_the_parent_gets_only_its_own_results():
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {HERE!r})
        import slither
        with slither.Pool(2) as pool:
            assert pool.map("_core_helpers:echo", range(10)) == list(range(10))
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    pool.map("_core_helpers:echo", range(2000))
                    msg = "child used the pool"
                except slither.PoolClosed as e:
                    msg = "refused: " + str(e)
                os.write(w, msg.encode())
                os._exit(0)
            out = pool.map("_core_helpers:echo", range(2000))
            os.waitpid(pid, 0)
            print(os.read(r, 4096).decode())
            print("parent ok" if out == list(range(2000)) else "parent got wrong values")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert "refused: " in out.stdout and "forked child" in out.stdout, out.stdout
    assert "parent ok" in out.stdout


@pytest.mark.timeout(60)
def test_a_task_that_leaves_its_group_still_times_out_and_terminate_does_not_hang():
    pool = slither.Pool(1)
    try:
        t0 = time.monotonic()
        out = pool.dispatch("_core_helpers:escape_group_and_sleep", [25], batch_size=1, batch_timeout=1)
        assert [f.kind for f in out.failures] == ["timeout"]
        assert time.monotonic() - t0 < 10
        pool.submit("_core_helpers:escape_group_and_sleep", 25)
        time.sleep(0.5)
    finally:
        t0 = time.monotonic()
        pool.terminate()
        assert time.monotonic() - t0 < 10


@pytest.mark.timeout(60)
def test_a_session_opened_during_a_replacement_waits_for_a_ready_worker():
    with slither.Pool(1) as pool:
        victim = pool.workers_info()[0].pid
        os.kill(victim, signal.SIGKILL)
        _wait_reaped(victim)
        with pool.session(timeout=30) as s:
            assert s.pid != victim
            assert s.call("_core_helpers:echo", 7) == 7
        victim = pool.workers_info()[0].pid
        os.kill(victim, signal.SIGKILL)
        _wait_reaped(victim)
        try:
            with pool.session(timeout=0.001):
                pass
        except TimeoutError as e:
            assert "no worker became ready" in str(e)


@pytest.mark.timeout(120)
def test_host_threads_do_not_grow_with_the_pool():
    me = psutil.Process()
    base = me.num_threads()
    with slither.Pool(4):
        small = me.num_threads()
    with slither.Pool(64, startup_timeout=100):
        big = me.num_threads()
    assert small - base <= 3, (base, small)
    assert big - small <= 2, (small, big)


@pytest.mark.timeout(30)
def test_a_batch_given_back_twice_by_one_worker_never_runs_there():
    """The worker's side of a revoke: a batch sent to it again while its first copy still waited. A REVOKE names
    the TASK frame it wants back by number, on the control channel; a frame already taken is never given back
    (the answer is STARTED), and the started word holds the number of the last frame that began."""
    import socket

    from slither._worker import framing
    from slither._worker.loop import Worker

    host, worker_end = socket.socketpair()
    control, control_end = socket.socketpair()
    word = os.memfd_create("started-word-test")
    os.ftruncate(word, framing.STARTED_WORD.size)
    chan, ctl = framing.Channel(worker_end.fileno()), framing.Channel(control_end.fileno())
    with host, worker_end, control, control_end:
        w = Worker(chan, ctl, word)
        reader = threading.Thread(target=w.read_loop, daemon=True)
        reader.start()
        task = __import__("pickle").dumps((("name", "builtins:abs"), "call", [((-1,), {})]))

        def revoke(number: int) -> bytes:
            return framing.HEADER.pack(framing.REVOKE, 4, 8) + number.to_bytes(8, "little")

        for frame in [framing.HEADER.pack(framing.TASK, 4, len(task)) + task] * 3:
            host.sendall(frame)
        control.sendall(revoke(1) + revoke(2))
        time.sleep(0.2)
        host.sendall(framing.HEADER.pack(framing.SHUTDOWN, 0, 0))
        w.serve()  # takes frames 1 and 2 (given back: skipped) and runs frame 3
        assert int.from_bytes(os.pread(word, 8, 0), "little") == 3
        control.sendall(revoke(3))  # too late: frame 3 ran
        time.sleep(0.2)
        host.settimeout(2)
        got = host.recv(4096)
        kinds, at = [], 0
        while at < len(got):
            kind, _, length = framing.HEADER.unpack_from(got, at)
            kinds.append(kind)
            at += framing.HEADER_LEN + length
        assert kinds == [framing.REVOKED, framing.REVOKED, framing.RESULT_OK, framing.STARTED], kinds
    chan.close()
    ctl.close()
    os.close(word)
