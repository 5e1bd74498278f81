"""Resolving the function a task names: ``("name", "module:qualname")`` or ``("value", cloudpickle bytes)``.

Resolved functions are cached per worker, so a function sent by value is unpickled once.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from typing import Any

_cache: dict[tuple[str, Any], Callable[..., Any]] = {}


def resolve(ref: tuple[str, Any]) -> Callable[..., Any]:
    fn = _cache.get(ref)
    if fn is None:
        fn = _load(ref)
        if len(_cache) > 256:
            _cache.clear()
        _cache[ref] = fn
    return fn


def _load(ref: tuple[str, Any]) -> Callable[..., Any]:
    how, what = ref
    if how == "value":
        return pickle.loads(what)
    module_name, _, qualname = what.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"function reference {what!r} is not of the form 'module:function'")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module {module_name!r} has no attribute {qualname!r}") from None
    if not callable(obj):
        raise TypeError(f"{what!r} is not callable")
    return obj
