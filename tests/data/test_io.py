"""Tests for nextpatch.data.io. All fixtures are generated into tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nextpatch.data import io
from nextpatch.data.io import (
    IMAGE_SUFFIXES,
    expand_inputs,
    list_images,
    load_images,
    read_image,
    read_mask,
    save_png,
    to_uint8,
)
from nextpatch.errors import DataError, ImageError

H, W = 12, 16


def rgb8(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def write_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    img.save(path)
    return path


def assert_unit_rgb(x: np.ndarray, shape: tuple[int, int] = (H, W)) -> None:
    assert x.dtype == np.float32
    assert x.shape == (*shape, 3)
    assert x.min() >= 0.0 and x.max() <= 1.0


# ----------------------------------------------------------------- read_image: formats


def test_suffixes() -> None:
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def test_rgb8_png_roundtrip(tmp_path: Path) -> None:
    a = rgb8()
    x = read_image(write_png(tmp_path / "a.png", a))
    assert_unit_rgb(x)
    np.testing.assert_allclose(x * 255, a, atol=1e-3)
    assert np.array_equal(to_uint8(x), a)


def test_gray16_png_scaled_by_65535(tmp_path: Path) -> None:
    a = np.zeros((H, W), np.uint16)
    a[:, :4] = 65535
    a[:, 4:8] = 32768
    a[:, 8:12] = 257
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode == "I;16"
    x = read_image(p)
    assert_unit_rgb(x)
    assert np.allclose(x[:, :4], 1.0)
    assert np.allclose(x[:, 4:8], 32768 / 65535, atol=1e-6)
    assert np.allclose(x[:, 8:12], 257 / 65535, atol=1e-7)
    assert np.allclose(x[:, 12:], 0.0)
    assert np.array_equal(x[..., 0], x[..., 2])  # gray replicated


def test_mode_I_treated_as_16bit() -> None:
    a = np.full((H, W), 32768, np.int32)
    a[0, 0] = 65535
    a[0, 1] = -5
    x = io._pil_to_unit(Image.fromarray(a, "I"))
    assert x.shape == (H, W, 3) and x.dtype == np.float32
    assert np.isclose(x[1, 1, 0], 32768 / 65535)
    assert np.isclose(x[0, 0, 0], 1.0)
    assert x[0, 1, 0] == 0.0
    big = io._pil_to_unit(Image.fromarray(np.full((H, W), 2**31 - 1, np.int32), "I"))
    assert np.allclose(big, 1.0)


def test_gray8_replicated(tmp_path: Path) -> None:
    a = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    x = read_image(write_png(tmp_path / "g.png", a))
    for c in range(3):
        np.testing.assert_allclose(x[..., c] * 255, a, atol=1e-3)


def test_rgb16_tiff(tmp_path: Path) -> None:
    a = np.random.default_rng(1).integers(0, 65536, size=(H, W, 3), dtype=np.uint16)
    a[0, 0] = (65535, 32768, 0)
    p = tmp_path / "c16.tif"
    tifffile.imwrite(p, a, photometric="rgb")
    x = read_image(p)
    assert_unit_rgb(x)
    np.testing.assert_allclose(x, a / 65535.0, atol=1e-6)
    assert np.allclose(x[0, 0], (1.0, 32768 / 65535, 0.0))


def test_tiff_planar_multipage_and_extra_channels(tmp_path: Path) -> None:
    a = np.random.default_rng(2).integers(0, 256, size=(3, H, W), dtype=np.uint8)
    p = tmp_path / "planar.tiff"
    tifffile.imwrite(p, a, photometric="rgb", planarconfig="separate")
    np.testing.assert_allclose(read_image(p) * 255, np.moveaxis(a, 0, -1), atol=1e-3)

    first = rgb8(3)
    p2 = tmp_path / "pages.TIF"
    with tifffile.TiffWriter(p2) as tw:
        tw.write(first, photometric="rgb")
        tw.write(rgb8(4), photometric="rgb")
    np.testing.assert_allclose(read_image(p2) * 255, first, atol=1e-3)

    five = np.random.default_rng(5).integers(0, 65536, size=(H, W, 5), dtype=np.uint16)
    p3 = tmp_path / "five.tif"
    tifffile.imwrite(p3, five, photometric="minisblack", planarconfig="contig")
    np.testing.assert_allclose(read_image(p3), five[..., :3] / 65535.0, atol=1e-6)


def test_float_tiff(tmp_path: Path) -> None:
    a = np.linspace(-0.5, 1.0, H * W, dtype=np.float32).reshape(H, W)
    a[0, 0] = np.nan
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, a)
    x = read_image(p)
    assert_unit_rgb(x)
    expected = np.clip(np.nan_to_num(a), 0, 1)
    np.testing.assert_allclose(x[..., 0], expected, atol=1e-6)

    b = np.full((H, W), 1000.0, np.float32)
    b[0, 0] = 65535.0
    p2 = tmp_path / "f2.tif"
    tifffile.imwrite(p2, b)
    y = read_image(p2)
    assert np.isclose(y[1, 1, 0], 1000 / 65535) and np.isclose(y[0, 0, 0], 1.0)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgb = rgb8(6)
    alpha = np.zeros((H, W, 1), np.uint8)  # fully transparent: colour still kept, not composited
    x = read_image(write_png(tmp_path / "a.png", np.concatenate([rgb, alpha], axis=2)))
    assert_unit_rgb(x)
    np.testing.assert_allclose(x * 255, rgb, atol=1e-3)


def test_palette_and_la(tmp_path: Path) -> None:
    rgb = rgb8(7)
    pal = Image.fromarray(rgb).quantize(colors=16)
    assert pal.mode == "P"
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    x = read_image(tmp_path / "p.png")
    np.testing.assert_allclose(x * 255, expected, atol=1e-3)

    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    la = np.stack([gray, np.full_like(gray, 9)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    y = read_image(tmp_path / "la.png")
    assert_unit_rgb(y)
    for c in range(3):
        np.testing.assert_allclose(y[..., c] * 255, gray, atol=1e-3)


def test_cmyk_jpeg_and_bmp(tmp_path: Path) -> None:
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[..., 0] = 200
    smooth[..., 1] = 100
    smooth[..., 2] = 30
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(smooth).save(tmp_path / "b.JPEG", quality=95)
    for name in ("a.jpg", "b.JPEG"):
        x = read_image(tmp_path / name)
        assert_unit_rgb(x, (32, 32))
        np.testing.assert_allclose(x * 255, smooth, atol=4)

    a = rgb8(8)
    Image.fromarray(a).save(tmp_path / "c.bmp")
    np.testing.assert_allclose(read_image(tmp_path / "c.bmp") * 255, a, atol=1e-3)

    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "d.jpg")
    y = read_image(tmp_path / "d.jpg")
    assert_unit_rgb(y, (32, 32))
    np.testing.assert_allclose(y * 255, smooth, atol=6)


def test_mislabelled_suffix_decoded_by_content(tmp_path: Path) -> None:
    a = rgb8(9)
    p = tmp_path / "really_png.tif"
    Image.fromarray(a).save(p, format="PNG")
    np.testing.assert_allclose(read_image(p) * 255, a, atol=1e-3)


# ----------------------------------------------------------------- read_image: errors


def test_truncated_png(tmp_path: Path) -> None:
    p = write_png(tmp_path / "broken_part.png", rgb8(10))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as ei:
        read_image(p)
    msg = str(ei.value)
    assert "broken_part.png" in msg
    assert "cannot be read as an image" in msg
    assert "re-export" in msg
    assert "\n" not in msg
    assert ei.value.path == p


def test_random_bytes_png(tmp_path: Path) -> None:
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="noise.png: cannot be read as an image"):
        read_image(p)


def test_corrupt_tiff(tmp_path: Path) -> None:
    p = tmp_path / "bad.tif"
    p.write_bytes(b"II*\x00" + b"\xff" * 40)
    with pytest.raises(ImageError, match="bad.tif: cannot be read"):
        read_image(p)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg"):
        read_image(p)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="nope.png: file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 20), (20, 4)])
def test_tiny_image(tmp_path: Path, h: int, w: int) -> None:
    p = write_png(tmp_path / "tiny.png", np.zeros((h, w, 3), np.uint8))
    with pytest.raises(ImageError, match=f"image is {w}x{h}, smaller than 8x8"):
        read_image(p)


def test_exact_min_size_ok(tmp_path: Path) -> None:
    assert read_image(write_png(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))).shape == (8, 8, 3)


# ----------------------------------------------------------------- read_mask


def test_read_mask_any_channel(tmp_path: Path) -> None:
    m = np.zeros((H, W, 3), np.uint8)
    m[1, 2, 0] = 1
    m[3, 4, 2] = 255
    mask = read_mask(write_png(tmp_path / "m.png", m), (H, W))
    assert mask.dtype == np.bool_ and mask.shape == (H, W)
    assert mask.sum() == 2 and mask[1, 2] and mask[3, 4]

    g = np.zeros((H, W), np.uint8)
    g[5:7, 5:7] = 255
    assert read_mask(write_png(tmp_path / "g.png", g)).sum() == 4


def test_read_mask_wrong_size(tmp_path: Path) -> None:
    p = write_png(tmp_path / "m.png", np.zeros((10, 20), np.uint8))
    with pytest.raises(ImageError) as ei:
        read_mask(p, (H, W))
    msg = str(ei.value)
    assert "mask is 20x10 but its image is 16x12" in msg
    assert "same size" in msg and "m.png" in msg


# ----------------------------------------------------------------- list_images / expand_inputs


def test_list_images(tmp_path: Path) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("b.png", "a.JPG", "c.tiff"):
        (d / name).write_bytes(b"x")  # list_images looks at names only
    (d / "notes.txt").write_text("hi")
    (d / ".hidden.png").write_bytes(b"x")
    (d / "sub").mkdir()
    (d / "sub" / "deep.png").write_bytes(b"x")
    (d / ".cache").mkdir()
    (d / ".cache" / "x.png").write_bytes(b"x")
    assert [p.name for p in list_images(d)] == ["a.JPG", "b.png", "c.tiff"]
    assert [p.relative_to(d).as_posix() for p in list_images(d, recursive=True)] == [
        "a.JPG", "b.png", "c.tiff", "sub/deep.png",
    ]


def test_list_images_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing_dir"
    with pytest.raises(DataError, match="missing_dir: folder not found"):
        list_images(missing)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError) as ei:
        list_images(empty)
    assert "empty_dir: no images found" in str(ei.value) and ".png" in str(ei.value)
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        list_images(f)


def test_expand_inputs(tmp_path: Path) -> None:
    d = tmp_path / "d"
    a = write_png(d / "a.png", rgb8())
    b = write_png(d / "sub" / "b.png", rgb8())
    single = write_png(tmp_path / "single.png", rgb8())
    out = expand_inputs([str(single), d, a, tmp_path / "d" / ".." / "single.png"])
    assert out == [single, a, b]


def test_expand_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ghost.png"):
        expand_inputs([tmp_path / "ghost.png"])
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(DataError, match="notes.txt: not an image file"):
        expand_inputs([txt])
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(DataError, match="emptydir"):
        expand_inputs([empty])
    with pytest.raises(DataError):
        expand_inputs([])


# ----------------------------------------------------------------- load_images / save


def test_load_images_collects_errors(tmp_path: Path) -> None:
    good1 = write_png(tmp_path / "g1.png", rgb8(1))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good2 = write_png(tmp_path / "g2.png", rgb8(2))
    missing = tmp_path / "missing.png"
    loaded, errors = load_images([good1, bad, good2, missing])
    assert [p for p, _ in loaded] == [good1, good2]
    assert all(x.shape == (H, W, 3) and x.dtype == np.float32 for _, x in loaded)
    assert [e.path for e in errors] == [bad, missing]
    assert all(isinstance(e, ImageError) for e in errors)


def test_to_uint8() -> None:
    x = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]], np.float32)
    assert to_uint8(x).tolist() == [[0, 0, 128, 255, 255, 0]]
    u = np.array([[3]], np.uint8)
    assert to_uint8(u) is u
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]


def test_save_png_roundtrip(tmp_path: Path) -> None:
    a = rgb8(11)
    out = save_png(tmp_path / "new" / "dir" / "x.png", a.astype(np.float32) / 255)
    assert out.exists()
    np.testing.assert_allclose(read_image(out) * 255, a, atol=1e-3)
    g = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    out2 = save_png(tmp_path / "g.png", g)
    assert Image.open(out2).mode == "L"
    np.testing.assert_allclose(read_image(out2)[..., 1], g, atol=1 / 255)
    with pytest.raises(ValueError):
        save_png(tmp_path / "bad.png", np.zeros((2, 3, 7), np.uint8))
