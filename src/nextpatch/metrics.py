"""Evaluation metrics for image-level and pixel-level anomaly detection.

Conventions:

* Image labels are 0 (normal / good) or 1 (anomalous); a higher score means "more anomalous".
* Pixel metrics take a list of ground-truth masks (bool ``(H, W)``) and a list of anomaly maps
  (float ``(H, W)``) of the same shapes. Images may differ in size from one sample to the next.
* A metric that is undefined for the given input (e.g. AUROC with a single class) is ``nan``;
  :func:`evaluate` turns every ``nan`` into ``None`` so its result can go through ``json.dumps``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

__all__ = [
    "MAX_PIXELS",
    "aupro",
    "confusion",
    "evaluate",
    "f1_max",
    "image_auroc",
    "pixel_auroc",
    "roc_points",
]

#: Default cap on the number of pixels used by the pixel-level ROC metrics (see :func:`pixel_auroc`).
MAX_PIXELS = 4_000_000

# 8-connectivity for the ground-truth regions of AUPRO, as in the MVTec AD evaluation.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------- helpers

def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(labels).ravel()
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    return y.astype(bool)


def _as_scores(scores: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.shape[0] != n:
        raise ValueError(f"got {n} labels but {s.shape[0]} scores")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (no nan / inf)")
    return s


def _check_pixels(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks but {len(maps)} anomaly maps")
    for i, (m, a) in enumerate(zip(masks, maps)):
        if np.shape(m) != np.shape(a):
            raise ValueError(f"sample {i}: mask shape {np.shape(m)} != anomaly map shape {np.shape(a)}")


def _pixel_sample(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten and concatenate all pixels: ``(labels bool, scores float32)``.

    If there are more than ``max_pixels`` pixels in total, a uniform random subset of exactly
    ``max_pixels`` of them (drawn without replacement with ``numpy.random.default_rng(seed)``,
    so the result is deterministic) is returned instead. Only the kept pixels of each image are
    copied, so memory stays bounded by ``max_pixels`` plus one image.
    """
    _check_pixels(masks, maps)
    sizes = np.array([np.size(m) for m in masks], dtype=np.int64)
    total = int(sizes.sum())
    if total <= max_pixels:
        if total == 0:
            return np.zeros(0, bool), np.zeros(0, np.float32)
        y = np.concatenate([np.asarray(m, dtype=bool).ravel() for m in masks])
        s = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in maps])
        return y, s
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, size=max_pixels, replace=False))
    bounds = np.searchsorted(keep, np.concatenate(([0], np.cumsum(sizes))))
    y = np.empty(max_pixels, dtype=bool)
    s = np.empty(max_pixels, dtype=np.float32)
    offset = 0
    for i, (m, a) in enumerate(zip(masks, maps)):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            local = keep[lo:hi] - offset
            y[lo:hi] = np.asarray(m, dtype=bool).ravel()[local]
            s[lo:hi] = np.asarray(a, dtype=np.float32).ravel()[local]
        offset += int(sizes[i])
    return y, s


def _decimate(fpr: np.ndarray, tpr: np.ndarray, max_points: int) -> dict[str, list[float]]:
    """Keep at most ``max_points`` points, evenly spaced along the curve, first and last included."""
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if fpr.size > max_points:
        idx = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(np.int64))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def _roc_points_from(y: np.ndarray, s: np.ndarray, max_points: int) -> dict[str, list[float]] | None:
    if y.size == 0 or y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=True)
    return _decimate(fpr, tpr, max_points)


def _auroc_from(y: np.ndarray, s: np.ndarray) -> float:
    if y.size == 0 or y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def _nan_to_none(obj: Any) -> Any:
    """Recursively turn numpy scalars into Python ones and nan / inf into ``None``."""
    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


# ----------------------------------------------------------------------------- image level

def image_auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the image-level ROC curve; ``nan`` if only one class is present."""
    y = _as_labels(labels)
    return _auroc_from(y, _as_scores(scores, y.size))


def f1_max(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Best F1 over all thresholds (``score >= threshold`` is anomalous) and that threshold.

    Returns ``(nan, nan)`` when there is no anomalous sample (F1 is undefined).
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    if not y.any():
        return float("nan"), float("nan")
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def confusion(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> dict[str, float | int]:
    """Confusion counts and rates of binary predictions (1 / True = anomalous).

    ``false_reject_rate`` is the fraction of normal images flagged as anomalous (FP / (FP + TN));
    ``escape_rate`` is the fraction of anomalous images missed (FN / (FN + TP)). A rate whose
    denominator is zero is ``nan``.
    """
    y = _as_labels(labels)
    p = np.asarray(predicted).ravel().astype(bool)
    if p.size != y.size:
        raise ValueError(f"got {y.size} labels but {p.size} predictions")
    tp = int(np.sum(y & p))
    fp = int(np.sum(~y & p))
    tn = int(np.sum(~y & ~p))
    fn = int(np.sum(y & ~p))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "accuracy": ratio(tp + tn, y.size),
        "false_reject_rate": ratio(fp, fp + tn),
        "escape_rate": ratio(fn, fn + tp),
    }


def roc_points(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, max_points: int = 200
) -> dict[str, list[float]]:
    """Image-level ROC curve for plotting, decimated to at most ``max_points`` points.

    Empty lists when only one class is present.
    """
    y = _as_labels(labels)
    pts = _roc_points_from(y, _as_scores(scores, y.size), max_points)
    return pts if pts is not None else {"fpr": [], "tpr": []}


# ----------------------------------------------------------------------------- pixel level

def pixel_auroc(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> float:
    """Pixel-level AUROC over all pixels of all images (flattened and concatenated).

    To stay fast and memory-bounded on large test sets, when there are more than ``max_pixels``
    pixels in total a uniform random subset of ``max_pixels`` pixels is used, drawn
    deterministically with ``seed`` (4 million pixels give an AUROC within ~1e-3 of the full
    value in practice). ``nan`` if the pixels are all normal or all anomalous.
    """
    y, s = _pixel_sample(masks, maps, max_pixels, seed)
    return _auroc_from(y, s)


def aupro(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_fpr: float = 0.3,
    num_thresholds: int = 200,
) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``max_fpr`` (MVTec AD).

    Every 8-connected component of every ground-truth mask is one region. At threshold ``t``
    (``map >= t`` is predicted anomalous):

    * PRO(t) = mean over all regions of (predicted pixels in the region / region size), so a small
      defect weighs as much as a large one;
    * FPR(t) = fraction of normal pixels (outside every mask, over all images, good ones included)
      that are predicted anomalous.

    The curve starts at (0, 0) (threshold above every score), is integrated with the trapezoid
    rule from FPR 0 to ``max_fpr`` (the point at exactly ``max_fpr`` is linearly interpolated) and
    divided by ``max_fpr``: a perfect map gives 1.0, a random one about ``max_fpr / 2``.

    Thresholds are ``num_thresholds`` quantiles of the normal-pixel scores placed at evenly spaced
    FPR levels in ``[0, max_fpr]`` (all the resolution goes where the integral is taken), plus the
    minimum and maximum score. Each image is sorted once and counted against all thresholds with
    ``searchsorted`` (the only Python loops are over images and regions, never over pixels or
    thresholds), and memory stays at about one image plus the threshold sample.
    Pixels tied at a threshold move together, so a map that scores a region exactly like the
    background gets the linear interpolation across that tie (the standard behaviour).

    Returns ``nan`` if there is no ground-truth region or no normal pixel.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    _check_pixels(masks, maps)
    if not masks:
        return float("nan")

    # Thresholds from the normal pixels (subsampled for large sets, exact otherwise).
    y, s = _pixel_sample(masks, maps)
    normal = s[~y]
    if normal.size == 0:
        return float("nan")
    lo = min(float(np.min(a)) for a in maps if np.size(a))
    hi = max(float(np.max(a)) for a in maps if np.size(a))
    levels = 1.0 - np.linspace(0.0, max_fpr, num_thresholds)
    thresholds = np.unique(np.concatenate([np.quantile(normal.astype(np.float64), levels), [lo, hi]]))

    n_t = thresholds.size
    fp = np.zeros(n_t, dtype=np.int64)
    pro_sum = np.zeros(n_t, dtype=np.float64)
    n_normal = 0
    n_regions = 0
    for mask, amap in zip(masks, maps):
        m = np.asarray(mask, dtype=bool)
        a = np.asarray(amap, dtype=np.float64)
        neg = np.sort(a[~m])
        n_normal += neg.size
        fp += neg.size - np.searchsorted(neg, thresholds, side="left")  # count of scores >= t
        if not m.any():
            continue
        regions, n = ndimage.label(m, structure=_EIGHT_CONNECTED)
        ids = regions[m]
        order = np.lexsort((a[m], ids))  # by region, then by score
        ids, vals = ids[order], a[m][order]
        bounds = np.searchsorted(ids, np.arange(1, n + 2), side="left")
        for lo_i, hi_i in zip(bounds[:-1], bounds[1:]):  # one sorted run of scores per region
            region = vals[lo_i:hi_i]
            pro_sum += (region.size - np.searchsorted(region, thresholds, side="left")) / region.size
        n_regions += n

    if n_regions == 0 or n_normal == 0:
        return float("nan")
    # Thresholds ascending -> FPR / PRO descending; reverse and prepend the (0, 0) start.
    fpr = np.concatenate(([0.0], (fp / n_normal)[::-1]))
    pro = np.concatenate(([0.0], (pro_sum / n_regions)[::-1]))
    return _integrate_to(fpr, pro, max_fpr) / max_fpr


def _integrate_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under the non-decreasing-in-x curve ``(x, y)`` from ``x[0]`` to ``x_max``."""
    inside = x <= x_max
    xs, ys = x[inside], y[inside]
    if xs[-1] < x_max and inside.sum() < x.size:
        j = int(np.argmax(~inside))  # first point beyond x_max; x[j-1] <= x_max < x[j]
        y_at = y[j - 1] + (y[j] - y[j - 1]) * (x_max - x[j - 1]) / (x[j] - x[j - 1])
        xs, ys = np.append(xs, x_max), np.append(ys, y_at)
    return float(np.trapezoid(ys, xs))


# ----------------------------------------------------------------------------- all together

def evaluate(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    masks: Sequence[np.ndarray | None] | None = None,
    maps: Sequence[np.ndarray | None] | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics in one JSON-serialisable dict (every nan becomes ``None``).

    Keys: ``n_images``, ``n_anomalous``, ``image_auroc``, ``f1_max``, ``f1_threshold``,
    ``confusion`` (see :func:`confusion`), ``roc`` (image ROC, ``{"fpr": [...], "tpr": [...]}``),
    ``pixel_auroc``, ``aupro`` (at FPR 0.3), ``pixel_roc`` (on the same pixel subsample as
    ``pixel_auroc``; ``None`` if undefined), ``pixel_samples`` and ``pixel_samples_skipped``.

    ``masks`` / ``maps`` are optional; a sample whose mask or map is ``None`` is left out of the
    pixel metrics and counted in ``pixel_samples_skipped``.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    f1, f1_t = f1_max(y, s)
    out: dict[str, Any] = {
        "n_images": int(y.size),
        "n_anomalous": int(y.sum()),
        "image_auroc": _auroc_from(y, s),
        "f1_max": f1,
        "f1_threshold": f1_t,
        "confusion": confusion(y, predicted),
        "roc": roc_points(y, s),
    }

    n = y.size
    mask_list = list(masks) if masks is not None else [None] * n
    map_list = list(maps) if maps is not None else [None] * n
    if len(mask_list) != n or len(map_list) != n:
        raise ValueError(f"got {n} labels, {len(mask_list)} masks and {len(map_list)} maps")
    pairs = [(m, a) for m, a in zip(mask_list, map_list) if m is not None and a is not None]
    pm = [np.asarray(m, dtype=bool) for m, _ in pairs]
    pa = [np.asarray(a, dtype=np.float32) for _, a in pairs]
    py, ps = _pixel_sample(pm, pa, max_pixels, seed)
    out.update(
        pixel_auroc=_auroc_from(py, ps),
        aupro=aupro(pm, pa) if pairs else float("nan"),
        pixel_roc=_roc_points_from(py, ps, 200),
        pixel_samples=len(pairs),
        pixel_samples_skipped=n - len(pairs),
    )
    return _nan_to_none(out)
