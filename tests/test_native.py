"""The native module: frozen pyclasses, the stub matches it, free-threading declared."""

from __future__ import annotations

import ast
import inspect
import os
import sys

from slither._native import _slither

STUB = os.path.join(os.path.dirname(_slither.__file__), "_slither.pyi")


def _classes():
    return [obj for _, obj in inspect.getmembers(_slither, inspect.isclass) if not issubclass(obj, BaseException)]


def test_every_pyclass_is_frozen():
    import glob
    import re

    root = os.path.join(os.path.dirname(__file__), "..", "slither_py", "src")
    attrs = [m for path in glob.glob(os.path.join(root, "*.rs"))
             for m in re.findall(r"#\[pyclass\(([^)]*)\)\]", open(path).read())]
    assert len(attrs) >= 4, "found no pyclass: the check would prove nothing"
    assert all("frozen" in a for a in attrs), attrs
    assert len(_classes()) >= 4


def test_stub_names_every_public_member():
    tree = ast.parse(open(STUB).read())
    stub_names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    stub_names |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    native = {n for n in dir(_slither) if not n.startswith("_")}
    assert native <= stub_names | {"__version__"}, native - stub_names
    for cls in _classes():
        stub_cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
        stub_methods = {f.name for f in stub_cls.body if isinstance(f, ast.FunctionDef)}
        stub_methods |= {f.target.id for f in stub_cls.body if isinstance(f, ast.AnnAssign)}
        for base in stub_cls.bases:
            parent = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == base.id)
            stub_methods |= {f.name for f in parent.body if isinstance(f, ast.FunctionDef)}
        public = {m for m in vars(cls) if not m.startswith("_")}
        assert public <= stub_methods, (cls.__name__, public - stub_methods)


def test_extension_declares_free_threading_support():
    assert _slither.BUILD_GIL is False
    if hasattr(sys, "_is_gil_enabled") and "free-threading" in sys.version:
        assert not sys._is_gil_enabled()


def test_frame_format_is_defined_once():
    """The worker's framing constants and header layout are the core's (a contract, not a copy)."""
    from slither._worker import framing

    proto = _slither.PROTOCOL
    assert framing.HEADER_FORMAT == proto["header_format"]
    assert framing.HEADER.size == framing.HEADER_LEN == proto["header_len"]
    assert framing.KINDS == proto["kinds"]
    for name, number in proto["kinds"].items():
        assert getattr(framing, name) == number, name
    assert list(framing.ON_CONTROL) == proto["control_kinds"]
    assert framing.STARTED_WORD_FORMAT == proto["started_word_format"]
    assert (framing.STARTED_FRAME_AT, framing.STARTED_CACHED_AT) == (proto["started_frame_at"], proto["started_cached_at"])


def test_a_worker_starts_without_the_extension_or_slow_imports():
    """What a worker imports before its first task: the stdlib it needs, never the native extension, and not
    typing, platform, traceback, or the pure-Python pickle and socket wrappers (milliseconds each, paid by every
    worker start and replacement)."""
    import subprocess

    code = ("import sys; import slither._worker.loop, slither._worker.store_client; "
            "print(sorted(m for m in ('typing', 'platform', 'traceback', 'pickle', 'socket', 'slither._slither', 'cloudpickle') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_pool_does_not_import_asyncio():
    """asyncio costs every host ~20 ms and several MB; only the awaitable methods need it."""
    import subprocess

    code = "import sys, slither.pool; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
