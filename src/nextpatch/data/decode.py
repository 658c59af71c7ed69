"""Decoding image files for :mod:`nextpatch.data.io`: PIL and tifffile decoders, the conversion of
any pixel type to float32 RGB in [0, 1] (rules in the docstring of :mod:`nextpatch.data.io`), and
decoder errors turned into one-line `ImageError`s."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nextpatch.errors import ImageError

#: Smallest accepted image side, in pixels.
MIN_SIZE = 8

_READ_FIX = "re-export the file as PNG or JPEG"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# --------------------------------------------------------------------------- helpers


def _short_reason(exc: BaseException) -> str:
    """One short line describing a decoder exception, without the file path."""
    if isinstance(exc, UnidentifiedImageError):
        return "unrecognized or corrupt image data"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    if not text:
        text = type(exc).__name__
    if len(text) > 120:
        text = text[:117] + "..."
    return text


def _cannot_read(path: Path, exc: BaseException) -> ImageError:
    return ImageError(path, f"cannot be read as an image: {_short_reason(exc)}", _READ_FIX)


def _int_to_unit(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Integer (or bool) array -> float32 in [0, 1]. `bits` overrides the scale of unsigned data."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    info = np.iinfo(arr.dtype)
    if info.min < 0:
        out = np.clip(arr.astype(np.float64), 0, None) / float(info.max)
        return out.astype(np.float32)
    if bits is not None and 0 < bits < info.bits:
        scale = float(2**bits - 1)
    else:
        scale = float(info.max)
    return np.clip(arr.astype(np.float32) / np.float32(scale), 0.0, 1.0)


def _float_to_unit(arr: np.ndarray) -> np.ndarray:
    """Float array -> float32 in [0, 1] (rules in the docstring of nextpatch.data.io)."""
    a = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        if finite.any():
            hi, lo = float(a[finite].max()), float(a[finite].min())
        else:
            hi = lo = 0.0
        a = np.nan_to_num(a, nan=0.0, posinf=hi, neginf=lo)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 1.0:
        scale = 1.0
    elif peak <= 255.0:
        scale = 255.0
    elif peak <= 65535.0:
        scale = 65535.0
    else:
        scale = peak
    return np.clip(a / scale, 0.0, 1.0).astype(np.float32)


def _to_unit(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    if arr.dtype.kind == "f":
        return _float_to_unit(arr)
    if arr.dtype.kind in "uib":
        return _int_to_unit(arr, bits)
    raise ValueError(f"unsupported pixel type {arr.dtype}")


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 2) -> gray replicated; (H, W, >=3) -> first 3 channels."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"unexpected array shape {arr.shape}")
    channels = arr.shape[2]
    if channels in (1, 2):  # gray or gray+alpha: keep gray
        return np.repeat(arr[:, :, :1], 3, axis=2)
    return arr[:, :, :3]


def _cmyk_to_rgb(unit: np.ndarray) -> np.ndarray:
    """(H, W, >=4) float CMYK in [0, 1] -> (H, W, 3) RGB (naive, no colour profile)."""
    c, m, y, k = (unit[:, :, i] for i in range(4))
    return np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], axis=2)


# --------------------------------------------------------------------------- decoders


def _decode_pil(path: Path) -> np.ndarray:
    """Decode with PIL -> float32 (H, W, 3) in [0, 1]. Raises decoder exceptions as-is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decoder chatter (bad EXIF, bomb size); failures still raise
        with Image.open(path) as img:
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception:  # malformed EXIF: keep stored orientation
                oriented = img
            return _pil_to_unit(oriented)


def _pil_to_unit(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "1":
        unit = np.asarray(img, dtype=bool).astype(np.float32)
    elif mode in ("L", "LA", "RGB", "RGBA", "RGBX"):
        unit = np.asarray(img).astype(np.float32) / np.float32(255.0)
    elif mode.startswith("I;16"):
        arr = np.asarray(img)
        if arr.dtype.kind == "i":  # "I;16S": signed
            unit = _int_to_unit(arr.astype(np.int16))
        else:
            unit = arr.astype(np.float32) / np.float32(65535.0)
    elif mode == "I":
        arr = np.asarray(img).astype(np.int64)
        peak = int(arr.max()) if arr.size else 0
        scale = 65535.0 if peak <= 65535 else float(2**31 - 1)
        unit = (np.clip(arr, 0, None) / scale).astype(np.float32)
    elif mode == "F":
        unit = _float_to_unit(np.asarray(img))
    else:  # P, PA, CMYK, YCbCr, La, RGBa, LAB, HSV, ...
        unit = np.asarray(img.convert("RGB")).astype(np.float32) / np.float32(255.0)
    return _to_rgb(unit)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's logged warnings while decoding (failures still raise)."""
    logger = logging.getLogger("tifffile")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def _decode_tiff(path: Path) -> np.ndarray:
    """Decode the first page of a TIFF with tifffile -> float32 (H, W, 3) in [0, 1]."""
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise ValueError("TIFF file has no readable pages")
        page = tif.pages[0]
        arr = np.asarray(page.asarray())
        axes = str(getattr(page, "axes", ""))
        photometric = int(getattr(page, "photometric", -1))
        bits = int(getattr(page, "bitspersample", 0)) or None
        colormap = getattr(page, "colormap", None)

    # Put samples last and drop any leading (depth/plane) axes: keep the first plane.
    if "S" in axes and len(axes) == arr.ndim:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        target_ndim = 3
    elif len(axes) == arr.ndim:  # no samples axis: one value per pixel
        target_ndim = 2
    else:  # unknown axes: a short last axis is taken as channels
        target_ndim = 3 if arr.ndim >= 3 and arr.shape[-1] <= 4 else 2
    while arr.ndim > target_ndim:
        arr = arr[0]

    PALETTE, MINISWHITE, SEPARATED = 3, 0, 5  # TIFF photometric tags
    if photometric == PALETTE and colormap is not None and arr.ndim == 2 and arr.dtype.kind in "ub":
        cmap = np.asarray(colormap)  # (3, 2**bits), 16-bit entries
        idx = np.clip(arr.astype(np.int64), 0, cmap.shape[1] - 1)
        rgb = cmap.T[idx].astype(np.float32)
        # Colormaps are 16-bit by the standard; some writers store 8-bit values (as libtiff, detect that).
        scale = 255.0 if cmap.max() <= 255 else 65535.0
        return np.clip(rgb / np.float32(scale), 0.0, 1.0)

    unsigned_bits = bits if arr.dtype.kind == "u" else None
    unit = _to_unit(arr, unsigned_bits)
    if photometric == MINISWHITE:
        unit = 1.0 - unit
    if photometric == SEPARATED and unit.ndim == 3 and unit.shape[2] >= 4:
        return _cmyk_to_rgb(unit).astype(np.float32)
    return _to_rgb(unit)


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(path, "file not found", "check the path")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image file", "pass an image file")


def _decode(path: Path) -> np.ndarray:
    """Decode any supported file -> float32 (H, W, 3) in [0, 1], size-checked."""
    _check_file(path)
    try:
        if _is_tiff(path):
            try:
                unit = _decode_tiff(path)
            except Exception as tiff_exc:
                try:
                    unit = _decode_pil(path)
                except Exception:
                    raise _cannot_read(path, tiff_exc) from tiff_exc
        else:
            unit = _decode_pil(path)
    except ImageError:
        raise
    except Exception as exc:
        raise _cannot_read(path, exc) from exc

    h, w = unit.shape[:2]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ImageError(
            path, f"image is {w}x{h}, smaller than {MIN_SIZE}x{MIN_SIZE}", "use images of at least 8x8 pixels"
        )
    return np.ascontiguousarray(unit, dtype=np.float32)
