"""Drift: are recent scores still what the calibration images predicted?

The threshold is set on held-out good images (`Detector.calibrate`), whose raw scores have a mean, a
standard deviation, a median and a share above the threshold. A line's recent images should show the
same: `ScoreMonitor` keeps the last `window` normalised scores (1.0 = the threshold) and says when

- the share above the threshold exceeds what the calibration predicts by more than 3 binomial
  standard errors (more rejects: a defect wave, or normal parts that drifted away from training), or
- the median score of the passing images moved from the calibration median by more than 3 standard
  errors of a median (1.2533 std / sqrt(n), counting both samples' uncertainty): the line's normal
  parts now look different, before they start to fail.

Both need at least `min_count` scores. Used by `nextpatch predict` (its summary) and the service
(`GET /v1/models/{name}/stats`).

After an update (`nextpatch update`, the service's feedback) the accepted normals lower the scores of
the images like them, by design, so the calibration median no longer predicts the passing median from
below: with `updated=True` only a rise of the median counts (the share test is unchanged).
"""
from __future__ import annotations

import math
from collections import deque

MIN_COUNT = 30


class ScoreMonitor:
    """The recent scores of one model against its calibration (`calibration_` and `threshold_` of a Detector)."""

    def __init__(self, calibration: dict, threshold: float, *, window: int = 500, min_count: int = MIN_COUNT,
                 updated: bool = False):
        self.window, self.min_count, self.updated = window, min_count, updated
        self.scores: deque[float] = deque(maxlen=window)
        self.total = 0
        threshold = max(float(threshold), 1e-12)
        self.n_cal = max(1, int(calibration.get("images", 1)))
        mean = float(calibration.get("mean", threshold))
        self.std = float(calibration.get("std", 0.0)) / threshold
        self.expected_median = float(calibration.get("median", mean)) / threshold
        z = (1.0 - mean / threshold) / self.std if self.std > 0 else math.inf
        tail = 0.5 * math.erfc(z / math.sqrt(2))  # normal tail above the threshold
        # what the calibration predicts, never below one image in (n_cal + 1)
        self.expected_share = max(float(calibration.get("share_above", 0.0)), tail, 1.0 / (self.n_cal + 1))

    def add(self, score: float) -> None:
        self.scores.append(float(score))
        self.total += 1

    def stats(self) -> dict:
        n = len(self.scores)
        above = sum(s > 1.0 for s in self.scores)
        passing = sorted(s for s in self.scores if s <= 1.0)
        median = _median(passing)
        reasons: list[str] = []
        if n >= self.min_count:
            p = self.expected_share
            limit = p + 3 * math.sqrt(p * (1 - p) / n)
            if above / n > limit:
                reasons.append(f"{above / n:.1%} of the last {n} images above the threshold; the calibration "
                               f"predicts {p:.1%} (limit {limit:.1%})")
            if len(passing) >= self.min_count and self.std > 0:
                tol = 3 * 1.2533 * self.std * math.sqrt(1 / len(passing) + 1 / self.n_cal)
                moved = median - self.expected_median
                if moved > tol or (moved < -tol and not self.updated):
                    reasons.append(f"median score of passing images {median:.3f}; the calibration's is "
                                   f"{self.expected_median:.3f} (tolerance {tol:.3f})")
        return {"count": n, "total": self.total, "window": self.window, "share_above": above / n if n else 0.0,
                "expected_share": self.expected_share, "median_passing": median,
                "expected_median": self.expected_median, "updated": self.updated, "drift": bool(reasons),
                "reasons": reasons}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    m = len(values) // 2
    return values[m] if len(values) % 2 else 0.5 * (values[m - 1] + values[m])
