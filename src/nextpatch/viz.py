"""Pictures a person looks at: heatmap overlays and "actual | expected | heatmap" panels.

Maps are normalised so 1.0 is the detector's threshold; the colour scale is fixed (0 -> dark blue,
1.0 -> yellow-green, >= 2.0 -> red), so the same colour means the same thing on every image.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

# A small perceptual-ish "turbo"-like ramp: positions and RGB stops.
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLORS = np.array([[48, 18, 59], [40, 140, 235], [160, 245, 60], [250, 160, 30], [200, 20, 10]], dtype=np.float32) / 255

DISPLAY_MAX = 2.0  # map value shown as the top of the colour scale
PANEL_SIDE = 768   # a panel's tiles at most this long: the expected image and the map come from the
                   # network's S x S (224 by default), so a camera-size panel shows nothing more, and
                   # encoding a 3840 x 1024 PNG cost ~0.4 s per flagged image (issue 25)


_LEVELS = 1024  # colour-scale steps: a table lookup instead of interpolating every pixel (camera-size maps)
_TABLE = np.stack([np.interp(np.linspace(0, 1, _LEVELS), _STOPS, _COLORS[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def colorize(amap: np.ndarray) -> np.ndarray:
    """(H, W) normalised map -> (H, W, 3) float32 RGB in [0, 1] (the ramp in 1024 steps)."""
    x = np.fmin(np.fmax(np.asarray(amap, np.float32) * ((_LEVELS - 1) / DISPLAY_MAX) + 0.5, 0), _LEVELS - 1)  # NaN -> 0
    return np.take(_TABLE, x.astype(np.int32), axis=0)


def overlay(image: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """Blend the coloured map onto the image; weak responses stay transparent. -> (H, W, 3) uint8."""
    alpha = np.clip(amap / DISPLAY_MAX, 0.0, 1.0)[..., None] * 0.6 + 0.15
    mixed = image * (1 - alpha) + colorize(amap) * alpha
    return (np.clip(mixed, 0, 1) * 255).round().astype(np.uint8)


def panel(image: np.ndarray, expected: np.ndarray, amap: np.ndarray, *, score: float | None = None) -> np.ndarray:
    """Side by side: actual | expected (what the generator predicted) | overlay. -> (H + 18, 3W, 3) uint8."""
    tiles = [(np.clip(image, 0, 1) * 255).round().astype(np.uint8),
             (np.clip(expected, 0, 1) * 255).round().astype(np.uint8),
             overlay(image, amap)]
    h, w = image.shape[:2]
    canvas = Image.new("RGB", (3 * w, h + 18), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    labels = ["actual", "expected", "anomaly map" + (f" (score {score:.2f})" if score is not None else "")]
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        canvas.paste(Image.fromarray(tile), (i * w, 18))
        draw.text((i * w + 4, 3), label, fill=(0, 0, 0))
    return np.asarray(canvas)


def prediction_panel(image: np.ndarray, prediction, *, max_side: int = PANEL_SIDE) -> np.ndarray:
    """`panel` of a Prediction (see detector.Prediction), each tile at most `max_side` px on its long side.

    image: (H, W, 3) float in [0, 1] -> (h + 18, 3w, 3) uint8 with h, w = H, W scaled to fit `max_side`.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        small = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
        image = np.asarray(small.resize(size[::-1], Image.BILINEAR, reducing_gap=2.0), np.float32) / 255
    return panel(image, prediction.expected_at(size), prediction.map_at(size), score=prediction.score)


class BackgroundWriter:
    """A bounded pool of threads that run write jobs (overlay / panel PNGs) off the caller's thread.

    `submit` blocks while `max_pending` jobs are queued or running, so memory stays bounded (each job
    holds its image) and a slow disk slows the producer instead of piling up work. Errors of a job are
    kept, not raised: `errors` lists them (as exceptions) once `close` (or leaving the `with`) has waited
    for every job.
    """

    def __init__(self, workers: int = 2, max_pending: int | None = None):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="nextpatch-write")
        self._slots = threading.Semaphore(max_pending or 2 * max(1, workers))
        self._futures: list[Future] = []
        self.errors: list[Exception] = []

    def submit(self, job: Callable[[], object]) -> None:
        self._slots.acquire()
        future = self._pool.submit(job)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures = [f for f in self._futures if not f.done() or f.exception() is not None] + [future]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.errors = [f.exception() for f in self._futures if f.exception() is not None]

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
