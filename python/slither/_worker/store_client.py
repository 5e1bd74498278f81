"""``slither.worker.store`` inside a worker: the pool's store, over the worker's channel.

Every call is one request answered by the host's Rust side from its current snapshot, without the
host's GIL. ``update`` is a compare-and-swap loop, so it serializes with every other writer without
holding a lock across processes; ``snapshot(tables)`` reads whole tables from one snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from slither._worker import storecodec as codec


class WorkerStoreError(Exception):
    """A store request failed on the host side."""


class WorkerSnapshot:
    """Tables read from one consistent snapshot of the store."""

    def __init__(self, tables: dict[str, tuple[int, dict[bytes, bytes]]]) -> None:
        self._tables = tables

    def get(self, table: str, key: Any, default: Any = None) -> Any:
        raw = self._tables.get(table, (0, {}))[1].get(codec.encode_key(key))
        return default if raw is None else codec.decode_value(raw)

    def version(self, table: str) -> int:
        return self._tables.get(table, (0, {}))[0]

    def keys(self, table: str) -> list[Any]:
        return [codec.decode_key(k) for k in self._tables.get(table, (0, {}))[1]]

    def items(self, table: str) -> list[tuple[Any, Any]]:
        return [(codec.decode_key(k), codec.decode_value(v)) for k, v in self._tables.get(table, (0, {}))[1].items()]

    def __enter__(self) -> WorkerSnapshot:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


class WorkerStore:
    def __init__(self, transport: Callable[[bytes], bytes]) -> None:
        self._send = transport

    def _call(self, op: int, *fields: bytes) -> tuple[int, list[bytes]]:
        reply = self._send(codec.join(op, *fields))
        status, rest = reply[0], codec.split(reply[1:])
        if status == codec.ERROR:
            raise WorkerStoreError(rest[0].decode() if rest else "store request failed")
        return status, rest

    def get(self, table: str, key: Any, default: Any = None) -> Any:
        status, fields = self._call(codec.GET, table.encode(), codec.encode_key(key))
        return codec.decode_value(fields[0]) if status == codec.OK else default

    def put(self, table: str, key: Any, value: Any) -> None:
        self._call(codec.PUT, table.encode(), codec.encode_key(key), codec.encode_value(value))

    def put_many(self, table: str, mapping: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        pairs = mapping.items() if isinstance(mapping, dict) else mapping
        fields: list[bytes] = []
        for k, v in pairs:
            fields += [codec.encode_key(k), codec.encode_value(v)]
        self._call(codec.PUT_MANY, table.encode(), *fields)

    def delete(self, table: str, key: Any) -> bool:
        status, _ = self._call(codec.DELETE, table.encode(), codec.encode_key(key))
        return status == codec.OK

    def update(self, table: str, key: Any, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Sets ``key`` to ``fn(current or default)`` with no other write in between; returns the new value."""
        k = codec.encode_key(key)
        while True:
            status, fields = self._call(codec.GET, table.encode(), k)
            present = status == codec.OK
            raw = fields[0] if present else b""
            new = fn(codec.decode_value(raw) if present else default)
            status, _ = self._call(codec.CAS, table.encode(), k, b"1" if present else b"0", raw, b"1",
                                   codec.encode_value(new))
            if status == codec.OK:
                return new

    def version(self, table: str) -> int:
        _, fields = self._call(codec.VERSION, table.encode())
        return codec.u64(fields[0])

    def snapshot(self, *tables: str) -> WorkerSnapshot:
        """The named tables (all tables if none are named), read from one consistent snapshot."""
        _, fields = self._call(codec.TABLES, *(t.encode() for t in tables))
        return WorkerSnapshot(codec.parse_tables(fields))

    def keys(self, table: str) -> list[Any]:
        return self.snapshot(table).keys(table)

    def items(self, table: str) -> list[tuple[Any, Any]]:
        return self.snapshot(table).items(table)

    def len(self, table: str) -> int:
        return len(self.keys(table))
