"""The stdlib demos at --size small: slither's invariants hold, the baselines do the same work on the same
data, the CLI's exit statuses and errors are the documented ones, and memory is measured per run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from slither.example import load, run
from slither.example._harness import Context, other_interpreter_rows
from slither.example._measure import measure
from slither.example.batch_stats import crash_lines
from slither.example.workloads import batch_stats as bs

FT = os.path.expanduser("~/.cache/slither/python-ft/bin/python3.13t")


def _cli(*args, timeout=300, cwd=None):
    return subprocess.run([sys.executable, "-m", "slither.example", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["text_analysis", "data_etl"])
def test_example_invariants_hold_and_baselines_do_the_same_work(name):
    report = load(name).run(Context(workers=2, size="small"))
    assert report.slither_ok, str(report)
    slither_row = next(r for r in report.rows if r.mode.startswith("slither"))
    baselines = [r for r in report.rows if not r.mode.startswith("slither")]
    assert [r.mode for r in baselines] == ["unsafe_threaded (2 threads)", "safe_threaded (2 threads)"]
    # Equal work: every baseline answers the same checks as slither, against the same expected values.
    shared = {i.name: i.expected for i in baselines[0].invariants}
    for inv in slither_row.invariants:
        if inv.name in shared:
            assert inv.expected == shared[inv.name], inv.name
    assert set(shared) - {"passes that broke an invariant (of 5)"} <= {i.name for i in slither_row.invariants}
    assert baselines[1].ok, str(report)
    for row in report.rows:
        assert row.wall_s > 0 and row.mem_mb is not None and row.mem_mb >= 0
    assert "slither invariants: all held" in str(report)
    assert "<table>" in report._repr_html_()
    assert json.loads(report.to_json())["slither_ok"] is True


@pytest.mark.timeout(400)
def test_batch_stats_checks_the_merge_against_a_serial_pass_and_counts_what_it_lost():
    report = load("batch_stats").run(Context(workers=2, size="small"))
    items = bs.generate("small", 42)
    ref = bs.expected(items)
    runs = [r for r in report.rows if r.mode.startswith("slither")]
    assert len(runs) == 4  # one row per run, each timed on its own
    for row in runs:
        inv = {i.name: i for i in row.invariants}
        assert inv["datasets accounted for (results + failures)"].ok
        assert inv["pills that returned a result"].ok
        assert inv["workers alive afterwards"].ok
        assert inv["values counted (n)"].expected == ref["state"][0]
        assert inv["datasets lost = pills"].expected == ref["poison"] + ref["crash"]
    # One line per crash, never the raw dump, unless --verbose.
    crashes = [d for d in report.details if d.strip().startswith("crash: worker")]
    assert crashes and all("SIGSEGV" in d for d in crashes)
    assert not any("Fatal Python error" in d for d in report.details)
    assert report.slither_ok, str(report)


def test_crash_lines_print_one_line_per_dump_and_the_dump_only_when_verbose(tmp_path):
    dump = ('Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n'
            f'  File "{bs.__file__}", line 65 in crash_like_a_buggy_extension\n')
    (tmp_path / "w1-pid4242.txt").write_text(dump)
    (tmp_path / "w0-pid4243.txt").write_text("")
    paths = [str(p) for p in tmp_path.iterdir()]
    assert crash_lines(paths, verbose=False) == [
        "    crash: worker 1, pid 4242: SIGSEGV in crash_like_a_buggy_extension (batch_stats.py:65)"]
    verbose = crash_lines(paths, verbose=True)
    assert len(verbose) > 1 and "Fatal Python error: Segmentation fault" in verbose[1]


@pytest.mark.timeout(300)
def test_batch_stats_crash_baseline_reports_the_death():
    items = bs.generate("small", 42)
    invariants, note = bs.crash_in_threads(items, 2)
    survived = next(i for i in invariants if i["name"] == "process survived")
    assert survived["observed"] is False
    assert "SIGSEGV" in note


@pytest.mark.timeout(300)
def test_cli_runs_lists_and_keeps_worker_crash_dumps_off_stderr(tmp_path):
    listing = _cli(timeout=60)
    assert listing.returncode == 0
    for name in ("text_analysis", "batch_stats", "data_etl", "ml_scoring", "image_pipeline"):
        assert name in listing.stdout
    path = tmp_path / "r.json"
    ok = _cli("text_analysis", "--size", "small", "--workers", "2", "--json", str(path), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "slither invariants: all held" in ok.stdout
    data = json.loads(path.read_text())
    assert data[0]["example"] == "text_analysis" and data[0]["slither_ok"]
    crashy = _cli("batch_stats", "--size", "small", "--workers", "2", "--no-baseline", cwd=tmp_path)
    assert crashy.returncode in (0, 1)
    assert "Fatal Python error" not in crashy.stderr
    assert "crash: worker" in crashy.stdout and "--verbose" in crashy.stdout


@pytest.mark.timeout(300)
def test_no_baseline_prints_no_baseline_rows_or_notes():
    report = run("text_analysis", size="small", workers=2, baselines=False)
    assert [r.mode for r in report.rows] == ["slither (2 workers)"]
    text = str(report)
    assert "unsafe" not in text and "GIL switch" not in text and "--baseline-python" not in text


def test_usage_errors_exit_2_with_one_line():
    assert _cli("nope", timeout=60).returncode == 2
    for bad in ("/etc/passwd", "/bin/true", "/no/such/python"):
        out = _cli("text_analysis", "--size", "small", "--baseline-python", bad, timeout=60)
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and bad in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_run_rejects_an_unknown_size_or_name_with_a_value_error():
    with pytest.raises(ValueError, match="small, default, large"):
        run("text_analysis", size="tiny")
    with pytest.raises(ValueError, match="text_analysis"):
        run("nope")
    with pytest.raises(ValueError, match="workers"):
        run("text_analysis", size="small", workers=0)


@pytest.mark.timeout(120)
def test_a_missing_optional_package_exits_2():
    code = ("import sys; sys.modules['sklearn'] = None; from slither.example.__main__ import main; "
            "raise SystemExit(main(['ml_scoring', '--size', 'small', '--workers', '1']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert out.returncode == 2, out
    assert "scikit-learn" in out.stderr and "pip install" in out.stderr


def _touch(mib):
    """Maps ``mib`` MiB straight from the OS (not the allocator's cache) and writes every page."""
    import mmap

    m = mmap.mmap(-1, mib * 2**20)
    for off in range(0, len(m), 4096):
        m[off] = 1
    return m


def test_memory_growth_is_measured_from_the_run_start_not_from_process_start():
    _touch(80).close()  # an earlier run's peak, handed back to the OS

    def work():
        m = _touch(40)
        m.close()

    _, _, grown = measure(work)
    assert 30 < grown < 70, grown


@pytest.mark.timeout(120)
@pytest.mark.skipif(not os.path.exists(FT), reason="no free-threaded interpreter built on this machine")
def test_another_interpreter_without_scikit_learn_is_reported_not_dropped():
    rows, skipped = other_interpreter_rows(FT, "ml_scoring", Context(workers=2, size="small"))
    assert rows == []
    assert "scikit-learn" in skipped and "pip install" in skipped


@pytest.mark.timeout(300)
@pytest.mark.skipif(not os.path.exists(FT), reason="no free-threaded interpreter built on this machine")
def test_baseline_python_adds_free_threaded_rows():
    report = load("text_analysis").run(Context(workers=2, size="small", baseline_python=[FT]))
    assert any("GIL off" in r.interpreter for r in report.rows)
    assert report.slither_ok


def test_the_gil_note_follows_this_runs_results():
    from slither.example._harness import gil_note
    from slither.example._report import Invariant, Row

    def row(mode, interp, ok):
        return Row(mode, interp, [Invariant("x", 0, 0 if ok else 1, ok)], 0.1, 0.0)

    gil, ft = "CPython 3.11.7, GIL on", "CPython 3.13.1 free-threaded build, GIL off"
    assert "got every invariant right" in gil_note([row("slither (2 workers)", gil, True),
                                                     row("unsafe_threaded (2 threads)", gil, True)])
    assert "broke 1 invariant(s)" in gil_note([row("unsafe_threaded (2 threads)", gil, False)])
    assert gil_note([row("unsafe_threaded (2 threads)", gil, True), row("unsafe_threaded (2 threads)", ft, False)]) is None
    assert gil_note([row("bounded_threads (2 threads)", gil, True)]) is None
