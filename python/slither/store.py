"""``slither.Store``: shared state owned by Rust.

Tables by name; keys are str, int, bytes, None or tuples of them; values are pickled, so every read
returns a fresh object that no other reader or later write can change (as Erlang's ETS copies on read).
Reads are lock-free snapshots that never wait for a writer; writes are serialized, cost O(log n) in the
table's size (persistent maps: a write shares every untouched node with the previous snapshot) and return
the version they created; ``reload`` swaps a whole table atomically after building it completely, and a
loader that raises changes nothing. Workers of a ``Pool(store=store)`` reach the same store, with the same
API, as ``slither.worker.store``; they read it from shared memory (``_worker/store_client.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from slither._native import _slither
from slither._worker import storecodec as codec


def _value(table: str, key: Any, value: Any) -> bytes:
    try:
        return codec.encode_value(value)
    except Exception as exc:
        from slither.errors import SerializationError

        raise SerializationError(
            f"value for key {key!r} in table {table!r} cannot be pickled: {type(exc).__name__}: {exc}"
        ) from exc


class Snapshot:
    """A consistent view across every key and table, as of the moment it was taken."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def get(self, table: str, key: Any, default: Any = None) -> Any:
        raw = self._core.get(table, codec.encode_key(key))
        return default if raw is None else codec.decode_value(raw)

    def version(self, table: str) -> int:
        return int(self._core.version(table))

    def keys(self, table: str) -> list[Any]:
        return [codec.decode_key(k) for k in self._core.keys(table)]

    def items(self, table: str) -> list[tuple[Any, Any]]:
        return [(codec.decode_key(k), codec.decode_value(v)) for k, v in self._core.items(table)]

    def len(self, table: str) -> int:
        return int(self._core.len(table))

    def tables(self) -> list[str]:
        return list(self._core.tables())

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


class Store(Snapshot):
    """Reads go to the current snapshot (lock-free); writes are serialized and bump the table's version."""

    def __init__(self) -> None:
        self._inner = _slither.StoreCore()
        super().__init__(self._inner)

    def put(self, table: str, key: Any, value: Any) -> int:
        """Stores ``value`` under ``key``; returns the version this write created.

        Raises TypeError for a key of another type, SerializationError for a value that will not pickle.
        """
        return int(self._inner.put(table, codec.encode_key(key), _value(table, key, value)))

    def put_many(self, table: str, mapping: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> int:
        """Writes every pair as one change: readers see all of them or none. Returns the version it created."""
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        return int(self._inner.put_many(table, [(codec.encode_key(k), _value(table, k, v)) for k, v in pairs]))

    def delete(self, table: str, key: Any) -> bool:
        """Removes ``key``; True if it was there."""
        return bool(self._inner.delete(table, codec.encode_key(key)))

    def update(self, table: str, key: Any, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Sets ``key`` to ``fn(current or default)`` with no other write in between; returns the new value.

        ``fn`` may run more than once when another writer got in first, so it should not have side effects.
        """
        k = codec.encode_key(key)
        while True:
            raw = self._inner.get(table, k)
            new = fn(default if raw is None else codec.decode_value(raw))
            if self._inner.compare_and_swap(table, k, None if raw is None else bytes(raw), _value(table, key, new)):
                return new

    def reload(self, table: str, source: Mapping[Any, Any] | Callable[[], Mapping[Any, Any]]) -> int:
        """Replaces the whole table atomically; returns its new version.

        ``source`` is a mapping or a loader returning one. The new table is built completely first; if the
        loader raises (or a key or value will not encode), the old table is untouched and the error propagates.
        """
        mapping = source() if callable(source) else source
        if not isinstance(mapping, Mapping):
            raise TypeError(f"reload needs a mapping (or a loader returning one), got {type(mapping).__name__}")
        pairs = [(codec.encode_key(k), _value(table, k, v)) for k, v in mapping.items()]
        return int(self._inner.reload(table, pairs))

    def reload_tables(self, sources: Mapping[str, Mapping[Any, Any] | Callable[[], Mapping[Any, Any]]]
                      ) -> dict[str, int]:
        """Replaces several tables in one atomic step: readers (host or worker) see all of the new tables or
        none. Returns ``{table: new version}``.

        Every table is built first; if any loader raises, nothing changes.
        """
        built = []
        for table, source in sources.items():
            mapping = source() if callable(source) else source
            if not isinstance(mapping, Mapping):
                raise TypeError(f"reload_tables needs mappings (or loaders returning them); {table!r} got "
                                f"{type(mapping).__name__}")
            built.append((table, [(codec.encode_key(k), _value(table, k, v)) for k, v in mapping.items()]))
        versions = self._inner.reload_many(built)
        return {table: int(v) for (table, _), v in zip(built, versions)}

    def snapshot(self, *tables: str) -> Snapshot:
        """A consistent view across keys and tables: ``with store.snapshot() as snap: ...``.

        In the host it holds every table; ``tables`` is accepted so that code can be shared with workers,
        where naming the tables keeps the snapshot a local read.
        """
        return Snapshot(self._inner.snapshot())

    def __repr__(self) -> str:
        return f"<slither.Store tables={self.tables()}>"
