"""The patch grid: pixels <-> tokens <-> patches, and the triplets of consecutive patches.

Shapes (see `torch_model` for the vocabulary): N images of S x S pixels, a G x G grid of P = G*G
patches, n = s*s tokens of t x t pixels per patch, Dt = t*t*3 values per token, L = (G*s)^2 tokens
per image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DIRECTIONS

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25  # fixed pixel normalisation: inputs are in [0, 1]

_STEP = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def triplet_table(grid: int, directions: tuple[str, ...]) -> torch.Tensor:
    """All triplets of a grid x grid patch grid: (T, 4) long tensor of (far, near, target, direction id).

    Patch (i, j) has index i * grid + j. The direction id indexes `DIRECTIONS`.
    """
    rows = []
    for name in directions:
        di, dj = _STEP[name]
        for i in range(grid):
            for j in range(grid):
                fi, fj = i - 2 * di, j - 2 * dj
                if 0 <= fi < grid and 0 <= fj < grid:
                    rows.append((fi * grid + fj, (i - di) * grid + (j - dj), i * grid + j, DIRECTIONS.index(name)))
    return torch.tensor(rows, dtype=torch.long)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (stored that way to save memory) -> float in [0, 1]; float images pass through."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


class GridMixin:
    """PatternNet's geometry: cutting images into tokens and patches and putting them back."""

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs: (N, 3, S, S) in [0, 1] -> normalised tokens (N, P, n, Dt)."""
        g, s, t = self.cfg.grid, self.cfg.tokens_per_side, self.cfg.token_size
        x = (imgs - PIXEL_MEAN) / PIXEL_STD
        x = x.reshape(x.shape[0], 3, g, s, t, g, s, t)
        x = torch.einsum("ncgsthuv->nghsutvc", x)  # (N, gi, gj, si, sj, ti, tj, C)
        return x.reshape(x.shape[0], g * g, s * s, t * t * 3)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (N, P, n, Dt) normalised -> imgs (N, 3, S, S) in pixel units (not clamped)."""
        g, s, t = self.cfg.grid, self.cfg.tokens_per_side, self.cfg.token_size
        x = tokens.reshape(tokens.shape[0], g, g, s, s, t, t, 3)
        x = torch.einsum("nghsutvc->ncgsthuv", x)
        return x.reshape(x.shape[0], 3, g * s * t, g * s * t) * PIXEL_STD + PIXEL_MEAN

    def image_token_index(self) -> torch.Tensor:
        """(P, n): where each patch's tokens lie among an image's (G*s)^2 tokens (row-major token grid)."""
        length = (self.cfg.grid * self.cfg.tokens_per_side) ** 2
        return self.patch_tokens(torch.arange(length).unsqueeze(-1))[..., 0]

    def image_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (..., P, n, D) -> the same tokens in image order (..., L, D), L = (G*s)^2, row-major."""
        g, s = self.cfg.grid, self.cfg.tokens_per_side
        x = tokens.reshape(*tokens.shape[:-3], g, g, s, s, tokens.shape[-1]).transpose(-4, -3)
        return x.reshape(*tokens.shape[:-3], g * g * s * s, tokens.shape[-1])

    def patch_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of `image_tokens`: (..., L, D) in image order -> (..., P, n, D)."""
        g, s = self.cfg.grid, self.cfg.tokens_per_side
        x = tokens.reshape(*tokens.shape[:-2], g, s, g, s, tokens.shape[-1]).transpose(-4, -3)
        return x.reshape(*tokens.shape[:-2], g * g, s * s, tokens.shape[-1])

    def token_grid(self, values: torch.Tensor) -> torch.Tensor:
        """values per token (N, P, n) -> map at token resolution (N, G*s, G*s)."""
        g, s = self.cfg.grid, self.cfg.tokens_per_side
        x = values.reshape(values.shape[0], g, g, s, s).permute(0, 1, 3, 2, 4)
        return x.reshape(values.shape[0], g * s, g * s)

    def transform_patches(self, tokens: torch.Tensor, rotations: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Rotate (k * 90 degrees) and/or mirror every patch in place on the grid, per image.

        tokens (N, ..., n, Dt) or per-token values (N, ..., n); rotations, flips: (N,) ints / bools.
        Token grid and pixels inside tokens turn together, so a pair (prediction, real patch) stays aligned.
        """
        s, t = self.cfg.tokens_per_side, self.cfg.token_size
        pixels = tokens.dim() >= 3 and tokens.shape[-1] == t * t * 3
        lead = tokens.shape[:-2] if pixels else tokens.shape[:-1]
        x = tokens.reshape(*lead, s, s, t, t, 3) if pixels else tokens.reshape(*lead, s, s)
        grid = (len(lead), len(lead) + 1)
        inner = (len(lead) + 2, len(lead) + 3)
        out = []
        for i in range(x.shape[0]):
            xi = x[i:i + 1]
            if flips[i]:
                xi = xi.flip(grid[1]).flip(inner[1]) if pixels else xi.flip(grid[1])
            k = int(rotations[i])
            if k:
                xi = torch.rot90(xi, k, grid)
                if pixels:
                    xi = torch.rot90(xi, k, inner)
            out.append(xi)
        return torch.cat(out).reshape(tokens.shape)

    def token_labels(self, mask: torch.Tensor) -> torch.Tensor:
        """mask (N, 1, S, S) -> fraction of defect pixels in each token (N, P, n)."""
        s, t = self.cfg.tokens_per_side, self.cfg.token_size
        g = self.cfg.grid
        frac = F.avg_pool2d(mask, t)  # (N, 1, G*s, G*s)
        frac = frac.reshape(mask.shape[0], g, s, g, s).permute(0, 1, 3, 2, 4)
        return frac.reshape(mask.shape[0], g * g, s * s)
