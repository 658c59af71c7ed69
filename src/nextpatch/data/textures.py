"""The normal images of the procedural datasets: textures (:func:`woven`, :func:`grain`,
:func:`carpet`, :func:`tiles`), aligned objects (:func:`pcb`, :func:`bottle`) and the foreign
textures that contamination pastes (:func:`foreign_texture`). Numpy only, deterministic for a
generator."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from nextpatch.data.proc_ops import _bilinear, _colour, _grid, _noise, _smoothstep


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

