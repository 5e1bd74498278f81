"""Resolving the function a task names: ``("name", "module:qualname")`` or ``("value", cloudpickle bytes)``.

Resolved functions are cached per worker, so a function sent by value is unpickled once. Functions of the
host's ``__main__`` (a script, a notebook) that travel by value share one namespace in the worker, as they
share the script's module in the host: a global an initializer sets is seen by the tasks that run after it
(what ``multiprocessing`` code expects). A name already in that namespace keeps its worker-side value.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py imports re and enum, milliseconds of every worker start
import importlib
import types
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

_cache: dict[tuple[str, Any], Callable[..., Any]] = {}
_main_namespace: dict[str, Any] = {}


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
        return _in_main_namespace(pickle.loads(what))
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


def _in_main_namespace(fn: Any) -> Any:
    """A ``__main__`` function rebound to the worker's one namespace for the host's ``__main__``."""
    if not isinstance(fn, types.FunctionType) or fn.__module__ != "__main__":
        return fn
    for name, value in fn.__globals__.items():
        _main_namespace.setdefault(name, value)
    shared = types.FunctionType(fn.__code__, _main_namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    shared.__kwdefaults__ = fn.__kwdefaults__
    shared.__qualname__ = fn.__qualname__
    shared.__dict__.update(fn.__dict__)
    shared.__doc__ = fn.__doc__
    shared.__module__ = fn.__module__
    return shared
