"""Making ``python -m slither._worker`` importable in the workers' interpreter.

With the host's own interpreter, slither is already importable. Another interpreter (say a free-threaded
``python3.13t`` without slither installed) gets a private directory on ``PYTHONPATH`` that holds only
links to this package and to cloudpickle (pure Python; needed to load functions sent by value), so none
of the host's compiled packages leak into it. The worker code is stdlib-only, so it runs there as is.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_link_dir: str | None = None


def _package_link_dir() -> str:
    global _link_dir
    if _link_dir is None or not os.path.isdir(_link_dir):
        import cloudpickle

        package = os.path.dirname(os.path.abspath(__file__))
        d = tempfile.mkdtemp(prefix="slither-worker-path-")
        atexit.register(shutil.rmtree, d, True)
        os.symlink(package, os.path.join(d, "slither"))
        os.symlink(os.path.dirname(os.path.abspath(cloudpickle.__file__)), os.path.join(d, "cloudpickle"))
        _link_dir = d
    return _link_dir


def worker_env(extra: dict[str, str], same_interpreter: bool) -> dict[str, str]:
    env = {str(k): str(v) for k, v in extra.items()}
    if not same_interpreter:
        existing = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_link_dir(), existing) if p)
    return env
