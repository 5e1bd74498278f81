"""Completion decoding: what a worker's answer means in the host.

::

    Completion(kind, data) ─▶ "ok":   pickled results, or (results, {position: error description});
                           │         large buffers in ``c.segment`` (mapped, not copied: ``_worker/buffers.py``)
                           ├─▶ "err":  one error description for the whole batch (its "kind" says why)
                           └─▶ crashed / timeout / session_lost / aborted: the core's own verdict

Each failure becomes a Failure kind and an exception with the worker's traceback as ``__cause__``. The
rule for user code's ``BaseException``s (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``) and for
``StopIteration``: they are reported inside a :class:`~slither.errors.TaskError` whose ``__cause__`` is the
original (its type, ``code`` and traceback), never raised as themselves in the host, where they would end
the program, stop an iteration or pose as a Ctrl-C.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slither import errors
from slither._functions import describe
from slither._worker import buffers

if TYPE_CHECKING:
    from slither._slither import Completion, Segment

Info = dict[str, Any]

# Failure kinds of a whole-batch error description (worker side "kind" -> Failure.kind).
_BATCH_KINDS = {"length": "length", "serialization": "serialization", "too_large": "serialization",
                "payload": "serialization", "resolve": "error"}


def where(worker: int | None, pid: int | None, batch: int | None = None) -> str:
    """``worker 0 (pid 123), batch 7``: where a failure happened, each part said once."""
    text = f"worker {worker} (pid {pid})"
    return text if batch is None else f"{text}, batch {batch}"


def loads(data: bytes, segment: Segment | None = None) -> Any:
    """An "ok" completion's value: its large buffers mapped from ``segment`` (whose descriptor is consumed)."""
    if segment is None:
        return pickle.loads(data)
    fd = segment.take()
    try:
        return buffers.loads(data, fd)
    finally:
        os.close(fd)


def reply(data: bytes, segment: Segment | None = None) -> tuple[list[Any] | Any, dict[int, Info]]:
    """An "ok" completion's results and its per-item error descriptions (by position in the batch)."""
    value = loads(data, segment)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        return value[0], value[1]
    return value, {}


def error_info(data: bytes) -> Info:
    """A worker's error description; one that will not even unpickle still becomes a description."""
    try:
        info = pickle.loads(data)
        if isinstance(info, dict):
            return info
        raise TypeError(f"expected an error description, got {type(info).__name__}")
    except Exception as exc:
        return {"kind": "error", "exc": None, "type": "?", "message": safe_str(exc), "traceback": None}


def item_failure(info: Info, index: int, at: str) -> tuple[str, BaseException, str | None]:
    """One item's error description: its Failure kind, exception and traceback. ``at`` is :func:`where`."""
    if info.get("kind") == "serialization":
        exc = errors.SerializationError(
            f"the result of item {index} ({info.get('type')}) cannot be sent back from {at}: {info.get('message')}")
        return "serialization", exc, None
    exc, tb = rebuild(info, at)
    return "error", exc, tb


def batch_failure(info: Info, at: str) -> tuple[str, BaseException, str | None]:
    """A whole-batch error description's Failure kind, exception and traceback."""
    return _BATCH_KINDS.get(info.get("kind", "error"), "error"), *rebuild(info, at)


def rebuild(info: Info, at: str) -> tuple[BaseException, str | None]:
    """The worker's exception as an object of its own type where it unpickles, else a TaskError."""
    tb = info.get("traceback")
    kind = info.get("kind")
    message = info.get("message")
    if kind == "length":
        exc: BaseException = errors.BatchLengthError(f"{message} ({at})")
    elif kind in ("serialization", "too_large"):
        exc = errors.SerializationError(f"the result cannot be sent back from {at}: {message}")
    elif kind == "payload":
        exc = errors.SerializationError(f"the items cannot be unpickled in {at}: {info.get('type')}: {message}")
    else:
        exc = _user_exception(info, at)
    if tb and not isinstance(exc.__cause__, errors.RemoteTraceback):
        # The remote traceback hangs off the user's own exception (inside a TaskError, off the original).
        target = exc.__cause__ if isinstance(exc, errors.TaskError) and exc.__cause__ is not None else exc
        target.__cause__ = errors.RemoteTraceback(f"{tb}(raised in {at})\n", type=info.get("type"),
                                                  code=info.get("code"))
    if hasattr(exc, "add_note"):
        try:
            exc.add_note(f"raised in slither {at}")
        except Exception:
            pass
    return exc, tb


def _user_exception(info: Info, at: str) -> BaseException:
    original: BaseException | None = None
    raw = info.get("exc")
    if raw is not None:
        try:
            original = pickle.loads(raw)
        except Exception:
            original = None
    if not isinstance(original, BaseException):
        original = None
    hostile = info.get("base") or (original is not None and (
        not isinstance(original, Exception) or isinstance(original, (StopIteration, StopAsyncIteration))))
    if original is not None and not hostile:
        return original
    name = str(info.get("type") or "?").removeprefix("builtins.")
    code = info.get("code")
    shown = f"{name}({code!r})" if code is not None else name
    message = info.get("message")
    if message == str(code):
        message = None
    text = f"{shown} raised by user code in {at}" + (f": {message}" if message else "")
    if original is None and not hostile:
        text = f"{name}: {message} (raised in {at}; its exception could not be rebuilt in the host)"
    exc = errors.TaskError(text)
    if original is not None:
        exc.__cause__ = original
    else:
        tb = info.get("traceback") or f"{name}: {message}\n"
        exc.__cause__ = errors.RemoteTraceback(f"{tb}(raised in {at})\n", type=name, code=code)
    return exc


def failure_of(c: Completion, what: str, pinned: bool = False) -> tuple[str, BaseException, str | None]:
    """What a failed completion means: its Failure kind, the exception to raise or record, the remote traceback.

    ``what`` names the work in messages ("batch 12 of mod:fn (64 items)"); ``pinned`` is set for sessions,
    whose state dies with their worker, so a crash there is reported as ``SessionLost``.
    """
    at = where(c.worker, c.pid)
    kind = c.kind
    if kind == "err":
        return batch_failure(error_info(c.data), where(c.worker, c.pid, c.batch))
    if kind == "crashed":
        if c.signal:
            cause = f"was killed by {c.signal}"
        elif c.exit_code is not None:
            cause = f"exited with code {c.exit_code}"
        else:
            cause = "died" + (f" ({c.data})" if isinstance(c.data, str) and c.data else "")
        hint = {"SIGSEGV": " (a segmentation fault: a bug in C code or an extension)",
                "SIGKILL": " (killed from outside, or by the kernel's out-of-memory killer)"}.get(c.signal or "", "")
        crashed = errors.WorkerCrashed(f"{at} {cause} while running {what}{hint}; it has been replaced")
        if not pinned:
            return "crash", crashed, None
        lost = errors.SessionLost(f"the session's {at} {cause}; its state is gone")
        lost.__cause__ = crashed
        return "crash", lost, None
    if kind == "timeout":
        return "timeout", errors.BatchTimeout(
            f"{what} overran its {c.data:g} s timeout on {at}; the worker was killed and replaced"), None
    if kind == "session_lost":
        return "session_lost", errors.SessionLost(f"the session's {at} died before running {what}"), None
    if kind == "protocol":
        return "crash", errors.ProtocolError(
            f"{at} broke the frame protocol while running {what}: {c.data}; it was killed and replaced"), None
    if getattr(c, "started", False) and c.worker is not None:
        return "aborted", errors.PoolClosed(f"{what} was killed mid-run on {at}: {c.data}"), None
    return "aborted", errors.PoolClosed(f"{what} was never started: {c.data}"), None


def single_result(c: Completion, fn: str | Callable[..., Any], pinned: bool = False) -> Any:
    """The value of a one-call batch's completion, or the exception it stands for, raised. ``fn``: the function
    or its name (described only for an error)."""
    if c.kind == "ok":
        try:
            return loads(c.data, getattr(c, "segment", None))
        except Exception as exc:
            raise errors.SerializationError(
                f"the result of {describe(fn)} cannot be unpickled in the host: {safe_str(exc)}") from exc
    _kind, exc, _tb = failure_of(c, f"the call of {describe(fn)}", pinned)
    raise exc from exc.__cause__


def safe_str(obj: Any) -> str:
    """``str(obj)``, or a description of why it failed: describing a failure must never fail."""
    try:
        return str(obj)
    except Exception as exc:
        return f"<str() of {type(obj).__name__} raised {type(exc).__name__}>"
