"""Accepted normals: the feedback loop's memory (issue 26), and the inspection mask.

An inspector marks a flagged image as normal. The features of the tokens that make it score (the
smoothed map, back at token resolution, at >= ACCEPT_SHARE of the image's largest value) join a bank
of accepted features; at inference every token closer to that bank than the accepted tokens are to
one another (the radius r) is taken as normal: its distance is multiplied by the gate

    gate = clamp((d - r) / (ACCEPT_WIDTH * r), 0, 1),  d = 1 - max cosine to the accepted bank,

0 within r, 1 from (1 + ACCEPT_WIDTH) r on. The gate only lowers distances, and only on tokens like
the accepted ones, so what the model flagged before for other reasons is flagged still, and the
threshold (set on the training's held-out normals) keeps its meaning. No retraining: one forward pass
per image.

Why only the scoring tokens: the rest of an accepted image is ordinary texture. Banked, it would gate
every token whose features look like ordinary texture, and with them the defects the comparison finds
by their context (a smear, a stain of the texture's own colour: plausible texture in the wrong place);
normal images' scores would also collapse towards 0, so the calibration (and the drift monitor) would no
longer describe the model. Measured on the tiny test model: a dark-brown disc of the accepted mark's
size went from 1.2 to 0.1-0.3 (passing) when whole images were banked, and stays above 1 this way.

r: the ACCEPT_QUANTILE quantile of each accepted row's distance to the rows of the other images accepted
with it (and the bank): how far apart instances of the variation lie, so held-out instances fall inside.
A single image measures its spread by its own other tokens (and the bank), not by its distance to a bank
of another variation. r never shrinks across updates.

The features are the memory of normal's when the model has one, else the comparator's projected
features of the real image (the space where the Siamese comparison measures distances).

Shapes: N images, L tokens per image (image order), D feature size, A accepted rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import as_float
from .memory import build_bank, nearest_distance

ACCEPT_QUANTILE = 0.9   # r: this quantile of the accepted tokens' distances to the other accepted images
ACCEPT_WIDTH = 1.0      # the gate opens from r to (1 + ACCEPT_WIDTH) r
ACCEPT_SHARE = 0.8      # an accepted image's tokens at >= this share of its largest (smoothed) distance are accepted


def accept_dim(cfg) -> int:
    """Feature size D of the accepted bank for a ModelConfig."""
    if cfg.memory_layers:
        return cfg.comparator_dims[0] * len(cfg.memory_layers)
    return cfg.comparator_dim * cfg.head_ensemble


def leave_one_out_distances(feats: list[torch.Tensor], bank: torch.Tensor,
                            whole: torch.Tensor | None = None) -> torch.Tensor:
    """Each new image's accepted rows' distances to everything accepted but that image: feats [(k_i, D)] per
    image, bank (A, D) -> (sum k_i,).

    With one image, its rows' distances to the bank and to the image's other tokens (`whole`, (L, D)):
    one image tells its variation's spread only by itself, and the distance to a bank of another
    variation would measure how new it is, not how far its like may lie.
    """
    if len(feats) == 1:
        f = feats[0]
        sim = f @ whole.T  # (k, L): the row itself is among the image's tokens, at cosine ~1
        own = sim.argmax(dim=1)
        sim[torch.arange(len(f)), own] = -1.0
        near = 1.0 - sim.amax(dim=1)
        if bank.shape[0]:
            near = torch.minimum(near, nearest_distance(f[None], bank)[0])
        return near.clamp(min=0)
    out = []
    for i in range(len(feats)):
        others = torch.cat([bank, *feats[:i], *feats[i + 1:]])
        out.append(nearest_distance(feats[i][None], others)[0])
    return torch.cat(out)


class AcceptedMixin:
    """PatternNet's feedback loop: the accepted bank and its gate, the inspection mask."""

    def accept_features(self, tokens: torch.Tensor, memory_feats: torch.Tensor | None = None) -> torch.Tensor:
        """Unit features of the real image's tokens: tokens (N, P, n, Dt) -> (N, L, D), image order.
        `memory_feats`: the tokens' memory features when already computed (`encode_real_image`)."""
        if self.cfg.memory_layers:
            return self.memory_features(tokens) if memory_feats is None else memory_feats
        return self.image_tokens(self.project_comparator(self.encode_real(tokens)))  # (N, P, n, D) -> (N, L, D)

    def accepted_gate(self, tokens: torch.Tensor, memory_feats: torch.Tensor | None = None) -> torch.Tensor:
        """Multiplier of each token's distance: tokens (N, P, n, Dt) -> (N, G*s, G*s) in [0, 1]."""
        side = self.cfg.grid * self.cfg.tokens_per_side
        d = nearest_distance(self.accept_features(tokens, memory_feats), self.accepted_bank)
        r = self.accepted_radius.clamp(min=1e-6)
        return ((d - r) / (ACCEPT_WIDTH * r)).clamp(0, 1).reshape(-1, side, side)

    def apply_mask(self, amap: torch.Tensor) -> torch.Tensor:
        """Pixel map (N, S, S) -> the same with every pixel outside the inspection mask set to 0.

        A tiled model (`tile_resolution` > 0) sees tiles, while the mask covers the whole image: its
        Detector applies the mask to the stitched map (`nextpatch.tiling.apply_mask`), so here it passes.
        """
        if self.cfg.tile_resolution > 0:
            return amap
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
    def fit_accepted(self, images: torch.Tensor, batch_size: int = 8, seed: int = 0,
                     groups: list[int] | None = None) -> dict:
        """Add normal images (M, 3, S, S) (uint8 or float in [0, 1]) to the accepted bank; widen r to cover them.
        `groups`: how many consecutive rows of `images` are the tiles of one image (default: one each), so
        that the radius measures the spread between images, not between the tiles of one.

        Only the tokens that make an image score are accepted: those whose distance (before the gate,
        inside the inspection mask) is at least ACCEPT_SHARE of the image's largest. The rest of the image
        is ordinary normal texture; accepting it would gate every token that looks like ordinary texture,
        and with it the defects the comparison finds by their context (a smear, an inpainted patch: plausible
        texture in the wrong place). The bank keeps at most `memory_size` rows (greedy coreset).
        Returns {"rows", "radius", "added"} (added: the image's tokens accepted).
        """
        device = self.accepted_bank.device
        side = self.cfg.grid * self.cfg.tokens_per_side
        chosen, wholes = [], []
        for i in range(0, len(images), batch_size):
            tokens = self.patchify(as_float(images[i:i + batch_size]).to(device))
            # where the image scores: the pixel map (smoothed, masked) back at token resolution
            real = self.encode_real_image(tokens) if self.cfg.memory_layers else None
            pixel = self.apply_mask(self.smooth(self.token_distances(tokens, self.predict_triplets(tokens), real)))
            dist = F.adaptive_avg_pool2d(pixel[:, None], side)[:, 0].flatten(1)  # (B, L)
            feats = self.accept_features(tokens, None if real is None else real[1])  # (B, L, D)
            keep = dist >= ACCEPT_SHARE * dist.amax(dim=1, keepdim=True)
            chosen += [f[k].cpu().float() for f, k in zip(feats, keep)]
            wholes += [f.cpu().float() for f in feats] if len(groups or images) == 1 else []
        bank = self.accepted_bank.cpu().float()
        ends = torch.tensor(groups or [1] * len(images)).cumsum(0).tolist()
        per_image = [torch.cat(chosen[a:b]) for a, b in zip([0] + ends[:-1], ends)]
        distances = leave_one_out_distances(per_image, bank, torch.cat(wholes) if wholes else None)
        radius = float(torch.quantile(distances, ACCEPT_QUANTILE)) if len(distances) else 0.0
        radius = max(radius, float(self.accepted_radius))
        rows = torch.cat([bank, *chosen])
        if rows.shape[0] > self.cfg.memory_size:
            rows = build_bank(rows, self.cfg.memory_size, seed=seed)
        self.accepted_bank = F.normalize(rows, dim=-1).to(device)
        self.accepted_radius.fill_(radius)
        return {"rows": int(rows.shape[0]), "radius": round(radius, 5), "added": int(sum(len(c) for c in chosen))}
