"""data_etl: hot reload under contention.

Batch 1 runs under schema v1, the store is reloaded to v2, batch 2 runs under v2, and batch 3 runs while
another thread swaps the schema back and forth (``workloads.data_etl.run_etl``, the same driver and the
same rows for every mode). Workers read (schema, version) from one store snapshot per row, through the
public worker API (``slither.worker.store.snapshot``), and record the version they used; the host checks
every verdict against that version. The threaded baselines read a shared config per row the same way.
"""

from __future__ import annotations

from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, measure_pool
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import data_etl as w

NAME = "data_etl"
TITLE = "Data ETL: hot reload under contention"
SUMMARY = "schema hot reload while workers validate (atomic snapshots) vs a dict mutated in place (torn reads)"
REQUIRES: list[tuple[str, str]] = []
MODULE = "slither.example.workloads.data_etl"


def _install(store: slither.Store, version: int) -> None:
    """Both tables in one atomic step: no reader can pair one version's schema with the other's number."""
    store.reload_tables({"schemas": {"current": w.SCHEMAS[version]}, "meta": {"version": version}})


def run(ctx: Context) -> Report:
    batches = w.generate(ctx.size, ctx.seed)
    ref = w.expected(batches)
    store = slither.Store()
    _install(store, 1)
    with slither.Pool(ctx.workers, store=store) as pool:
        pool.broadcast(f"{MODULE}:reset")

        def validate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return pool.map_batches(f"{MODULE}:validate_batch", rows, batch_size=100)

        (outs, switches), m = measure_pool(pool, lambda: w.run_etl(batches, validate_rows, lambda v: _install(store, v)))
        audits = [r.value for r in pool.broadcast(f"{MODULE}:audit_stats").values()]
        report = Report(NAME, TITLE, header(ctx, pool, ref["rows"]))

    torn_pairs = sum(1 for e in outs[2] if e["version"] != e["schema_says"])
    invariants = [Invariant(**i) for i in w.invariants(batches, ref, outs, sum(a["validations"] for a in audits),
                                                      sum(a["audit_log"] for a in audits))]
    invariants += [
        Invariant.equal("batch 3: (schema, version) pairs from different versions", 0, torn_pairs),
        Invariant.equal("workers where validations = audit log = valid + invalid", len(audits),
                        sum(1 for a in audits if a["validations"] == a["audit_log"] == a["valid"] + a["invalid"])),
    ]
    per_row_us = m.wall_s / ref["rows"] * 1e6
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, m.wall_s, m.mem_mb,
                           f"store swapped {switches} times during batch 3; one store snapshot per row "
                           f"({per_row_us:.0f} µs per row, all included)"))
    versions_b3 = sorted({e["version"] for e in outs[2]})
    report.details.append(f"  {ref['rows']} rows in 3 batches; batch 3 saw schema versions {versions_b3} while the "
                          f"schema switched {switches} times")
    report.details += [f"  worker pid {a['pid']}: {a['validations']} validations, audit log {a['audit_log']}, "
                       f"versions seen {a['versions_seen']}" for a in audits]
    rows, skipped = baseline_rows(ctx, NAME, batches, ref)
    report.rows += rows
    return finish(report, ctx, [], skipped)
