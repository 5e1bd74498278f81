"""Pickling work for the workers: ``(fn_ref, mode, data)`` as one payload.

Plain pickle first (fast, by reference). A class or function defined in the host's ``__main__`` (a script
or a notebook) pickles by reference there but cannot be found by name in a worker, so a payload that
mentions ``__main__`` beyond what its function reference already does is pickled again with cloudpickle,
which sends such objects by value. The check is one substring count over the pickled bytes.

Protocol 5: large buffers (numpy arrays, large bytes/bytearray items or arguments, memoryviews...) leave the
pickle for one shared-memory segment that travels with the frame (``_worker/buffers.py``); a payload is an
:class:`Encoded` (frame bytes and segment), given to ``PoolCore.submit`` as ``data`` and ``fd``.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import Any

from slither import errors
from slither._decode import safe_str
from slither._functions import describe
from slither._worker import buffers
from slither._worker.buffers import Encoded

PROTOCOL = pickle.HIGHEST_PROTOCOL
_MAIN = b"__main__"


@functools.lru_cache(maxsize=256)
def ref_mentions(ref: tuple[str, Any]) -> int:
    """How often a function reference's own pickle mentions ``__main__`` (a by-value function does)."""
    return pickle.dumps(ref, PROTOCOL).count(_MAIN)


def dumps(task: tuple[Any, ...], ref_hits: int = 0) -> Encoded:
    """``task`` (``(fn_ref, mode, items)``) pickled so that a worker can load it; raises what pickling raised
    if nothing works."""
    try:
        payload = buffers.dumps(task)
    except Exception:
        # Lambdas and local classes among the data: only cloudpickle can send them.
        return buffers.dumps(_large_bytes_apart(task), by_value=True)
    if len(payload.data) >= buffers.THRESHOLD:
        # Only a pickle this large can hold a bytes object over the threshold in band: pickled again with those
        # moved out of band (checking every item's type up front would cost every small batch its length).
        wrapped = _large_bytes_apart(task)
        if wrapped is not task:
            payload.release()
            payload = buffers.dumps(wrapped)
    if payload.data.count(_MAIN) > ref_hits:
        payload.release()
        return buffers.dumps(_large_bytes_apart(task), by_value=True)
    return payload


def _large_bytes_apart(task: tuple[Any, ...]) -> tuple[Any, ...]:
    """``task`` with its large bytes/bytearray items or arguments wrapped to pickle out of band (``task`` itself
    if it has none)."""
    if len(task) != 3 or type(task[2]) is not list:
        return task
    ref, mode, data = task
    if mode == "call":
        wrapped = [(tuple(buffers.wrap_all(list(a), buffers.THRESHOLD)),
                    {k: buffers.wrap(v, buffers.THRESHOLD) for k, v in kw.items()} if kw else kw) for a, kw in data]
    else:
        wrapped = buffers.wrap_all(data, buffers.THRESHOLD)
        if wrapped is data:
            return task
    return (ref, mode, wrapped)


def call_payload(ref: tuple[str, Any], fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 ref_hits: int = 0) -> Encoded:
    """A single call's payload; raises SerializationError naming the argument that will not pickle (and ``fn``,
    described only then)."""
    try:
        return dumps((ref, "call", [(args, kwargs)]), ref_hits)
    except Exception as exc:
        raise errors.SerializationError(
            f"{_culprit(args, kwargs)} of {describe(fn)} cannot be pickled: {type(exc).__name__}: {safe_str(exc)}"
        ) from exc


def picklable(value: Any) -> Exception | None:
    """None if ``value`` can be sent to a worker, else the exception that says why not."""
    try:
        dumps((value,))
    except Exception as exc:
        return exc
    return None


def _culprit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    for i, value in enumerate(args):
        if picklable(value) is not None:
            return f"argument {i} ({type(value).__module__}.{type(value).__qualname__})"
    for key, value in kwargs.items():
        if picklable(value) is not None:
            return f"keyword argument {key!r} ({type(value).__module__}.{type(value).__qualname__})"
    return "the arguments"
