"""Pattern comparison (the paper's second network): one Siamese ViT encoder (Encoder3) reads the
predicted and the real patch alike; 1 - the cosine of their projected features is a token's distance.

Its parameters are created in `PatternNet.__init__` (comparator, comparator_head, color_scale).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .geometry import PIXEL_MEAN, PIXEL_STD


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


def contrastive_loss(dist: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-token contrastive loss: dist, label (defect fraction) of the same shape -> scalar.

    Tokens without defect are positive pairs (distance -> 0), defect tokens negative pairs (distance ->
    >= margin); each side is averaged on its own so rare defects weigh as much as normals.
    """
    normal, anomalous = 1 - label, label
    pull = (normal * dist.pow(2)).sum() / normal.sum().clamp(min=1)
    push = (anomalous * F.relu(margin - dist).pow(2)).sum() / anomalous.sum().clamp(min=1)
    return pull + push


class ComparatorMixin:
    """PatternNet's comparator: Siamese features, per-token distances, the colour term, its loss."""

    def encode_comparator(self, tokens: torch.Tensor, patch_index: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder3 alone: tokens (N, K, m, Dt) -> features (N, K, m, Dw).

        Each of the N*K items is encoded on its own: a patch (m = n tokens) at grid position
        `patch_index` (N, K), or in the "image" view a whole image (m = L = (G*s)^2 tokens, in image
        order; `patch_index` unused).

        Dw = width, the features of Encoder3's last block. With `comparator_color`, each token's mean
        and std of R, G, B (normalised pixel units) are appended (Dw = width + 6): pretrained
        self-supervised features are trained to ignore colour shifts, which are defects here, so the
        head gets them explicitly and learns their weight.
        """
        n_img, k, n_tok, token_dim = tokens.shape
        pos = None
        if self.cfg.comparator_position and patch_index is not None:
            pos = self.patch_pos[patch_index].reshape(n_img * k, 1, -1)
        with self.comparator_autocast(tokens.device):
            feats = self.run_comparator(tokens.reshape(n_img * k, n_tok, token_dim), pos,
                                        layers=self.cfg.comparator_feature_layers)
        return self.with_color(feats.float().reshape(n_img, k, n_tok, -1), tokens)

    def with_color(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder3 features (N, K, m, D) of tokens (N, K, m, Dt) -> with `comparator_color`, each token's
        mean and std of R, G, B appended (N, K, m, D + 6); else unchanged."""
        if not self.cfg.comparator_color:
            return feats
        px = tokens.reshape(*tokens.shape[:3], -1, 3)  # a token's pixels are (ti, tj, C)
        return torch.cat([feats, px.mean(3), px.std(3)], dim=-1)

    def encode_real_image(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One Encoder3 pass over the real image for the comparison and the memory of normal ("image" view):
        tokens (N, P, n, Dt) -> (comparison features (N, 1, L, Dw) as `encode_comparator` gives them,
        unit features (N, L, Dm) at `memory_layers`, the memory of normal's, `memory_features`).

        The comparison reads early blocks, the memory deeper ones of the same ViT: the early blocks run once.
        """
        cfg = self.cfg
        layers = tuple(sorted(set(cfg.comparator_feature_layers) | set(cfg.memory_layers)))
        image = self.image_tokens(tokens)  # (N, L, Dt)
        with self.comparator_autocast(tokens.device):
            out = self.run_comparator(image, layers=layers).float().unflatten(-1, (len(layers), -1))  # (N, L, B, D)
        comparison = out[:, :, [layers.index(i) for i in cfg.comparator_feature_layers]].flatten(2)
        memory = out[:, :, [layers.index(i) for i in cfg.memory_layers]].flatten(2)
        return self.with_color(comparison.unsqueeze(1), image.unsqueeze(1)), F.normalize(memory, dim=-1)

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

    def run_comparator(self, *args, **kwargs) -> torch.Tensor:
        """Encoder3's forward, inside `comparator_autocast`.

        Under a reduced-precision autocast without gradients (inference) its Linear layers read a copy of
        their weights in that precision (`inference_cast`): autocast would otherwise round the same
        float32 weights again on every call (14 M values per forward of the default preset's 8 blocks),
        with the same rounding, so the features are identical to the bit.
        """
        dtype = self.inference_dtype(args[0].device)
        if dtype is None:
            return self.comparator(*args, **kwargs)
        weights = {f"{m_name}.{p_name}": p for m_name, m in self.comparator.named_modules()
                   if isinstance(m, torch.nn.Linear) for p_name, p in m.named_parameters(recurse=False)}
        return torch.func.functional_call(self.comparator, self.inference_cast("comparator", weights, dtype),
                                          args, kwargs)

    @staticmethod
    def inference_dtype(device: torch.device) -> torch.dtype | None:
        """The autocast dtype when an autocast is on for `device` and gradients are off, else None."""
        if torch.is_grad_enabled() or not torch.is_autocast_enabled(device.type):
            return None
        return torch.get_autocast_dtype(device.type)

    def inference_cast(self, tag: str, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """`tensors` cast to `dtype` once, cached under `tag` until one of them changes (new data, or
        written in place); the cache holds the sources, so their memory is not reused while cached.
        Not in the state dict: saved and exported weights stay float32."""
        key = (dtype, tuple((t.data_ptr(), t._version) for t in tensors.values()))
        cache = self.__dict__.setdefault("_inference_casts", {})
        if tag not in cache or cache[tag][0] != key:
            cache[tag] = (key, {n: t.detach().to(dtype) for n, t in tensors.items()}, list(tensors.values()))
        return cache[tag][1]

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

    def triplet_distances(self, tokens: torch.Tensor, pred: torch.Tensor,
                          real_feats: torch.Tensor | None = None) -> torch.Tensor:
        """Every triplet's per-token distance, real vs predicted target: (N, P, n, Dt), (N, T, n, Dt) -> (N, T, n).

        The Siamese distance (or the pixel one), plus `color_weight * color_scale` times the colour
        distance when the model has a colour term. `real_feats`: the real image's Encoder3 features
        when already computed ("image" view, `encode_real_image`).
        """
        dist = self.siamese_distances(tokens, pred, real_feats)
        if self.cfg.color_weight > 0 and self.cfg.distance == "comparator":
            dist = dist + self.cfg.color_weight * self.color_scale * self.color_distance(pred, tokens[:, self.triplets[:, 2]])
        return dist

    def siamese_distances(self, tokens: torch.Tensor, pred: torch.Tensor,
                          real_feats: torch.Tensor | None = None) -> torch.Tensor:
        """`triplet_distances` without the colour term: 1 - cosine of the Siamese features (or pixel L2)."""
        n_img, n_patch, target = tokens.shape[0], self.cfg.grid ** 2, self.triplets[:, 2]
        if self.cfg.distance == "pixel":
            return self.distance(pred, tokens[:, target], target.expand(n_img, -1))
        if self.cfg.comparator_view == "image":  # one pass over the real image and the R expected ones
            if real_feats is None:
                images = torch.cat([self.image_tokens(tokens).unsqueeze(1), self.expected_views(tokens, pred)], dim=1)
                feats = self.encode_comparator(images)
            else:
                feats = torch.cat([real_feats, self.encode_comparator(self.expected_views(tokens, pred))], dim=1)
            feats = self.project_comparator(feats)  # (N, 1 + R, L, Dc)
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
