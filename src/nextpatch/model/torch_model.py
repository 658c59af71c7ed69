"""The paper's network in plain torch: pattern generation + Siamese pattern comparison.

`PatternNet` holds no training glue and no I/O; it maps images to a token-level anomaly map and the
image the generator expected, so it can be exported on its own.

Vocabulary (shapes below use these letters):
- N images, S x S pixels each (S = image_size).
- The image is cut into a G x G grid of patches of p x p pixels, P = G*G patches.
- A patch is s x s tokens of t x t pixels, n = s*s tokens, Dt = t*t*3 values per token.
- A *triplet* (far, near, target) is three consecutive patches along a row or column. The generator
  predicts `target` from `near` (Encoder2) and `far` (Encoder1). Direction "right" is the paper's forward
  pass, (i, j-2), (i, j-1) -> (i, j); "left" is its backward pass; "down"/"up" run along columns.
  T = number of triplets over all directions (4 * G * (G-2) for all four).
- D is the ViT width, Dc the comparator's feature size.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DIRECTIONS, ModelConfig
from .memory import build_bank, nearest_distance
from .vit import Block, ViTEncoder, init_weights

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


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 matrix products natively (so they are faster than float32).

    CPUs: AMX-BF16 or AVX512-BF16 (Sapphire Rapids and later, Zen 4); elsewhere torch emulates bfloat16,
    which is slower than float32. CUDA: what torch reports (Ampere and later).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            caps = torch.cpu.get_capabilities()
        except (AttributeError, RuntimeError):  # older torch: no capability query, stay in float32
            return False
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    return False


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (stored that way to save memory) -> float in [0, 1]; float images pass through."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def contrastive_loss(dist: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-token contrastive loss: dist, label (defect fraction) of the same shape -> scalar.

    Tokens without defect are positive pairs (distance -> 0), defect tokens negative pairs (distance ->
    >= margin); each side is averaged on its own so rare defects weigh as much as normals.
    """
    normal, anomalous = 1 - label, label
    pull = (normal * dist.pow(2)).sum() / normal.sum().clamp(min=1)
    push = (anomalous * F.relu(margin - dist).pow(2)).sum() / anomalous.sum().clamp(min=1)
    return pull + push


class PatternNet(nn.Module):
    """Pattern generation network (Encoder1, Encoder2, decoder) + pattern comparison network (Encoder3)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        g, s, t, d = cfg.grid, cfg.tokens_per_side, cfg.token_size, cfg.width
        n, token_dim = s * s, t * t * 3
        vit = dict(token_dim=token_dim, num_tokens=n, dim=d, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio)

        # Pattern generation: two encoders, one decoder that predicts pixels.
        self.encoder1 = ViTEncoder(depth=cfg.encoder_depth, **vit)  # reads the far patch
        self.encoder2 = ViTEncoder(depth=cfg.encoder_depth, **vit)  # reads the near patch
        self.patch_pos = nn.Parameter(torch.zeros(g * g, d))  # where in the image a patch lies
        self.direction_embed = nn.Parameter(torch.zeros(len(DIRECTIONS), d))
        self.memory_slot = nn.Parameter(torch.zeros(2, d))  # marks far (0) and near (1) memory tokens
        self.query_tokens = nn.Parameter(torch.zeros(n, d))  # one learned query per token of the target
        self.decoder_blocks = nn.ModuleList(
            Block(dim=d, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, cross=True) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, token_dim)

        # Pattern comparison: one Siamese encoder applied to predicted and real patches alike.
        # In the "image" view it reads whole images of (G*s)^2 tokens, otherwise one patch of n tokens.
        cd, ch, cr = cfg.comparator_dims
        view_tokens = (g * s) ** 2 if cfg.comparator_view == "image" else n
        # Its ViT runs `vit_depth` blocks: the comparison reads the first `comparator_depth`, the memory of
        # normal (if any) reads the real image's `memory_layers`, which may lie deeper.
        self.comparator = ViTEncoder(token_dim=token_dim, num_tokens=view_tokens, dim=cd, depth=cfg.vit_depth,
                                     heads=ch, mlp_ratio=cr, class_token=cfg.comparator_class_token)
        # K heads stacked in one Linear: rows [k*Dc, (k+1)*Dc) are head k (see `project_comparator`)
        feat_dim = cd * max(1, len(cfg.comparator_layers)) + (6 if cfg.comparator_color else 0)
        self.comparator_head = nn.Linear(feat_dim, cfg.comparator_dim * cfg.head_ensemble)

        if cfg.color_weight > 0:  # set at fit time by `fit_color_scale`; saved with the weights
            self.register_buffer("color_scale", torch.ones(()))
        if cfg.memory_layers:  # set at fit time by `fit_memory`; the bank's length comes with the weights
            self.register_buffer("memory_bank", torch.zeros(0, cd * len(cfg.memory_layers)))
            self.register_buffer("memory_scale", torch.ones(()))
            self.register_load_state_dict_pre_hook(_fit_bank_length)
        self.register_buffer("triplets", triplet_table(g, cfg.directions), persistent=False)
        # "image" view: triplet -> which expected image holds its prediction (its direction's place in
        # cfg.directions), and the image-token indices of its target patch's n tokens: (T,), (T, n)
        slot = {DIRECTIONS.index(name): r for r, name in enumerate(cfg.directions)}
        self.register_buffer("triplet_view", torch.tensor([slot[int(d)] for d in self.triplets[:, 3]]),
                             persistent=False)
        self.register_buffer("view_index", self.image_token_index()[self.triplets[:, 2]], persistent=False)
        self.register_buffer("smoothing", gaussian_kernel1d(cfg.smoothing_sigma), persistent=False)
        init_weights(self)
        for p in (self.patch_pos, self.direction_embed, self.memory_slot, self.query_tokens):
            nn.init.trunc_normal_(p, std=0.02)

    @property
    def num_triplets(self) -> int:
        return self.triplets.shape[0]

    # ----------------------------------------------------------------------------------- patches
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

    # ---------------------------------------------------------------------------- generation
    def forward_encoders(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (N, P, n, Dt) -> F1, F2: (N, P, n, D), every patch through Encoder1 and Encoder2.

        Each patch is context for several triplets; encoding each once serves them all.
        """
        n_img, n_patch, n_tok, token_dim = tokens.shape
        flat = tokens.reshape(n_img * n_patch, n_tok, token_dim)
        pos = self.patch_pos.repeat(n_img, 1).unsqueeze(1)  # (N*P, 1, D)
        f1 = self.encoder1(flat, pos).reshape(n_img, n_patch, n_tok, -1)
        f2 = self.encoder2(flat, pos).reshape(n_img, n_patch, n_tok, -1)
        return f1, f2

    def forward_decoder(self, f1: torch.Tensor, f2: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Predict target patches. f1, f2: (N, P, n, D); which: (N, K) triplet ids -> (N, K, n, Dt)."""
        n_img, k = which.shape
        n_tok, d = f1.shape[2], f1.shape[3]
        far, near, target, direction = self.triplets[which].unbind(-1)  # each (N, K)
        batch = torch.arange(n_img, device=which.device).unsqueeze(1)
        x = self.query_tokens + (self.patch_pos[target] + self.direction_embed[direction]).unsqueeze(2)
        x = x.reshape(n_img * k, n_tok, d)  # (N*K, n, D)
        mem_far, mem_near = f1 + self.memory_slot[0], f2 + self.memory_slot[1]
        for block in self.decoder_blocks:
            # project every patch's memory once, then gather per triplet: (N, K, 2n, 2D)
            kv = torch.cat([block.memory_kv(mem_far)[batch, far], block.memory_kv(mem_near)[batch, near]], dim=2)
            x = block(x, kv.reshape(n_img * k, 2 * n_tok, 2 * d))
        return self.decoder_pred(self.decoder_norm(x)).reshape(n_img, k, n_tok, -1)

    # ---------------------------------------------------------------------------- comparison
    def encode_comparator(self, tokens: torch.Tensor, patch_index: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder3 alone: tokens (N, K, m, Dt) -> features (N, K, m, Dw).

        Each of the N*K items is encoded on its own: a patch (m = n tokens) at grid position
        `patch_index` (N, K), or in the "image" view a whole image (m = L = (G*s)^2 tokens, in image
        order; `patch_index` unused).

        Dw = width, or width times the number of `comparator_layers` when several blocks' outputs are
        concatenated (early blocks keep fine texture, later ones structure).

        With `comparator_color`, each token's mean and std of R, G, B (normalised pixel units) are
        appended (Dw = width + 6): pretrained self-supervised features are trained to ignore colour
        shifts, which are defects here, so the head gets them explicitly and learns their weight.
        """
        n_img, k, n_tok, token_dim = tokens.shape
        pos = None
        if self.cfg.comparator_position and patch_index is not None:
            pos = self.patch_pos[patch_index].reshape(n_img * k, 1, -1)
        with self.comparator_autocast(tokens.device):
            feats = self.comparator(tokens.reshape(n_img * k, n_tok, token_dim), pos,
                                    layers=self.cfg.comparator_feature_layers)
        feats = feats.float().reshape(n_img, k, n_tok, -1)
        if self.cfg.comparator_color:
            px = tokens.reshape(n_img, k, n_tok, -1, 3)  # a token's pixels are (ti, tj, C)
            feats = torch.cat([feats, px.mean(3), px.std(3)], dim=-1)
        return feats

    def expected_views(self, tokens: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per direction, the image it expected: (N, P, n, Dt), (N, T, n, Dt) -> (N, R, L, Dt), image order.

        View r is the real image with every patch that direction r predicts replaced by its prediction
        (clipped to the pixel range); the patches it cannot reach (the first two of each line) stay real,
        so they show no difference there, and the other directions cover them.
        """
        lo, hi = (0 - PIXEL_MEAN) / PIXEL_STD, (1 - PIXEL_MEAN) / PIXEL_STD
        views = tokens.unsqueeze(1).repeat(1, len(self.cfg.directions), 1, 1, 1)  # (N, R, P, n, Dt)
        views[:, self.triplet_view, self.triplets[:, 2]] = pred.clamp(lo, hi)
        return self.image_tokens(views)

    def encode_real(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder3 features of real patches: tokens (N, P, n, Dt) -> (N, P, n, Dw)."""
        if self.cfg.comparator_view == "image":
            return self.patch_tokens(self.encode_comparator(self.image_tokens(tokens).unsqueeze(1))[:, 0])
        every = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)
        return self.encode_comparator(tokens, every)

    def encode_predicted(self, tokens: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Encoder3 features of every prediction: tokens (N, P, n, Dt), pred (N, T, n, Dt) -> (N, T, n, Dw).

        "patch" view: each predicted patch alone (`tokens` unused). "image" view: the R expected images
        (`expected_views`), each whole; a prediction's features are read at its target's tokens in its
        direction's image, so they depend on the neighbouring predictions too.
        """
        if self.cfg.comparator_view == "image":
            feats = self.encode_comparator(self.expected_views(tokens, pred))  # (N, R, L, Dw)
            return feats[:, self.triplet_view.unsqueeze(1), self.view_index]
        return self.encode_comparator(pred, self.triplets[:, 2].expand(len(pred), -1))

    def comparator_autocast(self, device: torch.device):
        """The context Encoder3 runs in: bfloat16 autocast per `comparator_precision`, else nothing.

        Matrix products then run in bfloat16 (float32 accumulation); the features come back as float32.
        Measured on the default preset (2-core AMX CPU, gravel, `benchmarks/precision.py`, 2026-12-02): predict
        56 -> 40 ms, AUROC unchanged (0.927 / 0.929 -> 0.926 / 0.929).
        """
        precision = self.cfg.comparator_precision
        if precision == "bfloat16" or (precision == "auto" and native_bfloat16(device)):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def head_input_mask(self, k: int) -> torch.Tensor:
        """(Dw,) 1.0 on the Encoder3 features that head k reads, 0.0 elsewhere (see `head_layers`).

        Features are laid out block by block in `comparator_layers` order, then the colour statistics
        (read by every head). A head trained on masked features gets zero weights on the rest, so at
        inference the stacked Linear needs no mask.
        """
        cd = self.cfg.comparator_dims[0]
        mask = torch.ones(self.comparator_head.in_features, device=self.comparator_head.weight.device)
        if self.cfg.head_layers:
            for j, layer in enumerate(self.cfg.comparator_feature_layers):
                if layer not in self.cfg.head_layers[k]:
                    mask[j * cd:(j + 1) * cd] = 0.0
        return mask

    def project_comparator(self, feats: torch.Tensor) -> torch.Tensor:
        """Encoder3 features (..., Dw) -> unit comparison features (..., K*Dc) through the projection head(s).

        With K = `head_ensemble` heads, each head's Dc outputs are normalised on their own and scaled by
        1/sqrt(K), so the dot product of two such vectors is the mean of the K heads' cosines: the
        distance `1 - a.b` is the ensemble's mean distance, at the cost of one Linear.
        """
        k = self.cfg.head_ensemble
        out = self.comparator_head(feats)
        if k == 1:
            return F.normalize(out, dim=-1)
        out = F.normalize(out.unflatten(-1, (k, -1)), dim=-1) / math.sqrt(k)
        return out.flatten(-2)

    def forward_comparator(self, tokens: torch.Tensor, patch_index: torch.Tensor) -> torch.Tensor:
        """tokens (N, K, n, Dt) of patches at grid positions patch_index (N, K) -> unit features (N, K, n, Dc)."""
        return self.project_comparator(self.encode_comparator(tokens, patch_index))

    def distance(self, pred: torch.Tensor, real: torch.Tensor, patch_index: torch.Tensor,
                 real_feats: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token distance between predicted and real patches: (N, K, n, Dt) x2 -> (N, K, n).

        "comparator": 1 - cosine of the Siamese features (the paper). "pixel": mean squared pixel error.
        `real_feats` may pass precomputed comparator features of `real`.
        """
        if self.cfg.distance == "pixel":
            return (pred - real).pow(2).mean(-1)
        if real_feats is None:
            real_feats = self.forward_comparator(real, patch_index)
        return 1.0 - (self.forward_comparator(pred, patch_index) * real_feats).sum(-1)

    # ----------------------------------------------------------------------------- inference
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

    def assemble_expected(self, pred: torch.Tensor) -> torch.Tensor:
        """Predicted tokens of all T triplets (N, T, n, Dt) -> the expected image (N, 3, S, S) in [0, 1].

        Each patch is the mean of its predictions; a patch no direction reaches is left mid-grey.
        """
        target = self.triplets[:, 2]
        n_patch = self.cfg.grid ** 2
        total = pred.new_zeros(pred.shape[0], n_patch, *pred.shape[2:]).index_add_(1, target, pred)
        count = torch.bincount(target, minlength=n_patch).clamp(min=1).to(pred.dtype)
        return self.unpatchify(total / count.view(1, -1, 1, 1)).clamp(0, 1)

    def smooth(self, token_map: torch.Tensor) -> torch.Tensor:
        """Token-resolution map (N, h, w) -> pixel map (N, S, S): bilinear upsampling, Gaussian smoothing."""
        size = self.cfg.image_size
        x = F.interpolate(token_map.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
        k = self.smoothing.to(x.dtype)
        r = k.numel() // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        return x.squeeze(1)

    def predict_triplets(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every triplet's prediction: tokens (N, P, n, Dt) -> predicted target tokens (N, T, n, Dt)."""
        which = torch.arange(self.num_triplets, device=tokens.device).expand(tokens.shape[0], -1)
        return self.forward_decoder(*self.forward_encoders(tokens), which)

    def triplet_distances(self, tokens: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Every triplet's per-token distance, real vs predicted target: (N, P, n, Dt), (N, T, n, Dt) -> (N, T, n).

        The Siamese distance (or the pixel one), plus `color_weight * color_scale` times the colour
        distance when the model has a colour term.
        """
        dist = self.siamese_distances(tokens, pred)
        if self.cfg.color_weight > 0 and self.cfg.distance == "comparator":
            dist = dist + self.cfg.color_weight * self.color_scale * self.color_distance(pred, tokens[:, self.triplets[:, 2]])
        return dist

    def siamese_distances(self, tokens: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """`triplet_distances` without the colour term: 1 - cosine of the Siamese features (or pixel L2)."""
        n_img, n_patch, target = tokens.shape[0], self.cfg.grid ** 2, self.triplets[:, 2]
        if self.cfg.distance == "pixel":
            return self.distance(pred, tokens[:, target], target.expand(n_img, -1))
        if self.cfg.comparator_view == "image":  # one pass over the real image and the R expected ones
            images = torch.cat([self.image_tokens(tokens).unsqueeze(1), self.expected_views(tokens, pred)], dim=1)
            feats = self.project_comparator(self.encode_comparator(images))  # (N, 1 + R, L, Dc)
            real = feats[:, 0, self.view_index]  # (N, T, n, Dc): each triplet's real target tokens
            return 1.0 - (feats[:, 1 + self.triplet_view.unsqueeze(1), self.view_index] * real).sum(-1)
        # one Encoder3 pass over every real patch (P) and every prediction (T): one batch of P + T
        # patches is ~10% faster on a CPU than two passes, and each real patch is encoded once
        where = torch.cat([torch.arange(n_patch, device=tokens.device), target]).expand(n_img, -1)
        feats = self.forward_comparator(torch.cat([tokens, pred], dim=1), where)  # (N, P + T, n, Dc)
        return 1.0 - (feats[:, n_patch:] * feats[:, target]).sum(-1)

    @staticmethod
    def color_distance(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Distance of each token's mean colour: (N, K, n, Dt) x2 -> (N, K, n), normalised pixel units.

        The frozen DINOv2 comparator was trained to ignore brightness and colour shifts, which are
        defects here (stains, discoloration); this term sees them. Measured on the default preset
        (docs/benchmarks.md, ablation "without the colour term").
        """
        return (pred.unflatten(-1, (-1, 3)).mean(-2) - real.unflatten(-1, (-1, 3)).mean(-2)).norm(dim=-1)

    @torch.no_grad()
    def fit_color_scale(self, imgs: torch.Tensor, batch_size: int = 8) -> float:
        """Set `color_scale` from normal images (M, 3, S, S) in [0, 1]: std(Siamese) / std(colour distance).

        Both terms then vary equally on normal images, so `color_weight` is their relative weight
        whatever the data's contrast. Returns the scale (1.0 and nothing set without a colour term).
        """
        if self.cfg.color_weight <= 0 or self.cfg.distance != "comparator":
            return 1.0
        siamese, color = [], []
        for i in range(0, len(imgs), batch_size):
            tokens = self.patchify(imgs[i:i + batch_size].to(self.color_scale.device))
            pred = self.predict_triplets(tokens)
            siamese.append(self.siamese_distances(tokens, pred).flatten())
            color.append(self.color_distance(pred, tokens[:, self.triplets[:, 2]]).flatten())
        scale = float(torch.cat(siamese).std() / torch.cat(color).std().clamp(min=1e-8))
        self.color_scale.fill_(scale)
        return scale

    # --------------------------------------------------------------------------- memory of normal
    def memory_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The real image's features at `memory_layers`: tokens (N, P, n, Dt) -> unit features (N, L, Dm)."""
        with self.comparator_autocast(tokens.device):
            feats = self.comparator(self.image_tokens(tokens), layers=self.cfg.memory_layers)
        return F.normalize(feats.float(), dim=-1)

    def memory_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Distance of every token to the memory bank: tokens (N, P, n, Dt) -> (N, G*s, G*s), token resolution."""
        side = self.cfg.grid * self.cfg.tokens_per_side
        return nearest_distance(self.memory_features(tokens), self.memory_bank).reshape(-1, side, side)

    def prediction_map(self, tokens: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The paper's comparison, fused over directions: (N, P, n, Dt), (N, T, n, Dt) -> (N, G*s, G*s)."""
        return self.token_grid(self.fuse(self.triplet_distances(tokens, pred)))

    @torch.no_grad()
    def fit_memory(self, images: torch.Tensor, batch_size: int = 8, seed: int = 0) -> int:
        """Fill the memory bank from normal training images (M, 3, S, S) (uint8 or float in [0, 1]).

        Every token of every image is a candidate; a greedy coreset keeps at most `memory_size` of them.
        Returns the bank's length (0 and nothing set without a memory).
        """
        if not self.cfg.memory_layers:
            return 0
        device = self.memory_bank.device
        feats = [self.memory_features(self.patchify(as_float(images[i:i + batch_size]).to(device))).flatten(0, 1).cpu()
                 for i in range(0, len(images), batch_size)]
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

    def forward(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """imgs (N, 3, S, S) in [0, 1] -> (anomaly map (N, S, S), expected image (N, 3, S, S)).

        The token map is the paper's comparison, and with a memory of normal
        (1 - memory_weight) * comparison + memory_weight * memory_scale * memory distance.
        """
        tokens = self.patchify(imgs)
        pred = self.predict_triplets(tokens)  # (N, T, n, Dt)
        token_map = self.prediction_map(tokens, pred)
        if self.cfg.memory_layers:
            w = self.cfg.memory_weight
            token_map = (1 - w) * token_map + w * self.memory_scale * self.memory_map(tokens)
        return self.smooth(token_map), self.assemble_expected(pred)

    # ------------------------------------------------------------------------------ training
    def sample_triplets(self, n_img: int, k: int, device=None) -> torch.Tensor:
        """K distinct random triplet ids per image: (N, K)."""
        k = min(k, self.num_triplets)
        return torch.rand(n_img, self.num_triplets, device=device).argsort(dim=1)[:, :k]

    def generator_loss(self, clean: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Stage 1, pattern generation: pixel loss (L1 + L2) of the predicted target patches.

        clean: (N, 3, S, S) normal images in [0, 1]; which: (N, K) triplet ids.
        """
        tokens = self.patchify(clean)
        pred = self.forward_decoder(*self.forward_encoders(tokens), which)
        real = tokens[torch.arange(len(which), device=which.device).unsqueeze(1), self.triplets[which, 2]]
        return (pred - real).abs().mean() + (pred - real).pow(2).mean()

    def comparator_loss(self, pred: torch.Tensor, real: torch.Tensor, label: torch.Tensor,
                        which: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
        """Stage 2, pattern comparison: contrastive loss per token.

        pred: (N, K, n, Dt) generator predictions (of the clean image) for triplets `which` (N, K);
        real: (N, P, n, Dt) tokens of the same images carrying synthetic defects; label: (N, P, n) the
        defect fraction of each token (see `token_labels`); see `contrastive_loss`.
        """
        target = self.triplets[which, 2]
        batch = torch.arange(len(which), device=which.device).unsqueeze(1)
        real_feats = None
        if self.cfg.distance == "comparator":  # encode each real patch once, then gather per triplet
            every = torch.arange(real.shape[1], device=which.device).expand(len(which), -1)
            real_feats = self.forward_comparator(real, every)[batch, target]
        dist = self.distance(pred, real[batch, target], target, real_feats)
        return contrastive_loss(dist, label[batch, target], margin)

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


def _fit_bank_length(module: PatternNet, state_dict: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: give `memory_bank` the saved bank's length before it is copied."""
    bank = state_dict.get(prefix + "memory_bank")
    if bank is not None and bank.shape != module.memory_bank.shape:
        module.memory_bank = module.memory_bank.new_zeros(bank.shape)
