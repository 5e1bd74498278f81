"""docs/notebooks/compare.ipynb runs headless without a failing cell and renders its plot as an image."""

from __future__ import annotations

import ast
import os

import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "docs", "notebooks", "compare.ipynb")
EXTRA = 'needs the notebook extra: pip install "slither[notebook]"'


@pytest.mark.timeout(900)
def test_compare_notebook_runs_and_shows_its_plot():
    nbformat = pytest.importorskip("nbformat", reason=EXTRA)
    nbclient = pytest.importorskip("nbclient", reason=EXTRA)
    pytest.importorskip("ipykernel", reason=EXTRA)
    pytest.importorskip("matplotlib", reason=EXTRA)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "matplotlib.use(" not in source  # the inline backend must stay, or the figure never renders
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert [o for o in outputs if "text/html" in o.get("data", {})], "expected rich HTML reports"
    assert [o for o in outputs if "image/png" in o.get("data", {})], "expected the plot as an image/png output"
    held = ast.literal_eval(nb.cells[-1]["outputs"][0]["data"]["text/plain"])
    assert {"text_analysis", "batch_stats", "data_etl"} <= set(held)
    if held.get("batch_stats") is False and all(v for k, v in held.items() if k != "batch_stats"):
        pytest.xfail("batch_stats loses valid datasets beside crash pills until split retries land (issue 14)")
    assert all(held.values()), held
