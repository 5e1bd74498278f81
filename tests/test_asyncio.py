"""Awaitable forms: acall, aimap and amap keep the event loop running (in a script and in a Jupyter kernel),
consume input lazily, and cancelling the awaiting task cancels the work and kills the worker running it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import subprocess
import sys
import textwrap

import psutil
import pytest
import slither
from _dropin_helpers import nap, nap_and_touch, started_nap
from _helpers import eventually
from _kernel import run_cells, text_of

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_acall_and_amap(pool):
    async def main():
        a = await pool.acall(divmod, 17, 5)
        b = await pool.amap(abs, range(-4, 0))
        c = await pool.amap(pow, [2, 3], [5, 2], chunksize=1)
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.acall(int, "x")
        with pytest.raises(concurrent.futures.TimeoutError):
            await pool.amap(nap, [30], timeout=0.3)
        return a, b, c

    assert asyncio.run(main()) == ((3, 2), [4, 3, 2, 1], [32, 9])


def test_aimap_ordered_or_not_with_imap_options(pool):
    async def main():
        ordered = [r async for r in pool.aimap(abs, range(-50, 0), batch_size=7)]
        unordered = [r async for r in pool.aimap("_helpers:slow", range(20), batch_size=1, ordered=False)]
        skipped = [r async for r in pool.aimap("_helpers:fail_on", range(6), on_error="skip")]
        return ordered, unordered, skipped

    ordered, unordered, skipped = asyncio.run(main())
    assert ordered == list(range(50, 0, -1))
    assert sorted(unordered) == list(range(20))
    assert skipped == [0, 1, 2, 4, 5]
    with pytest.raises(TypeError, match="did you mean ordered"):
        pool.aimap(abs, [1], orderd=False)


def test_aimap_reads_its_input_lazily_and_async_iterables_too(pool):
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield i

    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield -i

    async def main():
        got = []
        stream = pool.aimap("_helpers:inc", endless(), batch_size=5, max_in_flight=2)
        async for r in stream:
            got.append(r)
            if len(got) == 30:
                break
        await stream.aclose()
        from_async = [r async for r in pool.aimap(abs, agen(12), batch_size=4)]
        return got, from_async

    got, from_async = asyncio.run(main())
    assert got == list(range(1, 31))
    assert next(pulled) <= 30 + 2 * 2 * 5 + 4 * 5 + 10  # bounded by what is in flight and handed over
    assert from_async == list(range(12))


@pytest.mark.timeout(60)
def test_cancelling_the_awaiting_task_kills_the_worker_running_the_call(tmp_path):
    started = tmp_path / "started"

    def started_pids():
        return {int(line) for line in started.read_text().split()} if started.exists() else set()

    def all_dead(pids):
        return eventually(lambda: not any(psutil.pid_exists(p) for p in pids))

    with slither.Pool(2) as pool:
        async def cancel_soon(awaitable):
            task = asyncio.ensure_future(awaitable)
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_soon(pool.acall(nap_and_touch, str(started), 30)))
        first = started_pids()
        assert len(first) == 1 and all_dead(first)
        asyncio.run(cancel_soon(pool.amap(started_nap, [(str(started), 30)] * 2, batch_size=1)))
        second = started_pids() - first
        assert second and all_dead(second)
        assert pool.wait_ready(timeout=30)
        assert pool.map(abs, [-3]) == [3]

        async def leave_early():
            stream = pool.aimap(started_nap, [(str(tmp_path / "quick"), 0.01)] + [(str(started), 30)] * 2,
                                batch_size=1)
            async for pid in stream:
                break
            await stream.aclose()  # leaving early and closing cancels what is left
            return pid

        asyncio.run(leave_early())
        # Every worker that had started a 30 s call was killed (a call not started yet was simply dropped).
        assert all_dead(started_pids() - first - second)
        assert pool.wait_ready(timeout=30)
        assert all(w.state == "ready" for w in pool.stats().workers)


TICKS_SCRIPT = """
    import asyncio
    import slither
    from _dropin_helpers import nap

    async def count_ticks(call):
        ticks = 0
        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        result = await call()
        task.cancel()
        return result, ticks

    async def main(pool):
        async def blocking():
            return pool.call(nap, 0.5, "blocking")
        async def awaited():
            return await pool.acall(nap, 0.5, "awaited")
        print(*await count_ticks(blocking))
        print(*await count_ticks(awaited))
        print(*await count_ticks(lambda: pool.amap(nap, [0.5], batch_size=1)))

    if __name__ == "__main__":
        with slither.Pool(1) as pool:
            asyncio.run(main(pool))
"""


@pytest.mark.timeout(120)
def test_the_event_loop_keeps_ticking_during_a_call_in_a_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(TICKS_SCRIPT))
    env = dict(os.environ, PYTHONPATH=TESTS)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert lines[0][0] == "blocking" and int(lines[0][1]) <= 2  # the control: a blocking call stalls the loop
    assert lines[1][0] == "awaited" and int(lines[1][1]) >= 10, out.stdout
    assert lines[2][0] == "[None]" and int(lines[2][1]) >= 10, out.stdout


@pytest.mark.timeout(300)
def test_the_event_loop_keeps_ticking_during_a_call_in_a_jupyter_kernel():
    outputs = run_cells(
        "import slither\nfrom _dropin_helpers import nap\npool = slither.Pool(1)",
        textwrap.dedent("""
            import asyncio
            ticks = 0
            async def ticker():
                global ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1
            task = asyncio.ensure_future(ticker())
            await asyncio.sleep(0)
            ticks = 0
            result = await pool.acall(nap, 0.5, "done")
            during_call = ticks
            ticks = 0
            results = [r async for r in pool.aimap(nap, [0.25, 0.25], batch_size=1)]
            during_aimap = ticks
            task.cancel()
            print(asyncio.get_running_loop() is not None, result, during_call, results, during_aimap)
        """),
        "pool.close()",
    )
    running, result, during_call, rest = text_of(outputs[1]).split(" ", 3)
    results, during_aimap = rest.rsplit(" ", 1)
    assert (running, result) == ("True", "done"), outputs[1]
    assert int(during_call) >= 10, outputs[1]
    assert results == "[None, None]" and int(during_aimap) >= 10, outputs[1]
