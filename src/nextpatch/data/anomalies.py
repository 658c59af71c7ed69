"""Synthetic defects for training the comparator contrastively.

`AnomalySynthesizer` pastes one or two random synthetic defects into a batch of normal images and
returns the augmented images together with an honest defect mask. It runs inside the training loop
on the CPU, so everything is tensor ops on whole images (a Python loop runs over the batch and over
the one or two defects of an image, never over pixels).

Kinds (each also usable alone, on one image (C, H, W) or a batch (B, C, H, W)):

* `perlin_texture` - DRAEM-style: a thresholded Perlin-noise region filled with a foreign texture
  (coloured Perlin noise, stripes, checker, or another image of the batch, shifted, flipped and
  colour-jittered), blended with opacity beta in [0.15, 1].
* `cutpaste` - a rectangle or irregular region copied from elsewhere in the same image, optionally
  rotated by 90 degrees, flipped and brightness-jittered.
* `scratch` - thin (1-3 px) anti-aliased curves (cubic Bezier or smooth random walk), bright or dark,
  tapered at their ends.
* `blob` - filled ellipse(s) or an irregular blob of a random colour, soft edges, slight shading.
* `stain` - a subtle, low-contrast multiplicative/additive colour shift in a smooth irregular region.

Masks. A mask is the defect's soft footprint (1 inside, a soft ramp at the edge) by default, i.e. the
applied alpha before the opacity of the blend; `mask_mode="alpha"` gives the applied alpha itself
(footprint x opacity). Either way the mask is zeroed, and the pixel restored to the input exactly,
wherever the mean absolute change over channels is below 1/255, so the mask is 0 exactly where the
image did not change. The defect area of an image (mean of its footprint mask) is drawn log-uniform
in [min_area, max_area]; scratches, being thin, stay near the low end (at most 0.012).

Every random draw comes from the `torch.Generator` passed in (or, for the synthesizer, one seeded
from `seed`), so results are reproducible. Inputs are float images in [0, 1]; outputs are clamped to
[0, 1].
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "KINDS",
    "AnomalySynthesizer",
    "perlin_noise",
    "perlin_mask",
    "perlin_texture",
    "cutpaste",
    "scratch",
    "blob",
    "stain",
]

KINDS: tuple[str, ...] = ("perlin_texture", "cutpaste", "scratch", "blob", "stain")

CHANGE_EPS = 1.0 / 255.0  # a pixel whose mean |change| over channels is below this is "unchanged"
_VALID_MEAN_CHANGE = 0.03  # a defect must change the pixels under its mask by this much on average
_VALID_AREA_FRACTION = 0.5  # ... and keep at least this fraction of its target area after masking
_ATTEMPTS = 4  # tries per defect; later tries use stronger contrast
_SCRATCH_MAX_AREA = 0.012


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


# --------------------------------------------------------------------------------------------------
# colours and textures


def _random_colour(c: int, g) -> Tensor:
    if _bern(g, 0.3):  # greyish
        return (torch.full((c,), _u(g)) + (torch.rand(c, generator=g) - 0.5) * 0.1).clamp_(0, 1)
    return torch.rand(c, generator=g)


def _contrast_colour(ref: Tensor, g, min_delta: float) -> Tensor:
    """A random colour whose mean absolute difference from `ref` (C,) is at least `min_delta`."""
    for _ in range(4):
        col = _random_colour(ref.numel(), g)
        if float((col - ref).abs().mean()) >= min_delta:
            return col
    direction = -1.0 if float(ref.mean()) > 0.5 else 1.0
    return (ref + direction * (min_delta + _u(g, 0.05, 0.25))).clamp_(0, 1)


def _two_colours(c: int, g) -> tuple[Tensor, Tensor]:
    c1 = _random_colour(c, g)
    c2 = _contrast_colour(c1, g, 0.2)
    return c1.view(c, 1, 1), c2.view(c, 1, 1)


def _texture_perlin(c: int, h: int, w: int, g) -> Tensor:
    c1, c2 = _two_colours(c, g)
    n = _perlin(2, h, w, _logu(g, 2.0, 24.0), g, octaves=3, persistence=_u(g, 0.4, 0.7))
    t = (0.5 + 0.5 * n[0]).unsqueeze(0)
    tex = c1 + (c2 - c1) * t
    tint = (torch.rand(c, 1, 1, generator=g) - 0.5) * 0.3
    return (tex + tint * n[1].unsqueeze(0)).clamp_(0, 1)


def _texture_periodic(c: int, h: int, w: int, g, checker: bool) -> Tensor:
    c1, c2 = _two_colours(c, g)
    yy, xx = _grid(h, w)
    th = _u(g, 0, math.pi)
    period = _logu(g, 3.0, 40.0)
    ph = _u(g, 0, 2 * math.pi)
    k = _logu(g, 1.0, 8.0)
    u = xx * math.cos(th) + yy * math.sin(th)
    if checker:
        v = yy * math.cos(th) - xx * math.sin(th)
        s = torch.sin(u * (math.pi / period) + ph) * torch.sin(v * (math.pi / period))
    else:
        s = torch.sin(u * (2 * math.pi / period) + ph).expand(h, w)
    t = (0.5 + 0.5 * torch.tanh(k * s) / math.tanh(k)).unsqueeze(0)
    return c1 + (c2 - c1) * t


def _texture_from_image(src: Tensor, g, c: int, h: int, w: int) -> Tensor:
    """Another image, resized to (h, w) if needed, randomly shifted, flipped and colour-jittered."""
    if src.shape[-2:] != (h, w):
        src = F.interpolate(src.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]
    if src.shape[0] != c:
        src = src.mean(0, keepdim=True).expand(c, h, w)
    tex = torch.roll(src, shifts=(_randint(g, 0, h - 1), _randint(g, 0, w - 1)), dims=(1, 2))
    if _bern(g, 0.5):
        tex = tex.flip(2)
    if _bern(g, 0.5):
        tex = tex.flip(1)
    if tex.shape[0] == 3 and _bern(g, 0.3):
        tex = tex[torch.randperm(3, generator=g)]
    mean = tex.mean(dim=(1, 2), keepdim=True)
    tex = (tex - mean) * _u(g, 0.6, 1.5) + mean * _u(g, 0.6, 1.4)
    return tex.clamp_(0, 1)


# --------------------------------------------------------------------------------------------------
# defect kinds. Each raw function returns (target (C,H,W), blend (H,W), footprint (H,W)): the defect
# image is img + blend * (target - img); `footprint` is the blend before opacity.


def _raw_perlin_texture(img: Tensor, area: float, g, attempt: int, source: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    c, h, w = img.shape
    scale = _logu(g, 1.5, 10.0)
    noise = _perlin(1, h, w, scale, g, octaves=_randint(g, 1, 2))[0]
    fp = _region_of_area(noise, area, _u(g, 0.5, 2.0))
    kinds = ["perlin", "stripes", "checker"] + (["image", "image"] if source is not None else [])
    kind = _choice(g, kinds)
    if kind == "perlin":
        tex = _texture_perlin(c, h, w, g)
    elif kind == "image":
        tex = _texture_from_image(source, g, c, h, w)
    else:
        tex = _texture_periodic(c, h, w, g, checker=(kind == "checker"))
    beta = _u(g, 0.15, 1.0) if attempt == 0 else _u(g, 0.5, 1.0)
    # keep the defect visible: at least ~0.05 mean change under the footprint
    wsum = float(fp.sum())
    if wsum > 0:
        diff = float(((tex - img).abs().mean(0) * fp).sum()) / wsum
        if diff > 0:
            beta = max(beta, min(1.0, 0.05 / diff))
    return tex, fp * beta, fp


def _raw_cutpaste(img: Tensor, area: float, g, attempt: int, source: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    c, h, w = img.shape
    a_px = area * h * w
    irregular = _bern(g, 0.5)
    box_px = a_px / 0.55 if irregular else a_px
    aspect = _logu(g, 1 / 3, 3.0)
    bh = int(round(min(h, max(2.0, math.sqrt(box_px * aspect)))))
    bw = int(round(min(w, max(2.0, box_px / bh))))
    k = _randint(g, 0, 3) if _bern(g, 0.5) else 0
    if k % 2 == 1 and (bw > h or bh > w):
        k = 0
    sh, sw = (bw, bh) if k % 2 == 1 else (bh, bw)
    y1, x1 = _randint(g, 0, h - bh), _randint(g, 0, w - bw)  # destination
    # source: prefer one that does not overlap the destination much
    for _ in range(4):
        y0, x0 = _randint(g, 0, h - sh), _randint(g, 0, w - sw)
        if abs(y0 - y1) >= bh / 2 or abs(x0 - x1) >= bw / 2:
            break
    patch = img[:, y0:y0 + sh, x0:x0 + sw]
    if k:
        patch = torch.rot90(patch, k, dims=(1, 2))
    if _bern(g, 0.3):
        patch = patch.flip(2)
    if _bern(g, 0.3):
        patch = patch.flip(1)
    if attempt > 0 or _bern(g, 0.7):
        if attempt == 0:
            fac, add = 1.0 + _sign(g) * _u(g, 0.03, 0.2), _u(g, -0.05, 0.05)
        else:  # retry of a paste that changed too little: jitter away from the clipped end
            sgn = -1.0 if float(patch.mean()) > 0.5 else 1.0
            fac, add = 1.0 + sgn * _u(g, 0.1, 0.3), sgn * _u(g, 0.02, 0.05) * attempt
        patch = patch * fac + add
    patch = patch.clamp(0, 1)
    if irregular:
        r = min(bh, bw) / 2
        f, _ = _localized_field(bh, bw, (bh - 1) / 2, (bw - 1) / 2, bh / 2, bw / 2, 0.0, _u(g, 0.2, 0.6), g, _u(g, 0.5, 1.0))
        box_alpha = _region_of_area(f, min(0.95, a_px / (bh * bw)), min(_u(g, 0.5, 1.5), r / 3))
    else:
        fe = _choice(g, (0.0, 1.0, 2.0))
        fe = min(fe, min(bh, bw) / 4)
        if fe > 0:
            ay = torch.minimum(torch.arange(bh, dtype=torch.float32) + 1, torch.arange(bh, 0, -1, dtype=torch.float32))
            ax = torch.minimum(torch.arange(bw, dtype=torch.float32) + 1, torch.arange(bw, 0, -1, dtype=torch.float32))
            box_alpha = (ay.view(-1, 1) / (fe + 1)).clamp(max=1.0) * (ax.view(1, -1) / (fe + 1)).clamp(max=1.0)
        else:
            box_alpha = torch.ones(bh, bw)
    target = img.clone()
    target[:, y1:y1 + bh, x1:x1 + bw] = patch
    fp = torch.zeros(h, w)
    fp[y1:y1 + bh, x1:x1 + bw] = box_alpha
    return target, fp, fp


def _curve_points(length: float, g, step: float) -> Tensor:
    """Points (N, 2) as (y, x) spaced `step` apart along a random curve of the given length,
    starting at the origin."""
    n = max(2, int(math.ceil(length / step)))
    th0 = _u(g, 0, 2 * math.pi)
    if _bern(g, 0.5):  # cubic Bezier, resampled by arc length
        d = torch.tensor([math.sin(th0), math.cos(th0)])
        perp = torch.tensor([-d[1], d[0]])
        p0 = torch.zeros(2)
        p3 = d * length
        p1 = d * length * _u(g, 0.2, 0.45) + perp * length * _u(g, -0.4, 0.4)
        p2 = d * length * _u(g, 0.55, 0.8) + perp * length * _u(g, -0.4, 0.4)
        t = torch.linspace(0, 1, 256).view(-1, 1)
        mt = 1 - t
        pts = mt**3 * p0 + 3 * mt**2 * t * p1 + 3 * mt * t**2 * p2 + t**3 * p3
        seg = (pts[1:] - pts[:-1]).norm(dim=1)
        cum = torch.cat((torch.zeros(1), seg.cumsum(0)))
        s = torch.arange(n, dtype=torch.float32) * step
        s = s[s <= cum[-1]]
        idx = torch.searchsorted(cum, s).clamp(1, cum.numel() - 1)
        c0, c1 = cum[idx - 1], cum[idx]
        wgt = ((s - c0) / (c1 - c0).clamp(min=1e-6)).view(-1, 1)
        return pts[idx - 1] + wgt * (pts[idx] - pts[idx - 1])
    # smooth random walk: heading = slow sinusoid + Brownian drift
    s = torch.arange(n, dtype=torch.float32) * step
    ell = _u(g, 0.3, 1.5) * length
    heading = (th0 + _u(g, 0.0, 0.8) * torch.sin(s * (2 * math.pi / ell) + _u(g, 0, 6.3))
               + (torch.randn(n, generator=g) * (0.03 * math.sqrt(step))).cumsum(0))
    steps = torch.stack((heading.sin(), heading.cos()), 1) * step
    return torch.cat((torch.zeros(1, 2), steps[:-1].cumsum(0)))


def _raw_scratch(img: Tensor, area: float, g, attempt: int, source: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    c, h, w = img.shape
    area = min(area, _SCRATCH_MAX_AREA)
    width = _u(g, 1.0, 3.0)
    soft = _u(g, 1.0, 1.8)
    total_len = area * h * w / width
    n_curves = _randint(g, 1, 3) if total_len > 60 else 1
    step = 0.5
    pts_all, amp_all = [], []
    parts = torch.rand(n_curves, generator=g) + 0.5
    parts = (parts / parts.sum()).tolist()
    for frac in parts:
        length = max(8.0, total_len * frac)
        pts = _curve_points(length, g, step)
        # place the curve so its bounding box lies in the image when it fits
        lo, hi = pts.min(0).values, pts.max(0).values
        span = hi - lo
        oy = _u(g, 0, max(0.0, h - 1 - float(span[0]))) - float(lo[0])
        ox = _u(g, 0, max(0.0, w - 1 - float(span[1]))) - float(lo[1])
        pts = pts + torch.tensor([oy, ox])
        m = pts.shape[0]
        s = torch.arange(m, dtype=torch.float32) / max(m - 1, 1)
        taper = (torch.minimum(s, 1 - s) / _u(g, 0.05, 0.25)).clamp(max=1.0).sqrt()
        amp_all.append(taper * (1.0 - 0.3 * _u(g) * torch.rand(1, generator=g)))
        pts_all.append(pts)
    pts = torch.cat(pts_all)
    amp = torch.cat(amp_all)
    # splat: alpha = max over curve samples of an anti-aliased disc profile
    r = int(math.ceil(width / 2 + soft / 2))
    off = torch.arange(-r, r + 1, dtype=torch.float32)
    ys = pts[:, :1].round() + off  # (N, K) pixel rows near each sample
    xs = pts[:, 1:].round() + off
    d = ((ys - pts[:, :1]).square().unsqueeze(2) + (xs - pts[:, 1:]).square().unsqueeze(1)).sqrt_()  # (N, K, K)
    a = ((width / 2 + soft / 2 - d) / soft).clamp_(0, 1).mul_(amp.view(-1, 1, 1))
    ok = ((ys >= 0) & (ys < h)).unsqueeze(2) & ((xs >= 0) & (xs < w)).unsqueeze(1) & (a > 0)
    idx = ys.long().unsqueeze(2) * w + xs.long().unsqueeze(1)
    fp = torch.zeros(h * w)
    fp.scatter_reduce_(0, idx[ok], a[ok], reduce="amax", include_self=True)
    fp = fp.view(h, w)
    mean = float(img.mean())
    sign = 1.0 if _u(g) < (1.0 - mean) else -1.0
    if attempt > 0:
        sign = 1.0 if mean < 0.5 else -1.0
    contrast = _u(g, 0.25, 0.6) + 0.1 * attempt
    tint = 1.0 + (torch.rand(c, 1, 1, generator=g) - 0.5) * 0.3
    target = (img + sign * contrast * tint).clamp(0, 1)
    return target, fp, fp


def _ellipse_axes(area: float, h: int, w: int, g, lo: float, hi: float) -> tuple[float, float, float]:
    """Equivalent radius and (rx, ry) of an ellipse covering `area` of an h x w image, aspect in [lo, hi]."""
    r_eq = math.sqrt(area * h * w / math.pi)
    aspect = _logu(g, lo, hi)
    return r_eq, r_eq * math.sqrt(aspect), r_eq / math.sqrt(aspect)


def _raw_blob(img: Tensor, area: float, g, attempt: int, source: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    c, h, w = img.shape
    r_eq, rx, ry = _ellipse_axes(area, h, w, g, 0.4, 2.5)
    cy, cx = _u(g, 0, h - 1), _u(g, 0, w - 1)
    mode = _choice(g, ("ellipse", "multi", "irregular"))
    theta = _u(g, 0, math.pi)
    if mode == "irregular":
        f, _ = _localized_field(h, w, cy, cx, ry, rx, theta, _u(g, 0.25, 0.7), g, _u(g, 0.5, 1.2))
    else:
        f, _ = _localized_field(h, w, cy, cx, ry, rx, theta, 0.0, g)
        if mode == "multi":
            for _ in range(_randint(g, 1, 2)):
                s = _u(g, 0.4, 0.9)
                f2, _ = _localized_field(h, w, cy + _u(g, -1, 1) * r_eq, cx + _u(g, -1, 1) * r_eq,
                                         ry * s, rx * s, _u(g, 0, math.pi), 0.0, g)
                f = torch.maximum(f, f2)
    t = _threshold_for_area(f, area)
    fp = _soft_region(f, t, min(_u(g, 1.0, 3.0), max(0.5, r_eq / 3)))
    hard = f > t
    nh = int(hard.sum())
    ref = img[:, hard].mean(1) if nh > 0 else img.mean(dim=(1, 2))
    col = _contrast_colour(ref, g, 0.2 + 0.1 * attempt)
    shade = _u(g, -0.25, 0.25)
    target = col.view(c, 1, 1) * (1.0 + shade * (f - t).clamp(0, 1)).unsqueeze(0)
    opacity = _u(g, 0.75, 1.0) if attempt == 0 else 1.0
    return target.clamp_(0, 1), fp * opacity, fp


def _raw_stain(img: Tensor, area: float, g, attempt: int, source: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    c, h, w = img.shape
    r_eq, rx, ry = _ellipse_axes(area, h, w, g, 0.5, 2.0)
    f, noise = _localized_field(h, w, _u(g, 0, h - 1), _u(g, 0, w - 1), ry, rx, _u(g, 0, math.pi),
                                _u(g, 0.4, 1.0), g, _u(g, 0.5, 1.2))
    fp = _region_of_area(f, area, min(_u(g, 2.0, 8.0), max(1.0, r_eq / 2)))
    # uneven density inside the stain
    blend = fp * (_u(g, 0.35, 0.8) * (0.8 + 0.2 * noise)).clamp(0, 1)
    base = _sign(g)
    mul = base * _u(g, 0.1, 0.3) + (torch.rand(c, 1, 1, generator=g) - 0.5) * 0.1
    add = base * _u(g, 0.0, 0.1) + (torch.rand(c, 1, 1, generator=g) - 0.5) * 0.05
    delta = img * mul + add  # target - img
    wsum = float(fp.sum())
    if wsum > 0:
        cur = float(((blend * delta).abs().mean(0) * fp).sum()) / wsum
        want = _u(g, 0.05, 0.12) + 0.02 * attempt
        if cur > 1e-6:
            delta = delta * (want / cur)
    return (img + delta).clamp(0, 1), blend, fp


_RAW: dict[str, Callable] = {
    "perlin_texture": _raw_perlin_texture,
    "cutpaste": _raw_cutpaste,
    "scratch": _raw_scratch,
    "blob": _raw_blob,
    "stain": _raw_stain,
}


# --------------------------------------------------------------------------------------------------
# applying a defect with an honest mask


def _apply(img: Tensor, target: Tensor, blend: Tensor) -> tuple[Tensor, Tensor, float]:
    """Blend, clamp, and revert pixels whose mean |change| is below CHANGE_EPS. Works on the
    bounding box of the blend only. Returns (out, keep (H, W) bool, mean change over kept pixels)."""
    h, w = blend.shape
    rows = (blend.amax(1) > 0).nonzero()
    if rows.numel() == 0:
        return img, torch.zeros(h, w, dtype=torch.bool), 0.0
    cols = (blend.amax(0) > 0).nonzero()
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    i = img[:, y0:y1, x0:x1]
    b = blend[y0:y1, x0:x1]
    o = (i + b * (target[:, y0:y1, x0:x1] - i)).clamp_(0, 1)
    ch = (o - i).abs().mean(0)
    k = (ch >= CHANGE_EPS) & (b > 0)
    out = img.clone()
    out[:, y0:y1, x0:x1] = torch.where(k, o, i)
    keep = torch.zeros(h, w, dtype=torch.bool)
    keep[y0:y1, x0:x1] = k
    n = int(k.sum())
    return out, keep, (float(ch[k].sum()) / n if n else 0.0)


def _one_defect(img: Tensor, kind: str, area: float, g, source: Tensor | None) -> tuple[Tensor, Tensor, Tensor, bool]:
    """(out, footprint, blend, valid) for one defect of `kind` with target `area` (fraction)."""
    raw = _RAW[kind]
    target_area = min(area, _SCRATCH_MAX_AREA) if kind == "scratch" else area
    best = None
    for attempt in range(_ATTEMPTS):
        target, blend, fp = raw(img, area, g, attempt, source)
        out, keep, change = _apply(img, target, blend)
        fp = fp * keep
        blend = blend * keep
        got = float(fp.mean())
        if got >= _VALID_AREA_FRACTION * target_area and change >= _VALID_MEAN_CHANGE:
            return out, fp, blend, True
        score = got * change
        if best is None or score > best[0]:
            best = (score, out, fp, blend)
    return best[1], best[2], best[3], False


def _check_images(images: Tensor, batched: bool) -> None:
    want = 4 if batched else 3
    if images.dim() != want:
        raise ValueError(f"expected a {'(B, C, H, W)' if batched else '(C, H, W)'} image tensor, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")


def _check_mode(mask_mode: str) -> None:
    if mask_mode not in ("footprint", "alpha"):
        raise ValueError(f"mask_mode must be 'footprint' or 'alpha', got {mask_mode!r}")


def _kind_fn(kind: str):
    def fn(image: Tensor, generator: torch.Generator | None = None, *, area: float | None = None,
           min_area: float = 0.002, max_area: float = 0.10, source: Tensor | None = None,
           mask_mode: str = "footprint") -> tuple[Tensor, Tensor]:
        _check_mode(mask_mode)
        batched = image.dim() == 4
        _check_images(image, batched)
        with _one_thread():
            return _run_kind(kind, image, batched, generator, area, min_area, max_area, source, mask_mode)

    fn.__name__ = fn.__qualname__ = kind
    return fn


def _run_kind(kind: str, image: Tensor, batched: bool, generator, area, min_area, max_area, source,
              mask_mode: str) -> tuple[Tensor, Tensor]:
    imgs = image if batched else image.unsqueeze(0)
    dev, dt = imgs.device, imgs.dtype
    x = imgs.detach().to("cpu", torch.float32)
    outs, masks = [], []
    for i in range(x.shape[0]):
        a = area if area is not None else _logu(generator, min_area, max_area)
        src = source
        if src is not None and src.dim() == 4:
            src = src[_randint(generator, 0, src.shape[0] - 1)]
        if src is None and batched and x.shape[0] > 1 and kind == "perlin_texture":
            j = _randint(generator, 0, x.shape[0] - 2)
            src = x[j + (j >= i)]
        if src is not None:
            src = src.detach().to("cpu", torch.float32)
        out, fp, blend, _ = _one_defect(x[i], kind, a, generator, src)
        outs.append(out)
        masks.append(fp if mask_mode == "footprint" else blend)
    out = torch.stack(outs).to(dev, dt)
    mask = torch.stack(masks).unsqueeze(1).to(dev, dt)
    return (out, mask) if batched else (out[0], mask[0])


_KIND_DOC = """Paste one `{kind}` defect into `image` ((C, H, W) or (B, C, H, W), float in [0, 1]).

Returns (augmented, mask) with mask (1, H, W) / (B, 1, H, W). `area` is the target fraction of the
image (drawn log-uniform in [min_area, max_area] if None). `source` (perlin_texture only): an image
(C, H, W) or images (N, C, H, W) to take the foreign texture from; for a batch, the batch's other
images are used when it is None. A defect that cannot be made visible in 4 tries (e.g. cutpaste on a
constant image is retried with forced brightness jitter) is returned as the best try."""

perlin_texture = _kind_fn("perlin_texture")
cutpaste = _kind_fn("cutpaste")
scratch = _kind_fn("scratch")
blob = _kind_fn("blob")
stain = _kind_fn("stain")
for _f in (perlin_texture, cutpaste, scratch, blob, stain):
    _f.__doc__ = _KIND_DOC.format(kind=_f.__name__)
del _f


# --------------------------------------------------------------------------------------------------


class AnomalySynthesizer:
    """Random synthetic defects for a batch of normal images.

    `kinds`: which defect kinds to draw from (uniformly). `p_anomaly`: probability that an image
    gets defects (one, or two with probability 0.3 when the drawn area allows). `min_area`,
    `max_area`: total defect area per image as a fraction of the image. `seed`: seeds the internal
    generator (a `generator` passed to a call takes precedence). `mask_mode`: "footprint" (default,
    the defect's soft footprint, opacity excluded) or "alpha" (the applied alpha).
    """

    def __init__(self, *, kinds: Sequence[str] = KINDS, p_anomaly: float = 0.5, min_area: float = 0.002,
                 max_area: float = 0.10, seed: int | None = None, mask_mode: str = "footprint"):
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in _RAW]
        if not kinds or bad:
            raise ValueError(f"unknown anomaly kinds {bad} (choose from {', '.join(KINDS)})")
        if not 0.0 <= p_anomaly <= 1.0:
            raise ValueError(f"p_anomaly must be in [0, 1], got {p_anomaly}")
        if not 0.0 < min_area <= max_area < 1.0:
            raise ValueError(f"need 0 < min_area <= max_area < 1, got {min_area}, {max_area}")
        _check_mode(mask_mode)
        self.kinds = kinds
        self.p_anomaly = float(p_anomaly)
        self.min_area = float(min_area)
        self.max_area = float(max_area)
        self.mask_mode = mask_mode
        self._gen = torch.Generator()
        if seed is None:
            self._gen.seed()
        else:
            self._gen.manual_seed(int(seed))

    def __repr__(self) -> str:
        return (f"AnomalySynthesizer(kinds={self.kinds}, p_anomaly={self.p_anomaly}, "
                f"min_area={self.min_area}, max_area={self.max_area}, mask_mode={self.mask_mode!r})")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """images: (B, C, H, W) float in [0, 1] (normal). Returns (augmented (B, C, H, W) in [0, 1],
        mask (B, 1, H, W) in [0, 1]); images without a defect come back unchanged with a zero mask."""
        _check_images(images, batched=True)
        with _one_thread():
            return self._synthesize(images, generator if generator is not None else self._gen)

    def _synthesize(self, images: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        b, c, h, w = images.shape
        dev, dt = images.device, images.dtype
        x = images.detach().to("cpu", torch.float32)
        out = x.clone()
        masks = torch.zeros(b, 1, h, w)
        for i in range(b):
            if not _bern(g, self.p_anomaly):
                continue
            total = _logu(g, self.min_area, self.max_area)
            if total >= 2 * self.min_area and _bern(g, 0.3):
                u = _u(g, 0.3, 0.7)
                areas = [max(self.min_area, total * u), max(self.min_area, total * (1 - u))]
            else:
                areas = [total]
            img0 = x[i]
            cur = img0
            fp_tot = torch.zeros(h, w)
            bl_tot = torch.zeros(h, w)
            for a in areas:
                kind = _choice(g, self.kinds)
                src = None
                if kind == "perlin_texture" and b > 1:
                    j = _randint(g, 0, b - 2)
                    src = x[j + (j >= i)]
                res = _one_defect(cur, kind, a, g, src)
                if not res[3] and len(self.kinds) > 1:  # try another kind before settling
                    others = [k for k in self.kinds if k != kind]
                    res2 = _one_defect(cur, _choice(g, others), a, g, None)
                    if res2[3]:
                        res = res2
                cur, fp, bl = res[0], res[1], res[2]
                fp_tot = torch.maximum(fp_tot, fp)
                bl_tot = torch.maximum(bl_tot, bl)
            keep = ((cur - img0).abs().mean(0) >= CHANGE_EPS) & (fp_tot > 0)
            out[i] = torch.where(keep.unsqueeze(0), cur, img0)
            masks[i, 0] = (fp_tot if self.mask_mode == "footprint" else bl_tot) * keep
        return out.clamp_(0, 1).to(dev, dt), masks.to(dev, dt)
