"""image_pipeline: backpressure and memory.

Every mode renders each image and thumbnails it 150 px wide. slither renders in the workers and
thumbnails in batches weighted by pixel count with at most 4 batches in flight. "Just use threads"
becomes a thread per image, all started at once (nothing bounds how many images are in memory); a
bounded thread pool is the careful version. Each mode's memory growth is measured.
"""

from __future__ import annotations

import io
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SIZES = {"small": (10, 16, 10, 4), "default": (50, 80, 50, 20), "large": (100, 160, 100, 40)}
TARGET_WIDTH = 150
BASELINE_REQUIRES = [("PIL", "Pillow")]


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
def preload() -> None:
    """Pool ``init``: import Pillow before the measured run, as the host already has for the baselines."""
    from PIL import Image, ImageDraw  # noqa: F401


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
def expected(specs: list[dict[str, Any]]) -> dict[int, tuple[tuple[int, int], bytes]]:
    """The serial reference: each thumbnail's size and pixels, rendered and resized one image at a time."""
    return {s["id"]: pixels(thumbnail(render(s))) for s in specs}


def thumb_invariants(specs: list[dict[str, Any]], ref: dict[int, Any], thumbs: dict[int, bytes]) -> list[dict[str, Any]]:
    got = {i: pixels(t) for i, t in thumbs.items()}
    wrong = sum(1 for i, px in got.items() if px != ref[i])
    narrow = sum(1 for size, _ in got.values() if size[0] != TARGET_WIDTH)
    return [
        {"name": "thumbnails", "expected": len(specs), "observed": len(got), "ok": len(got) == len(specs)},
        {"name": f"thumbnails not {TARGET_WIDTH} px wide", "expected": 0, "observed": narrow, "ok": narrow == 0},
        {"name": "thumbnails differing from the serial reference", "expected": 0, "observed": wrong, "ok": wrong == 0},
    ]


def thread_per_image(specs: list[dict[str, Any]]) -> dict[int, bytes]:
    """What "just use threads" becomes: one thread per image, every one started at once."""
    out: dict[int, bytes] = {}

    def one(s: dict[str, Any]) -> None:
        out[s["id"]] = thumbnail(render(s))

    threads = [threading.Thread(target=one, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def bounded_threads(specs: list[dict[str, Any]], threads: int) -> dict[int, bytes]:
    with ThreadPoolExecutor(threads) as ex:
        return dict(ex.map(lambda s: (s["id"], thumbnail(render(s))), specs))


def baselines(specs: list[dict[str, Any]], ref: dict[int, Any], threads: int) -> list[tuple[str, Any]]:
    return [
        (f"thread_per_image ({len(specs)} threads)",
         lambda: (thumb_invariants(specs, ref, thread_per_image(specs)), "one thread per image, all started at once")),
        (f"bounded_threads ({threads} threads)",
         lambda: (thumb_invariants(specs, ref, bounded_threads(specs, threads)), f"ThreadPoolExecutor({threads})")),
    ]
