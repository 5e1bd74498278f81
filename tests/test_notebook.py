"""docs/notebooks/compare.ipynb runs headless without a failing cell."""

from __future__ import annotations

import os

import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "docs", "notebooks", "compare.ipynb")


@pytest.mark.timeout(900)
def test_compare_notebook_runs():
    nbformat = pytest.importorskip("nbformat", reason='needs the notebook extra: pip install "slither[notebook]"')
    nbclient = pytest.importorskip("nbclient", reason='needs the notebook extra: pip install "slither[notebook]"')
    pytest.importorskip("ipykernel", reason='needs the notebook extra: pip install "slither[notebook]"')
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert html, "expected rich HTML reports"
    last = nb.cells[-1]["outputs"][0]["data"]["text/plain"]
    assert "False" not in last, last
