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

RACE_PASSES = 5
"""The unsafe baseline runs this many times; the report counts the passes that broke an invariant."""


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


def classify(sentiment: float) -> str:
    """The sentiment bucket of a document (slither's router and the baselines use the same rule)."""
    return "positive" if sentiment > THRESHOLD else "negative" if sentiment < -THRESHOLD else "default"


def expected(docs: list[str]) -> dict[str, Any]:
    """The serial reference: word counts over every document, and documents per bucket."""
    total: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    stop = frozenset(STOPWORDS)
    for d in docs:
        counts, sentiment = analyze(d, stop)
        total.update(counts)
        buckets[classify(sentiment)] += 1
    return {"index": dict(total), "buckets": dict(sorted(buckets.items()))}


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
# Both do what a slither run does per document: analyze it, add its counts to the index, count it, and
# put it in a sentiment bucket.
class _Shared:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.doc_count = 0
        self.buckets: dict[str, int] = {}


def unsafe_threaded(docs: list[str], threads: int) -> tuple[int, dict[str, int], dict[str, int]]:
    """The naive code: every thread does ``index[w] = index.get(w, 0) + c``, ``doc_count += 1`` and
    ``buckets[b] += 1`` on shared state."""
    shared = _Shared()
    stop = frozenset(STOPWORDS)

    def work(k: int) -> None:
        for d in docs[k::threads]:
            counts, sentiment = analyze(d, stop)
            for w, c in counts.items():
                shared.index[w] = shared.index.get(w, 0) + c
            shared.doc_count += 1
            b = classify(sentiment)
            shared.buckets[b] = shared.buckets.get(b, 0) + 1

    run_threads(threads, work)
    return shared.doc_count, shared.index, shared.buckets


def safe_threaded(docs: list[str], threads: int) -> tuple[int, dict[str, int], dict[str, int]]:
    """Thread-local counters merged after the threads finish."""
    stop = frozenset(STOPWORDS)
    parts: list[tuple[int, Counter[str], Counter[str]]] = [(0, Counter(), Counter()) for _ in range(threads)]

    def work(k: int) -> None:
        index: Counter[str] = Counter()
        buckets: Counter[str] = Counter()
        n = 0
        for d in docs[k::threads]:
            counts, sentiment = analyze(d, stop)
            index.update(counts)
            n += 1
            buckets[classify(sentiment)] += 1
        parts[k] = (n, index, buckets)

    run_threads(threads, work)
    index: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    for _, i, b in parts:
        index.update(i)
        buckets.update(b)
    return sum(n for n, _, _ in parts), dict(index), dict(buckets)


def invariants(docs: list[str], ref: dict[str, Any], doc_count: int, index: dict[str, int],
               buckets: dict[str, int]) -> list[dict[str, Any]]:
    """The checks every mode answers, as plain dicts (they cross interpreters as JSON)."""
    reference = ref["index"]
    wrong = sum(1 for w in reference if index.get(w) != reference[w])
    words = sum(reference.values())
    observed_buckets = dict(sorted(buckets.items()))
    return [
        {"name": "documents counted", "expected": len(docs), "observed": doc_count, "ok": doc_count == len(docs)},
        {"name": "word occurrences", "expected": words, "observed": sum(index.values()),
         "ok": sum(index.values()) == words},
        {"name": "words with a wrong count", "expected": 0, "observed": wrong, "ok": wrong == 0},
        {"name": "documents per bucket", "expected": ref["buckets"], "observed": observed_buckets,
         "ok": observed_buckets == ref["buckets"]},
    ]


def baselines(docs: list[str], ref: dict[str, Any], threads: int) -> list[tuple[str, Any]]:
    """The threaded modes, each a callable returning (invariants, note), run on the same documents."""

    def unsafe() -> tuple[list[dict[str, Any]], str]:
        return invariants(docs, ref, *unsafe_threaded(docs, threads)), "shared dicts and counter, no lock"

    def safe() -> tuple[list[dict[str, Any]], str]:
        return invariants(docs, ref, *safe_threaded(docs, threads)), "thread-local counters merged after"

    return [(f"unsafe_threaded ({threads} threads)", unsafe), (f"safe_threaded ({threads} threads)", safe)]
