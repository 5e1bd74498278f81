"""A preload module with a side effect: each process that imports it appends its pid to $SLITHER_TEST_PRELOAD_LOG."""

import os

_log = os.environ.get("SLITHER_TEST_PRELOAD_LOG")
if _log:
    with open(_log, "a") as f:
        f.write(f"{os.getpid()}\n")
IMPORTED_BY = os.getpid()
