"""Dataset layouts: MVTec AD categories and plain folders of images.

MVTec AD layout (one category)::

    <category>/train/good/*.png                          normal training images
    <category>/test/good/*.png                           normal test images
    <category>/test/<defect_type>/*.png                  anomalous test images
    <category>/ground_truth/<defect_type>/<stem>_mask.png  their defect masks

A plain folder is just a folder of (good) images, used for training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nextpatch.data.io import IMAGE_SUFFIXES, list_images, read_mask
from nextpatch.errors import DataError

__all__ = ["Sample", "is_mvtec_category", "train_images", "test_samples", "load_mask_for"]

_MVTEC_HINT = "MVTec AD layout: <category>/test/good/*.png and <category>/test/<defect_type>/*.png"
_NORMAL_TYPE = "good"


@dataclass(frozen=True)
class Sample:
    """One test image.

    Attributes:
        path: the image file.
        label: 0 normal, 1 anomalous.
        defect_type: name of its test/ subfolder ("good" for normal images).
        mask_path: ground-truth mask file of an anomalous image, or None
            (always None for normal images, and for anomalous ones whose mask is missing).
    """

    path: Path
    label: int  # 0 normal, 1 anomalous
    defect_type: str
    mask_path: Path | None


def is_mvtec_category(path: str | Path) -> bool:
    """True if `path` looks like one MVTec AD category, i.e. has a train/good/ folder."""
    return (Path(path) / "train" / _NORMAL_TYPE).is_dir()


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def train_images(data_path: str | Path) -> list[Path]:
    """Training (good) images of a dataset folder.

    - An MVTec AD category: the images in train/good/.
    - A plain folder: its images; if it has none at the top level but its
      subfolders do, all images found recursively.

    Returns:
        sorted list of image paths (never empty).

    Raises:
        DataError: the folder is missing or holds no images, or it looks like
            an MVTec AD root or a folder with test images (training on those
            would mix in defects).
    """
    root = Path(data_path)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (pass a folder of good images or an MVTec AD category)")
    if is_mvtec_category(root):
        return list_images(root / "train" / _NORMAL_TYPE)

    try:
        return list_images(root)
    except DataError:
        pass  # nothing at the top level: look in subfolders

    subdirs = _subdirs(root)
    categories = [d for d in subdirs if is_mvtec_category(d)]
    if categories:
        raise DataError(
            f"{root}: looks like an MVTec AD root with {len(categories)} categories; "
            f"pass one category folder, e.g. {categories[0]}"
        )
    test_like = [d.name for d in subdirs if d.name.lower() in ("test", "ground_truth")]
    if test_like:
        raise DataError(
            f"{root}: has no images at the top level and has {' and '.join(n + '/' for n in test_like)} "
            "but no train/good/; "
            "pass the folder of good training images (MVTec AD layout expects <category>/train/good/)"
        )
    try:
        return list_images(root, recursive=True)
    except DataError:
        raise DataError(
            f"{root}: no training images found (looked for {', '.join(IMAGE_SUFFIXES)} in the folder "
            "and its subfolders, or an MVTec AD category with train/good/)"
        ) from None


def _find_mask(gt_dir: Path, stem: str, names: dict[str, Path]) -> Path | None:
    """Mask of image `stem` in `gt_dir` (whose lowercase file names map to paths in `names`)."""
    candidates = [f"{stem}_mask{suf}" for suf in IMAGE_SUFFIXES] + [f"{stem}{suf}" for suf in IMAGE_SUFFIXES]
    for name in candidates:
        hit = names.get(name.lower())
        if hit is not None:
            return hit
    return None


def test_samples(category_path: str | Path) -> tuple[list[Sample], list[str]]:
    """All test images of an MVTec AD category, with labels and masks.

    Images in test/good/ are normal (label 0); images in any other
    test/<defect_type>/ folder are anomalous (label 1) and their mask is looked
    up in ground_truth/<defect_type>/ as `<stem>_mask.<ext>`, then `<stem>.<ext>`
    (ext: any of IMAGE_SUFFIXES, .png first, case-insensitive).

    Returns:
        (samples, warnings): samples sorted by defect type then file name;
        one warning line per anomalous image without a mask (its sample has
        mask_path None) and for images lying directly in test/ (skipped).

    Raises:
        DataError: the folder or its test/ folder is missing, or test/ holds no images.
    """
    root = Path(category_path)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found ({_MVTEC_HINT})")
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DataError(f"{root}: no test/ folder (expected {_MVTEC_HINT})")

    samples: list[Sample] = []
    warnings: list[str] = []
    loose = [p for p in test_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".")]
    if loose:
        warnings.append(
            f"{test_dir}: {len(loose)} image(s) directly in test/ were skipped "
            "(put them in test/good/ or test/<defect_type>/)"
        )

    for type_dir in _subdirs(test_dir):
        try:
            images = list_images(type_dir)
        except DataError:
            continue  # an empty defect-type folder is not an error
        defect_type = type_dir.name
        if defect_type.lower() == _NORMAL_TYPE:
            samples.extend(Sample(p, 0, defect_type, None) for p in images)
            continue
        gt_dir = root / "ground_truth" / defect_type
        names: dict[str, Path] = {}
        if gt_dir.is_dir():
            names = {p.name.lower(): p for p in sorted(gt_dir.iterdir(), reverse=True) if p.is_file()}
        for img in images:
            mask = _find_mask(gt_dir, img.stem, names)
            if mask is None:
                expected = gt_dir / f"{img.stem}_mask.png"
                warnings.append(
                    f"{img}: anomalous image has no mask (expected {expected}); left out of pixel-level metrics"
                )
            samples.append(Sample(img, 1, defect_type, mask))

    if not samples:
        raise DataError(f"{test_dir}: no test images found (expected {_MVTEC_HINT})")
    return samples, warnings


# The name starts with "test": stop pytest from collecting it when a test module imports it.
test_samples.__test__ = False  # type: ignore[attr-defined]


def load_mask_for(sample: Sample, image_shape: tuple[int, ...]) -> np.ndarray | None:
    """Ground-truth mask of a sample.

    Args:
        sample: a test sample.
        image_shape: shape of its image, (H, W) or (H, W, C).

    Returns:
        bool array (H, W): all False for a normal sample, the read mask for an
        anomalous one, or None for an anomalous sample without a mask.

    Raises:
        ImageError: the mask is unreadable or its size differs from the image's.
    """
    hw = (int(image_shape[0]), int(image_shape[1]))
    if sample.label == 0:
        return np.zeros(hw, dtype=bool)
    if sample.mask_path is None:
        return None
    return read_mask(sample.mask_path, hw)
