"""What user code running inside a worker can reach.

``from slither.worker import store`` gives the pool's store (when the pool was made with ``store=``);
``slither.worker.info()`` says which worker this is. Importing this module in the host is harmless:
``store`` is then None.
"""

from __future__ import annotations

import os
from typing import Any

store: Any = None


def info() -> dict[str, int]:
    """The index, generation and pid of the worker running this code (index -1 outside a worker)."""
    return {
        "index": int(os.environ.get("SLITHER_WORKER_INDEX", "-1")),
        "generation": int(os.environ.get("SLITHER_WORKER_GENERATION", "0")),
        "pid": os.getpid(),
    }


def in_worker() -> bool:
    return "SLITHER_FD" in os.environ
