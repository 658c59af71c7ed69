"""Random draws and noise for the training defect synthesis (:mod:`nextpatch.data.anomalies`):
scalar draws that all go through a `torch.Generator`, a single-thread guard, Perlin noise, and
thresholding a field into a soft region of a given area."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor

# --------------------------------------------------------------------------------------------------
# random helpers (all draws go through the generator)


def _u(g: torch.Generator | None, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g))


def _logu(g: torch.Generator | None, lo: float, hi: float) -> float:
    return math.exp(_u(g, math.log(lo), math.log(hi)))


def _randint(g: torch.Generator | None, lo: int, hi: int) -> int:
    """Integer in [lo, hi] (inclusive)."""
    if hi <= lo:
        return lo
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _bern(g: torch.Generator | None, p: float) -> bool:
    return _u(g) < p


def _sign(g: torch.Generator | None) -> float:
    return 1.0 if _bern(g, 0.5) else -1.0


def _choice(g: torch.Generator | None, seq: Sequence):
    return seq[_randint(g, 0, len(seq) - 1)]


class _one_thread:
    """Run torch ops single-threaded inside the block, then restore the thread count. The ops here
    are small (one image), where intra-op threading costs more than it gains, and far more on a
    machine whose cores are busy (measured: up to ~50x slower with 2 threads under load)."""

    def __enter__(self):
        self.prev = torch.get_num_threads()
        if self.prev != 1:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.prev != 1:
            torch.set_num_threads(self.prev)
        return False


# --------------------------------------------------------------------------------------------------
# Perlin noise


@lru_cache(maxsize=16)
def _grid(h: int, w: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates: yy (H, 1), xx (1, W)."""
    yy = torch.arange(h, dtype=torch.float32).view(h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w)
    return yy, xx


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _interp_weights(n_px: int, cells: float, offset: float) -> tuple[Tensor, Tensor, int]:
    """Lattice interpolation matrices along one axis: A[p, c] = fade weight of lattice node c for
    pixel p, B[p, c] = that weight times the signed distance from node c. Returns (A, B, n_nodes)."""
    pos = torch.arange(n_px, dtype=torch.float32) * (cells / n_px) + offset
    i0f = pos.floor()
    frac = pos - i0f
    i0 = i0f.long()
    n_nodes = int(i0[-1]) + 2
    w1 = _fade(frac)
    w0 = 1.0 - w1
    rows = torch.arange(n_px)
    a = torch.zeros(n_px, n_nodes)
    b = torch.zeros(n_px, n_nodes)
    a[rows, i0] = w0
    a[rows, i0 + 1] = w1
    b[rows, i0] = w0 * frac
    b[rows, i0 + 1] = w1 * (frac - 1.0)
    return a, b, n_nodes


def _perlin_octave(n: int, h: int, w: int, sy: float, sx: float, g) -> Tensor:
    """n independent single-octave gradient (Perlin) noise fields (n, h, w): `sy` x `sx` lattice
    cells over the image, random lattice offset, quintic fade; raw range about [-0.71, 0.71].

    The usual per-pixel gather of corner gradients is written as two separable interpolation
    matrices, noise = Ay @ Gx @ Bx^T + By @ Gy @ Ax^T, which is exact and much faster on a CPU."""
    oy, ox = torch.rand(2, generator=g).tolist()
    ay, by, ny = _interp_weights(h, sy, oy)
    ax, bx, nx = _interp_weights(w, sx, ox)
    ang = torch.rand(n, ny, nx, generator=g) * (2.0 * math.pi)
    gx, gy = ang.cos(), ang.sin()  # gradient components (x, y) at the lattice nodes
    return ay @ gx @ bx.T + by @ gy @ ax.T


def _as_pair(scale) -> tuple[float, float]:
    if isinstance(scale, (tuple, list)):
        return float(scale[0]), float(scale[1])
    return float(scale), float(scale)


def _perlin(n: int, h: int, w: int, scale, g, *, octaves: int = 1, persistence: float = 0.5) -> Tensor:
    """n fields (n, h, w) of multi-octave Perlin noise in [-1, 1]."""
    sy, sx = _as_pair(scale)
    if not (sy > 0 and sx > 0):
        raise ValueError(f"perlin scale must be > 0, got {scale!r}")
    total = None
    amp, amp_sum = 1.0, 0.0
    for o in range(max(1, int(octaves))):
        oct_ = _perlin_octave(n, h, w, sy * 2**o, sx * 2**o, g)
        total = oct_ * amp if total is None else total.add_(oct_, alpha=amp)
        amp_sum += amp
        amp *= persistence
    return total.mul_(math.sqrt(2.0) / amp_sum).clamp_(-1.0, 1.0)


def perlin_noise(shape: tuple[int, int], scale: float | tuple[float, float], generator: torch.Generator | None = None,
                 *, octaves: int = 1, persistence: float = 0.5) -> Tensor:
    """Gradient (Perlin) noise of shape (H, W) with values in [-1, 1].

    `scale` is the number of lattice cells across the image (a float, or (cells_y, cells_x)); larger
    means finer noise. `octaves` > 1 adds finer octaves (each twice the frequency, `persistence`
    times the amplitude)."""
    h, w = int(shape[0]), int(shape[1])
    return _perlin(1, h, w, scale, generator, octaves=octaves, persistence=persistence)[0]


# --------------------------------------------------------------------------------------------------
# thresholding a field into a soft region of a given area


def _threshold_for_area(f: Tensor, frac: float) -> float:
    """Threshold t such that about `frac` of the pixels have f > t."""
    sub = f[::2, ::2] if f.numel() > 16384 else f
    sub = sub.reshape(-1)
    k = int(round((1.0 - frac) * sub.numel()))
    k = min(max(k, 1), sub.numel())
    return float(sub.kthvalue(k).values)


def _soft_region(f: Tensor, t: float, width_px: float) -> Tensor:
    """Soft indicator of {f > t}: a linear ramp about `width_px` pixels wide centred on the level
    set, so its mean is close to the area of the hard region."""
    if width_px <= 0:
        return (f > t).float()
    hard = f > t
    iy, ix = (hard[:, 1:] ^ hard[:, :-1]).nonzero(as_tuple=True)  # crossings between x neighbours
    jy, jx = (hard[1:, :] ^ hard[:-1, :]).nonzero(as_tuple=True)  # ... and between y neighbours
    cnt = iy.numel() + jy.numel()
    if cnt == 0:
        return hard.float()
    grad = (float((f[iy, ix + 1] - f[iy, ix]).abs().sum()) + float((f[jy + 1, jx] - f[jy, jx]).abs().sum())) / cnt
    grad = max(grad, 1e-6)
    return ((f - t) / (grad * width_px) + 0.5).clamp_(0.0, 1.0)


def _region_of_area(f: Tensor, frac: float, width_px: float) -> Tensor:
    return _soft_region(f, _threshold_for_area(f, frac), width_px)


def perlin_mask(shape: tuple[int, int], generator: torch.Generator | None = None, *, area: float | None = None,
                scale: float | None = None, softness: float = 1.0, octaves: int = 2,
                min_area: float = 0.002, max_area: float = 0.10) -> Tensor:
    """Thresholded Perlin noise: a soft (H, W) mask in [0, 1] covering about `area` of the image
    (drawn log-uniform in [min_area, max_area] if None). `scale` = lattice cells across the image
    (drawn log-uniform in [1.5, 10] if None); `softness` = edge ramp width in pixels."""
    h, w = int(shape[0]), int(shape[1])
    g = generator
    if area is None:
        area = _logu(g, min_area, max_area)
    if scale is None:
        scale = _logu(g, 1.5, 10.0)
    noise = _perlin(1, h, w, scale, g, octaves=octaves)[0]
    return _region_of_area(noise, area, softness)


def _localized_field(h: int, w: int, cy: float, cx: float, ry: float, rx: float, theta: float,
                     rough: float, g, noise_cells: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """1 - (elliptic radius) + rough * Perlin noise whose cells are about `noise_cells` radii."""
    yy, xx = _grid(h, w)
    c, s = math.cos(theta), math.sin(theta)
    dy, dx = yy - cy, xx - cx
    u = (dx * c + dy * s) / rx
    v = (dy * c - dx * s) / ry
    f = 1.0 - (u * u + v * v).sqrt()
    noise = None
    if rough > 0:
        r = math.sqrt(rx * ry) * noise_cells
        noise = _perlin(1, h, w, (h / r, w / r), g, octaves=2)[0]
        f = f + rough * noise
    return f, noise

