"""``slither.worker.store`` inside a worker: the pool's store, with the host's API.

Reads are local. The client maps the host's version header once (ATTACH) and, per table it reads, the
image of that table's current version (MAP); from then on ``get``, ``keys``, ``items``, ``len`` and
``version`` are answered from this process's memory after one check of the header (``storeimage.py``).
Only a table that changed since this worker last read it costs a round trip, and the host builds each
version's image once for all its workers. ``snapshot(*tables)`` reads the named tables' versions as they
stood together (a seqlock on the header) and uses the images it holds when they match, else asks the host
for images all taken from one snapshot: it never mixes versions.

Writes go to the host over the worker's channel, in order with every other writer, and return the version
they created. A worker that cannot map the host's memory (a Ray actor on another machine, a host whose
descriptors it may not open) asks the host for every read instead (GET, TABLES), with the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from slither._worker import storecodec as codec
from slither._worker.storeimage import Header, Image, Unavailable

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

# A MAP reply can name an image that a newer one replaces before this worker opens it; ask again.
_MAP_TRIES = 8
_INLINE = (1 << 64) - 1  # MAP's fd for an image sent inside the reply
# Taking a new image of a table costs the host about as much as this many single-key requests per entry
# (measured: an image build costs ~1 µs per entry, a GET round trip ~15-20 µs). See WorkerStore._ask_instead.
_ENTRIES_PER_ASK = 16


class WorkerStoreError(Exception):
    """A store request failed on the host side."""


class _Copied:
    """A table copied into a reply (TABLES), read like an image."""

    __slots__ = ("_entries", "version")

    def __init__(self, version: int, entries: dict[bytes, bytes]) -> None:
        self.version = version
        self._entries = entries

    def raw(self, key: bytes) -> bytes | None:
        return self._entries.get(key)

    def find(self, key: Any) -> bytes | None:
        return self._entries.get(codec.encode_key(key))

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)


_Table = Image | _Copied


def _pairs(table: str, source: Any, what: str) -> list[bytes]:
    mapping = source() if callable(source) else source
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} needs a mapping (or a loader returning one) for table {table!r}, got "
                        f"{type(mapping).__name__}")
    fields: list[bytes] = []
    for k, v in mapping.items():
        fields += [codec.encode_key(k), codec.encode_value(v)]
    return fields


class _WholeTableReads:
    """``keys``, ``items`` and ``len``, read from whatever ``_table(name)`` gives (an image or a copy)."""

    def _table(self, table: str) -> _Table:
        raise NotImplementedError

    def keys(self, table: str) -> list[Any]:
        return [codec.decode_key(k) for k, _ in self._table(table).entries()]

    def items(self, table: str) -> list[tuple[Any, Any]]:
        return [(codec.decode_key(k), codec.decode_value(v)) for k, v in self._table(table).entries()]

    def len(self, table: str) -> int:
        return len(self._table(table))


class WorkerSnapshot(_WholeTableReads):
    """The tables a worker named, each at the version they all had at one moment."""

    def __init__(self, tables: Mapping[str, _Table]) -> None:
        self._tables = tables

    def _table(self, table: str) -> _Table:
        try:
            return self._tables[table]
        except KeyError:
            raise KeyError(f"table {table!r} is not in this snapshot (it holds {sorted(self._tables)}); "
                           f"name it: store.snapshot({table!r}, ...)") from None

    def get(self, table: str, key: Any, default: Any = None) -> Any:
        raw = self._table(table).find(key)
        return default if raw is None else codec.decode_value(raw)

    def version(self, table: str) -> int:
        return self._table(table).version

    def tables(self) -> list[str]:
        return sorted(self._tables)

    def __enter__(self) -> WorkerSnapshot:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


class WorkerStore(_WholeTableReads):
    """The pool's store as seen from a worker: the host's API, reads local (see the module docstring).

    ``transport(request: bytes) -> reply: bytes`` carries one store request to the host and back. Failed
    requests raise ``WorkerStoreError`` with the host's message; bad keys raise ``TypeError``.
    """

    def __init__(self, transport: Callable[[bytes], bytes]) -> None:
        self._send = transport
        self._local: bool | None = None  # None until the first read tries to map the header
        self._header: Header | None = None
        self._store_id = 0
        self._slots: Any = None
        self._images: dict[str, Image] = {}
        self._asks: dict[str, int] = {}  # single-key requests made since the table's image went stale

    def _call(self, op: int, *fields: bytes) -> tuple[int, list[bytes]]:
        reply = self._send(codec.join(op, *fields))
        status, rest = reply[0], codec.split(reply[1:])
        if status == codec.ERROR:
            raise WorkerStoreError(rest[0].decode() if rest else "store request failed")
        return status, rest

    @property
    def reads_locally(self) -> bool:
        """True when this worker reads the host's shared memory; False when every read asks the host."""
        return self._attached()

    # -- the local read path --------------------------------------------------------------------
    def _attached(self) -> bool:
        if self._local is None:
            try:
                _, f = self._call(codec.ATTACH)
                pid, fd, length, store_id = (codec.u64(x) for x in f)
                self._header = Header(pid, fd, length, store_id)
            except (Unavailable, WorkerStoreError, ValueError):
                self._local = False
            else:
                self._store_id = store_id
                self._slots = self._header.slots
                self._local = True
        return self._local

    def _map(self, names: tuple[str, ...]) -> dict[str, Image] | None:
        """Images of ``names`` (every table if empty), all from one snapshot; None if they cannot be mapped."""
        if not self._attached():
            return None
        assert self._header is not None
        for _ in range(_MAP_TRIES):
            try:
                _, f = self._call(codec.MAP, *(n.encode() for n in names))
            except WorkerStoreError:
                return None
            got: dict[str, Image] = {}
            try:
                for i in range(0, len(f), 6):
                    name = f[i].decode()
                    slot, version, fd, length = (codec.u64(x) for x in f[i + 1 : i + 5])
                    held = self._images.get(name)
                    if held is not None and (held.slot, held.version) == (slot, version):
                        pass
                    elif fd == _INLINE:
                        held = Image(f[i + 5], self._store_id, slot, version)
                    else:
                        held = Image.mapped(self._header, fd, length, self._store_id, slot, version)
                    got[name] = held
            except Unavailable:
                continue
            self._images.update(got)
            for name in got:
                self._asks.pop(name, None)
            return got
        return None

    def _current(self, table: str) -> Image | None:
        img = self._images.get(table)
        if img is not None and self._slots[img.slot] == img.version:
            return img
        got = self._map((table,))
        return None if got is None else got[table]

    def _copied(self, names: tuple[str, ...]) -> dict[str, _Table]:
        _, fields = self._call(codec.TABLES, *(n.encode() for n in names))
        return {name: _Copied(v, entries) for name, (v, entries) in codec.parse_tables(fields).items()}

    def _table(self, table: str) -> _Table:
        img = self._current(table)
        return img if img is not None else self._copied((table,))[table]

    def _ask_instead(self, table: str, stale: Image) -> bool:
        """Whether to answer one single-key read of a changed table by asking the host (GET) rather than
        taking its new image. A large table that changes between most reads would otherwise be imaged
        again at almost every read, O(n) each; so, as in renting before buying, a worker asks until its
        requests have cost about what a new image costs, then takes the image. Small tables are imaged
        at once."""
        budget = len(stale) // _ENTRIES_PER_ASK
        asked = self._asks.get(table, 0)
        if asked >= budget:
            return False
        self._asks[table] = asked + 1
        return True

    def _lookup(self, table: str, key: Any) -> bytes | memoryview | None:
        """The encoded value under ``key``: from the image when current, else as ``_ask_instead`` says."""
        img = self._images.get(table)
        if img is None or self._slots[img.slot] != img.version:
            if img is None or not self._ask_instead(table, img):
                img = self._current(table)
            if img is None or self._slots[img.slot] != img.version:
                status, fields = self._call(codec.GET, table.encode(), codec.encode_key(key))
                return fields[0] if status == codec.OK else None
        return img.find(key)

    # -- reads ----------------------------------------------------------------------------------
    def get(self, table: str, key: Any, default: Any = None) -> Any:
        """A fresh copy of the value under ``key``, or ``default``. Local when this table is mapped."""
        raw = self._lookup(table, key)
        return default if raw is None else codec.decode_value(raw)

    def version(self, table: str) -> int:
        """The table's current version (0 if never written)."""
        img = self._images.get(table)
        if img is None:
            img = self._current(table)
        if img is not None:
            return int(self._slots[img.slot])
        _, fields = self._call(codec.VERSION, table.encode())
        return codec.u64(fields[0])

    def tables(self) -> list[str]:
        """The names of every table, sorted."""
        _, fields = self._call(codec.NAMES)
        return [f.decode() for f in fields]

    def snapshot(self, *tables: str) -> WorkerSnapshot:
        """The named tables (every table if none are named), each at the version they all had at one moment.

        With names this is local whenever this worker already holds the current images; name the tables
        you need rather than taking all of them. Reading a table the snapshot does not hold raises KeyError.
        """
        names = tuple(dict.fromkeys(tables))
        if names and self._header is not None:
            held = [self._images[n] for n in names if n in self._images]
            if len(held) == len(names) and (
                self._header.versions([img.slot for img in held]) == [img.version for img in held]
            ):
                return WorkerSnapshot(dict(zip(names, held)))
        got = self._map(names)
        return WorkerSnapshot(got if got is not None else self._copied(names))

    # -- writes: through the host, in order -----------------------------------------------------
    def put(self, table: str, key: Any, value: Any) -> int:
        """Stores ``value`` under ``key``; returns the version this write created."""
        _, f = self._call(codec.PUT, table.encode(), codec.encode_key(key), codec.encode_value(value))
        return codec.u64(f[0])

    def put_many(self, table: str, mapping: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> int:
        """Writes every pair as one change (readers see all or none); returns the version it created."""
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        fields: list[bytes] = []
        for k, v in pairs:
            fields += [codec.encode_key(k), codec.encode_value(v)]
        _, f = self._call(codec.PUT_MANY, table.encode(), *fields)
        return codec.u64(f[0])

    def delete(self, table: str, key: Any) -> bool:
        """Removes ``key``; True if it was there."""
        status, _ = self._call(codec.DELETE, table.encode(), codec.encode_key(key))
        return status == codec.OK

    def update(self, table: str, key: Any, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Sets ``key`` to ``fn(current or default)`` with no other write in between; returns the new value.

        ``fn`` may run more than once when another writer got in first, so it should not have side effects.
        """
        k = codec.encode_key(key)
        while True:
            raw = self._lookup(table, key)
            present = raw is not None
            old = bytes(raw) if raw is not None else b""
            new = fn(codec.decode_value(old) if present else default)
            status, _ = self._call(codec.CAS, table.encode(), k, b"1" if present else b"0", old, b"1",
                                   codec.encode_value(new))
            if status == codec.OK:
                return new

    def reload(self, table: str, source: Mapping[Any, Any] | Callable[[], Mapping[Any, Any]]) -> int:
        """Replaces the whole table atomically; returns its new version. A loader that raises changes nothing."""
        fields = _pairs(table, source, "reload")
        _, f = self._call(codec.RELOAD, table.encode(), *fields)
        return codec.u64(f[0])

    def reload_tables(self, sources: Mapping[str, Mapping[Any, Any] | Callable[[], Mapping[Any, Any]]]
                      ) -> dict[str, int]:
        """Replaces several tables in one atomic step; returns each table's new version."""
        fields: list[bytes] = []
        for table, source in sources.items():
            pairs = _pairs(table, source, "reload_tables")
            fields += [table.encode(), codec.count(len(pairs) // 2), *pairs]
        _, f = self._call(codec.RELOAD_MANY, *fields)
        return {f[i].decode(): codec.u64(f[i + 1]) for i in range(0, len(f), 2)}
