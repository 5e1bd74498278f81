"""Runs code cells in a real Jupyter kernel (ipykernel, driven headless by nbclient) and returns their outputs."""

from __future__ import annotations

import os

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))


def run_cells(*sources: str, timeout: int = 120) -> list[list[dict]]:
    """Executes each source as one cell of a fresh notebook; the outputs of every cell, in order."""
    nbformat = pytest.importorskip("nbformat", reason='needs the notebook extra: pip install "slither[notebook]"')
    nbclient = pytest.importorskip("nbclient", reason='needs the notebook extra: pip install "slither[notebook]"')
    pytest.importorskip("ipykernel", reason='needs the notebook extra: pip install "slither[notebook]"')
    setup = f"import sys\nsys.path.insert(0, {TESTS!r})"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (setup, *sources)])
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": TESTS}})
    client.execute()
    return [list(cell.get("outputs", [])) for cell in nb.cells[1:]]


def text_of(outputs: list[dict], stream: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == stream)
