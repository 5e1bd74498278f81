"""slither's exception tree, declared once in the native module and re-exported here.

::

    SlitherError
    ├── PoolClosed           also a RuntimeError (what concurrent.futures raises for work after shutdown)
    ├── ConfigError          also a ValueError: an argument or configuration value, named
    ├── PoolBroken, ProtocolError
    ├── TaskError            user code raised and its exception could not be rebuilt as its own type
    ├── WorkerCrashed        the worker process died mid-batch (exit code / signal named)
    ├── BatchTimeout         also a TimeoutError: the batch overran ``batch_timeout=``; its worker was replaced
    ├── SessionLost          a session's worker died or was replaced
    ├── BatchLengthError     a batch function returned the wrong length or not a list
    ├── SerializationError   an item, result or function would not pickle
    └── StoreError

An exception raised by user code in a worker is re-raised as its own type where it unpickles (classes
defined in ``__main__`` or a notebook travel by value), with the remote traceback as ``__cause__`` (a
:class:`RemoteTraceback`). User code's ``BaseException``s that are not ``Exception``s (``SystemExit``,
``KeyboardInterrupt``, ``GeneratorExit``) and ``StopIteration`` are that item's failure: they reach the host
inside a :class:`TaskError` whose ``__cause__`` is the original (type, ``code``, remote traceback), never as
themselves.
"""

from __future__ import annotations

from slither._native import _slither

SlitherError = _slither.SlitherError
PoolClosed = _slither.PoolClosed
PoolBroken = _slither.PoolBroken
SessionLost = _slither.SessionLost
WorkerCrashed = _slither.WorkerCrashed
BatchTimeout = _slither.BatchTimeout
TaskError = _slither.TaskError
BatchLengthError = _slither.BatchLengthError
SerializationError = _slither.SerializationError
StoreError = _slither.StoreError
ProtocolError = _slither.ProtocolError
ConfigError = _slither.ConfigError


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback; set as ``__cause__`` of re-raised exceptions.

    ``type`` is the remote exception's qualified type name (``"builtins.SystemExit"``) and ``code`` its
    ``SystemExit`` code, when known.
    """

    def __init__(self, text: str, type: str | None = None, code: int | str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.type = type
        self.code = code

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


__all__ = [
    "BatchLengthError",
    "BatchTimeout",
    "ConfigError",
    "PoolBroken",
    "PoolClosed",
    "ProtocolError",
    "RemoteTraceback",
    "SerializationError",
    "SessionLost",
    "SlitherError",
    "StoreError",
    "TaskError",
    "WorkerCrashed",
]
