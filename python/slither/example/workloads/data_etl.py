"""data_etl: hot reload under contention.

The schema lives in table "schemas" and its version in table "meta": two keys in two tables, as a real
config often is. A reload that swaps both separately, or a reader that reads them separately, can pair
a new schema with an old version (a torn read). slither workers read both from one store snapshot per
row, the host swaps both tables in one atomic step, and every verdict is checked against the schema
version it recorded. Each worker keeps an audit log and a validation counter in module globals.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from slither.example._measure import run_threads

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Ken", "Liam", "Mia", "Noah", "Olga", "Pete", "Quinn", "Rosa", "Sam", "Tina", "Uma", "Vic", "Walt", "Xena", "Yuri", "Zoe", "Abe", "Bea", "Cy", "Drew"]
SIZES = {"small": 500, "default": 5000, "large": 20000}
RATIOS = (0.10, 0.20, 0.15)
BORDERLINE = 0.10

SCHEMA_V1 = {"version": 1, "fields": {
    "name": {"type": "string", "required": True, "min_length": 1},
    "age": {"type": "integer", "required": True, "min": 0, "max": 150},
    "email": {"type": "string", "required": True},
}}
SCHEMA_V2 = {"version": 2, "fields": {
    "name": {"type": "string", "required": True, "min_length": 2},
    "age": {"type": "integer", "required": True, "min": 18, "max": 120},
    "email": {"type": "string", "required": True, "pattern": r"^[^@]+@[^@]+$"},
    "role": {"type": "string", "required": False},
}}
SCHEMAS = {1: SCHEMA_V1, 2: SCHEMA_V2}


def generate(size: str = "default", seed: int = 42) -> list[list[dict[str, Any]]]:
    """Three batches of rows: invalid rows fail both schemas, borderline rows pass v1 and fail v2."""
    n = SIZES[size]
    batches = []
    for b, ratio in enumerate(RATIOS):
        rng = random.Random(seed * 1000 + b)
        rows = []
        for i in range(n):
            rid = b * n + i
            name = NAMES[i % 30]
            row: dict[str, Any] = {"id": rid, "name": name, "age": 20 + i % 60, "email": f"{name.lower()}{rid}@example.com"}
            u = rng.random()
            if u < ratio:
                kind = i % 4
                if kind == 0:
                    row["name"] = ""
                elif kind == 1:
                    row["age"] = -5
                elif kind == 2:
                    del row["name"]
                else:
                    row["age"] = 200
            elif u < ratio + BORDERLINE:
                kind = i % 3
                if kind == 0:
                    row["name"] = name[0]
                elif kind == 1:
                    row["age"] = 16
                else:
                    row["email"] = f"{name.lower()}-at-example.com"
            rows.append(row)
        batches.append(rows)
    return batches


def validate(row: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    errors = []
    for field, rule in list(schema["fields"].items()):
        if field not in row:
            if rule.get("required"):
                errors.append(f"{field}: required field is missing")
            continue
        v = row[field]
        kind = rule.get("type")
        if (kind == "string" and not isinstance(v, str)) or (kind == "integer" and (
            not isinstance(v, int) or isinstance(v, bool)
        )):
            errors.append(f"{field}: expected {kind}, got {type(v).__name__}")
            continue
        if "min" in rule and v < rule["min"]:
            errors.append(f"{field}: {v} is below minimum {rule['min']}")
        if "max" in rule and v > rule["max"]:
            errors.append(f"{field}: {v} exceeds maximum {rule['max']}")
        if "min_length" in rule and len(v) < rule["min_length"]:
            errors.append(f"{field}: length {len(v)} is below minimum {rule['min_length']}")
        if "pattern" in rule and not re.search(rule["pattern"], v):
            errors.append(f"{field}: {v!r} does not match {rule['pattern']!r}")
    return errors


def expected(batches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The serial reference: rows rejected by v1 in batch 1 and by v2 in batch 2, and the row count."""
    return {"invalid": [sum(1 for r in batches[0] if validate(r, SCHEMA_V1)),
                        sum(1 for r in batches[1] if validate(r, SCHEMA_V2))],
            "rows": sum(len(b) for b in batches)}


TOGGLE_INTERVAL = 0.001
"""Seconds between two schema switches during batch 3 (the same on every side)."""


def run_etl(batches: list[list[dict[str, Any]]], validate_rows: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
            install: Callable[[int], None]) -> tuple[list[list[dict[str, Any]]], int]:
    """The ETL run every mode does: batch 1 under v1, reload to v2, batch 2, then batch 3 while another thread
    switches the schema back and forth. ``validate_rows(rows)`` returns one verdict per row (``id``, ``valid``,
    the ``version`` it used); ``install(v)`` makes schema v current. Returns (verdicts per batch, switches)."""
    install(1)
    outs = [validate_rows(batches[0])]
    install(2)
    outs.append(validate_rows(batches[1]))
    stop = threading.Event()
    switches = [0]

    def toggler() -> None:
        while not stop.is_set():
            for v in (1, 2):
                install(v)
                switches[0] += 1
                time.sleep(TOGGLE_INTERVAL)

    t = threading.Thread(target=toggler)
    t.start()
    try:
        outs.append(validate_rows(batches[2]))
    finally:
        stop.set()
        t.join()
    install(2)
    return outs, switches[0]


def invariants(batches: list[list[dict[str, Any]]], ref: dict[str, Any], outs: list[list[dict[str, Any]]],
               validations: int, audit: int) -> list[dict[str, Any]]:
    """The checks every mode answers (plain dicts: they cross interpreters as JSON)."""
    by_id = {r["id"]: r for b in batches for r in b}
    invalid = [sum(1 for e in out if not e["valid"]) for out in outs[:2]]
    torn = sum(1 for e in outs[2] if e["valid"] != (not validate(by_id[e["id"]], SCHEMAS[e["version"]])))
    total = ref["rows"]
    return [
        {"name": "batch 1 (v1): rows rejected", "expected": ref["invalid"][0], "observed": invalid[0],
         "ok": invalid[0] == ref["invalid"][0]},
        {"name": "batch 2 (v2): rows rejected", "expected": ref["invalid"][1], "observed": invalid[1],
         "ok": invalid[1] == ref["invalid"][1]},
        {"name": "batch 3: verdicts not matching the version read (torn reads)", "expected": 0, "observed": torn,
         "ok": torn == 0},
        {"name": "validations counted", "expected": total, "observed": validations, "ok": validations == total},
        {"name": "audit log entries", "expected": total, "observed": audit, "ok": audit == total},
    ]


# -- worker side ------------------------------------------------------------------------------
_audit_log: list[dict[str, Any]] = []
_validation_count = 0


def reset() -> int:
    global _validation_count
    _audit_log.clear()
    _validation_count = 0
    return os.getpid()


def validate_batch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row against one consistent (schema, version) snapshot of the store, recorded in the audit log."""
    global _validation_count
    from slither.worker import store

    out = []
    for row in rows:
        snap = store.snapshot("schemas", "meta")
        schema = snap.get("schemas", "current")
        version = snap.get("meta", "version")
        errors = validate(row, schema)
        entry = {"id": row["id"], "valid": not errors, "version": version, "schema_says": schema["version"]}
        _audit_log.append(entry)
        _validation_count += 1
        out.append(entry)
    return out


def audit_stats() -> dict[str, Any]:
    valid = sum(1 for e in _audit_log if e["valid"])
    return {"pid": os.getpid(), "validations": _validation_count, "audit_log": len(_audit_log), "valid": valid,
            "invalid": len(_audit_log) - valid, "versions_seen": sorted({e["version"] for e in _audit_log})}


# -- threaded baselines -----------------------------------------------------------------------
# Same rows, same access pattern as the workers: per row, read the current (schema, version), validate,
# append to the audit log, count.
class _Config:
    """The naive shared configuration: a schema dict mutated in place and a version beside it."""

    def __init__(self) -> None:
        self.schema: dict[str, Any] = {"fields": dict(SCHEMA_V1["fields"])}
        self.version = 1
        self.count = 0
        self.audit: list[dict[str, Any]] = []

    def reload_in_place(self, version: int) -> None:
        new = SCHEMAS[version]["fields"]
        fields = self.schema["fields"]
        for k in list(fields):
            if k not in new:
                del fields[k]
        for k, v in new.items():
            fields[k] = v
        self.version = version


def unsafe_threaded(batches: list[list[dict[str, Any]]], ref: dict[str, Any], threads: int) -> tuple[list[dict[str, Any]], str]:
    cfg = _Config()
    races = [0]

    def validate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in rows]

        def work(k: int) -> None:
            for i in range(k, len(rows), threads):
                version = cfg.version
                try:
                    errs = validate(rows[i], cfg.schema)
                except RuntimeError:  # dictionary changed size during iteration
                    errs = ["schema changed during validation"]
                    races[0] += 1
                out[i] = {"id": rows[i]["id"], "valid": not errs, "version": version}
                cfg.audit.append(out[i])
                cfg.count += 1

        run_threads(threads, work)
        return out

    outs, switches = run_etl(batches, validate_rows, cfg.reload_in_place)
    return invariants(batches, ref, outs, cfg.count, len(cfg.audit)), (
        f"schema dict mutated in place {switches} times during batch 3; shared counter and audit log"
        + (f"; {races[0]} validations hit 'dictionary changed size'" if races[0] else ""))


def safe_threaded(batches: list[list[dict[str, Any]]], ref: dict[str, Any], threads: int) -> tuple[list[dict[str, Any]], str]:
    lock = threading.Lock()
    current = [SCHEMA_V1]
    counts: list[int] = []
    logs: list[list[dict[str, Any]]] = []

    def install(v: int) -> None:
        with lock:
            current[0] = SCHEMAS[v]

    def validate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in rows]
        parts: list[tuple[int, list[dict[str, Any]]]] = [(0, []) for _ in range(threads)]

        def work(k: int) -> None:
            n, log = 0, []
            for i in range(k, len(rows), threads):
                with lock:
                    schema = current[0]
                errs = validate(rows[i], schema)
                out[i] = {"id": rows[i]["id"], "valid": not errs, "version": schema["version"]}
                log.append(out[i])
                n += 1
            parts[k] = (n, log)

        run_threads(threads, work)
        counts.extend(n for n, _ in parts)
        logs.extend(log for _, log in parts)
        return out

    outs, switches = run_etl(batches, validate_rows, install)
    return invariants(batches, ref, outs, sum(counts), sum(len(log) for log in logs)), (
        f"immutable schema swapped under a lock {switches} times during batch 3; thread-local counters and logs")


def baselines(batches: list[list[dict[str, Any]]], ref: dict[str, Any], threads: int) -> list[tuple[str, Any]]:
    return [(f"unsafe_threaded ({threads} threads)", lambda: unsafe_threaded(batches, ref, threads)),
            (f"safe_threaded ({threads} threads)", lambda: safe_threaded(batches, ref, threads))]
