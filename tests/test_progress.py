"""progress=True: a total and an ETA whenever the input has a length; in Jupyter a widget when ipywidgets is
installed and a clean text bar (no warning) when it is not; with or without tqdm."""

from __future__ import annotations

import sys
import textwrap

import pytest
from _kernel import run_cells, text_of
from slither._progress import render, total_of


def test_render_shows_total_percentage_and_eta():
    assert render("f", 25, 100, 5.0) == "f:  25%|######                  | 25/100 [00:05<00:15, 5 items/s]"
    assert render("f", 100, 100, 3725.0).endswith("100/100 [1:02:05<00:00, 0 items/s]")
    assert render("f", 7, None, 2.0) == "f: 7 items [00:02, 4 items/s]"
    assert total_of([1, 2, 3]) == 3 and total_of(range(10)) == 10
    assert total_of(iter([1])) is None and total_of(x for x in "ab") is None


def test_text_bar_has_a_total_when_the_input_has_a_length(pool, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert pool.map("_helpers:inc", list(range(200)), progress=True, batch_size=10) == list(range(1, 201))
    err = capsys.readouterr().err
    assert "200/200" in err and "100%" in err and "<" in err
    assert pool.map(abs, (x for x in range(-5, 0)), progress=True) == [5, 4, 3, 2, 1]
    err = capsys.readouterr().err
    assert "5 items" in err and "/" not in err.split("[")[0]
    # map over several sized iterables knows the total too
    assert pool.map(pow, [2] * 30, range(30), progress=True) == [2**i for i in range(30)]
    assert "30/30" in capsys.readouterr().err


def test_tqdm_bar_gets_the_total(pool, capsys):
    pytest.importorskip("tqdm")
    assert pool.map_batches("_helpers:batch_double", range(64), batch_size=8, progress=True) == list(range(0, 128, 2))
    err = capsys.readouterr().err
    assert "64/64" in err


def _installed(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.timeout(300)
def test_jupyter_widget_with_ipywidgets_and_clean_text_without():
    # Every combination of tqdm and ipywidgets this environment can show; a missing one is hidden in the kernel.
    available = [name for name in ("tqdm", "ipywidgets") if _installed(name)]
    cases = [(tqdm, widgets) for tqdm in (True, False) for widgets in (True, False)
             if (not tqdm or "tqdm" in available) and (not widgets or "ipywidgets" in available)]
    setup = textwrap.dedent(f"""
        import importlib, sys, warnings
        warnings.simplefilter("always")
        import slither
        modules = {{name: importlib.import_module(name) for name in {available!r}}}
        def only(*present):
            for name, mod in modules.items():
                sys.modules[name] = mod if name in present else None
        pool = slither.Pool(1)
    """)
    cells = [setup]
    for tqdm, widgets in cases:
        present = [n for n, on in (("tqdm", tqdm), ("ipywidgets", widgets)) if on]
        cells.append(f"only(*{present!r})\npool.map(abs, range(100), progress=True)[-1]")
    cells.append(f"only(*{available!r})\npool.close()")
    outputs = run_cells(*cells)
    widget = "application/vnd.jupyter.widget-view+json"
    for (tqdm, widgets), cell in zip(cases, outputs[1:]):
        assert not [o for o in cell if o.get("output_type") == "error"], cell
        assert "Warning" not in text_of(cell, "stderr"), cell  # tqdm's auto bar warns without ipywidgets
        assert any(o.get("data", {}).get("text/plain") == "99" for o in cell), cell
        shows_widget = any(widget in o.get("data", {}) for o in cell)
        assert shows_widget == widgets, (tqdm, widgets, cell)
        assert ("100/100" in text_of(cell, "stderr")) == (not widgets), (tqdm, widgets, cell)
