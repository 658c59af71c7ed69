"""The one predict-time measurement every benchmark uses: median ms of single-image calls, batch 1."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable


def predict_ms(predict: Callable, category: Path, n: int = 20) -> float:
    """Median milliseconds of `predict(image)` over `n` test images of `category` spread over its
    defect kinds, model already loaded, after one warm-up call."""
    from nextpatch.data.io import read_image
    from nextpatch.data.layouts import test_samples

    samples, _ = test_samples(category)
    images = [read_image(s.path) for s in samples[:: max(1, len(samples) // n)][:n]]
    predict(images[0])  # warm-up
    times = []
    for image in images:
        t = time.perf_counter()
        predict(image)
        times.append(1000 * (time.perf_counter() - t))
    return round(statistics.median(times), 1)
