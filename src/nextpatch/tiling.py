"""Images at (close to) their own resolution: overlapping S x S tiles that keep the aspect ratio.

The network sees S x S pixels (224 by default). Shrinking a 1600 px image whole to that size turns a
20 px defect into 3 px, under one 14 px token. With `model.tile_resolution = R > 0`, an image is
instead resized (aspect kept) so that its long side is min(its own, R), never below S on its short
side, and cut into the fewest S x S tiles that cover it, spread evenly (neighbours overlap by what is
left over). Each tile is scored by the network as an image of its own; the tiles' maps and expected
images are stitched back by averaging where they overlap. R = 0 keeps the whole-image behaviour: one
"tile", the image resized to S x S.

Shapes: an image input is (3, h, w) at its working size (`working_size`); `tile` -> (K, 3, S, S).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def working_size(h: int, w: int, size: int, resolution: int) -> tuple[int, int]:
    """The (h', w') an (h, w) image is scored at: (S, S) when `resolution` is 0, else aspect kept, long side
    min(own, resolution), short side at least `size`."""
    if resolution <= 0:
        return size, size
    scale = min(1.0, resolution / max(h, w))
    scale = max(scale, size / min(h, w))  # a thin image is upscaled until a tile fits across it
    return max(size, round(h * scale)), max(size, round(w * scale))


def input_scale(shape: tuple[int, int], working: tuple[int, int]) -> float:
    """Working pixels per image pixel along a side (the geometric mean of the two sides' ratios): an
    (H, W) image scored at (h', w')."""
    return math.sqrt(working[0] * working[1] / (shape[0] * shape[1]))


SCALE_TOLERANCE = 1.5  # `scale_warning`: how far outside the training images' scales an image may be seen


def scale_warning(trained: list[float] | None, scale: float, shape: tuple[int, int]) -> str | None:
    """A line when an (H, W) image seen at `scale` (`input_scale`) lies outside the training images'
    scales `trained` [min, max] widened by `SCALE_TOLERANCE` either way; else (or `trained` None) None.

    Images are scored at their working size: with tiles, at most `tile_resolution` px on the long side,
    so a full camera frame is shrunk where training crops were not; whole, at S x S. A texture and its
    defects look different at another scale, so such an image scores high whatever it shows.
    """
    if not trained or trained[0] / SCALE_TOLERANCE <= scale <= trained[1] * SCALE_TOLERANCE:
        return None
    seen = f"{trained[0]:.2f}x" if trained[0] == trained[1] else f"{trained[0]:.2f}-{trained[1]:.2f}x"
    return (f"seen at {scale:.2f}x its pixels ({shape[1]} x {shape[0]} px), the training images at {seen}: texture "
            "and defects look different at another scale, so its score means little; predict on images of the "
            "training images' size (crop them alike), or train on images of this size")


def tile_starts(length: int, size: int) -> list[int]:
    """Start offsets of the fewest `size` windows covering [0, length), spread evenly."""
    n = math.ceil(length / size)
    if n <= 1:
        return [0]
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class Layout:
    """Where the tiles of one image lie: tile k covers rows ys[k // len(xs)] + [0, S), columns xs[k % len(xs)] + [0, S)."""

    height: int
    width: int
    size: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @classmethod
    def of(cls, height: int, width: int, size: int) -> "Layout":
        return cls(height, width, size, tuple(tile_starts(height, size)), tuple(tile_starts(width, size)))

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def tile(self, image: torch.Tensor) -> torch.Tensor:
        """image (C, h, w) -> tiles (K, C, S, S)."""
        s = self.size
        return torch.stack([image[:, y:y + s, x:x + s] for y in self.ys for x in self.xs])

    def stitch(self, tiles: torch.Tensor) -> torch.Tensor:
        """tiles (K, ..., S, S) -> (..., h, w), the mean of the tiles covering each pixel."""
        if len(self) == 1:
            return tiles[0]
        s = self.size
        out = tiles.new_zeros((*tiles.shape[1:-2], self.height, self.width))
        count = tiles.new_zeros((self.height, self.width))
        k = 0
        for y in self.ys:
            for x in self.xs:
                out[..., y:y + s, x:x + s] += tiles[k]
                count[y:y + s, x:x + s] += 1
                k += 1
        return out / count


def to_working_input(image: np.ndarray, size: int, resolution: int = 0) -> torch.Tensor:
    """(H, W, 3) float [0, 1] -> (3, h', w') float tensor at `working_size` (antialiased bilinear resize)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    shape = working_size(x.shape[-2], x.shape[-1], size, resolution)
    if tuple(x.shape[-2:]) != shape:
        x = F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(0, 1)


def tiles_of(inputs: list[torch.Tensor], size: int) -> tuple[torch.Tensor, list[Layout]]:
    """Working inputs [(3, h_i, w_i)] -> (all their tiles (sum K_i, 3, S, S), each input's Layout)."""
    layouts = [Layout.of(x.shape[-2], x.shape[-1], size) for x in inputs]
    if not inputs:
        return torch.empty((0, 3, size, size), dtype=torch.uint8), layouts
    return torch.cat([lay.tile(x) for lay, x in zip(layouts, inputs)]), layouts


def split_tiles(tiles: torch.Tensor, layouts: list[Layout]) -> list[torch.Tensor]:
    """The inverse of `tiles_of`'s concatenation: (sum K_i, ...) -> [(K_i, ...)]."""
    return list(torch.split(tiles, [len(lay) for lay in layouts]))


def apply_mask(amap: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A stitched map (h, w) times the whole image's inspection mask (S, S) resized to (h, w); None: unchanged."""
    if mask is None:
        return amap
    resized = F.interpolate(mask[None, None].to(amap.dtype), size=tuple(amap.shape[-2:]), mode="bilinear",
                            align_corners=False)[0, 0]
    return amap * resized.clamp(0, 1)
