"""The machine a benchmark ran on, recorded beside its numbers (cores, CPU, Python, OS, date, load)."""

from __future__ import annotations

import datetime
import os
import platform


def machine() -> dict:
    """``{"cores", "cpu", "python", "os", "date", "load_before"}``; ``load_before`` is the 1-minute load average."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "os": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_before": os.getloadavg()[0]}


def use_bytecode(*pythons: str) -> None:
    """Makes every process this benchmark starts run slither from compiled bytecode, as an installed package does.

    A shell that sets ``PYTHONDONTWRITEBYTECODE`` makes an editable checkout compile slither's modules from
    source at every interpreter start, worker starts included, while the peers' standard-library modules
    ship compiled: that measured the compiler, not the pool. This unsets it (for this process and all it
    starts) and compiles the slither each of ``pythons`` (default: this interpreter) imports.
    """
    import subprocess
    import sys

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    code = "import compileall, os, slither; compileall.compile_dir(os.path.dirname(slither.__file__), quiet=1)"
    for python in pythons or (sys.executable,):
        subprocess.run([python, "-c", code], check=False, capture_output=True)
