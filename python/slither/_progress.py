"""``progress=True``: tqdm's auto bar when tqdm is installed (it renders in Jupyter), else one stderr line."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    def __init__(self, *, enabled: bool, desc: str, total: int | None = None) -> None:
        self.enabled = enabled
        self.count = 0
        self.bar: Any = None
        self.started = time.perf_counter()
        self.last = 0.0
        self.desc = desc
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=desc, unit="item")

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= 0.2:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        rate = self.count / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r{self.desc}: {self.count} items, {rate:,.0f} items/s")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            self._line(time.perf_counter())
            sys.stderr.write("\n")
            sys.stderr.flush()
