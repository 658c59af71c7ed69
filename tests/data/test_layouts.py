"""Tests for nextpatch.data.layouts. MVTec-like trees are generated into tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nextpatch.data import layouts
from nextpatch.data.io import read_image
from nextpatch.data.layouts import Sample, is_mvtec_category, load_mask_for, train_images
from nextpatch.errors import DataError, ImageError

H, W = 10, 14


def img(path: Path, value: int = 128, size: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def mask(path: Path, size: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size, np.uint8)
    m[2:5, 3:7] = 255
    Image.fromarray(m).save(path)
    return path


@pytest.fixture
def category(tmp_path: Path) -> Path:
    """A small MVTec AD category: 3 train, 2 good test, 2 crack + 1 scratch (all with masks)."""
    c = tmp_path / "bottle"
    for i in range(3):
        img(c / "train" / "good" / f"{i:03d}.png")
    img(c / "test" / "good" / "000.png")
    img(c / "test" / "good" / "001.png")
    for i in range(2):
        img(c / "test" / "crack" / f"{i:03d}.png", 200)
        mask(c / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    img(c / "test" / "scratch" / "000.png", 50)
    mask(c / "ground_truth" / "scratch" / "000.png")  # accepted: same stem, no _mask
    (c / "license.txt").write_text("x")
    return c


def test_is_mvtec_category(category: Path, tmp_path: Path) -> None:
    assert is_mvtec_category(category)
    assert is_mvtec_category(str(category))
    assert not is_mvtec_category(category / "train")
    assert not is_mvtec_category(tmp_path / "nope")


def test_train_images_mvtec(category: Path) -> None:
    paths = train_images(category)
    assert paths == [category / "train" / "good" / f"{i:03d}.png" for i in range(3)]


def test_test_samples_mvtec(category: Path) -> None:
    samples, warnings = layouts.test_samples(category)
    assert warnings == []
    got = [(s.path.relative_to(category).as_posix(), s.label, s.defect_type,
            s.mask_path.relative_to(category).as_posix() if s.mask_path else None) for s in samples]
    assert got == [
        ("test/crack/000.png", 1, "crack", "ground_truth/crack/000_mask.png"),
        ("test/crack/001.png", 1, "crack", "ground_truth/crack/001_mask.png"),
        ("test/good/000.png", 0, "good", None),
        ("test/good/001.png", 0, "good", None),
        ("test/scratch/000.png", 1, "scratch", "ground_truth/scratch/000.png"),
    ]
    assert all(isinstance(s, Sample) for s in samples)
    with pytest.raises(AttributeError):
        samples[0].label = 0  # type: ignore[misc]  # frozen


def test_mask_with_other_suffix_and_case(category: Path) -> None:
    img(category / "test" / "dent" / "007.png")
    mask(category / "ground_truth" / "dent" / "007_MASK.bmp")
    samples, warnings = layouts.test_samples(category)
    dent = [s for s in samples if s.defect_type == "dent"]
    assert len(dent) == 1 and dent[0].mask_path is not None
    assert dent[0].mask_path.name == "007_MASK.bmp"
    assert warnings == []


def test_missing_mask_warns(category: Path) -> None:
    (category / "ground_truth" / "crack" / "001_mask.png").unlink()
    samples, warnings = layouts.test_samples(category)
    s = next(s for s in samples if s.path.name == "001.png" and s.defect_type == "crack")
    assert s.label == 1 and s.mask_path is None
    assert len(warnings) == 1
    assert str(s.path) in warnings[0]
    assert str(category / "ground_truth" / "crack" / "001_mask.png") in warnings[0]
    assert load_mask_for(s, (H, W)) is None


def test_missing_ground_truth_folder_warns_per_image(category: Path) -> None:
    img(category / "test" / "hole" / "000.png")
    img(category / "test" / "hole" / "001.png")
    samples, warnings = layouts.test_samples(category)
    assert sum(s.defect_type == "hole" and s.mask_path is None for s in samples) == 2
    assert len(warnings) == 2 and all("hole" in w for w in warnings)


def test_load_mask_for(category: Path) -> None:
    samples, _ = layouts.test_samples(category)
    normal = next(s for s in samples if s.label == 0)
    m = load_mask_for(normal, (H, W, 3))
    assert m is not None and m.dtype == np.bool_ and m.shape == (H, W) and not m.any()
    crack = next(s for s in samples if s.defect_type == "crack")
    m = load_mask_for(crack, read_image(crack.path).shape)
    assert m is not None and m.shape == (H, W) and m.sum() == 3 * 4 and m[2:5, 3:7].all()


def test_mask_wrong_size(category: Path) -> None:
    mask(category / "ground_truth" / "crack" / "000_mask.png", size=(20, 30))
    samples, _ = layouts.test_samples(category)
    crack = next(s for s in samples if s.defect_type == "crack")
    with pytest.raises(ImageError) as ei:
        load_mask_for(crack, (H, W))
    msg = str(ei.value)
    assert "30x20" in msg and f"{W}x{H}" in msg and "000_mask.png" in msg


def test_test_samples_errors(tmp_path: Path, category: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match="no test/ folder"):
        layouts.test_samples(plain)
    with pytest.raises(DataError, match="folder not found"):
        layouts.test_samples(tmp_path / "ghost")
    empty = tmp_path / "emptycat"
    (empty / "test" / "good").mkdir(parents=True)
    with pytest.raises(DataError) as ei:
        layouts.test_samples(empty)
    assert "no test images" in str(ei.value) and "test/good" in str(ei.value)


def test_loose_test_images_warned(category: Path) -> None:
    img(category / "test" / "stray.png")
    samples, warnings = layouts.test_samples(category)
    assert all(s.path.name != "stray.png" for s in samples)
    assert len(warnings) == 1 and "directly in test/" in warnings[0]


def test_plain_folder(tmp_path: Path) -> None:
    d = tmp_path / "good_parts"
    a = img(d / "b.png")
    b = img(d / "a.jpg")
    img(d / "sub" / "ignored.png")  # top level has images: not recursive
    assert train_images(d) == [b, a]


def test_nested_folder_fallback(tmp_path: Path) -> None:
    d = tmp_path / "lines"
    x = img(d / "line2" / "x.png")
    y = img(d / "line1" / "y.png")
    z = img(d / "line1" / "deeper" / "z.png")
    assert train_images(d) == [z, y, x]  # sorted by path components


def test_train_images_errors(tmp_path: Path, category: Path) -> None:
    with pytest.raises(DataError, match="ghost: folder not found"):
        train_images(tmp_path / "ghost")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty: no training images"):
        train_images(empty)
    f = img(tmp_path / "one.png")
    with pytest.raises(DataError, match="not a folder"):
        train_images(f)
    # the parent of a category is an MVTec root: refuse rather than mix in test defects
    root = category.parent
    for p in root.iterdir():
        if p.is_file():
            p.unlink()
    with pytest.raises(DataError, match="MVTec AD root"):
        train_images(root)
    # a category without train/good must not silently train on test/ images
    (category / "train" / "good").rename(category / "train" / "old")
    with pytest.raises(DataError, match="test/"):
        train_images(category)
