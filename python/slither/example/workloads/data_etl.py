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


def expected_invalid(rows: list[dict[str, Any]], version: int) -> int:
    return sum(1 for r in rows if validate(r, SCHEMAS[version]))


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
class _Config:
    """The naive shared configuration: a schema dict mutated in place and a version beside it."""

    def __init__(self) -> None:
        self.schema: dict[str, Any] = {"fields": dict(SCHEMA_V1["fields"])}
        self.version = 1
        self.count = 0
        self.audit: list[dict[str, Any]] = []


def _reload_in_place(cfg: _Config, version: int) -> None:
    new = SCHEMAS[version]["fields"]
    fields = cfg.schema["fields"]
    for k in list(fields):
        if k not in new:
            del fields[k]
    for k, v in new.items():
        fields[k] = v
    cfg.version = version


def _toggle(stop: threading.Event, apply: Any) -> int:
    n = 0
    while not stop.is_set():
        apply(2)
        time.sleep(0.0005)
        apply(1)
        time.sleep(0.0005)
        n += 2
    return n


def _while_toggling(apply: Any, work: Any) -> int:
    """Runs ``work()`` while another thread switches the schema back and forth; returns the switches made."""
    stop = threading.Event()
    toggles = [0]
    toggler = threading.Thread(target=lambda: toggles.__setitem__(0, _toggle(stop, apply)))
    toggler.start()
    try:
        work()
    finally:
        stop.set()
        toggler.join()
    return toggles[0]


def _check(rows: list[dict[str, Any]], entries: list[dict[str, Any]], count: int, log: int) -> list[dict]:
    by_id = {r["id"]: r for r in rows}
    torn = sum(1 for e in entries if e["valid"] != (not validate(by_id[e["id"]], SCHEMAS[e["version"]])))
    return [
        {"name": "verdicts not matching the recorded version (torn reads)", "expected": 0, "observed": torn,
         "ok": torn == 0},
        {"name": "validation counter", "expected": len(rows), "observed": count, "ok": count == len(rows)},
        {"name": "audit log entries", "expected": len(rows), "observed": log, "ok": log == len(rows)},
    ]


def unsafe_threaded(rows: list[dict[str, Any]], threads: int) -> tuple[list[dict], str]:
    cfg = _Config()
    entries: list[dict[str, Any]] = [{} for _ in rows]
    errors = [0]

    def work(k: int) -> None:
        for i in range(k, len(rows), threads):
            version = cfg.version
            try:
                errs = validate(rows[i], cfg.schema)
            except RuntimeError:  # dict changed size during iteration
                errs = ["schema changed during validation"]
                errors[0] += 1
            entries[i] = {"id": rows[i]["id"], "valid": not errs, "version": version}
            cfg.audit.append(entries[i])
            cfg.count += 1

    toggles = _while_toggling(lambda v: _reload_in_place(cfg, v), lambda: run_threads(threads, work))
    return _check(rows, entries, cfg.count, len(cfg.audit)), (
        f"schema dict mutated in place {toggles} times during the run; shared counter and audit log")


def safe_threaded(rows: list[dict[str, Any]], threads: int) -> tuple[list[dict], str]:
    lock = threading.Lock()
    current = [SCHEMAS[1]]
    parts: list[tuple[int, list[dict[str, Any]]]] = [(0, []) for _ in range(threads)]

    def swap(v: int) -> None:
        with lock:
            current[0] = SCHEMAS[v]

    def work(k: int) -> None:
        n, log = 0, []
        for i in range(k, len(rows), threads):
            with lock:
                schema = current[0]
            errs = validate(rows[i], schema)
            log.append({"id": rows[i]["id"], "valid": not errs, "version": schema["version"]})
            n += 1
        parts[k] = (n, log)

    toggles = _while_toggling(swap, lambda: run_threads(threads, work))
    entries = [e for _, log in parts for e in log]
    return _check(rows, entries, sum(n for n, _ in parts), len(entries)), (
        f"immutable schema swapped under a lock {toggles} times; thread-local counters and logs")



def baselines(batches: list[list[dict[str, Any]]], threads: int) -> list[tuple[str, Any]]:
    rows = batches[2]
    return [("unsafe_threaded", lambda: unsafe_threaded(rows, threads)),
            ("safe_threaded", lambda: safe_threaded(rows, threads))]
