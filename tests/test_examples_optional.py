"""ml_scoring and image_pipeline at --size small (skipped, with the install command, without their packages)."""

from __future__ import annotations

import importlib.util

import pytest
from slither.example import load
from slither.example._harness import Context


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("name", "module", "pip"), [("ml_scoring", "sklearn", "scikit-learn"),
                                                      ("image_pipeline", "PIL", "Pillow")])
def test_optional_example(name, module, pip):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f'{name} needs {pip}: pip install "slither[examples]"')
    report = load(name).run(Context(workers=2, size="small"))
    assert report.slither_ok, str(report)
    assert any(not r.mode.startswith("slither") for r in report.rows)
    assert "<table>" in report._repr_html_()
