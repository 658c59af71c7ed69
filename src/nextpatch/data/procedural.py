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
"""
from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from nextpatch.errors import DataError

__all__ = [
    "woven", "grain", "carpet", "tiles", "pcb", "bottle",
    "add_crack", "add_hole", "add_contamination", "add_scratch", "add_discoloration",
    "add_deformation", "add_missing", "apply_defect", "part_region", "foreign_texture",
    "CATEGORIES", "OBJECT_CATEGORIES", "ON_BACKDROP", "DEFECTS", "DEFECTS_FOR", "DEMO_CATEGORIES",
    "write_mvtec_category", "make_category", "make_dataset", "make_demo_dataset",
    "to_uint8",
]

Area = tuple[float, float]
DEFAULT_AREA: Area = (0.01, 0.08)  # defect size as a fraction of the image area (log-uniform)


# --------------------------------------------------------------------------- helpers
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float64), xx.astype(np.float64)


def _noise(rng: np.random.Generator, h: int, w: int, beta: float = 2.0, fmin: float = 1.0,
           fmax: float | None = None, stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Zero-mean, unit-std spectral (1/f^beta power) noise; ``stretch=(ky, kx)`` with
    ky > 1 makes features long along y. Frequencies are in cycles per image."""
    fy = np.fft.fftfreq(h)[:, None] * h * stretch[0]
    fx = np.fft.rfftfreq(w)[None, :] * w * stretch[1]
    f = np.hypot(fy, fx)
    amp = np.where(f >= fmin, np.maximum(f, 1e-9) ** (-beta / 2.0), 0.0)
    if fmax is not None:
        amp = amp * np.exp(-((f / fmax) ** 4))
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    n = np.fft.irfft2(spec, s=(h, w))
    n -= n.mean()
    return n / (n.std() + 1e-12)


def _noise1d(rng: np.random.Generator, n: int, beta: float = 2.0, fmin: float = 1.0) -> np.ndarray:
    f = np.fft.rfftfreq(n) * n
    amp = np.where(f >= fmin, np.maximum(f, 1e-9) ** (-beta / 2.0), 0.0)
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    x = np.fft.irfft(spec, n=n)
    x -= x.mean()
    return x / (x.std() + 1e-12)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the first two axes (FFT, reflected borders)."""
    if sigma <= 0:
        return a.copy()
    h, w = a.shape[:2]
    pad = int(min(3 * sigma + 1, h - 1, w - 1))
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, widths, mode="reflect")
    H, W = p.shape[:2]
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.rfftfreq(W)[None, :]
    g = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    if a.ndim == 3:
        g = g[..., None]
    out = np.fft.irfft2(np.fft.rfft2(p, axes=(0, 1)) * g, s=(H, W), axes=(0, 1))
    return out[pad:pad + h, pad:pad + w]


def _bilinear(img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Sample ``img`` (H,W[,C]) at float coordinates, clamped at the border."""
    h, w = img.shape[:2]
    yy = np.clip(yy, 0, h - 1)
    xx = np.clip(xx, 0, w - 1)
    y0 = np.floor(yy).astype(np.intp)
    x0 = np.floor(xx).astype(np.intp)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = yy - y0
    wx = xx - x0
    if img.ndim == 3:
        wy = wy[..., None]
        wx = wx[..., None]
    return (img[y0, x0] * (1 - wy) * (1 - wx) + img[y0, x1] * (1 - wy) * wx
            + img[y1, x0] * wy * (1 - wx) + img[y1, x1] * wy * wx)


def _dilate(m: np.ndarray, r: int = 1) -> np.ndarray:
    out = m.astype(bool)
    for _ in range(r):
        p = np.pad(out, 1)
        out = (p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
               | p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:])
    return out


def _erode(m: np.ndarray, r: int = 1) -> np.ndarray:
    return ~_dilate(~m.astype(bool), r)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _is_gray(image: np.ndarray) -> bool:
    return bool(np.abs(image[..., 0] - image[..., 1]).max() < 1e-6
                and np.abs(image[..., 1] - image[..., 2]).max() < 1e-6)


def _gray3(image: np.ndarray) -> np.ndarray:
    g = image @ np.array([0.299, 0.587, 0.114])
    return np.repeat(g[..., None], 3, axis=-1)


def _colour(lum: np.ndarray, rgb: Sequence[float]) -> np.ndarray:
    return lum[..., None] * np.asarray(rgb, dtype=np.float64)[None, None, :]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _stamp(h: int, w: int, pts: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of discs (centres ``pts`` as (y, x), radii in px), max-combined."""
    cov = np.zeros((h, w))
    if len(pts) == 0:
        return cov
    R = int(np.ceil(radii.max() + 1.5))
    o = np.arange(-R, R + 1)
    oy, ox = np.meshgrid(o, o, indexing="ij")
    py = np.round(pts[:, :1]).astype(np.intp) + oy.ravel()[None]
    px = np.round(pts[:, 1:2]).astype(np.intp) + ox.ravel()[None]
    d = np.hypot(py - pts[:, :1], px - pts[:, 1:2])
    c = np.clip(radii[:, None] + 0.5 - d, 0.0, 1.0)
    ok = (py >= 0) & (py < h) & (px >= 0) & (px < w) & (c > 0)
    np.maximum.at(cov, (py[ok], px[ok]), c[ok])
    return cov


def _densify(pts: np.ndarray, spacing: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline at ~``spacing`` px; returns points and their arc parameter in [0,1]."""
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = max(s[-1], 1e-9)
    t = np.linspace(0.0, total, max(int(total / spacing), 2))
    out = np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1)
    return out, t / total


def _blob_sdf(rng: np.random.Generator, h: int, w: int, area_px: float, *,
              center: tuple[float, float] | None = None, irregularity: float = 0.3,
              harmonics: int = 6, rough: float = 0.0, aspect: float = 1.0) -> np.ndarray:
    """Signed distance (px, > 0 inside) of an irregular star-shaped blob whose radius is a
    random sum of angular harmonics. Its area inside the image is close to ``area_px``."""
    yy, xx = _grid(h, w)
    r0 = np.sqrt(area_px / np.pi)
    if center is None:
        m = min(r0, 0.5 * min(h, w) - 1)
        center = (rng.uniform(m, h - m), rng.uniform(m, w - m))
    cy, cx = center
    ang = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) * aspect
    theta = np.arctan2(v, u)
    rad = np.hypot(u, v)
    k = np.arange(1, harmonics + 1)
    amps = irregularity * rng.uniform(0.3, 1.0, harmonics) / k ** 0.9
    phases = rng.uniform(0, 2 * np.pi, harmonics)
    shape = np.exp(np.tensordot(np.cos(theta[..., None] * k + phases), amps, axes=([-1], [0])))
    shape = shape / np.sqrt(np.mean(shape ** 2) + 1e-12)
    rough_n = rough * _noise(rng, h, w, beta=1.5, fmin=8) if rough > 0 else 0.0
    scale = r0 / np.sqrt(aspect)
    for _ in range(2):  # match the requested area (blob is star-shaped: area ~ scale^2)
        sdf = (scale * shape - rad) / aspect ** 0.5 + rough_n
        got = float((sdf > 0).sum())
        if got < 1:
            break
        scale *= np.sqrt(area_px / got)
    return (scale * shape - rad) / aspect ** 0.5 + rough_n


def _pick_center(rng: np.random.Generator, weight: np.ndarray, margin: float) -> tuple[float, float]:
    h, w = weight.shape
    m = int(max(0, min(margin, 0.5 * min(h, w) - 2)))
    wgt = np.zeros_like(weight, dtype=np.float64)
    wgt[m:h - m, m:w - m] = weight[m:h - m, m:w - m]
    if wgt.sum() <= 0:
        return rng.uniform(m, h - m), rng.uniform(m, w - m)
    idx = rng.choice(wgt.size, p=(wgt / wgt.sum()).ravel())
    return float(idx // w) + rng.uniform(-0.5, 0.5), float(idx % w) + rng.uniform(-0.5, 0.5)


# --------------------------------------------------------------------------- textures
def woven(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Plain-weave fabric: two-tone interleaved threads with jitter and fibre noise."""
    s = size / 256
    yy, xx = _grid(size, size)
    p = 9.0 * s * rng.uniform(0.985, 1.015)
    wy = yy + 1.3 * s * _noise(rng, size, size, beta=3.0, fmin=1)
    wx = xx + 1.3 * s * _noise(rng, size, size, beta=3.0, fmin=1)
    u = (wx + rng.uniform(0, 2 * p)) / p
    v = (wy + rng.uniform(0, 2 * p)) / p
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    top_v = ((iu + iv) % 2) == 0
    val_v = np.sin(np.pi * fu) ** 0.6 * (0.62 + 0.38 * np.sin(np.pi * fv) ** 0.7)
    val_h = np.sin(np.pi * fv) ** 0.6 * (0.62 + 0.38 * np.sin(np.pi * fu) ** 0.7)
    n = int(size / p) + 8
    gv, gh = rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)
    iu_i, iv_i = iu.astype(int) % n, iv.astype(int) % n
    fib_v = _noise(rng, size, size, beta=1.2, fmin=4, stretch=(0.15, 1.0))
    fib_h = _noise(rng, size, size, beta=1.2, fmin=4, stretch=(1.0, 0.15))
    lum = np.where(top_v, val_v + gv[iu_i] + 0.05 * fib_v, val_h + gh[iv_i] + 0.05 * fib_h)
    lum = 0.22 + 0.85 * lum + 0.03 * _noise(rng, size, size, beta=2.5, fmin=1)
    base_v = np.array([0.62, 0.55, 0.44]) + rng.normal(0, 0.01, 3)
    base_h = np.array([0.55, 0.50, 0.42]) + rng.normal(0, 0.01, 3)
    img = np.where(top_v[..., None], _colour(lum, base_v), _colour(lum, base_h))
    return np.clip(img + rng.normal(0, 0.008, img.shape), 0, 1)


def grain(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Wood: growth rings (far-off centre, warped) plus fine longitudinal streaks."""
    s = size / 256
    yy, xx = _grid(size, size)
    cx = -rng.uniform(1.5, 3.0) * size
    cy = rng.uniform(-0.5, 1.5) * size
    r = np.hypot(xx - cx, yy - cy) + 7 * s * _noise(rng, size, size, beta=3.5, fmin=1, stretch=(0.3, 1.0))
    period = 17 * s * rng.uniform(0.96, 1.04)
    ph = r / period + rng.uniform()
    f = ph - np.floor(ph)
    ring = _smoothstep((f - 0.55) / 0.3) * (1 - _smoothstep((f - 0.9) / 0.1))  # latewood band
    streak = _noise(rng, size, size, beta=1.3, fmin=3, stretch=(0.06, 1.0))
    mott = _noise(rng, size, size, beta=2.5, fmin=1)
    t = np.clip(ring * 0.85 + 0.08 * streak + 0.06 * mott, 0, 1)
    light = np.array([0.80, 0.62, 0.42]) + rng.normal(0, 0.01, 3)
    dark = np.array([0.55, 0.36, 0.20]) + rng.normal(0, 0.01, 3)
    img = light[None, None] * (1 - t[..., None]) + dark[None, None] * t[..., None]
    img *= (1 + 0.05 * streak + 0.03 * mott)[..., None]
    return np.clip(img + rng.normal(0, 0.008, img.shape), 0, 1)


def carpet(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Tufted carpet: jittered loop lattice, two-colour heather fibres, fractal mottling."""
    s = size / 256
    yy, xx = _grid(size, size)
    p = 6.0 * s
    jy = 1.2 * s * _noise(rng, size, size, beta=2.0, fmin=6)
    jx = 1.2 * s * _noise(rng, size, size, beta=2.0, fmin=6)
    loops = (np.sin(2 * np.pi * (xx + jx) / p + rng.uniform(0, 6.3))
             * np.sin(2 * np.pi * (yy + jy) / p + rng.uniform(0, 6.3)))
    loops = np.abs(loops) ** 0.7
    fib = _noise(rng, size, size, beta=0.6, fmin=20)
    mott = _noise(rng, size, size, beta=2.2, fmin=2)
    heather = 1 / (1 + np.exp(-2.5 * _noise(rng, size, size, beta=1.0, fmin=25) - 1.5))
    lum = 0.55 + 0.16 * loops + 0.07 * fib + 0.07 * mott
    c1 = np.array([0.34, 0.38, 0.50]) + rng.normal(0, 0.01, 3)
    c2 = np.array([0.62, 0.55, 0.48]) + rng.normal(0, 0.01, 3)
    col = c1[None, None] * (1 - heather[..., None]) + c2[None, None] * heather[..., None]
    img = col * lum[..., None] * 1.25
    return np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)


def tiles(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Ceramic tiles: square grid with mortar joints, per-tile shade, bevels, glaze noise."""
    s = size / 256
    yy, xx = _grid(size, size)
    p = 64.0 * s
    mortar = 5.0 * s
    off = rng.uniform(0, p, 2)
    n = int(size / p) + 4
    jx, jy = rng.normal(0, 0.9 * s, n), rng.normal(0, 0.9 * s, n)
    ku = np.round((xx + off[1]) / p).astype(int)
    kv = np.round((yy + off[0]) / p).astype(int)
    dx = xx - (ku * p - off[1] + jx[ku % n])  # signed distance to nearest vertical joint
    dy = yy - (kv * p - off[0] + jy[kv % n])
    dist = np.minimum(np.abs(dx), np.abs(dy))
    mort = np.clip(mortar / 2 - dist + 0.5, 0, 1)
    ti = np.floor((xx + off[1]) / p).astype(int) % n
    tj = np.floor((yy + off[0]) / p).astype(int) % n
    shade = rng.normal(0, 0.035, (n, n))[tj, ti]
    # bevel: light from the top-left -> tile edges just right/below a joint are brighter
    edge = 3.5 * s
    bev = (np.clip(1 - (np.abs(dx) - mortar / 2) / edge, 0, 1) * np.sign(dx)
           + np.clip(1 - (np.abs(dy) - mortar / 2) / edge, 0, 1) * np.sign(dy))
    glaze = 0.025 * _noise(rng, size, size, beta=2.5, fmin=1) + 0.012 * _noise(rng, size, size, beta=0.5, fmin=30)
    tile_lum = 0.86 + shade + 0.07 * bev + glaze
    mort_lum = 0.50 + 0.05 * _noise(rng, size, size, beta=1.0, fmin=10)
    tc = np.array([0.93, 0.92, 0.86]) + rng.normal(0, 0.008, 3)
    mc = np.array([0.62, 0.58, 0.52])
    img = _colour(tile_lum, tc) * (1 - mort[..., None]) + _colour(mort_lum, mc) * mort[..., None]
    return np.clip(img + rng.normal(0, 0.008, img.shape), 0, 1)


# --------------------------------------------------------------------------- objects
def _segment_cov(yy, xx, a, b, half_w):
    (ay, ax), (by, bx) = a, b
    vy, vx = by - ay, bx - ax
    L2 = vy * vy + vx * vx + 1e-12
    t = np.clip(((yy - ay) * vy + (xx - ax) * vx) / L2, 0, 1)
    d = np.hypot(yy - ay - t * vy, xx - ax - t * vx)
    return np.clip(half_w - d + 0.5, 0, 1)


def _rect_cov(yy, xx, y0, y1, x0, x1):
    return (np.clip(np.minimum(yy - y0, y1 - yy) + 0.5, 0, 1)
            * np.clip(np.minimum(xx - x0, x1 - xx) + 0.5, 0, 1))


def _disc_cov(yy, xx, cy, cx, r):
    return np.clip(r - np.hypot(yy - cy, xx - cx) + 0.5, 0, 1)


@lru_cache(maxsize=4)
def _pcb_layers(size: int) -> dict[str, np.ndarray]:
    """Fixed PCB layout (same part every image), rendered once per size in layout coords."""
    s = size / 256
    yy, xx = _grid(size, size)
    c = size / 2
    trace = np.zeros((size, size))
    pad = np.zeros((size, size))
    silk = np.zeros((size, size))
    hole = np.zeros((size, size))

    def rot(pts, k):  # rotate layout points (y, x) by k*90 deg around the centre
        out = []
        for y, x in pts:
            for _ in range(k):
                y, x = x, 2 * c - y
            out.append((y, x))
        return out

    for k in range(4):
        for i in range(8):
            xp = (100 + 8 * i) * s
            xe = (44 + 24 * i) * s
            pts = rot([(94 * s, xp), (78 * s, xp), (44 * s, xe), (28 * s, xe)], k)
            for a, b in zip(pts[:-1], pts[1:]):
                trace = np.maximum(trace, _segment_cov(yy, xx, a, b, 1.7 * s))
            # pin (leg of the chip) and end pad
            (py, px), = rot([(88 * s, xp)], k)
            hy, hx = (6 * s, 2 * s) if k % 2 == 0 else (2 * s, 6 * s)
            pad = np.maximum(pad, _rect_cov(yy, xx, py - hy, py + hy, px - hx, px + hx))
            (qy, qx), = rot([(22 * s, xe)], k)
            pad = np.maximum(pad, _rect_cov(yy, xx, qy - 6 * s, qy + 6 * s, qx - 5 * s, qx + 5 * s))
    for cy, cx in [(16, 16), (16, 240), (240, 16), (240, 240)]:  # mounting holes
        pad = np.maximum(pad, _disc_cov(yy, xx, cy * s, cx * s, 10 * s))
        hole = np.maximum(hole, _disc_cov(yy, xx, cy * s, cx * s, 6 * s))
    vias = [(60, 60), (66, 196), (190, 58), (196, 190), (128, 40), (40, 128), (128, 216), (216, 128)]
    for cy, cx in vias:
        pad = np.maximum(pad, _disc_cov(yy, xx, cy * s, cx * s, 4 * s))
        hole = np.maximum(hole, _disc_cov(yy, xx, cy * s, cx * s, 1.8 * s))
    # silkscreen: outline around the chip + corner marks
    lo, hi = 97 * s, 159 * s
    outline = _rect_cov(yy, xx, lo - 1, hi + 1, lo - 1, hi + 1) - _rect_cov(yy, xx, lo, hi, lo, hi)
    silk = np.maximum(silk, np.clip(outline, 0, 1))
    for cy, cx, sy, sx in [(34, 34, 1, 1), (34, 222, 1, -1), (222, 34, -1, 1), (222, 222, -1, -1)]:
        silk = np.maximum(silk, _segment_cov(yy, xx, (cy * s, cx * s), (cy * s, (cx + 12 * sx) * s), 0.8 * s))
        silk = np.maximum(silk, _segment_cov(yy, xx, (cy * s, cx * s), ((cy + 12 * sy) * s, cx * s), 0.8 * s))
    chip = _rect_cov(yy, xx, 94 * s, 162 * s, 94 * s, 162 * s)
    dimple = _disc_cov(yy, xx, 104 * s, 104 * s, 3 * s)
    return {"trace": trace, "pad": pad, "silk": silk, "hole": hole, "chip": chip, "dimple": dimple}


def _rigid_coords(rng: np.random.Generator, size: int, max_shift: float = 2.5,
                  max_rot_deg: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256
    yy, xx = _grid(size, size)
    c = (size - 1) / 2
    sh = rng.uniform(-max_shift, max_shift, 2) * s
    th = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
    dy, dx = yy - c - sh[0], xx - c - sh[1]
    u = np.cos(th) * dx + np.sin(th) * dy + c
    v = -np.sin(th) * dx + np.cos(th) * dy + c
    return v, u  # layout (y, x) sampled by each output pixel


def _lighting(rng: np.random.Generator, size: int, grad: float = 0.06, low: float = 0.03) -> np.ndarray:
    yy, xx = _grid(size, size)
    g = rng.normal(0, 1, 2)
    g = g / (np.linalg.norm(g) + 1e-9) * rng.uniform(0, grad)
    lin = (g[0] * (yy / size - 0.5) + g[1] * (xx / size - 0.5)) * 2
    return rng.uniform(0.93, 1.07) * (1 + lin + low * _noise(rng, size, size, beta=3.0, fmin=1))


def pcb(rng: np.random.Generator, size: int = 256, background: bool = False):
    """Aligned circuit board: chip with pins, fanned-out traces, pads, vias, silkscreen.

    With ``background=True`` returns ``(image, bare_board)`` where the second image has the
    same lighting and noise but no traces/pads/chip (used by :func:`add_missing`)."""
    L = _pcb_layers(size)
    vy, vx = _rigid_coords(rng, size)
    lay = {k: np.clip(_bilinear(a, vy, vx), 0, 1) for k, a in L.items()}
    light = _lighting(rng, size)[..., None]
    weave = 0.025 * _noise(rng, size, size, beta=1.0, fmin=20)
    board_c = np.array([0.07, 0.32, 0.15]) * (1 + weave)[..., None]
    board = board_c * np.ones((size, size, 1))
    img = board.copy()

    def over(img, cov, col):
        return img * (1 - cov[..., None]) + col * cov[..., None]

    img = over(img, lay["trace"], np.array([0.16, 0.48, 0.22]) * (1 + weave)[..., None])
    img = over(img, lay["silk"], np.array([0.90, 0.90, 0.84]))
    gold = np.array([0.86, 0.70, 0.36]) * (1 + 0.05 * _noise(rng, size, size, beta=1.5, fmin=10))[..., None]
    img = over(img, lay["pad"], gold)
    chip_lum = 0.10 + 0.02 * _noise(rng, size, size, beta=2.0, fmin=4)
    img = over(img, lay["chip"], _colour(chip_lum, [0.9, 0.9, 1.0]))
    img = over(img, lay["dimple"] * lay["chip"], np.array([0.16, 0.16, 0.17]))
    img = over(img, lay["hole"], np.array([0.03, 0.03, 0.03]))
    sensor = rng.normal(0, 0.01, img.shape)
    out = np.clip(img * light + sensor, 0, 1)
    if background:
        return out, np.clip(board * light + sensor, 0, 1)
    return out


def bottle(rng: np.random.Generator, size: int = 256, background: bool = False):
    """Aligned amber bottle seen from above (like MVTec 'bottle'): dark opening, neck wall,
    embossed shoulder, bright rim, directional highlight, on a dark backdrop.

    With ``background=True`` also returns the backdrop alone (same lighting and noise)."""
    s = size / 256
    vy, vx = _rigid_coords(rng, size, max_shift=2.5, max_rot_deg=2.5)
    c = (size - 1) / 2
    dy, dx = vy - c, vx - c
    r = np.hypot(dy, dx) / s
    phi = np.arctan2(dy, dx)
    hl_amp = rng.uniform(0.85, 1.15)
    lum = np.zeros_like(r)
    lum += np.where(r < 34, 0.05 + 0.05 * np.exp(-((r - 20) / 3) ** 2), 0)  # opening + reflection
    t = np.clip((r - 34) / 16, 0, 1)
    lum += np.where((r >= 34) & (r < 50), 0.12 + 0.35 * t ** 1.5, 0)  # neck wall
    t = np.clip((r - 50) / 48, 0, 1)
    emboss = 0.04 * np.cos(12 * phi) * np.sin(np.pi * t)
    lum += np.where((r >= 50) & (r < 98), 0.42 - 0.12 * t + emboss, 0)  # shoulder
    lum += np.where(r >= 98, 0.30 + 0.45 * np.exp(-((r - 104) / 3.5) ** 2), 0)  # rim
    hl = hl_amp * 0.30 * np.exp(-((np.angle(np.exp(1j * (phi + 2.36)))) / 0.45) ** 2) * np.exp(-((r - 78) / 10) ** 2)
    lum = lum + hl
    inside = np.clip((112 - r) * s + 0.5, 0, 1)
    glass = np.array([0.78, 0.58, 0.30]) + rng.normal(0, 0.01, 3)
    obj = _colour(lum * (1 + 0.03 * _noise(rng, size, size, beta=2.0, fmin=3)), glass)
    obj = obj + _colour(0.5 * hl, [1.0, 1.0, 1.0])  # highlight is whiter than the glass
    back_lum = 0.06 + 0.015 * _noise(rng, size, size, beta=2.5, fmin=1)
    back = _colour(back_lum, [1.0, 1.0, 1.0])
    light = _lighting(rng, size, grad=0.05, low=0.02)[..., None]
    sensor = rng.normal(0, 0.008, obj.shape)
    img = back * (1 - inside[..., None]) + obj * inside[..., None]
    out = np.clip(img * light + sensor, 0, 1)
    if background:
        return out, np.clip(back * light + sensor, 0, 1)
    return out


# --------------------------------------------------------------------------- foreign textures
def _rust(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    n = _noise(rng, h, w, beta=1.6, fmin=3)
    pits = _noise(rng, h, w, beta=0.8, fmin=20)
    t = np.clip(0.5 + 0.3 * n, 0, 1)[..., None]
    img = np.array([0.45, 0.20, 0.07]) * (1 - t) + np.array([0.82, 0.48, 0.18]) * t
    return np.clip(img * (1 - 0.5 * (pits > 1.3))[..., None], 0, 1)


def _grime(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    n = _noise(rng, h, w, beta=1.0, fmin=4)
    lum = np.clip(0.22 + 0.08 * n + 0.25 * (_noise(rng, h, w, beta=0.3, fmin=40) > 2.2), 0, 1)
    return _colour(lum, [1.0, 0.88, 0.72])


def _paint(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    col = rng.choice(np.array([[0.15, 0.35, 0.85], [0.85, 0.15, 0.12], [0.95, 0.85, 0.10]]))
    lum = 0.85 + 0.1 * _noise(rng, h, w, beta=2.0, fmin=2)
    return np.clip(_colour(lum, col), 0, 1)


_FOREIGN = (_rust, _grime, _paint)


def foreign_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural texture that appears in no category (rust, oily grime, paint fleck)."""
    return _FOREIGN[int(rng.integers(len(_FOREIGN)))](rng, h, w)


# --------------------------------------------------------------------------- defects
def add_crack(image: np.ndarray, rng: np.random.Generator, *, area: Area = DEFAULT_AREA):
    """Thin dark branching crack (random walk with branches), 1-3 px wide, with a faint
    highlight on the lit edge. ``area`` sets its extent (length ~ 2-3 x sqrt(area))."""
    h, w = image.shape[:2]
    s = min(h, w) / 256
    a = _log_uniform(rng, *area) * h * w
    L = np.sqrt(a) * rng.uniform(2.0, 3.0)
    step = 2.5 * s

    def walk(start, ang, length):
        n = max(int(length / step), 3)
        drift = np.cumsum(rng.normal(0, 0.12, n))
        dirs = ang + drift + rng.normal(0, 0.35, n)
        d = np.stack([np.sin(dirs), np.cos(dirs)], 1) * step
        return np.vstack([start, start + np.cumsum(d, 0)]), dirs

    start = np.array([rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w])
    ang = rng.uniform(0, 2 * np.pi)
    main, dirs = walk(start, ang, L)
    main = main - (main.mean(0) - start)  # keep it centred on the start point
    r0 = rng.uniform(0.5, 1.1) * s
    pts, t = _densify(main)
    radii = r0 * (0.45 + 0.55 * np.sin(np.pi * t) ** 0.5) * (1 + 0.25 * _noise1d(rng, len(t), 1.5, 2))
    all_p, all_r = [pts], [np.clip(radii, 0.3, 1.6 * s)]
    for _ in range(int(rng.integers(1, 4)) + int(L / (90 * s))):
        i = int(rng.integers(len(main) // 5, max(len(main) * 4 // 5, len(main) // 5 + 1)))
        side = rng.choice([-1.0, 1.0])
        b, _ = walk(main[i], dirs[min(i, len(dirs) - 1)] + side * rng.uniform(0.5, 1.1), L * rng.uniform(0.15, 0.4))
        bp, bt = _densify(b)
        all_p.append(bp)
        all_r.append(np.clip(r0 * 0.7 * (1 - 0.7 * bt), 0.3, None))
    cov = _stamp(h, w, np.vstack(all_p), np.concatenate(all_r))
    depth = rng.uniform(0.55, 0.85)
    out = image * (1 - depth * cov[..., None])
    lit = np.pad(cov, 1)[:-2, :-2]  # coverage shifted by +1 px down-right: the lit lower wall
    hl = np.clip(lit - cov, 0, 1)
    out = out + (1 - out) * (0.15 * hl)[..., None]
    mask = (cov > 0.25) | (hl > 0.35)
    return np.clip(out, 0, 1), mask


def add_hole(image: np.ndarray, rng: np.random.Generator, *, area: Area = DEFAULT_AREA):
    """Dark elliptical pit, shaded by its depth and the light direction, with a bright rim."""
    h, w = image.shape[:2]
    yy, xx = _grid(h, w)
    A = _log_uniform(rng, *area) * h * w / 1.3
    aspect = rng.uniform(1.0, 1.6)
    rx = np.sqrt(A * aspect / np.pi)
    ry = rx / aspect
    m = 1.35 * rx + 2
    cy, cx = rng.uniform(m, h - m), rng.uniform(m, w - m)
    th = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    p = (dx * np.cos(th) + dy * np.sin(th)) / rx
    q = (-dx * np.sin(th) + dy * np.cos(th)) / ry
    ang = np.arctan2(q, p)
    k = np.arange(1, 6)
    wob = 1 + np.tensordot(np.cos(ang[..., None] * k + rng.uniform(0, 6.3, 5)),
                           0.05 * rng.uniform(0.3, 1, 5) / k, axes=([-1], [0]))
    rho = np.hypot(p, q) / wob
    rmin = min(rx, ry)
    inside = np.clip((1 - rho) * rmin + 0.5, 0, 1)
    light = np.array([-0.7071, -0.7071])  # light from the top-left (y, x)
    cosang = (dy * light[0] + dx * light[1]) / (np.hypot(dy, dx) + 1e-9)
    pit = image * (0.18 + 0.35 * np.clip(rho, 0, 1) ** 2 * (0.5 - 0.5 * cosang))[..., None]
    pit = pit * rng.uniform(0.8, 1.0) + 0.02
    rim_w = (2.0 * min(h, w) / 256 + 0.12 * rmin) / rmin
    rim = np.clip(1 - np.abs(rho - 1 - rim_w / 2) / (rim_w / 2), 0, 1)
    gain = 0.15 + 0.25 * np.clip(cosang, 0, 1)
    out = image + (1 - image) * (gain * rim)[..., None]
    out = out * (1 - inside[..., None]) + pit * inside[..., None]
    mask = (inside > 0.5) | (rim > 0.3)
    return np.clip(out, 0, 1), mask


def add_contamination(image: np.ndarray, rng: np.random.Generator, *,
                      foreign: np.ndarray | None = None, area: Area = DEFAULT_AREA):
    """Irregular patch of a different texture (``foreign``: an image the size of ``image``;
    default: a procedural rust/grime/paint texture), alpha-blended at a soft ragged edge.
    On a grayscale image the foreign texture is made grayscale too."""
    h, w = image.shape[:2]
    s = min(h, w) / 256
    if foreign is None:
        foreign = foreign_texture(rng, h, w)
    if _is_gray(image):
        foreign = _gray3(foreign)
    sdf = _blob_sdf(rng, h, w, _log_uniform(rng, *area) * h * w, irregularity=0.45,
                    harmonics=9, rough=1.2 * s, aspect=rng.uniform(1.0, 1.8))
    alpha = np.clip(sdf / (1.5 * s) + 0.5, 0, 1) * rng.uniform(0.85, 1.0)
    out = image * (1 - alpha[..., None]) + foreign * alpha[..., None]
    return np.clip(out, 0, 1), alpha > 0.45


def add_scratch(image: np.ndarray, rng: np.random.Generator, *, area: Area = DEFAULT_AREA):
    """Long bright straight-or-slightly-curved scratch whose width varies along its length."""
    h, w = image.shape[:2]
    s = min(h, w) / 256
    L = min(np.sqrt(_log_uniform(rng, *area) * h * w) * rng.uniform(2.5, 4.0), 0.9 * min(h, w))
    c = np.array([rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w])
    th = rng.uniform(0, np.pi)
    d = np.array([np.sin(th), np.cos(th)])
    nrm = np.array([d[1], -d[0]])
    p0, p2 = c - d * L / 2, c + d * L / 2
    p1 = c + nrm * rng.uniform(-0.12, 0.12) * L
    t = np.linspace(0, 1, max(int(L / 0.5), 4))[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    t = t[:, 0]
    r0 = rng.uniform(0.8, 1.8) * s
    radii = r0 * (0.3 + 0.7 * np.sin(np.pi * t) ** 0.4) * np.clip(1 + 0.4 * _noise1d(rng, len(t), 2.5, 1), 0.4, 1.8)
    cov = _stamp(h, w, pts, radii)
    bright = rng.uniform(0.55, 0.85)
    out = image + (1 - image) * (bright * cov)[..., None]
    return np.clip(out, 0, 1), cov > 0.25


def add_discoloration(image: np.ndarray, rng: np.random.Generator, *, area: Area = DEFAULT_AREA):
    """Smooth low-contrast stain (tint on colour images, luminance change on grayscale ones)
    over an irregular region with a soft edge: the hard case."""
    h, w = image.shape[:2]
    A = _log_uniform(rng, *area) * h * w
    sdf = _blob_sdf(rng, h, w, A, irregularity=0.35, harmonics=5, aspect=rng.uniform(1.0, 1.6))
    R = np.sqrt(A / np.pi)
    alpha = _smoothstep(sdf / (0.5 * R) + 0.5)
    alpha = alpha * np.clip(1 + 0.2 * _noise(rng, h, w, beta=3.0, fmin=2), 0.6, 1.4)
    t = rng.uniform(0.10, 0.17)
    if _is_gray(image):
        d = np.full(3, rng.choice([-1.0, -1.0, 1.0]))
    else:
        stains = np.array([[0.5, 0.25, -0.8], [-0.35, -0.5, -0.75], [-0.6, -0.2, 0.7],
                           [0.7, -0.4, -0.1], [-0.7, 0.45, -0.3]])
        d = stains[int(rng.integers(len(stains)))] + rng.normal(0, 0.1, 3)
    out = image + (alpha * t)[..., None] * d[None, None]
    return np.clip(out, 0, 1), alpha > 0.5


def add_deformation(image: np.ndarray, rng: np.random.Generator, *, area: Area = DEFAULT_AREA,
                    center: tuple[float, float] | None = None):
    """Local smooth warp (a push or a twist) centred on a structure edge: bent or dented part."""
    h, w = image.shape[:2]
    yy, xx = _grid(h, w)
    R = np.sqrt(_log_uniform(rng, *area) * h * w / np.pi)
    if center is None:
        g = image.mean(-1)
        gm = np.hypot(np.diff(g, axis=0, append=g[-1:]), np.diff(g, axis=1, append=g[:, -1:]))
        gm = _blur(gm, 2.0)
        center = _pick_center(rng, (gm > np.quantile(gm, 0.9)).astype(float), 1.2 * R)
    cy, cx = center
    Rw = 1.2 * R  # compact support: nothing moves farther than Rw from the centre
    x2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / Rw ** 2
    win = np.clip(1 - x2, 0, 1) ** 3
    amp = rng.uniform(0.25, 0.45) * Rw  # < 0.58 Rw keeps the warp fold-free
    if rng.random() < 0.5:  # push
        a = rng.uniform(0, 2 * np.pi)
        dy, dx = amp * win * np.sin(a), amp * win * np.cos(a)
    else:  # twist by up to ~amp/Rw radians at the centre
        k = rng.choice([-1.0, 1.0]) * amp / Rw * win
        dy, dx = k * (xx - cx), -k * (yy - cy)
    out = _bilinear(image, yy - dy, xx - dx)
    diff = _blur(np.abs(out - image).mean(-1), 1.0)
    disp = np.hypot(dy, dx)
    mask = _dilate(diff > 0.03, 1) & (disp > 0.3)
    mask = _erode(_dilate(mask, 4), 4) & (disp > 0.3)  # close gaps between moved structures
    return np.clip(out, 0, 1), mask


def add_missing(image: np.ndarray, rng: np.random.Generator, *, background: np.ndarray,
                area: Area = DEFAULT_AREA):
    """Part of the structure is missing: a ragged piece of it shows ``background`` instead."""
    h, w = image.shape[:2]
    s = min(h, w) / 256
    struct = np.abs(image - background).mean(-1) > 0.06
    A = _log_uniform(rng, *area) * h * w
    R = np.sqrt(A / np.pi)
    density = _blur(struct.astype(float), 0.5 * R) * _erode(struct, 1)  # prefer solid parts
    best = None
    for _ in range(6):  # the piece must mostly cover structure, not bare background
        center = _pick_center(rng, density, 0.5 * R)
        sdf = _blob_sdf(rng, h, w, A, center=center, irregularity=0.4, harmonics=7,
                        rough=1.0 * s, aspect=rng.uniform(1.0, 2.0))
        alpha = np.clip(sdf + 0.5, 0, 1)
        mask = (alpha > 0.5) & _dilate(struct, 1)
        mask = _erode(_dilate(mask, 1), 1) & (alpha > 0.5)
        ratio = mask.sum() / max((alpha > 0.5).sum(), 1)
        if best is None or ratio > best[0]:
            best = (ratio, alpha, mask)
        if ratio >= 0.5:
            break
    _, alpha, mask = best
    out = image * (1 - alpha[..., None]) + background * alpha[..., None]
    return np.clip(out, 0, 1), mask


DEFECTS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "crack": add_crack,
    "hole": add_hole,
    "contamination": add_contamination,
    "scratch": add_scratch,
    "discoloration": add_discoloration,
    "deformation": add_deformation,
    "missing": add_missing,
}

# minimum mean |change| (per pixel, averaged over channels) inside the mask, and minimum mask size
MIN_CHANGE = {"crack": 0.06, "hole": 0.12, "contamination": 0.10, "scratch": 0.12,
              "discoloration": 0.035, "deformation": 0.06, "missing": 0.07}
MIN_MASK_FRACTION = 0.001


def apply_defect(kind: str, image: np.ndarray, rng: np.random.Generator, *,
                 background: np.ndarray | None = None, foreign: np.ndarray | None = None,
                 where: np.ndarray | None = None, area: Area = DEFAULT_AREA,
                 tries: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Apply defect ``kind``; redraw (up to ``tries``) until it changes the masked pixels by at
    least ``MIN_CHANGE[kind]`` on average and, if ``where`` (bool HxW: the part, for an object
    on a backdrop) is given, lies >= 85% on it. Returns ``(image, bool mask)``."""
    if kind not in DEFECTS:
        raise DataError(f"unknown defect type {kind!r} (known: {', '.join(DEFECTS)})")
    kw: dict = {"area": area}
    if kind == "missing":
        if background is None:
            raise DataError("defect 'missing' needs the background image of an object category")
        kw["background"] = background
    if kind == "contamination":
        kw["foreign"] = foreign
    if kind in ("missing", "deformation"):
        where = None  # these place themselves on the structure
    h, w = image.shape[:2]
    best, best_key = None, (False, -1.0)
    for _ in range(tries):
        out, mask = DEFECTS[kind](image, rng, **kw)
        if mask.sum() < MIN_MASK_FRACTION * h * w:
            continue
        change = float(np.abs(out - image).mean(-1)[mask].mean())
        on_part = where is None or float(where[mask].mean()) >= 0.85
        if change >= MIN_CHANGE[kind] and on_part:
            return out, mask
        if (on_part, change) > best_key:
            best, best_key = (out, mask), (on_part, change)
    if best is None:
        raise RuntimeError(f"could not place a visible {kind!r} defect after {tries} tries")
    return best


def part_region(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Where an object on a backdrop is (bool HxW): pixels that differ from the backdrop,
    smoothed; used as ``where`` so defects land on the part, not on the backdrop."""
    return _blur((np.abs(image - background).mean(-1) > 0.03).astype(float), 3.0) > 0.5


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
