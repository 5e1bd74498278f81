"""The one definition of store key encoding and of the worker's store request format (stdlib only).

Keys are encoded canonically, so that keys equal in Python give equal bytes: str, int (bool as int, an
integral float as int), bytes, None, and tuples of these. Values are pickled. Requests and replies mirror
``src/store/request.rs`` (which documents each op's fields and reply): ``u8 op`` (or status) then fields,
each ``u32 length | bytes``; numbers are u64 little-endian fields.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py imports re and enum, milliseconds of every worker start
import struct

TYPE_CHECKING = False  # not typing's: see slither/__init__.py
if TYPE_CHECKING:
    from typing import Any

GET, PUT, DELETE, CAS, TABLES, VERSION, PUT_MANY = 1, 2, 3, 4, 5, 6, 7
RELOAD, RELOAD_MANY, NAMES, ATTACH, MAP = 8, 9, 10, 11, 12
OK, MISSING, CONFLICT, ERROR = 0, 1, 2, 255
_LEN = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def encode_key(key: Any) -> bytes:
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, (bool, int)):
        return b"i" + str(int(key)).encode()
    if isinstance(key, float) and key.is_integer():
        return b"i" + str(int(key)).encode()
    if isinstance(key, bytes):
        return b"b" + key
    if key is None:
        return b"n"
    if isinstance(key, tuple):
        return b"t" + b"".join(_LEN.pack(len(p)) + p for p in map(encode_key, key))
    raise TypeError(f"store keys must be str, int, bytes, None or tuples of them; got {type(key).__name__}: {key!r}")


def decode_key(raw: bytes) -> Any:
    tag, body = raw[:1], raw[1:]
    if tag == b"s":
        return body.decode("utf-8", "surrogatepass")
    if tag == b"i":
        return int(body)
    if tag == b"b":
        return bytes(body)
    if tag == b"n":
        return None
    if tag == b"t":
        return tuple(decode_key(p) for p in split(body))
    raise ValueError(f"not an encoded store key: {raw!r}")


def encode_value(value: Any) -> bytes:
    return pickle.dumps(value, 5)


def decode_value(raw: bytes) -> Any:
    return pickle.loads(raw)


def join(op: int, *fields: bytes) -> bytes:
    return bytes([op]) + b"".join(_LEN.pack(len(f)) + f for f in fields)


def split(buf: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(buf):
        (n,) = _LEN.unpack_from(buf, i)
        out.append(buf[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]


def pack_u64(n: int) -> bytes:
    return _U64.pack(n)


def count(n: int) -> bytes:
    """A u32 count field (RELOAD_MANY's pairs per table)."""
    return _LEN.pack(n)


def parse_tables(fields: list[bytes]) -> dict[str, tuple[int, dict[bytes, bytes]]]:
    """A TABLES reply: ``{name: (version, {encoded key: pickled value})}``."""
    out: dict[str, tuple[int, dict[bytes, bytes]]] = {}
    i = 0
    while i < len(fields):
        name = fields[i].decode()
        version = u64(fields[i + 1])
        (count,) = _LEN.unpack(fields[i + 2])
        i += 3
        entries = {fields[i + 2 * j]: fields[i + 2 * j + 1] for j in range(count)}
        i += 2 * count
        out[name] = (version, entries)
    return out
