"""What a task means, wherever it runs (a local worker or another backend's worker, e.g. a Ray actor).

``execute(body)`` takes one pickled task ``(fn_ref, mode, data)`` and returns ``(ok, pickled reply)``:

- ``"item"``: ``fn(x)`` per item; a per-item exception is recorded for that item, the others go on;
- ``"batch"``: ``fn(items)`` once; the result must be a list of the same length;
- ``"call"``: ``fn(*args, **kwargs)`` once.

An exception travels as a description (the object if it pickles, its type, message and traceback).
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from slither._worker.functions import resolve

PROTOCOL = pickle.HIGHEST_PROTOCOL


def execute(body: bytes, max_result_bytes: int = 1 << 30) -> tuple[bool, bytes]:
    """Runs one pickled task; returns (True, pickled results) or (False, pickled error description).

    Shared by the worker loop and by other backends' workers (e.g. Ray actors), so a task means the same
    thing wherever it runs.
    """
    try:
        fn_ref, mode, data = pickle.loads(body)
        fn = resolve(fn_ref)
    except BaseException as exc:
        return _error("setup", exc)
    if mode == "item":
        results: list[Any] = []
        errors: dict[int, dict[str, Any]] = {}
        items = iter(data)
        # list.extend(map(...)) runs at C speed and keeps what it appended when fn raises; the failing
        # item is already consumed, so the loop resumes with the next one.
        while len(results) < len(data):
            try:
                results.extend(map(fn, items))
            except BaseException as exc:  # SystemExit from user code is an error of that item too
                if isinstance(exc, KeyboardInterrupt):
                    raise
                errors[len(results)] = _describe(exc)
                results.append(None)
        return _ok((results, errors) if errors else results, max_result_bytes)
    try:
        if mode == "batch":
            out = fn(data)
            if not isinstance(out, list):
                raise _LengthError(
                    f"batch function {_name(fn)} returned {type(out).__name__}, expected a list of {len(data)} results"
                )
            if len(out) != len(data):
                raise _LengthError(
                    f"batch function {_name(fn)} returned {len(out)} results for a batch of {len(data)} items"
                )
        else:
            ((args, kwargs),) = data
            out = fn(*args, **kwargs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _error("length" if isinstance(exc, _LengthError) else "error", exc)
    return _ok(out, max_result_bytes)


def _ok(value: Any, max_result_bytes: int) -> tuple[bool, bytes]:
    try:
        payload = pickle.dumps(value, PROTOCOL)
    except BaseException as exc:
        return _error("serialization", exc, index=_first_unpicklable(value))
    if len(payload) > max_result_bytes:
        msg = f"result of {len(payload):,} bytes exceeds max_result_bytes={max_result_bytes:,}"
        return _error("too_large", ValueError(msg))
    return True, payload


def _error(kind: str, exc: BaseException, index: int | None = None) -> tuple[bool, bytes]:
    info = _describe(exc)
    info["kind"] = kind
    info["index"] = index
    return False, pickle.dumps(info, PROTOCOL)


class _LengthError(Exception):
    pass


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _describe(exc: BaseException) -> dict[str, Any]:
    """An exception as data: the object (if it pickles), its type and message, and the formatted traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__traceback__ = None
    # Pickled on its own, so that the host can still read type, message and traceback when the
    # exception's class does not exist there.
    try:
        carried: bytes | None = pickle.dumps(exc, PROTOCOL)
        pickle.loads(carried)
    except BaseException:
        carried = None
    return {
        "kind": "error",
        "exc": carried,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": tb,
    }


def _first_unpicklable(value: Any) -> int | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value = value[0]
    if not isinstance(value, list):
        return None
    for i, v in enumerate(value):
        try:
            pickle.dumps(v, PROTOCOL)
        except BaseException:
            return i
    return None
