"""The one place the native extension is imported (workers never import it)."""

from __future__ import annotations

from slither import _slither

__all__ = ["_slither"]
