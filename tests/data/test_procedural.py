"""Procedural MVTec-layout datasets: layout, determinism, variety, and defect visibility."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nextpatch.data import procedural as P
from nextpatch.errors import DataError

SMALL = dict(n_train=3, n_test_good=2, n_test_per_defect=2, size=128)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["woven", "pcb"])
def test_make_category_writes_mvtec_layout(tmp_path, name):
    cat = P.make_category(tmp_path, name, **SMALL)
    assert cat == tmp_path / name
    defects = P.DEFECTS_FOR[name]
    assert {p.name for p in cat.iterdir()} == {"train", "test", "ground_truth"}
    assert {p.name for p in (cat / "train").iterdir()} == {"good"}
    assert {p.name for p in (cat / "test").iterdir()} == {"good", *defects}
    assert {p.name for p in (cat / "ground_truth").iterdir()} == set(defects)
    assert sorted(p.name for p in (cat / "train" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
    assert sorted(p.name for p in (cat / "test" / "good").iterdir()) == ["000.png", "001.png"]
    for img_path in cat.glob("t*/*/*.png"):
        with Image.open(img_path) as im:
            assert (im.mode, im.size) == ("RGB", (128, 128)), img_path
    for d in defects:
        imgs = sorted((cat / "test" / d).iterdir())
        masks = sorted((cat / "ground_truth" / d).iterdir())
        assert [p.name for p in imgs] == ["000.png", "001.png"]
        assert [p.name for p in masks] == [f"{p.stem}_mask.png" for p in imgs]
        for ip, mp in zip(imgs, masks):
            with Image.open(ip) as im, Image.open(mp) as mk:
                assert mk.mode == "L" and mk.size == im.size
                m = np.asarray(mk)
            assert set(np.unique(m)) <= {0, 255}
            assert (m > 0).sum() >= 0.001 * m.size, mp  # non-empty


def test_deterministic_for_a_seed(tmp_path):
    a = _files(P.make_category(tmp_path / "a", "grain", seed=3, **SMALL))
    b = _files(P.make_category(tmp_path / "b", "grain", seed=3, **SMALL))
    c = _files(P.make_category(tmp_path / "c", "grain", seed=4, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert a["train/good/000.png"] != c["train/good/000.png"]


@pytest.mark.parametrize("name", list(P.CATEGORIES))
def test_samples_differ_but_share_the_pattern(name):
    gen = P.CATEGORIES[name]
    imgs = [np.asarray(gen(np.random.default_rng(i), 128)) for i in range(3)]
    for im in imgs:
        assert im.shape == (128, 128, 3) and im.min() >= 0 and im.max() <= 1
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(imgs[i] - imgs[j]).mean() > 0.005  # not copies
    means = np.array([im.mean(axis=(0, 1)) for im in imgs])
    assert np.ptp(means, axis=0).max() < 0.12  # same appearance statistics


@pytest.mark.parametrize("name", sorted(P.OBJECT_CATEGORIES))
def test_objects_are_aligned(name):
    a = P.CATEGORIES[name](np.random.default_rng(0), 128)
    b = P.CATEGORIES[name](np.random.default_rng(1), 128)
    a, b = P._blur(a.mean(-1), 2.0), P._blur(b.mean(-1), 2.0)
    ga, gb = a - a.mean(), b - b.mean()
    corr = (ga * gb).sum() / np.sqrt((ga ** 2).sum() * (gb ** 2).sum())
    assert corr > 0.6  # same part in the same place (small shift/rotation only)


CASES = [(c, d) for c in P.CATEGORIES for d in P.DEFECTS_FOR[c]]


@pytest.mark.parametrize("category,defect", CASES)
def test_defect_changes_inside_mask_only(category, defect):
    gen = P.CATEGORIES[category]
    rng = np.random.default_rng(11)
    img, bg = gen(rng, 256, background=True) if category in P.OBJECT_CATEGORIES else (gen(rng, 256), None)
    out, mask = P.apply_defect(defect, img, rng, background=bg)
    assert out.shape == img.shape and mask.shape == img.shape[:2] and mask.dtype == bool
    assert 0.001 <= mask.mean() <= 0.15
    diff = np.abs(out - img).mean(-1)
    assert diff[mask].mean() > (0.03 if defect == "discoloration" else 0.06)
    outside = diff[~mask]
    assert outside.mean() < 0.004
    assert (outside > 0.05).mean() < 0.005


@pytest.mark.parametrize("defect", ["crack", "hole", "contamination", "scratch", "discoloration"])
def test_raw_defects_are_usually_visible(defect):
    """The retry in apply_defect must be a safety net, not what makes defects visible."""
    ok = 0
    for i in range(6):
        rng = np.random.default_rng(100 + i)
        img = P.tiles(rng, 192)
        out, mask = P.DEFECTS[defect](img, rng)
        ok += np.abs(out - img).mean(-1)[mask].mean() >= P.MIN_CHANGE[defect]
    assert ok >= 4


def test_sizes_vary_from_small_to_large():
    fr = []
    for i in range(12):
        rng = np.random.default_rng(i)
        _, m = P.add_contamination(P.carpet(rng, 128), rng)
        fr.append(m.mean())
    assert min(fr) < 0.02 and max(fr) > 0.04


def test_demo_dataset(tmp_path):
    assert len(P.DEMO_CATEGORIES) == 2
    assert any(c in P.OBJECT_CATEGORIES for c in P.DEMO_CATEGORIES)
    assert any(c not in P.OBJECT_CATEGORIES for c in P.DEMO_CATEGORIES)
    assert all(len(d) == 3 for d in P.DEMO_CATEGORIES.values())
    paths = P.make_demo_dataset(tmp_path, n_train=2, n_test_good=1, n_test_per_defect=1, size=64)
    assert [p.name for p in paths] == list(P.DEMO_CATEGORIES)
    for p in paths:
        assert {q.name for q in (p / "ground_truth").iterdir()} == set(P.DEMO_CATEGORIES[p.name])


def test_errors(tmp_path):
    with pytest.raises(DataError):
        P.make_category(tmp_path, "nope")
    with pytest.raises(DataError):
        P.make_category(tmp_path, "woven", defects=["missing"], **SMALL)
    P.make_category(tmp_path, "woven", **SMALL)
    with pytest.raises(DataError):
        P.make_category(tmp_path, "woven", overwrite=False, **SMALL)


def _suite_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "suite_data.py"
    spec = importlib.util.spec_from_file_location("suite_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_suite_photo_train_and_test_windows_never_overlap():
    pytest.importorskip("skimage")
    S = _suite_module()
    W = 512
    src = np.repeat(np.tile(np.arange(W, dtype=float) / W, (W, 1))[..., None], 3, -1)  # value = column
    cut = int(S.SPLIT_X * W) / W
    rng = np.random.default_rng(0)
    train = [S.photo_window(src, rng, "train", 64) for _ in range(20)]
    test = [S.photo_window(src, rng, "test", 64) for _ in range(20)]
    assert max(t.max() for t in train) < cut <= min(t.min() for t in test)


def test_defects_on_backdrop_objects_land_on_the_part():
    for i in range(3):
        rng = np.random.default_rng(50 + i)
        img, bg = P.bottle(rng, 128, background=True)
        where = P.part_region(img, bg)
        assert 0.4 < where.mean() < 0.9
        _, mask = P.apply_defect("contamination", img, rng, background=bg, where=where)
        assert where[mask].mean() >= 0.85


def test_validation_set_uses_no_suite_category_and_builds(tmp_path):
    pytest.importorskip("skimage")
    S = _suite_module()
    suite = set(S.PROCEDURAL) | set(S.PHOTOS)
    validation = set(S.VALIDATION_PROCEDURAL) | set(S.VALIDATION_PHOTOS)
    assert not suite & validation
    cats = S.build_suite(tmp_path, which="validation", n_train=2, n_test_good=1, n_test_per_defect=1,
                         size=64, verbose=False)
    assert sorted(c.name for c in cats) == sorted(validation)
    for cat in cats:
        defects = [d for d in (cat / "test").iterdir() if d.name != "good"]
        assert len(list((cat / "train" / "good").glob("*.png"))) == 2 and len(defects) == 5
        assert all((cat / "ground_truth" / d.name / "000_mask.png").is_file() for d in defects)
    with pytest.raises(ValueError, match="unknown set"):
        S.build_suite(tmp_path / "x", which="nope")
