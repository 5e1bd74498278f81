"""What a task means, wherever it runs (a local worker or another backend's worker, e.g. a Ray actor).

``execute(body)`` takes one pickled task ``(fn_ref, mode, data)`` and returns ``(ok, pickled reply)``
(an :class:`~slither._worker.buffers.Encoded`: with ``shared``, a reply's large buffers go into a
shared-memory segment that travels with the frame; ``fd`` is the task's own segment, if it came with one):

- ``"item"``: ``fn(x)`` per item; whatever one item raises (any ``BaseException``: ``StopIteration``,
  ``SystemExit``, ``KeyboardInterrupt`` included) is recorded for that item, and the others go on;
- ``"batch"``: ``fn(items)`` once; the result must be a list of the same length;
- ``"call"``: ``fn(*args, **kwargs)`` once.

A reply is the results, or ``(results, {position: error description})`` when some items failed (raised,
or returned a value that will not pickle). A whole task fails with one description whose ``kind`` says
why: ``"payload"`` (the items would not unpickle here), ``"resolve"`` (the function cannot be found),
``"error"``, ``"length"``, ``"serialization"``, ``"too_large"``.

An exception travels as a description: the object itself where it pickles (by value, with cloudpickle,
when its class cannot be imported by name, e.g. one defined in the host's ``__main__``), its type,
message, ``SystemExit`` code and formatted traceback. Describing never fails: a ``__str__`` that raises
is reported, not propagated.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py imports re and enum, milliseconds of every worker start
from collections.abc import Callable, Iterable, Iterator

from slither._worker import buffers as _buffers
from slither._worker.buffers import Encoded
from slither._worker.functions import resolve

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 5


def execute(body: bytes, max_result_bytes: int = 1 << 30, *, fd: int | None = None,
            buffers: list[Any] | None = None, shared: bool = False) -> tuple[bool, Encoded]:
    """Runs one pickled task; returns (True, pickled reply) or (False, pickled error description).

    Shared by the worker loop and by other backends' workers (e.g. Ray actors), so a task means the same
    thing wherever it runs. ``fd``: the task's shared-memory segment (borrowed); ``buffers``: its out-of-band
    buffers given directly (a backend without segments); ``shared``: large result buffers may go into a new
    segment (only where a channel can carry it). ``max_result_bytes`` limits the reply's in-band bytes.
    """
    try:
        if fd is not None:
            fn_ref, mode, data = _buffers.loads(body, fd)
        else:
            fn_ref, mode, data = pickle.loads(body, buffers=buffers)
    except BaseException as exc:
        return _error("payload", exc)
    try:
        fn = resolve(fn_ref)
    except BaseException as exc:
        return _error("resolve", exc)
    threshold = _buffers.THRESHOLD if shared else _NEVER
    del body
    if mode == "item":
        results, errors = run_items(fn, data)
        del data
        return _reply(results, errors, max_result_bytes, threshold)
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
    except BaseException as exc:  # user code's SystemExit, KeyboardInterrupt... are its failure, not ours
        return _error("length" if isinstance(exc, _LengthError) else "error", exc)
    del data
    if mode == "batch":
        return _reply(out, {}, max_result_bytes, threshold)
    return _single(out, max_result_bytes, threshold)


def run_items(fn: Callable[[Any], Any], data: list[Any]) -> tuple[list[Any], dict[int, dict[str, Any]]]:
    """``fn(x)`` for every item: results by position, and a description for each item that raised."""
    results: list[Any] = []
    errors: dict[int, dict[str, Any]] = {}
    items = iter(data)
    # A generator, not map(): list.extend would take a StopIteration raised by fn for the end of the input,
    # where a generator turns it into a RuntimeError (PEP 479) that names it. The failing item is already
    # consumed, so the next round resumes with the item after it.
    while len(results) < len(data):
        try:
            results.extend(_each(fn, items))
        except BaseException as exc:
            errors[len(results)] = describe(_unwrap_stop(exc))
            results.append(None)
    return results, errors


def _each(fn: Callable[[Any], Any], items: Iterator[Any]) -> Iterator[Any]:
    for x in items:
        yield fn(x)


def _unwrap_stop(exc: BaseException) -> BaseException:
    """The user's StopIteration behind the RuntimeError that ``_each`` made of it; any other exception as is."""
    cause = exc.__cause__
    tb = cause.__traceback__ if isinstance(exc, RuntimeError) and isinstance(cause, StopIteration) else None
    if tb is not None and tb.tb_frame.f_code is _each.__code__:
        cause.__traceback__ = tb.tb_next
        return cause  # type: ignore[return-value]
    return exc


_NEVER = 1 << 62  # a threshold no buffer reaches: everything in band


def _reply(results: list[Any], errors: dict[int, dict[str, Any]], max_result_bytes: int,
           threshold: int = _NEVER) -> tuple[bool, Encoded]:
    """Results (and per-item errors) pickled; a result that will not pickle fails only its own item."""

    def pack(values: list[Any]) -> Encoded | BaseException:
        return _dumps((values, errors) if errors else values, threshold)

    payload = pack(results)
    if isinstance(payload, Encoded) and len(payload.data) >= threshold:
        # Only a pickle this large can hold a bytes result over the threshold in band (see _payload.dumps).
        wrapped = _buffers.wrap_all(results, threshold)
        if wrapped is not results:
            payload.release()
            payload = pack(wrapped)
    if isinstance(payload, BaseException):
        for i, value in enumerate(results):
            if i not in errors and isinstance(why := _dumps(value), BaseException):
                errors[i] = _unpicklable(value, why)
                results[i] = None
        payload = pack(_buffers.wrap_all(results, threshold))
        if isinstance(payload, BaseException):
            # Every result pickles alone: the whole did not (e.g. no memory or descriptor for its segment).
            return _error("serialization", payload)
    return _sized(payload, max_result_bytes)


def _single(value: Any, max_result_bytes: int, threshold: int = _NEVER) -> tuple[bool, Encoded]:
    payload = _dumps(_buffers.wrap(value, threshold), threshold)
    if isinstance(payload, BaseException):
        info = _unpicklable(value, payload)
        info["kind"] = "serialization"
        return False, Encoded(pickle.dumps(info, PROTOCOL))
    return _sized(payload, max_result_bytes)


def _sized(payload: Encoded, max_result_bytes: int) -> tuple[bool, Encoded]:
    if len(payload.data) > max_result_bytes:
        msg = (f"result of {len(payload.data):,} bytes (in the frame; large buffers travel apart) exceeds the "
               f"pool's limit of {max_result_bytes:,} bytes (max_result_bytes, or max_frame_bytes if smaller)")
        return _error("too_large", ValueError(msg))
    return True, payload


def _dumps(value: Any, threshold: int = _NEVER) -> Encoded | BaseException:
    """Pickled by reference where possible, else by value (classes the worker got by value, e.g. from
    the host's ``__main__``, are not importable by name here); if neither works, why not."""
    try:
        return _buffers.dumps(value, threshold=threshold)
    except OSError as exc:
        return exc  # the shared-memory segment could not be made (no memory, no descriptor): not the pickle
    except BaseException:
        pass
    try:
        return _buffers.dumps(value, by_value=True, threshold=threshold)
    except BaseException as exc:
        return exc


def _unpicklable(value: Any, why: BaseException) -> dict[str, Any]:
    return {"kind": "serialization", "exc": None, "type": _type_name(value),
            "message": f"{type(why).__name__}: {_safe_str(why)}", "traceback": None, "base": False, "code": None}


def _error(kind: str, exc: BaseException) -> tuple[bool, Encoded]:
    info = describe(exc)
    info["kind"] = kind
    return False, Encoded(pickle.dumps(info, PROTOCOL))


class _LengthError(Exception):
    pass


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def describe(exc: BaseException) -> dict[str, Any]:
    """An exception as data: the object (if it pickles), its type, message, exit code and traceback.

    Never raises: a broken ``__str__`` or traceback is described rather than propagated.
    """
    try:
        import traceback  # only when something failed: it costs a worker's start milliseconds

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        tb = f"{_type_name(exc)} (its traceback could not be formatted)\n"
    try:
        exc.__traceback__ = None
    except BaseException:
        pass
    code = getattr(exc, "code", None) if isinstance(exc, SystemExit) else None
    return {
        "kind": "error",
        "exc": _carry(exc),
        "type": _type_name(exc),
        "message": _safe_str(exc),
        "traceback": tb,
        # Not an Exception (SystemExit, KeyboardInterrupt, GeneratorExit...) or one with a meaning to the
        # host's control flow (StopIteration): the host reports it inside a TaskError, never as itself.
        "base": not isinstance(exc, Exception) or isinstance(exc, (StopIteration, StopAsyncIteration)),
        "code": code if code is None or isinstance(code, (int, str)) else _safe_str(code),
    }


def _carry(exc: BaseException) -> bytes | None:
    """The exception pickled so that it unpickles: by reference, by value, or rebuilt from its state."""
    attempts: list[Callable[[], bytes]] = [lambda: pickle.dumps(exc, PROTOCOL)]
    try:
        import cloudpickle
    except ImportError:
        pass
    else:
        attempts.append(lambda: cloudpickle.dumps(exc, protocol=PROTOCOL))
        # An __init__ that takes other arguments than it passes to Exception.__init__ breaks the default
        # reduction; rebuilding from args and __dict__ skips __init__.
        attempts.append(lambda: cloudpickle.dumps(_Rebuild(exc), protocol=PROTOCOL))
    for dump in attempts:
        try:
            raw = dump()
            pickle.loads(raw)
            return raw
        except BaseException:
            continue
    return None


class _Rebuild:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        e = self.exc
        return rebuild_exception, (type(e), tuple(e.args), dict(getattr(e, "__dict__", {})))


def rebuild_exception(cls: type[BaseException], args: Iterable[Any], state: dict[str, Any]) -> BaseException:
    """An exception of ``cls`` with ``args`` and attributes ``state``, without calling its ``__init__``."""
    args = tuple(args)
    exc = cls.__new__(cls, *args)
    exc.args = args
    if state:
        exc.__dict__.update(state)
    return exc


def _type_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"


def _safe_str(obj: Any) -> str:
    try:
        return str(obj)
    except BaseException as exc:
        try:
            return f"<str() of {_type_name(obj)} raised {_type_name(exc)}>"
        except BaseException:
            return "<unprintable>"
