"""``progress=True``: a progress bar for one dispatch, with a total and an ETA whenever the input has a length.

Where it renders:

- in a Jupyter kernel with ipywidgets installed: a widget (tqdm's notebook bar if tqdm is installed, else
  an ``ipywidgets.IntProgress`` with a label);
- anywhere else, Jupyter without ipywidgets included: one text line on stderr, redrawn in place
  (tqdm's standard bar if tqdm is installed). Never tqdm's auto bar, which warns in Jupyter when
  ipywidgets is missing.

The dispatch loop calls ``update(n)`` with the number of items that finished and ``close()`` at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any

_REDRAW_S = 0.2
_WIDTH = 24


def total_of(iterable: Any) -> int | None:
    """The number of items when the input knows it (lists, ranges, arrays), else None. Never consumes input."""
    try:
        n = len(iterable)
    except Exception:
        return None
    return n if isinstance(n, int) and n >= 0 else None


def in_jupyter() -> bool:
    """Whether this interpreter is a Jupyter kernel (not a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _has_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except Exception:
        return False
    return True


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except Exception:
        return False
    return True


class Progress:
    """One bar. ``total`` is the item count when known (then the bar shows a percentage and an ETA)."""

    def __init__(self, *, enabled: bool, desc: str, total: int | None = None) -> None:
        self.enabled = enabled
        self.desc = desc
        self.total = total
        self.count = 0
        self.started = time.perf_counter()
        self.last = 0.0
        self._bar: Any = None
        self._widget: Any = None
        if enabled:
            self._open()

    def _open(self) -> None:
        widgets = in_jupyter() and _has_widgets()
        if _has_tqdm():
            if widgets:
                from tqdm.notebook import tqdm
            else:
                from tqdm.std import tqdm
            self._bar = tqdm(total=self.total, desc=self.desc, unit="item", file=None if widgets else sys.stderr)
        elif widgets:
            self._widget = _Widget(self.desc, self.total)

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= _REDRAW_S:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        text = render(self.desc, self.count, self.total, now - self.started)
        if self._widget is not None:
            self._widget.show(self.count, text)
            return
        sys.stderr.write("\r" + text)
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._bar is not None:
            self._bar.close()
            return
        self._draw(time.perf_counter())
        if self._widget is None:
            sys.stderr.write("\n")
            sys.stderr.flush()


def render(desc: str, count: int, total: int | None, elapsed: float) -> str:
    """The text bar: ``desc:  40%|#########          | 400/1000 [00:02<00:03, 200 items/s]``."""
    rate = count / elapsed if elapsed > 0 else 0.0
    speed = f"{rate:,.0f} items/s"
    if total is None:
        return f"{desc}: {count} items [{_clock(elapsed)}, {speed}]"
    frac = min(1.0, count / total) if total else 1.0
    filled = int(frac * _WIDTH)
    eta = _clock((total - count) / rate) if rate > 0 and count < total else ("00:00" if count >= total else "?")
    bar = "#" * filled + " " * (_WIDTH - filled)
    return f"{desc}: {frac:4.0%}|{bar}| {count}/{total} [{_clock(elapsed)}<{eta}, {speed}]"


def _clock(seconds: float) -> str:
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _Widget:
    """An ipywidgets bar (used in Jupyter when tqdm is not installed)."""

    def __init__(self, desc: str, total: int | None) -> None:
        import ipywidgets
        from IPython.display import display

        self.bar = ipywidgets.IntProgress(min=0, max=max(total or 0, 1), description="")
        self.bar.layout.visibility = "visible" if total is not None else "hidden"
        self.label = ipywidgets.HTML(value=desc)
        display(ipywidgets.HBox([self.bar, self.label]))

    def show(self, count: int, text: str) -> None:
        self.bar.value = min(count, self.bar.max)
        self.label.value = text
