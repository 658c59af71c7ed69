"""Reading and writing images, robustly.

Every image that enters nextpatch goes through `read_image`, which returns one
format whatever the file held: a float32 array of shape (H, W, 3) with values in
[0, 1]. Anything that cannot be read becomes an `ImageError` naming the file;
no decoder traceback reaches the user.

Conversion rules (what "whatever the file held" means):

- 8-bit data is divided by 255, 16-bit data by 65535 (PIL modes "I;16",
  "I;16B", "I;16L" and 16-bit TIFFs). Other unsigned TIFF integers are divided
  by 2**bits_per_sample - 1 (so 1-bit TIFFs map to 0/1); signed integers have
  negative values clipped to 0 and are divided by the dtype's maximum.
- PIL mode "I" (32-bit signed integer, which PIL uses for 16-bit PNG/PGM data)
  is treated as 16-bit when its maximum value is <= 65535 (divided by 65535),
  otherwise it is divided by 2**31 - 1. Negative values are clipped to 0.
- Float data (PIL mode "F", float TIFFs): NaN becomes 0, +/-inf the largest /
  smallest finite value. If the maximum is <= 1 the values are clipped to
  [0, 1]; else if it is <= 255 they are divided by 255; else if <= 65535 by
  65535; else by the maximum itself. Negative values are clipped to 0.
- Grayscale is replicated to 3 channels. Gray+alpha ("LA") keeps the gray
  channel. RGBA keeps RGB and simply drops alpha (no compositing on black or
  white: transparent pixels keep their stored colour). Palette ("P") images
  are expanded through their palette. CMYK is converted to RGB.
  TIFFs with more than 4 channels keep the first 3.
- JPEG EXIF orientation is applied, so the array is what an image viewer shows.
- Multi-page TIFFs (and other multi-frame files): only the first page is read.
- 16-bit RGB PNGs are reduced to 8 bits by PIL (PIL has no 16-bit RGB mode);
  save 16-bit colour images as TIFF to keep full precision.
- TIFF files (recognised by their magic bytes, not their suffix) are decoded
  with tifffile, falling back to PIL if tifffile cannot decode them; all other
  formats are decoded with PIL.
- Images smaller than 8x8 pixels are rejected.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# the decoders live in decode.py; their private names stay importable from here as before
from nextpatch.data.decode import (  # noqa: F401
    _READ_FIX,
    _TIFF_MAGIC,
    MIN_SIZE,
    _cannot_read,
    _check_file,
    _cmyk_to_rgb,
    _decode,
    _decode_pil,
    _decode_tiff,
    _float_to_unit,
    _int_to_unit,
    _is_tiff,
    _pil_to_unit,
    _quiet_tifffile,
    _short_reason,
    _to_rgb,
    _to_unit,
)
from nextpatch.errors import DataError, ImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_SIZE",
    "read_image",
    "read_mask",
    "list_images",
    "expand_inputs",
    "load_images",
    "to_uint8",
    "save_png",
]

#: File suffixes treated as images (matched case-insensitively).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_SUFFIX_LIST = ", ".join(IMAGE_SUFFIXES)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


# --------------------------------------------------------------------------- public API


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file.

    Args:
        path: a PNG, JPEG, BMP or TIFF file (the decoder is chosen by content).

    Returns:
        float32 array of shape (H, W, 3), values in [0, 1]. See the module
        docstring for how bit depths, alpha, palettes, CMYK and floats map.

    Raises:
        ImageError: the file is missing, is not a decodable image (corrupt,
            truncated, unknown format), or is smaller than 8x8 pixels.
    """
    return _decode(Path(path))


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ground-truth defect mask.

    Any pixel with a nonzero value in any colour channel is a defect (alpha is
    ignored, like in `read_image`). Use lossless files (PNG): JPEG noise turns
    near-black pixels into defects.

    Args:
        path: mask image file.
        shape: (H, W) of the image the mask belongs to, or None to skip the check.

    Returns:
        bool array of shape (H, W); True = defect.

    Raises:
        ImageError: unreadable file, or a size that differs from `shape`.
    """
    path = Path(path)
    unit = _decode(path)
    h, w = unit.shape[:2]
    if shape is not None:
        H, W = int(shape[0]), int(shape[1])
        if (h, w) != (H, W):
            raise ImageError(
                path, f"mask is {w}x{h} but its image is {W}x{H}", "masks must have the same size as their image"
            )
    return (unit > 0).any(axis=2)


def _is_hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return any(p.startswith(".") for p in parts)


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """List the image files of a folder.

    Args:
        folder: folder to scan.
        recursive: also scan subfolders (hidden subfolders are skipped).

    Returns:
        Sorted list of paths whose suffix is in IMAGE_SUFFIXES (any case),
        skipping hidden files (names starting with ".").

    Raises:
        DataError: the folder is missing, is not a folder, or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(
        p for p in candidates if _is_image_name(p) and not _is_hidden(p, folder) and p.is_file()
    )
    if not found:
        where = " (including subfolders)" if recursive else ""
        raise DataError(f"{folder}: no images found{where} (looked for {_SUFFIX_LIST})")
    return found


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Turn command-line inputs (image files and/or folders) into image paths.

    Folders are expanded recursively (sorted); files must have an image suffix.
    Duplicates (same resolved file) are dropped, keeping the first occurrence.

    Returns:
        list of image paths in input order.

    Raises:
        DataError: no inputs, a missing path, a non-image file, or a folder
            without images.
    """
    if not inputs:
        raise DataError("no input images given (pass image files or folders)")
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths = list_images(p, recursive=True)
        elif p.is_file():
            if not _is_image_name(p):
                raise DataError(f"{p}: not an image file (expected one of {_SUFFIX_LIST})")
            paths = [p]
        elif p.exists():
            raise DataError(f"{p}: not a regular file or folder")
        else:
            raise DataError(f"{p}: no such file or folder")
        for q in paths:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


def load_images(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, np.ndarray]], list[ImageError]]:
    """Read many images; a bad one does not stop the others.

    Returns:
        (loaded, errors): `loaded` holds (path, float32 (H, W, 3) array) for each
        readable image in input order; `errors` holds one ImageError per failure.
    """
    loaded: list[tuple[Path, np.ndarray]] = []
    errors: list[ImageError] = []
    for item in paths:
        p = Path(item)
        try:
            loaded.append((p, read_image(p)))
        except ImageError as err:
            errors.append(err)
    return loaded, errors


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any shape) -> uint8 in [0, 255], rounded.

    uint8 input is returned unchanged; bool input maps to 0/255; values outside
    [0, 1] are clipped and NaN becomes 0.
    """
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)


# zlib level of written PNGs: 1 encodes a camera-size panel ~5x faster than Pillow's default 6 (0.10 s
# against 0.55 s for 2304 x 632) for files ~10 % larger; visuals of a production run are written by the
# thousand (issue 25)
PNG_LEVEL = 1


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Write an image as 8-bit PNG, creating parent folders.

    Args:
        path: output file (written as PNG whatever its suffix).
        array: (H, W) or (H, W, 3) float in [0, 1], uint8, or bool;
            (H, W, 1) is treated as (H, W).

    Returns:
        the written path.

    Raises:
        ValueError: the array shape is not an image.
        ImageError: the file cannot be written.
    """
    path = Path(path)
    a = to_uint8(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"save_png expects (H, W) or (H, W, 3), got shape {a.shape}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(a)).save(path, format="PNG", compress_level=PNG_LEVEL)
    except OSError as exc:
        reason = f"cannot be written: {_short_reason(exc)}"
        raise ImageError(path, reason, "check that the output folder is writable") from exc
    return path
