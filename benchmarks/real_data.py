"""Build the real-data development benchmark (issue 24, part 1) in the MVTec AD layout.

Two sets, each a folder of categories that ``nextpatch.evaluate.evaluate_category`` reads:

* ``dev`` (tune there): ``elpv-mono``, ``concrete-large`` (1000-1700 px images, every defect under
  1 % of the image), ``metal-dark``, ``wood-planks``, ``paint-peeling``;
* ``validation`` (confirm only): ``elpv-poly``, ``rust-metal``, ``marble``, ``asphalt``,
  ``painted-grey``.

**elpv** (PyPI ``elpv-dataset``): real 300 x 300 electroluminescence images of solar cells. Cells
at defect probability 0 are good, at 1.0 defective (0.33 and 0.67 are dropped); mono cells make
``elpv-mono``, poly cells ``elpv-poly``. Defective cells go to ``test/defective/`` with no mask:
image-level metrics only (``evaluate_category`` reports image AUROC, its pixel metrics are None).
The images are written as they are (no nuisance added: they are real acquisitions already).

**Surface photographs** (Debian ``ufoai-textures`` and ``nexuiz-textures``, read from their
``.pk3`` zip archives): each category is one source texture. Every image is a window of it, of
its own size and aspect ratio, resampled at the category's zoom, rotated by a few degrees, maybe
flipped; then an acquisition nuisance of its own (gain, gamma, offset, an illumination gradient,
slight blur, sensor noise). Train windows lie in the top rows of the source (``SPLIT`` of its
height), test windows (good and defective) in the rest: train and test windows share no source
pixel. The textures tile seamlessly, so windows wrap around horizontally (never vertically).

**Defects** are made here, by code that training does not share (nothing from
``nextpatch.data.anomalies``): smear (texture smoothed away), inpaint (filled from the
surroundings by normalized convolution), thin faint scratch, local warp, small pit, thin crack,
stain, foreign material (a crop of another texture). Each has an exact mask: outside it the
defective image is identical to the clean one (the nuisance blur comes before the defect, the
noise after it is the same draw). Contrast is drawn relative to the source's own contrast, from
faint to clear; areas are drawn in the per-kind range of ``AREA`` (a fraction of the image, capped
by the category's ``max_area``), and a defect is redrawn until its mask area is in that range.

Everything is deterministic given ``--seed``: each image draws from its own generator, seeded by
(seed, category, split, index).

Usage: ``python benchmarks/real_data.py OUT_DIR [--set dev|validation|all] [--seed 0]``
writes ``OUT_DIR/<set>/<category>/...`` and ``OUT_DIR/<set>/manifest.json``.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

PK3 = {
    "ufoai-textures": "/usr/share/games/ufoai/base/0textures.pk3",
    "nexuiz-textures": "/usr/share/games/nexuiz/data/textures.pk3",
}
SPLIT = 0.55  # train windows in rows [0, SPLIT*H) of the source, test windows in [SPLIT*H, H)

#: stated mask-area range of each defect kind, as a fraction of the image's pixels
AREA = {
    "smear": (0.003, 0.08),
    "inpaint": (0.003, 0.06),
    "scratch": (0.0002, 0.01),
    "warp": (0.004, 0.08),
    "pit": (0.00002, 0.003),
    "crack": (0.0004, 0.015),
    "stain": (0.005, 0.10),
    "foreign": (0.002, 0.05),
}

#: textures that foreign material is cut from (none of them is a category's source)
FOREIGN = [
    ("ufoai-textures", "textures/tex_ctp1/wood_b_1.jpg"),
    ("ufoai-textures", "textures/tex_ctp1/concrete_r_1.jpg"),
    ("ufoai-textures", "textures/tex_mattn/rust2.jpg"),
    ("ufoai-textures", "textures/tex_ctp1/metal_g_3.jpg"),
    ("nexuiz-textures", "textures/trak4/rust2.tga"),
    ("nexuiz-textures", "textures/stormkeep/rock.tga"),
]


@dataclass(frozen=True)
class PhotoCategory:
    name: str
    package: str
    member: str  # path inside the package's .pk3
    kinds: tuple[str, ...]
    zoom: float  # output pixels per source pixel
    short_side: tuple[int, int]  # range of the window's shorter output side
    aspect: tuple[float, float] = (0.6, 1.7)  # width / height
    gray: bool = False
    max_rot_deg: float = 3.0
    max_area: float = 1.0  # cap on every kind's area range (fraction of the image)
    n_train: int = 90
    n_test_good: int = 30
    n_per_kind: int = 10
    flips: bool = True


@dataclass(frozen=True)
class ElpvCategory:
    name: str
    cell_type: str  # "mono" or "poly"
    n_train: int = 120
    n_test_good: int = 60
    n_test_defective: int = 60


PHOTOS = {
    c.name: c for c in [
        # dev
        PhotoCategory("concrete-large", "ufoai-textures", "textures/tex_ctp1/concrete_g_8.jpg",
                      ("scratch", "pit", "crack", "smear", "foreign"), zoom=2.4, short_side=(1000, 1120),
                      aspect=(1.0, 1.5), max_rot_deg=1.5, max_area=0.009, n_train=60, n_test_good=20,
                      n_per_kind=8),
        PhotoCategory("metal-dark", "nexuiz-textures", "textures/eX/eXmetalBase01.tga",
                      ("scratch", "pit", "crack", "warp", "inpaint"), zoom=1.5, short_side=(180, 320), gray=True),
        PhotoCategory("wood-planks", "ufoai-textures", "textures/tex_mattn/wood008.jpg",
                      ("smear", "scratch", "warp", "stain", "foreign"), zoom=1.0, short_side=(180, 380),
                      flips=False),
        PhotoCategory("paint-peeling", "nexuiz-textures", "textures/trak4/paint_blue.tga",
                      ("inpaint", "scratch", "pit", "stain", "crack"), zoom=1.5, short_side=(180, 320)),
        # validation
        PhotoCategory("rust-metal", "ufoai-textures", "textures/tex_material/metall001.png",
                      ("smear", "pit", "crack", "warp", "foreign"), zoom=1.5, short_side=(180, 320)),
        PhotoCategory("marble", "ufoai-textures", "textures/tex_ctp1/marble_m_1.jpg",
                      ("inpaint", "scratch", "warp", "stain", "crack"), zoom=1.5, short_side=(180, 320)),
        PhotoCategory("asphalt", "ufoai-textures", "textures/tex_ctp1/asphalt_b_1.jpg",
                      ("smear", "pit", "foreign", "warp", "scratch"), zoom=1.5, short_side=(180, 320), gray=True),
        PhotoCategory("painted-grey", "nexuiz-textures", "textures/trak4/painted2.tga",
                      ("scratch", "crack", "pit", "inpaint", "stain"), zoom=1.5, short_side=(180, 320),
                      gray=True),
    ]
}
ELPV = {"elpv-mono": ElpvCategory("elpv-mono", "mono"), "elpv-poly": ElpvCategory("elpv-poly", "poly")}
SETS = {
    "dev": ("elpv-mono", "concrete-large", "metal-dark", "wood-planks", "paint-peeling"),
    "validation": ("elpv-poly", "rust-metal", "marble", "asphalt", "painted-grey"),
}


class MissingSource(RuntimeError):
    """A data source (a Debian package, the elpv-dataset module) is not installed."""


# ----------------------------------------------------------------------------------------- sources

@lru_cache(maxsize=None)
def _pk3(package: str) -> zipfile.ZipFile:
    path = Path(PK3[package])
    if not path.is_file():
        raise MissingSource(f"{path} not found: the real-data benchmark needs it, "
                            f"install it with: sudo apt-get install {package}")
    return zipfile.ZipFile(path)


@lru_cache(maxsize=None)
def load_texture(package: str, member: str, gray: bool = False) -> np.ndarray:
    """A texture from a Debian package as float32 (H, W, C) in [0, 1], C = 1 (gray) or 3."""
    im = Image.open(io.BytesIO(_pk3(package).read(member))).convert("RGB")
    a = np.asarray(im, dtype=np.float32) / 255.0
    if gray:
        a = (a @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    return np.ascontiguousarray(a)


@lru_cache(maxsize=None)
def _upsampled(package: str, member: str, gray: bool, zoom: float) -> np.ndarray:
    """A texture resampled once by `zoom` (cubic spline, periodic: the textures tile); windows are then
    read from it bilinearly at about 1:1, which is as sharp as cubic sampling and four times faster."""
    a = load_texture(package, member, gray)
    if abs(zoom - 1) < 1e-6:
        return a
    return np.stack([ndimage.zoom(a[..., c], zoom, order=3, mode="grid-wrap", grid_mode=True)
                     for c in range(a.shape[2])], axis=-1).astype(np.float32)


def sources_missing(set_name: str = "all") -> list[str]:
    """Install hints for the sources a set needs that are not here (empty: all present)."""
    names = [n for s in (SETS if set_name == "all" else {set_name: SETS[set_name]}).values() for n in s]
    out = []
    pkgs = sorted({PHOTOS[n].package for n in names if n in PHOTOS} | {p for p, _ in FOREIGN})
    for p in pkgs:
        if not Path(PK3[p]).is_file():
            out.append(f"sudo apt-get install {p}")
    if any(n in ELPV for n in names):
        try:
            import elpv_dataset  # noqa: F401
        except ImportError:
            out.append("pip install elpv-dataset")
    return out


def _rng(seed: int, *keys) -> np.random.Generator:
    words = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


# ----------------------------------------------------------------------------------------- windows

@dataclass
class Window:
    """Where an image's pixels come from in the source (source pixel coordinates)."""
    h: int
    w: int
    cy: float
    cx: float
    theta: float
    flip_x: bool
    flip_y: bool
    y_extent: tuple[float, float]  # lowest and highest source row the window samples


def draw_window(cat: PhotoCategory, src_shape: tuple[int, int], split: str, rng: np.random.Generator) -> Window:
    """A window of its own size, aspect and rotation, lying in the split's rows of the source."""
    Hs, Ws = src_shape
    cut = SPLIT * Hs
    lo, hi = (0.0, cut) if split == "train" else (cut, float(Hs))
    margin = 2.5  # cubic spline support
    for _ in range(200):
        s = int(rng.integers(cat.short_side[0], cat.short_side[1] + 1))
        asp = float(np.exp(rng.uniform(np.log(cat.aspect[0]), np.log(cat.aspect[1]))))
        h, w = (s, int(round(s * asp))) if asp >= 1 else (int(round(s / asp)), s)
        th = np.deg2rad(rng.uniform(-cat.max_rot_deg, cat.max_rot_deg))
        hy = (abs(np.sin(th)) * w + abs(np.cos(th)) * h) / 2 / cat.zoom
        hx = (abs(np.cos(th)) * w + abs(np.sin(th)) * h) / 2 / cat.zoom
        if 2 * hy + 2 * margin > hi - lo or 2 * hx > Ws - 2:
            continue  # too tall for the region or wider than the source: draw again
        cy = rng.uniform(lo + hy + margin, hi - hy - margin)
        cx = rng.uniform(0, Ws)
        flip_x, flip_y = (bool(rng.random() < 0.5), bool(rng.random() < 0.5)) if cat.flips else (False, False)
        return Window(h, w, cy, cx, th, flip_x, flip_y, (cy - hy, cy + hy))
    raise ValueError(f"{cat.name}: no window of {cat.short_side} px fits the {split} region of a {Hs}x{Ws} source")


def render_window(cat: PhotoCategory, win: Window) -> np.ndarray:
    up = _upsampled(cat.package, cat.member, cat.gray, cat.zoom)
    k = up.shape[0] / load_texture(cat.package, cat.member, cat.gray).shape[0]  # the realised zoom
    u = (np.arange(win.w) + 0.5 - win.w / 2) / cat.zoom
    v = (np.arange(win.h) + 0.5 - win.h / 2) / cat.zoom
    if win.flip_x:
        u = -u
    if win.flip_y:
        v = -v
    vv, uu = np.meshgrid(v, u, indexing="ij")
    c, s = np.cos(win.theta), np.sin(win.theta)
    ys = (win.cy + s * uu + c * vv) * k - 0.5  # source coordinates -> upsampled pixel centres
    xs = (win.cx + c * uu - s * vv) * k - 0.5
    out = np.stack([ndimage.map_coordinates(up[..., j], [ys, xs], order=1, mode="grid-wrap")
                    for j in range(up.shape[2])], axis=-1)
    return np.clip(out, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------- nuisance

@dataclass
class Nuisance:
    gain: float
    gamma: float
    offset: float
    grad: tuple[float, float]  # illumination gradient per image height / width
    blur: float
    noise: float
    noise_seed: int


def draw_nuisance(rng: np.random.Generator) -> Nuisance:
    return Nuisance(gain=float(rng.uniform(0.85, 1.15)), gamma=float(np.exp(rng.uniform(-0.15, 0.15))),
                    offset=float(rng.uniform(-0.05, 0.05)),
                    grad=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.06, 0.06))),
                    blur=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else 0.0,
                    noise=float(rng.uniform(0.003, 0.015)), noise_seed=int(rng.integers(2**31)))


def optics(img: np.ndarray, n: Nuisance) -> np.ndarray:
    """The part of the nuisance before the defect: blur, gamma, gain, offset, illumination gradient."""
    a = img
    if n.blur > 0:
        a = ndimage.gaussian_filter(a, sigma=(n.blur, n.blur, 0), mode="reflect")
    a = np.clip(a, 0, 1) ** n.gamma
    H, W = a.shape[:2]
    yy = (np.arange(H)[:, None] / max(1, H - 1) - 0.5) * n.grad[0]
    xx = (np.arange(W)[None, :] / max(1, W - 1) - 0.5) * n.grad[1]
    a = a * n.gain * (1 + yy + xx)[..., None] + n.offset
    return np.clip(a, 0, 1).astype(np.float32)


def sensor(img: np.ndarray, n: Nuisance) -> np.ndarray:
    """The part after the defect: sensor noise (the same draw for the clean and the defective image)."""
    noise = np.random.default_rng(n.noise_seed).standard_normal(img.shape[:2], dtype=np.float32) * n.noise
    return np.clip(img + noise[..., None], 0, 1)


def to_u8(a: np.ndarray) -> np.ndarray:
    a = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return a[..., 0] if a.shape[2] == 1 else a


# ----------------------------------------------------------------------------------------- defects

def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 5) -> np.ndarray:
    """Smooth random field of unit-ish amplitude over `shape`."""
    g = rng.standard_normal((cells + 3, cells + 3))
    f = ndimage.zoom(g, ((shape[0] + 2) / g.shape[0], (shape[1] + 2) / g.shape[1]), order=3)[:shape[0], :shape[1]]
    f = f[:shape[0], :shape[1]]
    if f.shape != shape:
        f = np.pad(f, ((0, shape[0] - f.shape[0]), (0, shape[1] - f.shape[1])), mode="edge")
    return f / (f.std() + 1e-6)


def _cut(alpha: np.ndarray, t: float = 0.2) -> np.ndarray:
    """Alpha with everything under `t` set to exactly 0 (the mask is then alpha > 0)."""
    return np.where(alpha > t, alpha, 0.0).astype(np.float32)


def _blob(H: int, W: int, rng: np.random.Generator, area: float, elong: float = 2.5, rough: float = 0.35,
          edge: float = 0.25) -> np.ndarray:
    """Soft irregular blob alpha (H, W) of about `area` pixels, fully inside the image."""
    asp = float(np.exp(rng.uniform(-np.log(elong), np.log(elong))))
    a = np.sqrt(area / np.pi * asp)
    b = np.sqrt(area / np.pi / asp)
    r = 1.5 * max(a, b) + 3
    cy = rng.uniform(min(r, H / 2), max(H - r, H / 2))
    cx = rng.uniform(min(r, W / 2), max(W - r, W / 2))
    th = rng.uniform(0, np.pi)
    y0, y1 = int(max(0, cy - r)), int(min(H, cy + r + 1))
    x0, x1 = int(max(0, cx - r)), int(min(W, cx + r + 1))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    u = np.cos(th) * dx + np.sin(th) * dy
    v = -np.sin(th) * dx + np.cos(th) * dy
    d = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    d = d * (1 + rough * np.tanh(_smooth_field(rng, d.shape, cells=4)))
    alpha = np.zeros((H, W), np.float32)
    alpha[y0:y1, x0:x1] = np.clip((1 - d) / edge, 0, 1)
    return _cut(alpha)


def _curve(rng: np.random.Generator, H: int, W: int, length: float, wiggle: float, step: float = 0.5) -> np.ndarray:
    """Points (N, 2) (y, x) along a random curve of `length` px inside the image."""
    n = max(4, int(length / step))
    ang = rng.uniform(0, 2 * np.pi)
    turn = np.cumsum(rng.normal(0, wiggle, n)) + rng.uniform(-0.3, 0.3) / n * np.arange(n)
    dirs = ang + turn
    pts = np.cumsum(np.stack([np.sin(dirs), np.cos(dirs)], 1) * step, 0)
    pts -= (pts.min(0) + pts.max(0)) / 2
    span = pts.max(0) - pts.min(0)
    lo = span / 2 + 4
    c = np.array([rng.uniform(min(lo[0], H / 2), max(H - lo[0], H / 2)),
                  rng.uniform(min(lo[1], W / 2), max(W - lo[1], W / 2))])
    return pts + c


def _line_alpha(H: int, W: int, pts: np.ndarray, width: float, taper: bool = True) -> np.ndarray:
    """Alpha of a line of FWHM `width` along `pts`, fading at both ends."""
    r = width * 2 + 2
    y0, x0 = np.maximum(0, np.floor(pts.min(0) - r)).astype(int)
    y1, x1 = np.minimum([H, W], np.ceil(pts.max(0) + r) + 1).astype(int)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    q = np.stack([yy.ravel() + 0.5, xx.ravel() + 0.5], 1)
    d, idx = cKDTree(pts).query(q, distance_upper_bound=r)
    d = np.where(np.isfinite(d), d, r)
    t = np.clip(idx, 0, len(pts) - 1) / max(1, len(pts) - 1)
    prof = np.exp(-4 * np.log(2) * (d / width) ** 2)
    if taper:
        prof = prof * np.clip(np.sin(np.pi * t) * 1.6, 0, 1)
    alpha = np.zeros((H, W), np.float32)
    alpha[y0:y1, x0:x1] = prof.reshape(yy.shape)
    return _cut(alpha, 0.25)


def _contrast(rng: np.random.Generator, ref: float) -> float:
    """Defect contrast: from faint (about half the texture's spread) to clear (about 3x)."""
    return float(max(0.03, ref * np.exp(rng.uniform(np.log(0.6), np.log(3.0)))))


def d_smear(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    alpha = _blob(H, W, rng, area, elong=3.0, edge=0.4)
    sig = rng.uniform(2.0, 6.0)
    sy, sx = (sig, sig) if rng.random() < 0.5 else ((sig * 2.5, sig * 0.6) if rng.random() < 0.5 else (sig * 0.6, sig * 2.5))
    blurred = ndimage.gaussian_filter(img, sigma=(sy, sx, 0), mode="reflect")
    return img * (1 - alpha[..., None]) + blurred * alpha[..., None], alpha


def d_inpaint(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    alpha = _blob(H, W, rng, area, elong=2.0, edge=0.15)
    hole = alpha > 0
    known = (~ndimage.binary_dilation(hole, iterations=2)).astype(np.float32)
    r = np.sqrt(hole.sum() / np.pi)
    sig = 0.5 * r + 2
    num = ndimage.gaussian_filter(img * known[..., None], sigma=(sig, sig, 0), mode="reflect")
    den = ndimage.gaussian_filter(known, sigma=sig, mode="reflect")[..., None]
    fill = num / np.maximum(den, 1e-4)
    # a little fine texture, copied from elsewhere in the image, so the fill is not perfectly flat
    k = rng.uniform(0.0, 0.3)
    shift = (int(rng.integers(H // 4, 3 * H // 4)), int(rng.integers(W // 4, 3 * W // 4)))
    detail = np.roll(img - ndimage.gaussian_filter(img, sigma=(2, 2, 0)), shift, axis=(0, 1))
    fill = fill + k * detail
    return img * (1 - alpha[..., None]) + fill * alpha[..., None], alpha


def d_scratch(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    width = rng.uniform(0.7, 2.0)
    length = min(area / (1.6 * width + 1.0), 0.8 * min(H, W) * 1.4)
    pts = _curve(rng, H, W, max(length, 8), wiggle=rng.uniform(0.0005, 0.006))
    alpha = _line_alpha(H, W, pts, width)
    c = _contrast(rng, ref) * (1 if rng.random() < 0.7 else -1)  # scratches mostly catch the light
    return img + c * alpha[..., None], alpha


def d_crack(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    width = rng.uniform(0.8, 2.5)
    length = min(area / (1.6 * width + 1.0), 0.7 * min(H, W) * 1.4)
    pts = _curve(rng, H, W, max(length, 10), wiggle=rng.uniform(0.02, 0.05))
    alpha = _line_alpha(H, W, pts, width, taper=True)
    if rng.random() < 0.5 and len(pts) > 20:  # a branch
        i = int(rng.integers(len(pts) // 4, 3 * len(pts) // 4))
        br = _curve(rng, H, W, length * rng.uniform(0.2, 0.5), wiggle=0.04)
        br = br - br[0] + pts[i]
        br = br[(br[:, 0] > 2) & (br[:, 0] < H - 2) & (br[:, 1] > 2) & (br[:, 1] < W - 2)]
        if len(br) > 4:
            alpha = np.maximum(alpha, _line_alpha(H, W, br, width * 0.7))
    depth = min(0.8, _contrast(rng, ref) / max(0.05, float(img.mean())))
    return img * (1 - depth * alpha[..., None]), alpha


def d_pit(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    eff = np.zeros((H, W), np.float32)
    n = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    depth = min(0.85, _contrast(rng, ref) * 1.5 / max(0.05, float(img.mean())))
    c0 = np.array([rng.uniform(0.1 * H, 0.9 * H), rng.uniform(0.1 * W, 0.9 * W)])
    for _ in range(n):
        rad = np.sqrt(area / n / np.pi) * rng.uniform(0.7, 1.2) + 0.6
        c = c0 + rng.normal(0, 4 * rad, 2) * (n > 1)
        c = np.clip(c, rad + 3, [H - rad - 3, W - rad - 3])
        R = int(3 * rad + 4)
        y0, y1, x0, x1 = int(max(0, c[0] - R)), int(min(H, c[0] + R)), int(max(0, c[1] - R)), int(min(W, c[1] + R))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy + 0.5 - c[0], xx + 0.5 - c[1]
        r2 = (dy ** 2 + dx ** 2) / rad ** 2
        core = np.exp(-r2 * 1.4)
        lang = rng.uniform(0, 2 * np.pi)  # a bright rim on the side the light comes from
        rim = 0.35 * np.exp(-((np.sqrt(r2) - 1.2) ** 2) / 0.15) * np.clip(
            (np.cos(lang) * dx + np.sin(lang) * dy) / (rad * np.sqrt(r2) + 1e-3), 0, 1)
        e = -core + rim
        cur = eff[y0:y1, x0:x1]
        eff[y0:y1, x0:x1] = np.where(np.abs(e) > np.abs(cur), e, cur)
    alpha = _cut(np.abs(eff), 0.15)
    eff = np.where(alpha > 0, eff, 0)
    return img * (1 + depth * eff[..., None]), alpha


def d_warp(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    amp = rng.uniform(1.5, 5.0)
    R = np.sqrt(area / np.pi) / np.sqrt(max(1e-3, 1 - np.sqrt(0.4 / amp)))
    c = np.array([rng.uniform(min(R + 2, H / 2), max(H - R - 2, H / 2)),
                  rng.uniform(min(R + 2, W / 2), max(W - R - 2, W / 2))])
    y0, y1, x0, x1 = int(max(0, c[0] - R - 2)), int(min(H, c[0] + R + 2)), int(max(0, c[1] - R - 2)), int(min(W, c[1] + R + 2))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - c[0], xx - c[1]
    r = np.sqrt(dy ** 2 + dx ** 2) / R
    bump = np.clip(1 - r ** 2, 0, 1) ** 2
    kind = rng.integers(3)
    if kind == 0:  # swirl: tangential displacement
        uy, ux = -dx / (r * R + 1e-3), dy / (r * R + 1e-3)
    elif kind == 1:  # bulge / dent: radial displacement
        s = 1 if rng.random() < 0.5 else -1
        uy, ux = s * dy / (r * R + 1e-3), s * dx / (r * R + 1e-3)
    else:  # shear along a random direction
        a = rng.uniform(0, np.pi)
        uy, ux = np.full_like(r, np.sin(a)), np.full_like(r, np.cos(a))
    disp = amp * bump * np.minimum(1, r * R / 2)  # no displacement at the very centre of a swirl/bulge
    keep = disp > 0.4
    disp = np.where(keep, disp, 0)
    out = img.copy()
    for k in range(img.shape[2]):
        out[y0:y1, x0:x1, k] = ndimage.map_coordinates(img[..., k], [yy + disp * uy, xx + disp * ux],
                                                       order=3, mode="reflect")
    alpha = np.zeros((H, W), np.float32)
    alpha[y0:y1, x0:x1] = keep
    return out, alpha


def d_stain(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    alpha = _blob(H, W, rng, area, elong=2.0, rough=0.5, edge=0.6)
    k = _contrast(rng, ref) / max(0.05, float(img.mean())) * (1 if rng.random() < 0.35 else -1)
    k = float(np.clip(k, -0.6, 0.6))
    C = img.shape[2]
    tint = np.ones(C, np.float32) if C == 1 else (1 + rng.uniform(-0.4, 0.4, C)).astype(np.float32)
    tex = 1 + 0.3 * np.tanh(_smooth_field(rng, (H, W), cells=12))
    return img * (1 + k * (alpha * tex)[..., None] * tint), alpha


def d_foreign(img, rng, area, ref, foreign):
    H, W = img.shape[:2]
    alpha = _blob(H, W, rng, area, elong=4.0, rough=0.45, edge=0.12)
    pkg, member = FOREIGN[int(rng.integers(len(FOREIGN)))]
    src = load_texture(pkg, member, img.shape[2] == 1)
    z = rng.uniform(0.7, 1.5)
    ys, xs = np.nonzero(alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    oy, ox = rng.uniform(0, src.shape[0]), rng.uniform(0, src.shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    patch = np.stack([ndimage.map_coordinates(src[..., k], [oy + yy / z, ox + xx / z], order=1, mode="grid-wrap")
                      for k in range(src.shape[2])], -1)
    # pull its brightness part of the way to the surface's, so it is not always a bright/dark blotch
    m_here = img[y0:y1, x0:x1].reshape(-1, img.shape[2]).mean(0)
    m_patch = patch.reshape(-1, img.shape[2]).mean(0)
    patch = patch + rng.uniform(0.3, 0.9) * (m_here - m_patch)
    fill = img.copy()
    fill[y0:y1, x0:x1] = patch
    return img * (1 - alpha[..., None]) + fill * alpha[..., None], alpha


DEFECTS = {"smear": d_smear, "inpaint": d_inpaint, "scratch": d_scratch, "warp": d_warp, "pit": d_pit,
           "crack": d_crack, "stain": d_stain, "foreign": d_foreign}


def area_range(cat: PhotoCategory, kind: str) -> tuple[float, float]:
    lo, hi = AREA[kind]
    hi = min(hi, cat.max_area)
    return min(lo, hi / 4), hi


def apply_defect(img: np.ndarray, kind: str, rng: np.random.Generator, ref: float,
                 rng_area: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Defective image and its bool mask; the mask area (a fraction of the image) lies in `rng_area`,
    the image is identical to `img` outside the mask and differs inside it."""
    H, W = img.shape[:2]
    lo, hi = rng_area
    best, best_changed = None, 0.0
    for _ in range(120):
        target = float(np.exp(rng.uniform(np.log(lo * 1.2), np.log(hi * 0.85))))
        out, alpha = DEFECTS[kind](img, rng, target * H * W, ref, None)
        mask = alpha > 0
        share = mask.mean()
        if not lo <= share <= hi:
            continue
        out = np.clip(out, 0, 1).astype(np.float32)
        out[~mask] = img[~mask]
        changed = float((np.abs(out - img).max(-1)[mask] > 1.5 / 255).mean())
        if changed >= 0.5:
            return out, mask
        if changed > best_changed:  # hardly changed (e.g. a warp on a flat spot): keep looking
            best, best_changed = (out, mask), changed
    if best is not None and best_changed >= 0.2:  # a flat surface: the most visible draw found
        return best
    raise RuntimeError(f"could not draw a {kind} defect with area in {rng_area}")


# -------------------------------------------------------------------------------------- categories

def texture_ref(cat: PhotoCategory) -> float:
    """The source's own contrast (std of its luminance at a few px scale), what defect contrast scales with."""
    a = load_texture(cat.package, cat.member, cat.gray).mean(-1)
    return float(np.clip(a.std(), 0.02, 0.12))


def photo_sample(cat: PhotoCategory, split: str, index: int, seed: int, kind: str | None = None) -> dict:
    """One image of a photo category: {"clean", "image", "mask", "window"} (mask None for good images).

    ``split`` is "train" or "test"; ``kind`` a defect kind (test only) or None for a good image.
    """
    rng = _rng(seed, cat.name, split, kind or "good", index)
    src = load_texture(cat.package, cat.member, cat.gray)
    win = draw_window(cat, src.shape[:2], split, rng)
    nuis = draw_nuisance(rng)
    base = optics(render_window(cat, win), nuis)
    clean = sensor(base, nuis)
    if kind is None:
        return {"clean": clean, "image": clean, "mask": None, "window": win}
    defective, mask = apply_defect(base, kind, rng, texture_ref(cat), area_range(cat, kind))
    return {"clean": clean, "image": sensor(defective, nuis), "mask": mask, "window": win}


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="PNG", compress_level=3)


def build_photo(cat: PhotoCategory, root: Path, seed: int) -> dict:
    d = root / cat.name
    sizes, shares = [], {k: [] for k in cat.kinds}
    for i in range(cat.n_train):
        s = photo_sample(cat, "train", i, seed)
        _save(d / "train" / "good" / f"{i:03d}.png", to_u8(s["image"]))
        sizes.append(s["image"].shape[:2])
    for i in range(cat.n_test_good):
        s = photo_sample(cat, "test", i, seed)
        _save(d / "test" / "good" / f"{i:03d}.png", to_u8(s["image"]))
        sizes.append(s["image"].shape[:2])
    for kind in cat.kinds:
        for i in range(cat.n_per_kind):
            s = photo_sample(cat, "test", i, seed, kind)
            _save(d / "test" / kind / f"{i:03d}.png", to_u8(s["image"]))
            _save(d / "ground_truth" / kind / f"{i:03d}_mask.png", s["mask"].astype(np.uint8) * 255)
            sizes.append(s["image"].shape[:2])
            shares[kind].append(float(s["mask"].mean()))
    allshares = [x for v in shares.values() for x in v]
    hs, ws = [h for h, _ in sizes], [w for _, w in sizes]
    return {
        "source": f"Debian {cat.package}: {cat.member}" + (" (as grayscale)" if cat.gray else ""),
        "zoom": cat.zoom,
        "train": cat.n_train, "test_good": cat.n_test_good,
        "test_defective": {k: cat.n_per_kind for k in cat.kinds},
        "height_range": [min(hs), max(hs)], "width_range": [min(ws), max(ws)],
        "defect_kinds": list(cat.kinds),
        "area_range_pct": {k: [round(100 * a, 4) for a in area_range(cat, k)] for k in cat.kinds},
        "mean_defect_area_pct": round(100 * float(np.mean(allshares)), 3),
        "defect_area_pct_by_kind": {k: round(100 * float(np.mean(v)), 3) for k, v in shares.items()},
        "max_defect_area_pct": round(100 * float(np.max(allshares)), 3),
        "pixel_masks": True,
    }


def elpv_cells(cell_type: str) -> tuple[Path, list[tuple[str, float]]]:
    """(images folder, [(file name, probability)]) of the elpv cells of one type at probability 0 or 1."""
    try:
        import elpv_dataset
    except ImportError:
        raise MissingSource("the elpv categories need the elpv-dataset module: pip install elpv-dataset") from None
    data = Path(elpv_dataset.__file__).parent / "data"
    rows = []
    with open(data / "labels.csv") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3 or parts[2] != cell_type:
                continue
            p = float(parts[1])
            if p == 0.0 or p == 1.0:
                rows.append((parts[0], p))
    return data, rows


def build_elpv(cat: ElpvCategory, root: Path, seed: int) -> dict:
    data, rows = elpv_cells(cat.cell_type)
    rng = _rng(seed, cat.name, "split")
    good = [r[0] for r in rows if r[1] == 0.0]
    bad = [r[0] for r in rows if r[1] == 1.0]
    good = [good[i] for i in rng.permutation(len(good))]
    bad = [bad[i] for i in rng.permutation(len(bad))]
    n_test_good = min(cat.n_test_good, len(good) // 3)
    test_good, train = good[:n_test_good], good[n_test_good:n_test_good + cat.n_train]
    test_bad = bad[:cat.n_test_defective]
    d = root / cat.name
    sizes = []
    for sub, names in (("train/good", train), ("test/good", test_good), ("test/defective", test_bad)):
        for i, name in enumerate(names):
            with Image.open(data / name) as im:
                a = np.asarray(im.convert("L"))
            sizes.append(a.shape)
            # keep the source name in the file name: which real cell each image is stays traceable
            _save(d / sub / f"{i:03d}_{Path(name).stem}.png", a)
    hs, ws = [h for h, _ in sizes], [w for _, w in sizes]
    return {
        "source": f"PyPI elpv-dataset: {cat.cell_type} cells, probability 0 = good, 1.0 = defective "
                  "(0.33 and 0.67 dropped); real EL images, no nuisance added",
        "train": len(train), "test_good": len(test_good), "test_defective": {"defective": len(test_bad)},
        "available": {"good": len(good), "defective": len(bad)},
        "height_range": [min(hs), max(hs)], "width_range": [min(ws), max(ws)],
        "defect_kinds": ["defective"], "mean_defect_area_pct": None, "pixel_masks": False,
    }


def summary_line(name: str, m: dict) -> str:
    n_def = sum(m["test_defective"].values())
    area = "image-level only (no masks)" if m["mean_defect_area_pct"] is None else (
        f"defect area mean {m['mean_defect_area_pct']:.3f}% max {m['max_defect_area_pct']:.3f}%")
    return (f"{name:15s} train={m['train']:3d} test good={m['test_good']:3d} defective={n_def:3d} "
            f"({', '.join(m['defect_kinds'])})  h {m['height_range'][0]}-{m['height_range'][1]} "
            f"w {m['width_range'][0]}-{m['width_range'][1]} px  {area}")


def build_set(out: str | Path, set_name: str, seed: int = 0, verbose: bool = True) -> Path:
    """Write one set's categories and manifest.json under ``out/<set_name>``; returns that folder.

    The set is built in ``<folder>.partial`` and renamed when complete (an existing set is replaced).
    """
    import shutil

    missing = sources_missing(set_name)
    if missing:
        raise MissingSource(f"the {set_name} set needs sources that are not installed: " + "; ".join(missing))
    final = Path(out) / set_name
    root = final.with_name(final.name + ".partial")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    manifest = {"set": set_name, "seed": seed, "builder": "benchmarks/real_data.py", "categories": {}}
    for name in SETS[set_name]:
        t = time.perf_counter()
        m = build_elpv(ELPV[name], root, seed) if name in ELPV else build_photo(PHOTOS[name], root, seed)
        manifest["categories"][name] = m
        if verbose:
            print(summary_line(name, m) + f"  [{time.perf_counter() - t:.0f}s]", flush=True)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    root.rename(final)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write <set>/<category>/ into")
    ap.add_argument("--set", choices=[*SETS, "all"], default="all", dest="which")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        for s in (SETS if a.which == "all" else [a.which]):
            print(f"== {s} -> {a.out / s}", flush=True)
            build_set(a.out, s, a.seed)
    except MissingSource as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
