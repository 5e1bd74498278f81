"""Turning what the user passed as a function into something a worker can resolve.

A ``"module:function"`` string travels as is. A callable that a worker can import by name (a
module-level function of an importable module) travels by reference; anything else (defined in
``__main__`` or a notebook, a lambda, a closure, a bound method, a partial) travels by value with
cloudpickle.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle

from slither.errors import ConfigError, SerializationError

FnRef = tuple[str, Any]

# A function is inspected (and pickled by value) once, not on every call.
_refs: weakref.WeakKeyDictionary[Any, FnRef] = weakref.WeakKeyDictionary()


def function_ref(fn: str | Callable[..., Any]) -> FnRef:
    if not isinstance(fn, str):
        try:
            return _refs[fn]
        except (KeyError, TypeError):
            pass
    ref = _make_ref(fn)
    if not isinstance(fn, str):
        try:
            _refs[fn] = ref
        except TypeError:
            pass  # not weak-referenceable (e.g. some builtins): computed each time
    return ref


def _make_ref(fn: str | Callable[..., Any]) -> FnRef:
    if isinstance(fn, str):
        module, sep, name = fn.partition(":")
        if not sep or not module or not name:
            raise ConfigError(f"function reference {fn!r} is not of the form 'module:function'")
        return ("name", fn)
    if not callable(fn):
        raise ConfigError(f"expected a callable or a 'module:function' string, got {type(fn).__name__}")
    name = _importable_name(fn)
    if name is not None:
        return ("name", name)
    try:
        return ("value", cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise SerializationError(f"function {fn!r} cannot be pickled to send to workers: {exc}") from exc


def _importable_name(fn: Callable[..., Any]) -> str | None:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    mod = sys.modules.get(module)
    if mod is None or getattr(mod, "__spec__", None) is None:
        return None
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if obj is not fn:
        return None
    try:
        importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return f"{module}:{qualname}"


def describe(fn: str | Callable[..., Any]) -> str:
    if isinstance(fn, str):
        return fn
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
