"""Worker-importable batch functions for the pipe tests."""

from __future__ import annotations


def times_ten(batch):
    return [x * 10 for x in batch]


def fail_if_contains(batch, bad=13):
    if any(x % 100 == bad for x in batch):
        raise ValueError(f"batch holds {bad}")
    return list(batch)
