"""``python -m slither.example``: list the demos, run one or all, compare with threaded baselines.

Exit status: 0 when every slither-side invariant held, 1 when one did not, 2 for a usage error.
An unsafe baseline getting the wrong answer is the expected result and never changes the status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from slither.example import EXAMPLES, load, missing_packages


def _list() -> None:
    print("slither examples (python -m slither.example NAME):\n")
    for name in EXAMPLES:
        try:
            mod = load(name)
        except ImportError as exc:
            print(f"  {name:<16} (unavailable: {exc})")
            continue
        needs = missing_packages(mod)
        req = ", ".join(p for _, p in getattr(mod, "REQUIRES", [])) or "stdlib only"
        status = f"needs: {', '.join(needs)}" if needs else "ready"
        print(f"  {name:<16} {mod.SUMMARY}\n  {'':<16} [{req}; {status}]")
    print('\nOptional packages: pip install "slither[examples]"')


def _install(packages: list[str]) -> bool:
    cmd = [sys.executable, "-m", "pip", "install", *packages]
    print(f"installing with: {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slither.example", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="example to run (omit to list them)")
    parser.add_argument("--all", action="store_true", help="run every example whose packages are installed")
    parser.add_argument("--no-baseline", action="store_true", help="skip the threaded baselines")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="worker processes (default: cores)")
    parser.add_argument("--size", choices=("small", "default", "large"), default="default")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", metavar="PATH", help="also write the reports as JSON")
    parser.add_argument("--baseline-python", metavar="PATH", action="append", default=[],
                        help="also run the threaded baselines under this interpreter (e.g. python3.13t)")
    parser.add_argument("--install-deps", action="store_true",
                        help="install an example's missing packages with this interpreter's pip")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not args.name and not args.all:
        _list()
        return 0
    if args.name and args.name not in EXAMPLES:
        parser.error(f"unknown example {args.name!r}; choose from {', '.join(EXAMPLES)}")
    for py in args.baseline_python:
        if not os.path.exists(py):
            parser.error(f"--baseline-python {py}: no such interpreter")

    from slither.example._harness import Context

    ctx = Context(workers=args.workers, size=args.size, seed=args.seed, baselines=not args.no_baseline,
                  baseline_python=args.baseline_python)
    names = [args.name] if args.name else list(EXAMPLES)
    reports = []
    failed = False
    for name in names:
        mod = load(name)
        needs = missing_packages(mod)
        if needs and args.install_deps:
            if not _install(needs):
                print(f"{name}: installing {', '.join(needs)} failed", file=sys.stderr)
                failed = True
                continue
            needs = missing_packages(mod)
        if needs:
            cmd = f'{sys.executable} -m pip install {" ".join(needs)}   (or: pip install "slither[examples]")'
            print(f"{name}: skipped, it needs {', '.join(needs)}. Install with:\n  {cmd}\n"
                  f"or rerun with --install-deps.\n")
            if args.name:
                return 1
            continue
        report = mod.run(ctx)
        print(report, flush=True)
        print()
        reports.append(report)
        failed |= not report.slither_ok
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in reports], f, indent=2, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
