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

import torch
from torch import nn

from ..config import DIRECTIONS, ModelConfig
from .accepted import AcceptedMixin, accept_dim
from .comparator import ComparatorMixin, contrastive_loss, native_bfloat16
from .generator import GeneratorMixin
from .geometry import PIXEL_MEAN, PIXEL_STD, GridMixin, as_float, triplet_table
from .maps import MapsMixin, gaussian_kernel1d
from .vit import Block, ViTEncoder, init_weights

__all__ = ["PIXEL_MEAN", "PIXEL_STD", "PatternNet", "as_float", "contrastive_loss", "gaussian_kernel1d",
           "native_bfloat16", "triplet_table"]


class PatternNet(GridMixin, GeneratorMixin, ComparatorMixin, MapsMixin, AcceptedMixin, nn.Module):
    """Pattern generation network (Encoder1, Encoder2, decoder) + pattern comparison network (Encoder3).

    The parts' methods live in one file each: `geometry` (patch grid), `generator`, `comparator`,
    `maps` (fusion, memory of normal, smoothing), `accepted` (the feedback loop's accepted normals and
    the inspection mask); this class owns every parameter and buffer, so saved
    weights keep one flat set of names.
    """

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
        feat_dim = cd + (6 if cfg.comparator_color else 0)
        self.comparator_head = nn.Linear(feat_dim, cfg.comparator_dim * cfg.head_ensemble)

        if cfg.color_weight > 0:  # set at fit time by `fit_color_scale`; saved with the weights
            self.register_buffer("color_scale", torch.ones(()))
        if cfg.memory_layers:  # set at fit time by `fit_memory`; the bank's length comes with the weights
            self.register_buffer("memory_bank", torch.zeros(0, cd * len(cfg.memory_layers)))
            self.register_buffer("memory_scale", torch.ones(()))
        # the feedback loop (`accepted`): set by `fit_accepted` / `set_mask`, saved with the weights
        self.register_buffer("accepted_bank", torch.zeros(0, accept_dim(cfg)))
        self.register_buffer("accepted_radius", torch.zeros(()))
        self.register_buffer("inspect_mask", torch.ones(cfg.image_size, cfg.image_size))
        self.register_load_state_dict_pre_hook(_fit_saved_state)
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

    def forward(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """imgs (N, 3, S, S) in [0, 1] -> (anomaly map (N, S, S), expected image (N, 3, S, S)).

        The token map is the paper's comparison, and with a memory of normal
        (1 - memory_weight) * comparison + memory_weight * memory_scale * memory distance; tokens like
        accepted normals are gated down (`accepted`), pixels outside the inspection mask are 0.
        """
        tokens = self.patchify(imgs)
        pred = self.predict_triplets(tokens)  # (N, T, n, Dt)
        real = self.encode_real_image(tokens) if self.cfg.memory_layers else None  # read once, used twice
        token_map = self.token_distances(tokens, pred, real)
        if self.accepted_bank.shape[0]:
            token_map = token_map * self.accepted_gate(tokens, None if real is None else real[1])
        return self.apply_mask(self.smooth(token_map)), self.assemble_expected(pred)

    def token_distances(self, tokens: torch.Tensor, pred: torch.Tensor,
                        real: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The token map before the accepted normals' gate: (N, P, n, Dt), (N, T, n, Dt) -> (N, G*s, G*s).
        `real`: `encode_real_image(tokens)` when already computed (with a memory of normal)."""
        if not self.cfg.memory_layers:
            return self.prediction_map(tokens, pred)
        real_feats, memory_feats = real if real is not None else self.encode_real_image(tokens)
        w = self.cfg.memory_weight
        return ((1 - w) * self.prediction_map(tokens, pred, real_feats)
                + w * self.memory_scale * self.memory_map(tokens, memory_feats))


# buffers a model file of format < 1.6 lacks: loaded as "nothing accepted, everything inspected"
_FEEDBACK_DEFAULTS = {"accepted_radius": lambda net: torch.zeros(()),
                      "inspect_mask": lambda net: torch.ones(net.cfg.image_size, net.cfg.image_size),
                      "accepted_bank": lambda net: torch.zeros(0, accept_dim(net.cfg))}


def _fit_saved_state(module: PatternNet, state_dict: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: banks take the saved length before they are copied; older files get
    the feedback buffers' defaults."""
    for name, default in _FEEDBACK_DEFAULTS.items():
        state_dict.setdefault(prefix + name, default(module))
    for name in ("memory_bank", "accepted_bank"):
        bank = state_dict.get(prefix + name)
        if bank is not None and hasattr(module, name) and bank.shape != getattr(module, name).shape:
            setattr(module, name, getattr(module, name).new_zeros(bank.shape))
