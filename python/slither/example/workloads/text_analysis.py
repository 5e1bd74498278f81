"""text_analysis: per-worker accumulation of word counts (the racy code, safe in a process).

Worker state lives in module globals (``_index``, ``_doc_count``): in a slither worker each process has
its own; in the threaded baselines every thread shares one.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from typing import Any

from slither.example._measure import run_threads

VOCABULARY = ["good", "bad", "excellent", "terrible", "service", "quality", "today", "result", "happy", "sad", "amazing", "awful", "fast", "slow", "reliable", "broken", "love", "hate", "recommend", "avoid", "product", "team", "experience", "delivery", "price", "support", "feedback", "performance", "design", "usability", "innovation", "problem", "solution", "customer", "value", "improve"]
POSITIVE = {"good", "excellent", "happy", "amazing", "love", "recommend", "reliable", "fast", "improve", "value"}
NEGATIVE = {"bad", "terrible", "sad", "awful", "hate", "avoid", "broken", "slow", "problem"}
FILLER = ("the", "a", "and", "of", "to", "is", "it", "in", "for", "with", "this", "that", "was", "very")
STOPWORDS = sorted(set(FILLER) | {"an", "be", "on", "at", "by", "or", "as", "are", "but", "not"})
SIZES = {"small": 500, "default": 5000, "large": 50000}
THRESHOLD = 0.15
_TOKEN = re.compile(r"\b\w+\b")


def generate(size: str = "default", seed: int = 42) -> list[str]:
    """Documents of 16–65 words from the vocabulary, with stopwords mixed in (seeded, reproducible)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(SIZES[size]):
        n = 15 + rng.randint(1, 50)
        words = [rng.choice(VOCABULARY) if rng.random() < 0.8 else rng.choice(FILLER) for _ in range(n)]
        docs.append(" ".join(words))
    return docs


def analyze(text: str, stopwords: frozenset[str]) -> tuple[Counter[str], float]:
    tokens = _TOKEN.findall(text.lower())
    counts = Counter(t for t in tokens if t not in stopwords)
    pos = sum(c for w, c in counts.items() if w in POSITIVE)
    neg = sum(c for w, c in counts.items() if w in NEGATIVE)
    return counts, round((pos - neg) / max(len(tokens), 1), 4)


def serial_reference(docs: list[str]) -> dict[str, int]:
    total: Counter[str] = Counter()
    stop = frozenset(STOPWORDS)
    for d in docs:
        total.update(analyze(d, stop)[0])
    return dict(total)


# -- worker side ------------------------------------------------------------------------------
_index: dict[str, int] = {}
_doc_count = 0
_stopwords: frozenset[str] | None = None


def reset() -> int:
    global _doc_count, _stopwords
    _index.clear()
    _doc_count = 0
    _stopwords = None
    return os.getpid()


def _worker_stopwords() -> frozenset[str]:
    """Read once per worker from the pool's store (not copied into every payload)."""
    global _stopwords
    if _stopwords is None:
        from slither.worker import store

        _stopwords = frozenset(store.keys("stopwords"))
    return _stopwords


def analyze_batch(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Analyzes each document and accumulates into this worker's globals: ``_index[w] += c``."""
    global _doc_count
    stop = _worker_stopwords()
    out = []
    for doc in docs:
        counts, sentiment = analyze(doc["text"], stop)
        for w, c in counts.items():
            _index[w] = _index.get(w, 0) + c
        _doc_count += 1
        out.append({"id": doc["id"], "words": sum(counts.values()), "sentiment": sentiment})
    return out


def worker_stats() -> dict[str, Any]:
    return {"pid": os.getpid(), "doc_count": _doc_count, "index": dict(_index)}


# -- threaded baselines -----------------------------------------------------------------------
class _Shared:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.doc_count = 0


def unsafe_threaded(docs: list[str], threads: int) -> tuple[int, dict[str, int]]:
    """The naive code: every thread does ``index[w] = index.get(w, 0) + c`` and ``doc_count += 1`` on shared state."""
    shared = _Shared()
    stop = frozenset(STOPWORDS)

    def work(k: int) -> None:
        for d in docs[k::threads]:
            counts, _ = analyze(d, stop)
            for w, c in counts.items():
                shared.index[w] = shared.index.get(w, 0) + c
            shared.doc_count += 1

    run_threads(threads, work)
    return shared.doc_count, shared.index


def safe_threaded(docs: list[str], threads: int) -> tuple[int, dict[str, int]]:
    """Thread-local counters merged after the threads finish."""
    stop = frozenset(STOPWORDS)
    parts: list[tuple[int, Counter[str]]] = [(0, Counter()) for _ in range(threads)]

    def work(k: int) -> None:
        local: Counter[str] = Counter()
        n = 0
        for d in docs[k::threads]:
            local.update(analyze(d, stop)[0])
            n += 1
        parts[k] = (n, local)

    run_threads(threads, work)
    total: Counter[str] = Counter()
    for _, c in parts:
        total.update(c)
    return sum(n for n, _ in parts), dict(total)



def baseline_invariants(docs: list[str], doc_count: int, index: dict[str, int], reference: dict[str, int]) -> list[dict]:
    wrong = sum(1 for w in reference if index.get(w) != reference[w])
    return [
        {"name": "documents counted", "expected": len(docs), "observed": doc_count, "ok": doc_count == len(docs)},
        {"name": "word occurrences", "expected": sum(reference.values()), "observed": sum(index.values()),
         "ok": sum(index.values()) == sum(reference.values())},
        {"name": "words with a wrong count", "expected": 0, "observed": wrong, "ok": wrong == 0},
    ]


def baselines(docs: list[str], threads: int) -> list[tuple[str, Any]]:
    """The threaded modes, each a callable returning (invariants, note), run on the same documents."""
    reference = serial_reference(docs)

    def unsafe() -> tuple[list[dict], str]:
        n, index = unsafe_threaded(docs, threads)
        return baseline_invariants(docs, n, index, reference), "shared dict and counter, no lock"

    def safe() -> tuple[list[dict], str]:
        n, index = safe_threaded(docs, threads)
        return baseline_invariants(docs, n, index, reference), "thread-local counters merged after"

    return [("unsafe_threaded", unsafe), ("safe_threaded", safe)]
