"""Tests for nextpatch.metrics against scikit-learn and hand-computed cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from nextpatch import metrics
from nextpatch.metrics import aupro, confusion, evaluate, f1_max, image_auroc, pixel_auroc, roc_points


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _blob_set(rng: np.random.Generator, n: int = 6, size: tuple[int, int] = (40, 48)):
    """Masks with a few rectangles (some images good) and noisy maps that partly follow them."""
    masks, maps = [], []
    for i in range(n):
        m = np.zeros(size, dtype=bool)
        if i % 3:
            for _ in range(int(rng.integers(1, 3))):
                r, c = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 8)
                m[r : r + int(rng.integers(2, 8)), c : c + int(rng.integers(2, 8))] = True
        masks.append(m)
        maps.append(rng.random(size) + 0.8 * m * rng.random(size))
    return masks, maps


def _reference_aupro(masks, maps, max_fpr: float) -> float:
    """Slow, obvious AUPRO: every distinct score is a threshold."""
    regions = []
    for m, a in zip(masks, maps):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [a[lab == k] for k in range(1, n + 1)]
    normal = np.concatenate([a[~m] for m, a in zip(masks, maps)])
    fpr, pro = [0.0], [0.0]
    for t in np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]:
        fpr.append(float(np.mean(normal >= t)))
        pro.append(float(np.mean([np.mean(r >= t) for r in regions])))
    x, y = np.array(fpr), np.array(pro)
    y_at = np.interp(max_fpr, x, y)  # x is non-decreasing; take the last point at <= max_fpr
    keep = x <= max_fpr
    return float(np.trapezoid(np.append(y[keep], y_at), np.append(x[keep], max_fpr)) / max_fpr)


# ----------------------------------------------------------------------------- image level

def test_image_auroc_matches_sklearn(rng):
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + 0.7 * y
    assert image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_image_auroc_perfect_random_and_single_class(rng):
    y = np.array([0] * 50 + [1] * 50)
    assert image_auroc(y, np.arange(100.0)) == 1.0
    y_rand = rng.integers(0, 2, 4000)
    assert abs(image_auroc(y_rand, rng.random(4000)) - 0.5) < 0.05
    assert math.isnan(image_auroc([0, 0, 0], [0.1, 0.2, 0.3]))


def test_f1_max_matches_brute_force(rng):
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(size=120) + y, 1)  # rounding makes ties
    best_f1 = -1.0
    for t in np.unique(s):
        p = s >= t
        tp, fp, fn = np.sum(p & (y == 1)), np.sum(p & (y == 0)), np.sum(~p & (y == 1))
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best_f1:
            best_f1 = f1
    f1, t = f1_max(y, s)
    assert f1 == pytest.approx(best_f1, abs=1e-12)
    pred = s >= t
    tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(best_f1, abs=1e-12)
    assert all(math.isnan(v) for v in f1_max([0, 0], [0.1, 0.2]))


def test_confusion_hand_example():
    labels = [0, 0, 0, 0, 1, 1, 1]
    pred = [0, 1, 0, 0, 1, 1, 0]
    c = confusion(labels, pred)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 1, 3, 1)
    assert c["precision"] == pytest.approx(2 / 3)
    assert c["recall"] == pytest.approx(2 / 3)
    assert c["accuracy"] == pytest.approx(5 / 7)
    assert c["false_reject_rate"] == pytest.approx(1 / 4)
    assert c["escape_rate"] == pytest.approx(1 / 3)
    assert math.isnan(confusion([0, 0], [0, 0])["recall"])


def test_roc_points_decimated(rng):
    y = rng.integers(0, 2, 5000)
    s = rng.normal(size=5000) + y
    pts = roc_points(y, s, max_points=50)
    assert 2 <= len(pts["fpr"]) <= 50 and len(pts["fpr"]) == len(pts["tpr"])
    assert (pts["fpr"][0], pts["tpr"][0]) == (0.0, 0.0)
    assert (pts["fpr"][-1], pts["tpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(pts["fpr"]) >= 0)


# ----------------------------------------------------------------------------- pixel level

def test_pixel_auroc_matches_sklearn_on_flattened(rng):
    masks, maps = _blob_set(rng)
    masks[0] = np.zeros((17, 23), bool)  # a sample of a different size
    maps[0] = rng.random((17, 23))
    expected = roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps])
    )
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-6)


def test_pixel_auroc_subsample_is_deterministic_and_close(rng):
    masks, maps = _blob_set(rng, n=6)
    full = pixel_auroc(masks, maps)
    a = pixel_auroc(masks, maps, max_pixels=5000)
    assert a == pixel_auroc(masks, maps, max_pixels=5000)
    assert a != pixel_auroc(masks, maps, max_pixels=5000, seed=1)
    y, s = metrics._pixel_sample(masks, maps, max_pixels=5000)
    assert y.size == s.size == 5000
    assert a == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert abs(a - full) < 0.08
    # Each sampled label comes from the same pixel as its score.
    y, s = metrics._pixel_sample(masks, [m + 0.1 * a for m, a in zip(masks, maps)], max_pixels=3000)
    assert np.array_equal(y, s >= 1.0)


def test_aupro_perfect_is_one():
    m = np.zeros((32, 32), bool)
    m[4:9, 4:9] = True
    m[20:30, 15:18] = True
    good = np.zeros((32, 32), bool)
    assert aupro([m, good], [m.astype(float), good.astype(float)]) == pytest.approx(1.0, abs=1e-6)


def test_aupro_shifted_map_has_no_overlap():
    m = np.zeros((32, 32), bool)
    m[4:9, 4:9] = True
    shifted = np.roll(m, 16, axis=1)  # same blob, zero overlap with the defect
    # Exactly the shifted mask: the region ties with the background at 0, so the only credit is
    # the linear interpolation across that tie (no better than a random map, which gives ~0.15).
    assert aupro([m], [shifted.astype(float)]) < 0.15
    # Region scored below every normal pixel: no region pixel is ever found before FPR 0.3.
    assert aupro([m], [shifted.astype(float) - m]) == pytest.approx(0.0, abs=1e-9)


def test_aupro_one_of_two_regions_found_is_half():
    m = np.zeros((40, 40), bool)
    m[2:4, 2:4] = True  # small region, found
    m[20:30, 20:30] = True  # large region, missed (scored below the background)
    amap = np.zeros((40, 40))
    amap[2:4, 2:4] = 1.0
    amap[20:30, 20:30] = -1.0
    # PRO averages over regions, not pixels: 0.5, not 4 / 104.
    assert aupro([m], [amap]) == pytest.approx(0.5, abs=1e-6)


def test_aupro_matches_reference(rng):
    masks, maps = _blob_set(rng, n=4, size=(24, 24))
    for max_fpr in (0.3, 0.05, 1.0):
        ref = _reference_aupro(masks, maps, max_fpr)
        assert aupro(masks, maps, max_fpr=max_fpr) == pytest.approx(ref, abs=2e-3)
        # More thresholds do not drift away (the residual is region pixels between two normal ones).
        assert aupro(masks, maps, max_fpr=max_fpr, num_thresholds=1000) == pytest.approx(ref, abs=2e-3)


def test_aupro_validation_and_no_regions():
    m = np.zeros((8, 8), bool)
    a = np.zeros((8, 8))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_fpr"):
            aupro([m], [a], max_fpr=bad)
    with pytest.raises(ValueError, match="shape"):
        aupro([m], [np.zeros((8, 9))])
    assert math.isnan(aupro([m], [a]))


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_is_json_serialisable_with_nan_as_none(rng):
    masks, maps = _blob_set(rng, n=6)
    labels = [int(m.any()) for m in masks]
    scores = [float(a.max()) for a in maps]
    pred = [s > 1.2 for s in scores]
    masks_with_gap = list(masks)
    masks_with_gap[1] = None
    out = evaluate(labels, scores, pred, masks_with_gap, maps)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["pixel_samples_skipped"] == 1
    assert out["pixel_samples"] == 5
    assert 0.0 <= out["aupro"] <= 1.0 and 0.0 <= out["pixel_auroc"] <= 1.0
    assert out["image_auroc"] == pytest.approx(image_auroc(labels, scores))
    assert out["confusion"]["tp"] + out["confusion"]["fn"] == sum(labels)
    assert len(out["pixel_roc"]["fpr"]) <= 200

    # Single class, no masks: undefined metrics become None, not NaN.
    out = evaluate([0, 0, 0], [0.1, 0.2, 0.3], [0, 0, 1])
    json.dumps(out, allow_nan=False)
    assert out["image_auroc"] is None and out["pixel_auroc"] is None and out["aupro"] is None
    assert out["f1_max"] is None and out["confusion"]["escape_rate"] is None
    assert out["pixel_samples_skipped"] == 3 and out["pixel_roc"] is None
