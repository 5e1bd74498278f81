"""data_etl: hot reload under contention.

Batch 1 runs under schema v1, the store is reloaded to v2, batch 2 runs under v2, and batch 3 runs while
another thread swaps the schema back and forth. Workers read (schema, version) from one store snapshot
per row and record the version they used; the host checks every verdict against that version.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, worker_peak_mb
from slither.example._measure import measure
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import data_etl as w

NAME = "data_etl"
TITLE = "Data ETL: hot reload under contention"
SUMMARY = "schema hot reload while workers validate (atomic snapshots) vs a dict mutated in place (torn reads)"
REQUIRES: list[tuple[str, str]] = []
MODULE = "slither.example.workloads.data_etl"


def _install(store: slither.Store, version: int) -> None:
    store.reload_tables({"schemas": {"current": w.SCHEMAS[version]}, "meta": {"version": version}})


def run(ctx: Context) -> Report:
    batches = w.generate(ctx.size, ctx.seed)
    store = slither.Store()
    _install(store, 1)
    total = sum(len(b) for b in batches)
    with slither.Pool(ctx.workers, store=store) as pool:
        pool.broadcast(f"{MODULE}:reset")

        def go() -> tuple[list[Any], int]:
            outs = [pool.map_batches(f"{MODULE}:validate_batch", batches[0], batch_size=100)]
            _install(store, 2)
            outs.append(pool.map_batches(f"{MODULE}:validate_batch", batches[1], batch_size=100))
            stop = threading.Event()
            toggles = [0]

            def toggler() -> None:
                while not stop.is_set():
                    for v in (1, 2):
                        _install(store, v)
                        toggles[0] += 1
                        time.sleep(0.001)

            t = threading.Thread(target=toggler)
            t.start()
            try:
                outs.append(pool.map_batches(f"{MODULE}:validate_batch", batches[2], batch_size=100))
            finally:
                stop.set()
                t.join()
            return outs, toggles[0]

        (outs, toggles), wall, host_peak = measure(go)
        audits = [r.value for r in pool.broadcast(f"{MODULE}:audit_stats").values()]
        peak = host_peak + worker_peak_mb(pool)
        report = Report(NAME, TITLE, header(ctx, pool, total))

    rows_by_id = {r["id"]: r for b in batches for r in b}
    third = outs[2]
    torn = sum(1 for e in third if e["version"] != e["schema_says"])
    mismatched = sum(1 for e in third if e["valid"] != (not w.validate(rows_by_id[e["id"]], w.SCHEMAS[e["version"]])))
    versions_b3 = sorted({e["version"] for e in third})
    invariants = [
        Invariant.equal("batch 1 (v1) rejects exactly the invalid rows", w.expected_invalid(batches[0], 1),
                        sum(1 for e in outs[0] if not e["valid"])),
        Invariant.equal("batch 2 (v2) rejects exactly the invalid rows", w.expected_invalid(batches[1], 2),
                        sum(1 for e in outs[1] if not e["valid"])),
        Invariant.equal("batch 3: (schema, version) pairs torn", 0, torn),
        Invariant.equal("batch 3: verdicts not matching the recorded version", 0, mismatched),
        Invariant.equal("validations summed over workers", total, sum(a["validations"] for a in audits)),
        Invariant.equal("workers where validations = audit log = valid + invalid", len(audits),
                        sum(1 for a in audits if a["validations"] == a["audit_log"] == a["valid"] + a["invalid"])),
    ]
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, wall, peak,
                           f"store swapped {toggles} times during batch 3; one snapshot per row"))
    report.details.append(f"  batch 3 saw schema versions {versions_b3} while the schema toggled {toggles} times")
    report.details += [f"  worker pid {a['pid']}: {a['validations']} validations, audit log {a['audit_log']}, "
                       f"versions seen {a['versions_seen']}" for a in audits]
    report.rows += baseline_rows(ctx, NAME, batches)
    return finish(report, ctx, ("a reader catches the dict mid-update, or loses a counter update, only when a "
                          "thread switch lands there, which the GIL makes rare."),
                  "the baselines validate batch 3's rows while another thread toggles the schema")
