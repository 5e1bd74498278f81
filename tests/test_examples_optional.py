"""ml_scoring and image_pipeline at --size small (skipped, with the install command, without their packages)."""

from __future__ import annotations

import importlib.util

import pytest
from slither.example import load
from slither.example._harness import Context


def _needs(module, pip):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f'needs {pip}: pip install "slither[examples]"')


@pytest.mark.timeout(600)
def test_ml_scoring_sessions_score_only_with_their_own_models():
    _needs("sklearn", "scikit-learn")
    report = load("ml_scoring").run(Context(workers=2, size="small"))
    assert report.slither_ok, str(report)
    modes = [r.mode for r in report.rows]
    # The baselines run one thread per session whatever --workers says, and say so.
    assert modes == ["slither (2 workers, 2 sessions)", "unsafe_threaded (2 threads, one per session)",
                     "safe_threaded (2 threads, one per session)"]
    for row in report.rows:
        names = {i.name for i in row.invariants}
        assert "trials in which a session scored with a model not its own (of 10)" in names
        assert "predictions counted" in names
    safe = report.rows[2]
    assert safe.ok, str(report)
    assert "<table>" in report._repr_html_()


@pytest.mark.timeout(600)
def test_image_pipeline_compares_a_thread_per_image_and_measures_every_mode():
    _needs("PIL", "Pillow")
    report = load("image_pipeline").run(Context(workers=2, size="small"))
    assert report.slither_ok, str(report)
    modes = [r.mode for r in report.rows]
    assert modes == ["slither (2 workers)", "thread_per_image (40 threads)", "bounded_threads (2 threads)"]
    for row in report.rows:
        assert row.mem_mb is not None and row.mem_mb >= 0
        assert next(i for i in row.invariants if i.name == "thumbnails differing from the serial reference").ok
    assert any(n.startswith("memory growth in this run: a thread per image") for n in report.notes)
