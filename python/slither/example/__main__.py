"""``python -m slither.example``: list the demos, run one or all, compare with threaded baselines.

Exit status:
  0  every slither-side invariant held in every example that ran
  1  a slither-side invariant failed (the report says which)
  2  usage or environment: a bad option, a --baseline-python that is not a usable Python, an optional
     package missing (scikit-learn for ml_scoring, Pillow for image_pipeline; with --all the others
     still run), or the baselines failing in another interpreter
An unsafe baseline getting the wrong answer is the expected result and never changes the status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from slither.example import EXAMPLES, load, missing_packages

OK, INVARIANT_FAILED, USAGE = 0, 1, 2
_PRECEDENCE = {OK: 0, USAGE: 1, INVARIANT_FAILED: 2}  # a failed invariant outranks an environment problem


def _worse(a: int, b: int) -> int:
    return max(a, b, key=_PRECEDENCE.__getitem__)


def _list() -> None:
    print("slither examples (python -m slither.example NAME):\n")
    for name in EXAMPLES:
        mod = load(name)
        needs = missing_packages(mod)
        req = ", ".join(p for _, p in getattr(mod, "REQUIRES", [])) or "stdlib only"
        status = f"needs: {', '.join(needs)}" if needs else "ready"
        print(f"  {name:<16} {mod.SUMMARY}\n  {'':<16} [{req}; {status}]")
    print('\nOptional packages: pip install "slither[examples]"')


def _install(packages: list[str]) -> bool:
    cmd = [sys.executable, "-m", "pip", "install", *packages]
    print(f"installing with: {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd).returncode == 0


def _parser() -> argparse.ArgumentParser:
    from slither.example._harness import SIZES

    parser = argparse.ArgumentParser(prog="python -m slither.example", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="example to run (omit to list them)")
    parser.add_argument("--all", action="store_true", help="run every example")
    parser.add_argument("--no-baseline", action="store_true", help="skip the threaded baselines and their notes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="worker processes (default: cores); the baselines use as many threads")
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", metavar="PATH", help="also write the reports as JSON")
    parser.add_argument("--baseline-python", metavar="PATH", action="append", default=[],
                        help="also run the threaded baselines under this interpreter (e.g. python3.13t)")
    parser.add_argument("--install-deps", action="store_true",
                        help="install an example's missing packages with this interpreter's pip")
    parser.add_argument("--verbose", action="store_true", help="print full crash dumps (batch_stats)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from slither.errors import ConfigError
    from slither.example._harness import Context, check_baseline_python

    parser = _parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not args.name and not args.all:
        _list()
        return OK
    if args.name and args.all:
        parser.error("give an example name or --all, not both")
    if args.name and args.name not in EXAMPLES:
        parser.error(f"unknown example {args.name!r}; choose from {', '.join(EXAMPLES)}")
    if args.no_baseline and args.baseline_python:
        parser.error("--baseline-python runs baselines; it cannot be combined with --no-baseline")
    for py in args.baseline_python:
        try:
            check_baseline_python(py)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return USAGE

    ctx = Context(workers=args.workers, size=args.size, seed=args.seed, baselines=not args.no_baseline,
                  baseline_python=args.baseline_python, verbose=args.verbose)
    reports = []
    status = OK
    for name in [args.name] if args.name else list(EXAMPLES):
        mod = load(name)
        needs = missing_packages(mod)
        if needs and args.install_deps:
            if not _install(needs):
                print(f"{name}: installing {', '.join(needs)} failed", file=sys.stderr)
            needs = missing_packages(mod)
        if needs:
            cmd = f'{sys.executable} -m pip install {" ".join(needs)}   (or: pip install "slither[examples]")'
            print(f"{name}: not run, it needs {', '.join(needs)}. Install with:\n  {cmd}\n"
                  "or rerun with --install-deps.\n", file=sys.stderr)
            status = _worse(status, USAGE)
            continue
        try:
            report = mod.run(ctx)
        except (ConfigError, RuntimeError) as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            status = _worse(status, USAGE)
            continue
        print(report, flush=True)
        print()
        reports.append(report)
        if not report.slither_ok:
            status = _worse(status, INVARIANT_FAILED)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in reports], f, indent=2, default=str)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
