"""Comparison reports: one table per example, rendered as text, HTML (Jupyter) and JSON.

Only stdlib here: the baseline runner imports it inside other interpreters (e.g. a free-threaded build
without slither's extension).
"""

from __future__ import annotations

import html
import json
import platform
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from typing import Any


def interpreter_label() -> str:
    """E.g. "CPython 3.13.1 free-threaded build, GIL off": the build flag and the GIL's state now."""
    build = " free-threaded build" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"{platform.python_implementation()} {platform.python_version()}{build}, GIL {'on' if gil_enabled() else 'off'}"


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


@dataclass
class Invariant:
    name: str
    expected: Any
    observed: Any
    ok: bool

    @classmethod
    def equal(cls, name: str, expected: Any, observed: Any) -> Invariant:
        return cls(name, expected, observed, expected == observed)

    @classmethod
    def close(cls, name: str, expected: float, observed: float, rel: float = 1e-9, abs_: float = 1e-6) -> Invariant:
        ok = abs(expected - observed) <= max(abs_, rel * max(abs(expected), abs(observed)))
        return cls(name, round(expected, 9), round(observed, 9), ok)


@dataclass
class Row:
    mode: str
    interpreter: str
    invariants: list[Invariant]
    wall_s: float
    mem_mb: float | None
    """Memory growth in MiB: resident high-water mark during the run minus resident memory before it
    (for slither, the host's growth plus each worker's)."""
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        return cls(d["mode"], d["interpreter"], [Invariant(**i) for i in d["invariants"]], d["wall_s"], d["mem_mb"],
                   d.get("note", ""))


@dataclass
class Report:
    example: str
    title: str
    header: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def slither_ok(self) -> bool:
        """Whether every invariant of the slither rows held (baseline failures never count against it)."""
        return all(r.ok for r in self.rows if r.mode.startswith("slither"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["slither_ok"] = self.slither_ok
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def __str__(self) -> str:
        out = [f"=== {self.title} ===", ""]
        out += [f"  {k}: {v}" for k, v in self.header.items()]
        if self.details:
            out.append("")
            out += self.details
        out.append("")
        width = max([30, *(len(r.mode) for r in self.rows)])
        out.append(f"  {'mode':<{width}} {'interpreter':<44} {'wall':>8} {'mem +MiB':>9}  result")
        for r in self.rows:
            mem = f"{r.mem_mb:9.1f}" if r.mem_mb is not None else f"{'-':>9}"
            out.append(f"  {r.mode:<{width}} {r.interpreter:<44} {r.wall_s:7.2f}s {mem}  {'OK' if r.ok else 'WRONG'}")
            for i in r.invariants:
                mark = "ok" if i.ok else "WRONG"
                out.append(f"      {mark:<5} {i.name}: expected {i.expected}, observed {i.observed}")
            if r.note:
                out.append(f"      note: {r.note}")
        if self.notes:
            out.append("")
            out += [f"  * {n}" for n in self.notes]
        out.append("")
        out.append(f"  slither invariants: {'all held' if self.slither_ok else 'VIOLATED'}")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in self.header.items())
        rows = []
        for r in self.rows:
            inv = "<br>".join(
                f"<span style='color:{'green' if i.ok else 'crimson'}'>{'✔' if i.ok else '✘'}</span> "
                f"{e(i.name)}: expected {e(str(i.expected))}, observed {e(str(i.observed))}"
                for i in r.invariants
            )
            mem = f"{r.mem_mb:.1f}" if r.mem_mb is not None else "-"
            color = "green" if r.ok else "crimson"
            rows.append(
                f"<tr><td>{e(r.mode)}</td><td>{e(r.interpreter)}</td><td>{inv}"
                f"{'<br><i>' + e(r.note) + '</i>' if r.note else ''}</td><td>{r.wall_s:.2f}s</td><td>{mem}</td>"
                f"<td style='color:{color}'><b>{'OK' if r.ok else 'WRONG'}</b></td></tr>"
            )
        details = "".join(f"<div><code>{e(d)}</code></div>" for d in self.details)
        notes = "".join(f"<li>{e(n)}</li>" for n in self.notes)
        return (
            f"<h3>{e(self.title)}</h3><ul>{head}</ul>{details}"
            "<table><tr><th>mode</th><th>interpreter</th><th>invariants</th><th>wall</th><th>mem +MiB</th>"
            f"<th>result</th></tr>{''.join(rows)}</table><ul>{notes}</ul>"
        )
