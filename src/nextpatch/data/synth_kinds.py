"""The defect kinds of the training synthesis (:mod:`nextpatch.data.anomalies`): colours, foreign
textures, and one raw function per kind (`_RAW`), each returning (target, blend, footprint)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nextpatch.data.synth_noise import (
    _bern,
    _choice,
    _grid,
    _localized_field,
    _logu,
    _perlin,
    _randint,
    _region_of_area,
    _sign,
    _soft_region,
    _threshold_for_area,
    _u,
)

_SCRATCH_MAX_AREA = 0.012  # scratches, being thin, stay near the low end of the area range


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

