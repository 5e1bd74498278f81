"""The free-threaded demo leg (``nox -s demos_freethreaded``): every demo at --size small on a
free-threaded interpreter with the GIL off, baselines in the same interpreter. slither's invariants must
all hold; for text_analysis and batch_stats, the unsafe baseline must break an invariant in at least one
of 5 runs (each run repeats that baseline's pass 5 times). Skipped unless the GIL is off and
SLITHER_DEMOS_FT=1 (it runs each demo up to 5 times).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    getattr(sys, "_is_gil_enabled", lambda: True)() or os.environ.get("SLITHER_DEMOS_FT") != "1",
    reason="the free-threaded demo leg: GIL off and SLITHER_DEMOS_FT=1 (nox -s demos_freethreaded)",
)

RACES = {"text_analysis", "batch_stats"}
NEEDS = {"ml_scoring": "sklearn", "image_pipeline": "PIL"}


def _run(name, tmp_path, k):
    path = tmp_path / f"{name}-{k}.json"
    out = subprocess.run([sys.executable, "-m", "slither.example", name, "--size", "small", "--workers", "2",
                          "--json", str(path)], capture_output=True, text=True, timeout=900)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return out, json.loads(path.read_text())[0]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", ["text_analysis", "batch_stats", "data_etl", "ml_scoring", "image_pipeline"])
def test_demo_on_the_free_threaded_build(name, tmp_path):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{name} needs {NEEDS[name]}, which did not install on this free-threaded interpreter")
    broke: list[str] = []
    slither_ok: list[bool] = []
    for k in range(5 if name in RACES else 1):
        out, report = _run(name, tmp_path, k)
        assert all("GIL off" in r["interpreter"] for r in report["rows"]), out.stdout
        slither_ok.append(report["slither_ok"])
        broke += [r["mode"] for r in report["rows"] if r["mode"].startswith("unsafe") and
                  not all(i["ok"] for i in r["invariants"])]
        if name in RACES and broke:
            break
    if name in RACES:
        assert broke, f"the unsafe {name} baseline kept every invariant in 5 runs with the GIL off"
    assert all(slither_ok), out.stdout
