"""The stdlib demos at --size small: every slither-side invariant holds, and the baselines' own counts
are consistent with their data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from slither.example import load
from slither.example._harness import Context

STDLIB = ["text_analysis", "batch_stats", "data_etl"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", STDLIB)
def test_example_invariants_hold(name):
    report = load(name).run(Context(workers=2, size="small"))
    assert report.slither_ok, str(report)
    slither_rows = [r for r in report.rows if r.mode.startswith("slither")]
    assert len(slither_rows) == 1
    baselines = [r for r in report.rows if not r.mode.startswith("slither")]
    assert {r.mode.split(" ")[0] for r in baselines} >= {"unsafe_threaded", "safe_threaded"}
    for row in baselines:
        # Every baseline invariant compares a measured value with the expected one from the same data.
        for inv in row.invariants:
            assert inv.ok == (inv.expected == inv.observed) or isinstance(inv.expected, float)
        if row.mode.startswith("safe_threaded"):
            assert row.ok, str(report)
    text = str(report)
    assert "slither invariants: all held" in text
    assert "<table>" in report._repr_html_()
    assert json.loads(report.to_json())["slither_ok"] is True


@pytest.mark.timeout(300)
def test_batch_stats_crash_baseline_reports_the_death():
    report = load("batch_stats").run(Context(workers=2, size="small"))
    crash = next(r for r in report.rows if r.mode.startswith("threads_with_crash_pill"))
    survived = next(i for i in crash.invariants if i.name == "process survived")
    assert survived.observed is False
    assert "SIGSEGV" in crash.note


@pytest.mark.timeout(300)
def test_cli_lists_runs_and_writes_json(tmp_path):
    out = subprocess.run([sys.executable, "-m", "slither.example"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for name in STDLIB:
        assert name in out.stdout
    path = tmp_path / "r.json"
    run = subprocess.run(
        [sys.executable, "-m", "slither.example", "text_analysis", "--size", "small", "--workers", "2",
         "--json", str(path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "slither invariants: all held" in run.stdout
    data = json.loads(path.read_text())
    assert data[0]["example"] == "text_analysis" and data[0]["slither_ok"]
    bad = subprocess.run([sys.executable, "-m", "slither.example", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown example" in bad.stderr


FT = os.path.expanduser("~/.cache/slither/python-ft/bin/python3.13t")


@pytest.mark.timeout(300)
@pytest.mark.skipif(not os.path.exists(FT), reason="no free-threaded interpreter built on this machine")
def test_baseline_python_adds_free_threaded_rows():
    report = load("text_analysis").run(Context(workers=2, size="small", baseline_python=[FT]))
    assert any("GIL off" in r.interpreter for r in report.rows)
    assert report.slither_ok
