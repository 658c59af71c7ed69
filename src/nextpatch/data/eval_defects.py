"""The evaluation defects of the procedural datasets (``add_<defect>``, :data:`DEFECTS`,
:func:`apply_defect`, :func:`part_region`): written apart from the model's training synthesis
(:mod:`nextpatch.data.anomalies`) on purpose. Each returns ``(image, mask)``."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nextpatch.data.proc_ops import (
    DEFAULT_AREA,
    Area,
    _bilinear,
    _blob_sdf,
    _blur,
    _densify,
    _dilate,
    _erode,
    _gray3,
    _grid,
    _is_gray,
    _log_uniform,
    _noise,
    _noise1d,
    _pick_center,
    _smoothstep,
    _stamp,
)
from nextpatch.data.textures import foreign_texture
from nextpatch.errors import DataError


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

