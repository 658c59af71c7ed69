"""Accepted normals: the feedback loop's memory (issue 26), and the inspection mask.

An inspector marks a flagged image as normal. Its tokens' features join a bank of accepted
features; at inference every token closer to that bank than the accepted images are to one another
(the radius r) is taken as normal: its distance is multiplied by the gate

    gate = clamp((d - r) / (ACCEPT_WIDTH * r), 0, 1),  d = 1 - max cosine to the accepted bank,

0 within r, 1 from (1 + ACCEPT_WIDTH) r on. The gate only lowers distances, and only on tokens like
accepted ones, so what the model flagged before for other reasons is flagged still, and the threshold
(set on the training's held-out normals) keeps its meaning. No retraining: one forward pass per image.

The features are the memory of normal's when the model has one, else the comparator's projected
features of the real image (the space where the Siamese comparison measures distances).

Shapes: N images, L tokens per image (image order), D feature size, A accepted rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import as_float
from .memory import build_bank, nearest_distance

ACCEPT_QUANTILE = 0.99  # r: this quantile of the accepted tokens' distances to the other accepted images
ACCEPT_WIDTH = 1.0      # the gate opens from r to (1 + ACCEPT_WIDTH) r


def accept_dim(cfg) -> int:
    """Feature size D of the accepted bank for a ModelConfig."""
    if cfg.memory_layers:
        return cfg.comparator_dims[0] * len(cfg.memory_layers)
    return cfg.comparator_dim * cfg.head_ensemble


def leave_one_out_distances(feats: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Each new image's token distances to everything accepted but itself: feats (M, L, D), bank (A, D) -> (M*L,).

    With one image and an empty bank, each token's distance to the image's other tokens.
    """
    m = feats.shape[0]
    if m == 1 and bank.shape[0] == 0:
        sim = feats[0] @ feats[0].T
        sim.fill_diagonal_(-1.0)
        return (1.0 - sim.amax(dim=1)).clamp(min=0)
    out = []
    for i in range(m):
        others = torch.cat([bank, feats[:i].flatten(0, 1), feats[i + 1:].flatten(0, 1)])
        out.append(nearest_distance(feats[i:i + 1], others).flatten())
    return torch.cat(out)


class AcceptedMixin:
    """PatternNet's feedback loop: the accepted bank and its gate, the inspection mask."""

    def accept_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit features of the real image's tokens: tokens (N, P, n, Dt) -> (N, L, D), image order."""
        if self.cfg.memory_layers:
            return self.memory_features(tokens)
        return self.image_tokens(self.project_comparator(self.encode_real(tokens)))  # (N, P, n, D) -> (N, L, D)

    def accepted_gate(self, tokens: torch.Tensor) -> torch.Tensor:
        """Multiplier of each token's distance: tokens (N, P, n, Dt) -> (N, G*s, G*s) in [0, 1]."""
        side = self.cfg.grid * self.cfg.tokens_per_side
        d = nearest_distance(self.accept_features(tokens), self.accepted_bank)
        r = self.accepted_radius.clamp(min=1e-6)
        return ((d - r) / (ACCEPT_WIDTH * r)).clamp(0, 1).reshape(-1, side, side)

    def apply_mask(self, amap: torch.Tensor) -> torch.Tensor:
        """Pixel map (N, S, S) -> the same with every pixel outside the inspection mask set to 0."""
        return amap * self.inspect_mask

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor) -> float:
        """Set the inspection mask from (H, W) values in [0, 1] (1 = inspect), any size: area-resized to S x S.

        Returns the inspected share of the image.
        """
        size = self.cfg.image_size
        small = F.interpolate(mask.float()[None, None], size=(size, size), mode="area")[0, 0].clamp(0, 1)
        self.inspect_mask.copy_(small.to(self.inspect_mask.device))
        return float(small.mean())

    @torch.no_grad()
    def fit_accepted(self, images: torch.Tensor, batch_size: int = 8, seed: int = 0) -> dict:
        """Add normal images (M, 3, S, S) (uint8 or float in [0, 1]) to the accepted bank; widen r to cover them.

        The bank keeps at most `memory_size` rows (greedy coreset). Returns {"rows", "radius", "added"}.
        """
        device = self.accepted_bank.device
        feats = torch.cat([self.accept_features(self.patchify(as_float(images[i:i + batch_size]).to(device))).cpu()
                           for i in range(0, len(images), batch_size)])  # (M, L, D)
        bank = self.accepted_bank.cpu().float()
        radius = float(torch.quantile(leave_one_out_distances(feats, bank), ACCEPT_QUANTILE))
        radius = max(radius, float(self.accepted_radius))
        rows = torch.cat([bank, feats.flatten(0, 1)])
        if rows.shape[0] > self.cfg.memory_size:
            rows = build_bank(rows, self.cfg.memory_size, seed=seed)
        self.accepted_bank = F.normalize(rows, dim=-1).to(device)
        self.accepted_radius.fill_(radius)
        return {"rows": int(rows.shape[0]), "radius": round(radius, 5), "added": int(len(feats))}
