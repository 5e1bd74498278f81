"""Checking what users pass to ``Pool(...)`` and the dispatch calls, before anything starts.

Two kinds of mistake, two exceptions:

- a keyword that does not exist (a typo, or another library's spelling slither does not take) is a
  ``TypeError``, as Python's own, that names the closest valid keyword;
- a value of the wrong type or range is a ``ConfigError`` (a ``ValueError``) naming the argument, what it
  got and what was expected.

The spellings of ``multiprocessing.Pool`` and ``ProcessPoolExecutor`` are accepted as aliases of the
native names (``ALIASES``); giving both spellings of one argument is a ``TypeError``.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Collection, Mapping
from typing import Any

from slither import errors
from slither._worker import segments

# alias -> native name
ALIASES = {
    "processes": "workers",  # multiprocessing.Pool
    "max_workers": "workers",  # concurrent.futures.ProcessPoolExecutor
    "initializer": "init",  # both
    "initargs": "init_args",  # both
    "maxtasksperchild": "max_tasks_per_worker",  # multiprocessing.Pool
    "max_tasks_per_child": "max_tasks_per_worker",  # ProcessPoolExecutor (3.11+)
}

# Accepted so that code written for the stdlib runs unchanged, and otherwise ignored: slither's workers are always
# fresh interpreters, whatever start method a multiprocessing context names (`preload=` is forkserver's analogue).
IGNORED = {
    "mp_context": "ProcessPoolExecutor",
    "context": "multiprocessing.Pool",
}

# Keywords that v1 or another habit used with a different meaning: a pointed hint instead of a guess.
HINTS = {
    "timeout": "the per-batch kill deadline is batch_timeout= (timeout= is map's overall wait for results)",
}


def reject_unknown(where: str, unknown: Mapping[str, Any], valid: Collection[str]) -> None:
    """Raises TypeError for the first keyword in ``unknown``, naming the closest valid one."""
    if not unknown:
        return
    name = next(iter(unknown))
    hint = HINTS.get(name) if name not in valid else None
    if hint is None:
        close = difflib.get_close_matches(name, list(valid) + list(ALIASES), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}=?" if close else f"valid keywords: {', '.join(sorted(valid))}"
    raise TypeError(f"{where} got an unexpected keyword argument {name!r}; {hint}")


def resolve_aliases(given: dict[str, Any], extra: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Folds alias spellings in ``extra`` into ``given`` (native names); unknown keywords raise TypeError."""
    reject_unknown("Pool()", {k: v for k, v in extra.items() if k not in ALIASES and k not in IGNORED}, defaults)
    out = dict(given)
    for name in IGNORED:
        context = extra.get(name)
        if context is not None and not hasattr(context, "get_start_method"):
            raise errors.ConfigError(f"{name} must be a multiprocessing context or None, got {context!r}")
    extra = {k: v for k, v in extra.items() if k not in IGNORED}
    for alias, value in extra.items():
        native = ALIASES[alias]
        if out[native] is not defaults[native] and out[native] != defaults[native]:
            raise TypeError(f"Pool() got both {native}= and its alias {alias}=; pass one")
        out[native] = value
    return out


# The public keywords of every map-like call (map, imap, map_batches, dispatch, aimap, sessions'...).
DISPATCH_OPTIONS = ("batch_size", "batching", "max_in_flight", "ordered", "batch_timeout", "on_error", "progress",
                    "chunksize")


def dispatch_options(where: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The public keywords of a map-like call as the engine's: ``batch_timeout`` -> ``timeout``,
    ``chunksize`` -> ``batch_size``. An unknown keyword is a TypeError naming the closest valid one."""
    reject_unknown(f"{where}()", {k: v for k, v in options.items() if k not in DISPATCH_OPTIONS}, DISPATCH_OPTIONS)
    out = dict(options)
    chunksize = out.pop("chunksize", None)
    if chunksize is not None:
        if out.get("batch_size") is not None:
            raise TypeError(f"{where}() got both batch_size= and its alias chunksize=; pass one")
        out["batch_size"] = chunksize
    if "batch_timeout" in out:
        out["timeout"] = out.pop("batch_timeout")
    return out


def expect(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise errors.ConfigError(f"{name} must be {expected}, got {value!r}")


def positive_int(name: str, value: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    expect(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, value,
           "a positive integer" + (" or None" if optional else ""))


def seconds(name: str, value: Any, *, positive: bool = True, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
          and (value > 0 if positive else value >= 0))
    expect(ok, name, value, f"a {'positive' if positive else 'non-negative'} number of seconds"
           + (" or None" if optional else ""))


def check_pool_args(a: dict[str, Any]) -> None:
    """Validates the constructor's arguments (native names); raises ConfigError on the first mistake."""
    from slither.store import Store

    positive_int("workers", a["workers"])
    expect(a["python"] is None or (isinstance(a["python"], str) and a["python"] != ""), "python", a["python"],
           "a path to a Python interpreter (str) or None")
    env = a["env"]
    expect(env is None or (isinstance(env, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in env.items())),
           "env", env, "a dict of str to str or None")
    for where, text in (("the environment", os.environ.get("SLITHER_SEGMENT_CACHE")),
                        ("env=", (env or {}).get("SLITHER_SEGMENT_CACHE"))):
        if text is not None:
            try:
                segments.parse_limit(text)
            except ValueError as exc:
                raise errors.ConfigError(f"{exc} (in {where})") from None
    init = a["init"]
    expect(init is None or isinstance(init, str) or callable(init), "init (initializer)", init,
           "a callable, a 'module:function' string or None")
    expect(isinstance(a["init_args"], (tuple, list)), "init_args (initargs)", a["init_args"], "a tuple or list")
    expect(a["store"] is None or isinstance(a["store"], Store), "store", a["store"],
           "a slither.Store (create one with slither.Store() and fill it before or after starting the pool)")
    positive_int("max_tasks_per_worker (maxtasksperchild)", a["max_tasks_per_worker"])
    positive_int("max_memory_per_worker", a["max_memory_per_worker"])
    positive_int("max_result_bytes", a["max_result_bytes"], optional=False)
    positive_int("max_frame_bytes", a["max_frame_bytes"], optional=False)
    seconds("startup_timeout", a["startup_timeout"])
    seconds("shutdown_grace", a["shutdown_grace"], positive=False)
    preload = a["preload"]
    expect(not isinstance(preload, (str, bytes)) and isinstance(preload, Collection),
           "preload", preload, 'a list of module names such as ["numpy", "sklearn.linear_model"]')
    for i, module in enumerate(preload):
        expect(isinstance(module, str) and bool(module), f"preload[{i}]", module, "a module name (a non-empty str)")
    expect(isinstance(a["forward_output"], bool), "forward_output", a["forward_output"], "True or False")
    expect(a["backend"] in ("local", "ray"), "backend", a["backend"], "'local' or 'ray'")
    expect(a["address"] is None or isinstance(a["address"], str), "address", a["address"], "a Ray address (str) or None")
    if a["address"] is not None and a["backend"] != "ray":
        raise errors.ConfigError(f"address= is a Ray cluster address; it needs backend='ray' (got backend={a['backend']!r})")
