"""A preload module that imports until the file named by $SLITHER_TEST_BREAK_PRELOAD exists, then fails."""

import os

if os.path.exists(os.environ.get("SLITHER_TEST_BREAK_PRELOAD", "/nonexistent")):
    raise ImportError("the preload broke after the pool started")
