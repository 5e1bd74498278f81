"""A preload module whose import never finishes in time (tests/test_warm.py)."""

import time

time.sleep(60)
