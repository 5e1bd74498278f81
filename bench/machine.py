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
