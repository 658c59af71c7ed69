"""Numpy building blocks of the procedural datasets: spectral noise, blur and resampling,
morphology, colour helpers, stroke stamping and star-shaped blobs, and the defect-size default
(:data:`DEFAULT_AREA`). Shared by :mod:`nextpatch.data.textures` and :mod:`nextpatch.data.eval_defects`."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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

