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

Layout: the random draws and Perlin noise are in :mod:`nextpatch.data.synth_noise`, the raw defect
kinds in :mod:`nextpatch.data.synth_kinds`; this module applies them with an honest mask.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from nextpatch.data.synth_kinds import _RAW, _SCRATCH_MAX_AREA
from nextpatch.data.synth_noise import _bern, _choice, _logu, _one_thread, _randint, _u, perlin_mask, perlin_noise

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
