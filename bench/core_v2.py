"""Core v2 against the landed v1, multiprocessing.Pool and two floors, all in one run (issue 13's Benchmarks).

    python bench/core_v2.py --v1-python /path/to/venv-with-v1/bin/python [--rounds 5] [--quick]
    (bench/v1_venv.sh PATH builds that venv from the landed v1 commit)

This interpreter's slither is "v2"; the one ``--v1-python`` imports is "v1". Every measurement runs in a
fresh child process (bench/core_v2_probe.py), engines interleaved round by round so that a busy moment on
the machine does not land on one engine only; the spread of an engine's figure over the rounds is the
run's noise. Writes docs/benchmarks-core-v2.json and the "Core v2" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine, use_bytecode  # noqa: E402

PROBE = HERE / "core_v2_probe.py"
DOCS = HERE.parent / "docs"
BEGIN, END = "<!-- core-v2:begin -->", "<!-- core-v2:end -->"

# (key in the aggregated results, path in a probe's output, lower is better, label, unit)
METRICS = [
    ("call_p50_us", ("loop", "call", "p50_us"), True, "`pool.call` round trip p50", "µs"),
    ("call_p99_us", ("loop", "call", "p99_us"), True, "`pool.call` round trip p99", "µs"),
    ("auto_items_per_s", ("loop", "auto_items_per_s"), False, "x+1 items/s, automatic batch size", ""),
    ("one_items_per_s", ("loop", "one_per_batch_items_per_s"), False, "x+1 items/s, one item per batch (10,000)", ""),
    ("cpu_speedup", ("loop", "cpu_1ms", "speedup"), False, "1 ms CPU items, speedup over serial", "×"),
    ("hol_ms", ("loop", "head_of_line", "last_short_ms"), True, "20 short submits behind a 2 s call: last result", "ms"),
    ("echo_mb_per_s", ("loop", "echo_mb_per_s"), False, "100 KB echo (8 per batch)", "MB/s"),
    ("start_2_s", ("start", "start_2_s"), True, "cold start, 2 workers", "s"),
    ("start_64_s", ("start", "start_64_s"), True, "cold start, 64 workers", "s"),
    ("replace_ms", ("replace", "median_ms"), True, "SIGKILL to a ready replacement (median)", "ms"),
]
SCALES = (4, 64, 256)


def probe(python: str, engine: str, part: str, quick: bool, timeout: float = 1800) -> dict:
    cmd = [python, str(PROBE), engine, part] + (["--quick"] if quick else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"exit status {proc.returncode}: {proc.stderr.strip()[-1500:]}"}


def _get(d: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summarize(values: list[float]) -> dict:
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "values": values,
            "spread": (max(values) - min(values)) / med if med else 0.0}


def run(v1_python: str | None, rounds: int, quick: bool, log=print) -> dict:
    started = machine()
    engines = [("v2", sys.executable, "slither"), ("mp", sys.executable, "mp")]
    if v1_python:
        engines.insert(1, ("v1", v1_python, "slither"))
    raw: dict = {name: [] for name, _, _ in engines}
    floors: list[dict] = []
    for r in range(rounds):
        order = engines[r % len(engines):] + engines[: r % len(engines)]
        for name, python, kind in order:
            got = {part: probe(python, kind, part, quick) for part in ("loop", "start", "replace")}
            raw[name].append(got)
            log(f"round {r + 1} {name}: {json.dumps(got)}")
        floors.append(probe(sys.executable, "floor", "floors", quick))
        log(f"round {r + 1} floors: {json.dumps(floors[-1])}")
    scale: dict = {name: {} for name, _, _ in engines}
    for n in SCALES[:2] if quick else SCALES:
        for name, python, kind in engines:
            scale[name][str(n)] = probe(python, kind, f"scale:{n}", quick)
            log(f"scale {n} {name}: {json.dumps(scale[name][str(n)])}")

    summary: dict = {}
    for name, _, _ in engines:
        summary[name] = {}
        for key, path, _, _, _ in METRICS:
            vals = [v for v in (_get(g, path) for g in raw[name]) if isinstance(v, (int, float))]
            if vals:
                summary[name][key] = summarize(vals)
        bare = [v for v in (_get(g, ("start", "bare_python_s")) for g in raw[name]) if v]
        if bare:
            summary[name]["bare_python_s"] = summarize(bare)
        hol_order = [_get(g, ("loop", "head_of_line", "shorts_before_long")) for g in raw[name]]
        summary[name]["hol_all_before_long"] = hol_order
    fl: dict = {}
    for key, path in [("ping_p50_us", ("ping_pong", "p50_us")), ("ping_p99_us", ("ping_pong", "p99_us")),
                      ("call_p50_us", ("call", "p50_us")), ("call_p99_us", ("call", "p99_us")),
                      ("one_items_per_s", ("one_per_roundtrip_items_per_s",)), ("echo_mb_per_s", ("echo_mb_per_s",))]:
        vals = [v for v in (_get(f, path) for f in floors) if isinstance(v, (int, float))]
        if vals:
            fl[key] = summarize(vals)
    errors = [f"{name} round {i + 1} {part}: {g[part]['error']}" for name in raw for i, g in enumerate(raw[name])
              for part in g if "error" in g[part]]
    errors += [f"scale {n} {name}: {v['error']}" for name in scale for n, v in scale[name].items() if "error" in v]
    errors += [f"floors round {i + 1}: {f['error']}" for i, f in enumerate(floors) if "error" in f]
    return {"machine": started, "rounds": rounds, "quick": quick, "engines": [e[0] for e in engines],
            "echo_batch_bytes": echo_batch_bytes(),
            "engine_info": {name: _get(raw[name][0], ("loop", "engine")) for name in raw},
            "summary": summary, "floors": fl, "scale": scale, "errors": errors, "raw": raw, "raw_floors": floors}


def echo_batch_bytes() -> dict:
    """What a batch of 8 echo payloads pickles to: the landed benchmark's list (one object 8 times) vs distinct ones."""
    import pickle

    same = [b"x" * 100_000] * 8
    distinct = [bytes([i]) * 100_000 for i in range(8)]
    return {"one_object_8_times": len(pickle.dumps(("echo", "item", same), 5)),
            "distinct": len(pickle.dumps(("echo", "item", distinct), 5))}


# -- verdicts -----------------------------------------------------------------------------------------------
def verdicts(r: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, noise, passed) for every ratio the issue asks for."""
    s, fl = r["summary"], r["floors"]
    v2, v1, mp = s.get("v2", {}), s.get("v1", {}), s.get("mp", {})
    out: list[tuple[str, str, str, bool | None]] = []
    for key, _, lower, label, _ in METRICS:
        if key not in v2 or key not in v1:
            out.append((f"v2 not slower than v1: {label}", "v1 not measured", "", None))
            continue
        a, b = v2[key]["median"], v1[key]["median"]
        worse = (a / b - 1) if lower else (b / a - 1)  # how much worse v2 is (negative: better)
        noise = max(v2[key]["spread"], v1[key]["spread"])
        out.append((f"v2 not slower than v1: {label}",
                    f"v2 {_fmt(a)} vs v1 {_fmt(b)}: {_ratio_words(worse)}", f"±{noise * 100:.0f}%", worse <= noise))
    if "one_items_per_s" in v2 and "one_items_per_s" in mp:
        ratio = v2["one_items_per_s"]["median"] / mp["one_items_per_s"]["median"]
        noise = max(v2["one_items_per_s"]["spread"], mp["one_items_per_s"]["spread"])
        out.append(("`batch_size=1` items/s ≥ multiprocessing.Pool chunksize=1", f"{ratio:.2f}×", f"±{noise * 100:.0f}%",
                    ratio >= 1))
    if "call_p50_us" in v2 and "call_p50_us" in mp:
        ratio = v2["call_p50_us"]["median"] / mp["call_p50_us"]["median"]
        noise = max(v2["call_p50_us"]["spread"], mp["call_p50_us"]["spread"])
        out.append(("`pool.call` p50 ≤ multiprocessing.Pool.apply p50", f"{ratio:.2f}×", f"±{noise * 100:.0f}%", ratio <= 1))
        ratio = v2["call_p99_us"]["median"] / mp["call_p99_us"]["median"]
        noise = max(v2["call_p99_us"]["spread"], mp["call_p99_us"]["spread"])
        out.append(("`pool.call` p99 ≤ ½ multiprocessing.Pool.apply p99", f"{ratio:.2f}×", f"±{noise * 100:.0f}%",
                    ratio <= 0.5))
    if "start_2_s" in v2 and "bare_python_s" in v2:
        ratio = v2["start_2_s"]["median"] / v2["bare_python_s"]["median"]
        noise = max(v2["start_2_s"]["spread"], v2["bare_python_s"]["spread"])
        out.append(("cold start of 2 workers ≤ 3× a bare `python -c pass`", f"{ratio:.2f}×", f"±{noise * 100:.0f}%",
                    ratio <= 3))
    sc2, sc1 = r["scale"].get("v2", {}), r["scale"].get("v1", {})
    if "4" in sc2 and "64" in sc2 and "host_threads" in sc2["4"] and "host_threads" in sc2["64"]:
        d = sc2["64"]["host_threads"] - sc2["4"]["host_threads"]
        out.append(("host threads, 64 workers − 4 workers ≤ 2", f"{d}", "exact", d <= 2))
    for n in ("4", "64", "256"):
        a, b = sc2.get(n, {}), sc1.get(n, {})
        if "host_threads" in a and "host_threads" in b:
            out.append((f"v2 not more host threads than v1 ({n} workers)", f"{a['host_threads']} vs {b['host_threads']}",
                        "exact", a["host_threads"] <= b["host_threads"]))
        if "host_rss_mb" in a and "host_rss_mb" in b:
            out.append((f"v2 host RSS not above v1 ({n} workers)", f"{a['host_rss_mb']:.0f} vs {b['host_rss_mb']:.0f} MB",
                        "one sample", a["host_rss_mb"] <= b["host_rss_mb"] * 1.05))
    if "ping_p50_us" in fl and "call_p50_us" in v2:
        out.append(("(floor) `pool.call` p50 over the 1-byte ping-pong p50",
                    f"{v2['call_p50_us']['median'] / fl['ping_p50_us']['median']:.1f}×", "", None))
        out.append(("(floor) `pool.call` p50 over the raw-pipe pickled call p50",
                    f"{v2['call_p50_us']['median'] / fl['call_p50_us']['median']:.2f}×", "", None))
    return out


def _ratio_words(worse: float) -> str:
    if worse <= 0:
        return f"v2 {abs(worse) * 100:.0f}% better"
    return f"v2 {worse * 100:.0f}% worse"


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}"


# -- the docs section ---------------------------------------------------------------------------------------
def markdown(r: dict) -> str:
    m, s, fl = r["machine"], r["summary"], r["floors"]
    names = r["engines"]
    label = {"v2": "slither v2", "v1": "slither v1 (landed, 1af801d)", "mp": "multiprocessing.Pool (spawn)"}
    lines = [
        BEGIN,
        "## Core v2 against v1 and multiprocessing.Pool (issue 13)",
        "",
        f"Measured by `python bench/core_v2.py --v1-python ... --rounds {r['rounds']}`: {m['date']}, "
        f"{m['cores']} cores ({m['cpu']}), Python {m['python']}, load average {m['load_before']:.2f} before and "
        f"{m.get('load_after', 0):.2f} after{' (QUICK run: small sizes, numbers mean little)' if r['quick'] else ''}.",
        "All engines have 2 workers; v2, v1 and multiprocessing.Pool are measured in the same run, each in a fresh",
        f"process, interleaved over {r['rounds']} rounds. Each cell is the median over the rounds; the range",
        "after it (min–max over the rounds) is the run's noise; a verdict's noise is (max − min)/median of the",
        "noisier of the two engines compared.",
        "",
        "| measurement | " + " | ".join(label[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, _, _, text, unit in METRICS:
        cells = []
        for n in names:
            v = s.get(n, {}).get(key)
            cells.append("" if v is None else f"{_fmt(v['median'])}{unit and ' ' + unit} ({_fmt(v['min'])}–{_fmt(v['max'])})")
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    bare = s.get("v2", {}).get("bare_python_s")
    hol = {n: s.get(n, {}).get("hol_all_before_long") for n in names}
    lines += [
        "",
        "Every short result arrived while the long call was still running: "
        + "; ".join(f"{label[n]}: {sum(1 for x in hol[n] if x)} of {len(hol[n])} rounds" for n in names) + ".",
    ]
    mp_raw = r["raw"].get("mp", [])
    killed = sum(_get(g, ("replace", "kills")) or 0 for g in mp_raw if "error" not in g.get("replace", {}))
    wedged = sum(_get(g, ("replace", "wedged_after_kill")) or 0 for g in mp_raw)
    if killed:
        lines.append(f"multiprocessing.Pool ran no further task after {wedged} of its {killed} replacements: an idle "
                     "worker waits for tasks holding the task queue's lock, and a SIGKILL there takes the lock with "
                     "it (its `terminate()` then waits for ever too). slither's pools ran a call after every one.")
    if bare:
        lines.append(f"A bare `python -c pass` start took {bare['median'] * 1000:.0f} ms "
                     f"({bare['min'] * 1000:.0f}–{bare['max'] * 1000:.0f}).")
    if fl:
        lines += [
            "",
            "**Floors** (same run, two Python processes, no pool): a 1-byte ping-pong over a pair of pipes "
            f"(the transport limit) p50 {_fmt(fl['ping_p50_us']['median'])} µs, p99 {_fmt(fl['ping_p99_us']['median'])} µs; "
            f"the same tiny pickled call over a raw pipe (the Python limit) p50 {_fmt(fl['call_p50_us']['median'])} µs, "
            f"p99 {_fmt(fl['call_p99_us']['median'])} µs; one item per round trip "
            f"{_fmt(fl['one_items_per_s']['median'])} items/s (no pipelining, one process); the 100 KB echo, 8 per round "
            f"trip, {_fmt(fl['echo_mb_per_s']['median'])} MB/s.",
        ]
    eb = r.get("echo_batch_bytes")
    v2e, fle = s.get("v2", {}).get("echo_mb_per_s"), fl.get("echo_mb_per_s")
    if eb and v2e and fle:
        lines += [
            "",
            "**The 100 KB echo, corrected.** The landed table's figure (slither 4,438 MB/s, ten times a 448 MB/s floor)",
            "mapped `[b\"x\" * 100_000] * n`, one object n times. pickle writes an object once per dump and refers",
            f"back to it afterwards, so a batch of 8 pickled to {eb['one_object_8_times']:,} bytes instead of "
            f"{eb['distinct']:,} (measured in this run), and the figure counted eight times the bytes that moved; its",
            "floor meanwhile sent one payload per round trip, not a batch of 8. Both were wrong. Now every engine and",
            f"the floor echo distinct objects, 8 per round trip: v2 {_fmt(v2e['median'])} MB/s against the floor's "
            f"{_fmt(fle['median'])} MB/s ({v2e['median'] / fle['median']:.2f}×; the floor is one process on one pipe,",
            "the pools have 2 workers).",
        ]
    lines += ["", "### Host threads and memory with idle workers (one sample each)", "",
              "| workers | " + " | ".join(f"{label[n]}: host threads / host RSS MB / workers' PSS MB" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for n in SCALES:
        cells = []
        for e in names:
            v = r["scale"].get(e, {}).get(str(n))
            if not v:
                cells.append("not measured")
            elif "error" in v:
                cells.append("failed (see the JSON)")
            else:
                cells.append(f"{v['host_threads']} / {v['host_rss_mb']:.0f} / {v['children_pss_mb']:,.0f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "### Targets", "", "| target | measured | noise | verdict |", "|---|---|---|---|"]
    for target, measured, noise, ok in verdicts(r):
        lines.append(f"| {target} | {measured} | {noise} | {'—' if ok is None else 'PASS' if ok else 'MISS'} |")
    if r["errors"]:
        lines += ["", "Failures during the run:", ""] + [f"- {e}" for e in r["errors"]]
    lines += [
        "",
        "How each figure is taken (bench/core_v2_probe.py): round trips are 2,000 `pool.call(ident, i)` after 50",
        "warm-up calls (multiprocessing: `Pool.apply`); throughput maps `x + 1` over 200,000 items with the",
        "automatic batch size (multiprocessing: its default chunksize) and over 10,000 items with one item per",
        "batch (multiprocessing: `chunksize=1`); CPU items are 2,000 calls of `workloads.cpu_1ms` in batches of 10",
        "against the same loop run serially in that process; the head-of-line figure submits a 2 s sleep,",
        "waits 0.25 s, submits 20 `ident` calls and times the last one's result; the echo maps 1,000 distinct",
        "100 KB `bytes` objects, 8 per batch; cold start is the pool's constructor until every worker is ready",
        "(multiprocessing: until each worker's initializer ran, since its constructor does not wait); replacement",
        "SIGKILLs worker 0 of an idle pool 20 times and polls until the new one is ready, then runs a call",
        "(multiprocessing: 6 fresh pools per round, one kill each, until the replacement's initializer ran). Threads and RSS are read from `/proc` after a map, a call and a submit; the workers'",
        "PSS is summed over every descendant process (for slither, including its reaper).",
        "",
        "Reproduce: `bench/v1_venv.sh /tmp/v1` builds the landed v1 into a venv, then",
        "`python bench/core_v2.py --v1-python /tmp/v1/bin/python` from a venv with this checkout built",
        "(`maturin develop --release`) and multiprocessing's peers installed. The raw numbers are in",
        "`docs/benchmarks-core-v2.json`.",
        END,
    ]
    return "\n".join(lines)


def splice(doc: Path, section: str) -> None:
    """Puts ``section`` in place of the marked one in ``doc`` (or at its end)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def existing_section(doc: Path) -> str | None:
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        return text[text.index(BEGIN): text.index(END) + len(END)]
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--v1-python", default=os.environ.get("SLITHER_V1_PYTHON"),
                    help="an interpreter whose slither is the landed v1 (see bench/v1_venv.sh)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the harness, numbers mean little")
    ap.add_argument("--out", default=str(DOCS / "benchmarks.md"))
    a = ap.parse_args()
    use_bytecode(*[p for p in (sys.executable, a.v1_python) if p])
    r = run(a.v1_python, a.rounds, a.quick)
    r["machine"]["load_after"] = os.getloadavg()[0]
    out = Path(a.out)
    out.with_name("benchmarks-core-v2.json").write_text(json.dumps(r, indent=2))
    section = markdown(r)
    splice(out, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
