"""image_pipeline: backpressure and memory.

Images are generated in the workers, then thumbnailed (150 px wide) in batches weighted by pixel count,
with at most 4 batches in flight. An unbounded pool of threads decoding every image at once is the
baseline: its peak memory is measured against slither's.
"""

from __future__ import annotations

import io
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SIZES = {"small": (10, 16, 10, 4), "default": (50, 80, 50, 20), "large": (100, 160, 100, 40)}
TARGET_WIDTH = 150
REQUIRES = ("PIL",)


def generate(size: str = "default", seed: int = 42) -> list[dict[str, Any]]:
    small, medium, large, xl = SIZES[size]
    rng = random.Random(seed)
    specs = []
    for _ in range(small):
        specs.append((100 + rng.randint(1, 300), 100 + rng.randint(1, 300), "small"))
    for _ in range(medium):
        specs.append((500 + rng.randint(1, 780), 400 + rng.randint(1, 520), "medium"))
    specs += [(1920, 1080, "large-1080p")] * large + [(3840, 2160, "xl-4k")] * xl
    out = []
    for i, (w, h, label) in enumerate(specs):
        out.append({"id": i, "width": w, "height": h, "label": label,
                    "color": (rng.randint(1, 255), rng.randint(1, 255), rng.randint(1, 255))})
    rng.shuffle(out)
    return out


def render(spec: dict[str, Any]) -> bytes:
    """A PNG with a gradient, so that resizing has real work to do and real pixels to get wrong."""
    from PIL import Image, ImageDraw

    w, h = spec["width"], spec["height"]
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    overlay = Image.new("RGB", (w, h), tuple(spec["color"]))
    img = Image.blend(img, overlay, 0.5)
    ImageDraw.Draw(img).text((10, 10), f"{spec['label']} #{spec['id']}", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def thumbnail(png: bytes) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    img.load()
    w, h = img.size
    thumb = img.resize((TARGET_WIDTH, max(1, int(h * TARGET_WIDTH / w))), Image.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return buf.getvalue()


def pixels(png: bytes) -> tuple[tuple[int, int], bytes]:
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    return img.size, img.tobytes()


# -- worker side ------------------------------------------------------------------------------
_processed = 0


def render_batch(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": s["id"], "pixels": s["width"] * s["height"], "png": render(s)} for s in specs]


def thumbnail_batch(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    global _processed
    out = []
    for im in images:
        out.append({"id": im["id"], "thumb": thumbnail(im["png"])})
        _processed += 1
    return out


def worker_state() -> dict[str, Any]:
    return {"pid": os.getpid(), "processed": _processed}


def reset() -> int:
    global _processed
    _processed = 0
    return os.getpid()


# -- threaded baselines -----------------------------------------------------------------------
def _available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in REQUIRES)


def reference(specs: list[dict[str, Any]]) -> dict[int, tuple[tuple[int, int], bytes]]:
    return {s["id"]: pixels(thumbnail(render(s))) for s in specs}


def baselines(specs: list[dict[str, Any]], threads: int) -> list[tuple[str, Any]]:
    if not _available():
        return []
    ref = reference(specs)

    def run(n_threads: int, label: str) -> tuple[list[dict], str]:
        def one(s: dict[str, Any]) -> tuple[int, bytes]:
            return s["id"], thumbnail(render(s))

        with ThreadPoolExecutor(n_threads) as ex:
            results = list(ex.map(one, specs))
        wrong = sum(1 for i, t in results if pixels(t) != ref[i])
        narrow = sum(1 for _, t in results if pixels(t)[0][0] != TARGET_WIDTH)
        return [
            {"name": "thumbnails", "expected": len(specs), "observed": len(results), "ok": len(results) == len(specs)},
            {"name": f"thumbnails not {TARGET_WIDTH} px wide", "expected": 0, "observed": narrow, "ok": narrow == 0},
            {"name": "thumbnails differing from the serial reference", "expected": 0, "observed": wrong,
             "ok": wrong == 0},
        ], label

    return [
        ("unbounded_threads (16 threads)", lambda: run(16, "16 threads, every image decoded at once, no bound on memory")),
        ("bounded_threads", lambda: run(threads, f"{threads} threads")),
    ]
