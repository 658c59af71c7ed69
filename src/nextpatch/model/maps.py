"""From distances to maps: bi-directional fusion, the memory of normal beside the comparison, and the
smoothed pixel map.

The memory's buffers (memory_bank, memory_scale) are created in `PatternNet.__init__`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import DIRECTIONS
from .geometry import as_float
from .memory import build_bank, candidate_pool, nearest_distance


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class MapsMixin:
    """PatternNet's maps: fusing the directions, the memory of normal, smoothing to pixels."""

    def fuse(self, dist: torch.Tensor) -> torch.Tensor:
        """Per-triplet distances of all T triplets (N, T, n) -> one distance per token (N, P, n).

        Bi-directional inference: a token predicted from several directions takes the min, mean or max
        of its distances. "min" (the paper's rationale: a defect in one direction's context does not
        condemn a normal patch) also lets a defect wider than a patch hide, since some direction then
        predicts it from defective context; "max" flags a token when any direction finds it wrong.
        Patches no direction reaches (only with a reduced set of directions) get 0.
        """
        n_img, _, n_tok = dist.shape
        n_patch = self.cfg.grid ** 2
        _, _, target, direction = self.triplets.unbind(-1)
        slot = direction * n_patch + target  # (T,) position in a dense (directions x patches) table
        dense = dist.new_full((n_img, len(DIRECTIONS) * n_patch, n_tok), float("nan"))
        dense[:, slot] = dist
        dense = dense.reshape(n_img, len(DIRECTIONS), n_patch, n_tok)
        if self.cfg.fusion == "min":
            fused = dense.nan_to_num(nan=float("inf")).amin(dim=1)
            return torch.where(torch.isinf(fused), torch.zeros_like(fused), fused)
        if self.cfg.fusion == "max":
            fused = dense.nan_to_num(nan=-float("inf")).amax(dim=1)
            return torch.where(torch.isinf(fused), torch.zeros_like(fused), fused)
        return dense.nanmean(dim=1).nan_to_num(nan=0.0)

    def smooth(self, token_map: torch.Tensor) -> torch.Tensor:
        """Token-resolution map (N, h, w) -> pixel map (N, S, S): bilinear upsampling, Gaussian smoothing."""
        size = self.cfg.image_size
        x = F.interpolate(token_map.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
        k = self.smoothing.to(x.dtype)
        r = k.numel() // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        return x.squeeze(1)

    def prediction_map(self, tokens: torch.Tensor, pred: torch.Tensor,
                       real_feats: torch.Tensor | None = None) -> torch.Tensor:
        """The paper's comparison, fused over directions: (N, P, n, Dt), (N, T, n, Dt) -> (N, G*s, G*s).
        `real_feats`: see `triplet_distances`."""
        return self.token_grid(self.fuse(self.triplet_distances(tokens, pred, real_feats)))

    def memory_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The real image's features at `memory_layers`: tokens (N, P, n, Dt) -> unit features (N, L, Dm)."""
        return self.encode_real_image(tokens)[1]

    def memory_map(self, tokens: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """Distance of every token to the memory bank: tokens (N, P, n, Dt) -> (N, G*s, G*s), token resolution.
        `feats`: the tokens' `memory_features` when already computed."""
        side = self.cfg.grid * self.cfg.tokens_per_side
        if feats is None:
            feats = self.memory_features(tokens)
        with self.comparator_autocast(tokens.device):  # the search's products in Encoder3's precision
            bank, dtype = self.memory_bank, self.inference_dtype(tokens.device)
            if dtype is not None:  # cast once, not per call (2 ms of 10 for 4 tiles against 16384 rows)
                bank = self.inference_cast("memory_bank", {"bank": bank}, dtype)["bank"]
            return nearest_distance(feats, bank).reshape(-1, side, side)

    @torch.no_grad()
    def fit_memory(self, images: torch.Tensor, batch_size: int = 8, seed: int = 0) -> int:
        """Fill the memory bank from normal training images (M, 3, S, S) (uint8 or float in [0, 1]).

        The tokens of the images (at most `POOL_PER_ROW * memory_size` of them, drawn uniformly, so that
        time and memory stay bounded) are the candidates; a greedy coreset keeps at most `memory_size`.
        Returns the bank's length (0 and nothing set without a memory).
        """
        if not self.cfg.memory_layers:
            return 0
        device = self.memory_bank.device
        n_tok = (self.cfg.grid * self.cfg.tokens_per_side) ** 2
        pool = candidate_pool(len(images) * n_tok, self.cfg.memory_size, seed=seed)
        feats = []
        for i in range(0, len(images), batch_size):
            f = self.memory_features(self.patchify(as_float(images[i:i + batch_size]).to(device))).flatten(0, 1).cpu()
            if pool is not None:  # the pool's indices that fall in this batch's tokens
                lo, hi = i * n_tok, i * n_tok + len(f)
                f = f[pool[(pool >= lo) & (pool < hi)] - lo]
            feats.append(f)
        self.memory_bank = build_bank(torch.cat(feats), self.cfg.memory_size, seed=seed).to(device)
        return len(self.memory_bank)

    @torch.no_grad()
    def fit_memory_scale(self, imgs: torch.Tensor, batch_size: int = 8) -> float:
        """Set `memory_scale` from held-out normal images (M, 3, S, S): std(prediction map) / std(memory map).

        Both terms then vary equally on normal tokens, so `memory_weight` is their relative weight.
        Returns the scale (1.0 and nothing set without a memory).
        """
        if not self.cfg.memory_layers:
            return 1.0
        pred_maps, mem_maps = [], []
        for i in range(0, len(imgs), batch_size):
            tokens = self.patchify(imgs[i:i + batch_size].to(self.memory_bank.device))
            pred_maps.append(self.prediction_map(tokens, self.predict_triplets(tokens)).flatten())
            mem_maps.append(self.memory_map(tokens).flatten())
        scale = float(torch.cat(pred_maps).std() / torch.cat(mem_maps).std().clamp(min=1e-8))
        self.memory_scale.fill_(scale)
        return scale
