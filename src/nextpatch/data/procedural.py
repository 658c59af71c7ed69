"""Procedural datasets in the MVTec AD folder layout, built in code (nothing downloaded).

Used by ``nextpatch demo`` (:func:`make_demo_dataset`) and by the benchmark suite
(``benchmarks/suite_data.py``). Everything is numpy only and deterministic for a seed.

Layout written by :func:`make_category`::

    <root>/<category>/train/good/000.png ...
    <root>/<category>/test/good/000.png ...
    <root>/<category>/test/<defect>/000.png ...
    <root>/<category>/ground_truth/<defect>/000_mask.png   (uint8 0/255, one channel)

Normal images come from texture generators (:func:`woven`, :func:`grain`, :func:`carpet`,
:func:`tiles`: new random phase/noise per image, same statistics) and aligned object
generators (:func:`pcb`, :func:`bottle`: the same part every time, shifted < 3 px, rotated
< 3 deg, with lighting and sensor noise).

The evaluation defects (``add_<defect>``) are written independently of the model's training
synthesis on purpose, with different shapes and appearance: star-shaped harmonic blobs
(not noise-thresholded regions), branching random-walk cracks, shaded elliptical pits,
long bright curved scratches of varying width, smooth low-contrast stains, material
missing down to the background, and smooth local warps. Each returns ``(image, mask)``
with the mask covering exactly the pixels it changed noticeably.

This module is the public face: it holds the category registry and the writers, and re-exports
the generators of :mod:`nextpatch.data.textures`, the defects of :mod:`nextpatch.data.eval_defects`
and :func:`to_uint8` from :mod:`nextpatch.data.proc_ops` (the numpy helpers they share).
"""
from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from nextpatch.data.eval_defects import (  # noqa: F401 (MIN_CHANGE, MIN_MASK_FRACTION re-exported)
    DEFECTS,
    MIN_CHANGE,
    MIN_MASK_FRACTION,
    add_contamination,
    add_crack,
    add_deformation,
    add_discoloration,
    add_hole,
    add_missing,
    add_scratch,
    apply_defect,
    part_region,
)
from nextpatch.data.proc_ops import DEFAULT_AREA, Area, _bilinear, _blur, to_uint8  # noqa: F401 (re-exported)
from nextpatch.data.textures import bottle, carpet, foreign_texture, grain, pcb, tiles, woven
from nextpatch.errors import DataError

__all__ = [
    "woven", "grain", "carpet", "tiles", "pcb", "bottle",
    "add_crack", "add_hole", "add_contamination", "add_scratch", "add_discoloration",
    "add_deformation", "add_missing", "apply_defect", "part_region", "foreign_texture",
    "CATEGORIES", "OBJECT_CATEGORIES", "ON_BACKDROP", "DEFECTS", "DEFECTS_FOR", "DEMO_CATEGORIES",
    "write_mvtec_category", "make_category", "make_dataset", "make_demo_dataset",
    "to_uint8",
]


# --------------------------------------------------------------------------- registry
CATEGORIES: dict[str, Callable[..., np.ndarray]] = {
    "woven": woven,
    "grain": grain,
    "carpet": carpet,
    "tiles": tiles,
    "pcb": pcb,
    "bottle": bottle,
}
OBJECT_CATEGORIES = frozenset({"pcb", "bottle"})
#: objects on a backdrop: defects other than missing/deformation are kept on the part
ON_BACKDROP = frozenset({"bottle"})
_TEXTURE_DEFECTS = ["crack", "hole", "contamination", "scratch", "discoloration"]
DEFECTS_FOR: dict[str, list[str]] = {
    "woven": list(_TEXTURE_DEFECTS),
    "grain": list(_TEXTURE_DEFECTS),
    "carpet": list(_TEXTURE_DEFECTS),
    "tiles": list(_TEXTURE_DEFECTS),
    "pcb": ["missing", "deformation", "scratch", "contamination", "crack"],
    "bottle": ["missing", "deformation", "crack", "hole", "contamination"],
}
DEMO_CATEGORIES: dict[str, list[str]] = {
    "woven": ["crack", "hole", "contamination"],
    "pcb": ["missing", "scratch", "contamination"],
}

#: sample(rng, split) -> image or (image, background); split is "train" or "test"
Sampler = Callable[[np.random.Generator, str], "np.ndarray | tuple[np.ndarray, np.ndarray]"]
#: foreign(rng, h, w) -> float image used by contamination
ForeignSource = Callable[[np.random.Generator, int, int], np.ndarray]


def _key(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def write_mvtec_category(root: str | Path, name: str, sample: Sampler, defects: Iterable[str], *,
                         n_train: int = 60, n_test_good: int = 20, n_test_per_defect: int = 8,
                         seed: int = 0, foreign: ForeignSource | None = None,
                         area: Area = DEFAULT_AREA, overwrite: bool = True) -> Path:
    """Write one category in the MVTec AD layout from a normal-image sampler.

    Each image has its own generator seeded by (seed, category, split, defect, index), so the
    output is the same bytes for the same arguments. An existing ``<root>/<name>`` is replaced
    when ``overwrite`` (default), else refused."""
    cat = Path(root) / name
    if cat.exists() and any(cat.iterdir()):
        if not overwrite:
            raise DataError(f"{cat}: already exists and is not empty (remove it or pass overwrite=True)")
        shutil.rmtree(cat)
    defects = list(defects)
    for d in defects:
        if d not in DEFECTS:
            raise DataError(f"unknown defect type {d!r} for category {name!r} (known: {', '.join(DEFECTS)})")

    def draw(rng, split):
        got = sample(rng, split)
        return got if isinstance(got, tuple) else (got, None)

    def rng_for(*parts: int) -> np.random.Generator:
        return np.random.default_rng([seed, _key(name), *parts])

    (cat / "train" / "good").mkdir(parents=True)
    (cat / "test" / "good").mkdir(parents=True)
    for i in range(n_train):
        img, _ = draw(rng_for(0, i), "train")
        _save_png(cat / "train" / "good" / f"{i:03d}.png", to_uint8(img))
    for i in range(n_test_good):
        img, _ = draw(rng_for(1, i), "test")
        _save_png(cat / "test" / "good" / f"{i:03d}.png", to_uint8(img))
    for d in defects:
        (cat / "test" / d).mkdir(parents=True)
        (cat / "ground_truth" / d).mkdir(parents=True)
        for i in range(n_test_per_defect):
            rng = rng_for(2, _key(d), i)
            img, bg = draw(rng, "test")
            fg = foreign(rng, *img.shape[:2]) if (d == "contamination" and foreign is not None) else None
            where = part_region(img, bg) if (bg is not None and name in ON_BACKDROP) else None
            out, mask = apply_defect(d, img, rng, background=bg, foreign=fg, where=where, area=area)
            _save_png(cat / "test" / d / f"{i:03d}.png", to_uint8(out))
            _save_png(cat / "ground_truth" / d / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    return cat


def make_category(root: str | Path, name: str, *, n_train: int = 60, n_test_good: int = 20,
                  n_test_per_defect: int = 8, size: int = 256, seed: int = 0,
                  defects: Sequence[str] | None = None, foreign: ForeignSource | None = None,
                  area: Area = DEFAULT_AREA, overwrite: bool = True) -> Path:
    """Write procedural category ``name`` (a key of :data:`CATEGORIES`) under ``root``.

    ``defects`` defaults to ``DEFECTS_FOR[name]``; ``foreign`` supplies contamination textures
    (default: procedural ones). Returns ``<root>/<name>``."""
    if name not in CATEGORIES:
        raise DataError(f"unknown procedural category {name!r} (known: {', '.join(CATEGORIES)})")
    gen = CATEGORIES[name]
    is_obj = name in OBJECT_CATEGORIES
    wanted = list(DEFECTS_FOR[name] if defects is None else defects)
    if not is_obj and any(d in ("missing", "deformation") for d in wanted):
        raise DataError(f"defects 'missing'/'deformation' need an object category, not {name!r}")

    def sample(rng, split):
        return gen(rng, size, background=True) if is_obj else gen(rng, size)

    return write_mvtec_category(root, name, sample, wanted, n_train=n_train, n_test_good=n_test_good,
                                n_test_per_defect=n_test_per_defect, seed=seed, foreign=foreign,
                                area=area, overwrite=overwrite)


def make_dataset(root: str | Path, categories: Iterable[str] | None = None, **kw) -> list[Path]:
    """Write several procedural categories (default: all of :data:`CATEGORIES`)."""
    names = list(CATEGORIES) if categories is None else list(categories)
    return [make_category(root, n, **kw) for n in names]


def make_demo_dataset(root: str | Path, seed: int = 0, **kw) -> list[Path]:
    """The small dataset of ``nextpatch demo``: :data:`DEMO_CATEGORIES` (one texture, one
    object, 3 defect types each), 40 train / 12 good test / 5 per defect by default."""
    opts = {"n_train": 40, "n_test_good": 12, "n_test_per_defect": 5}
    opts.update(kw)
    return [make_category(root, n, seed=seed, defects=d, **opts) for n, d in DEMO_CATEGORIES.items()]
