"""The training loop, in two stages, on normal images plus synthetic defects.

Stage 1 (pattern generation): the generator learns to predict patches of clean images.
Stage 2 (pattern comparison): the generator is frozen and the Siamese comparator learns, on the
generator's cached predictions against real patches that carry synthetic defects, which differences
are normal. With a frozen pretrained Encoder3 (`freeze_comparator`) only its projection head learns,
on cached Encoder3 features (`_train_head`).
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data.anomalies import AnomalySynthesizer
from .errors import ConfigError
from .model.torch_model import PatternNet, as_float, contrastive_loss
from .model.vit import init_weights


def augment(batch: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random translation (reflect-padded, up to cfg.max_shift px) and, if enabled, flips. (B,3,S,S) -> same."""
    b, _, h, w = batch.shape
    if cfg.max_shift > 0:
        m = cfg.max_shift
        padded = F.pad(batch, (m, m, m, m), mode="reflect")
        dy, dx = torch.randint(0, 2 * m + 1, (2, b), generator=gen).tolist()
        batch = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    if cfg.flips:
        flip_h, flip_v = (torch.rand(2, b, generator=gen) < 0.5)
        batch = torch.where(flip_h.view(-1, 1, 1, 1), batch.flip(-1), batch)
        batch = torch.where(flip_v.view(-1, 1, 1, 1), batch.flip(-2), batch)
    return batch


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def stage_steps(cfg: TrainConfig, num_images: int) -> tuple[int, int]:
    """(generator steps, comparator steps): `epochs` passes over the images each, or the fixed budgets."""
    if cfg.epochs > 0:
        return (max(1, math.ceil(cfg.epochs * num_images / cfg.batch_size)),
                max(1, math.ceil(cfg.epochs * num_images / cfg.comparator_batch_size)))
    return cfg.steps, cfg.comparator_steps


def position_share(images: torch.Tensor, size: int = 56) -> float:
    """How much of the images' pixel variance their position explains, above chance: (M, 3, S, S) -> [0, 1].

    About 0 for a texture (windows of a stochastic surface: every position sees the same distribution);
    large for aligned parts (the same layout in every image). Measured on the benchmark suite: PCB 0.65;
    brick, grain, grass, gravel, woven 0.00. Images are area-averaged to `size` x `size` first, so a few
    pixels of misalignment do not count. Without any layout, the mean image of M images still varies
    over positions by (within-position variance) / M; that chance level is subtracted.
    """
    total = total_sq = None
    for chunk in images.split(64):
        x = as_float(chunk)
        if x.shape[-1] > size:
            x = F.interpolate(x, size=(size, size), mode="area")
        x = x.double()
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = (x * x).sum(0) if total_sq is None else total_sq + (x * x).sum(0)
    m = len(images)
    mean_image = total / m  # (3, s, s)
    within = (total_sq / m - mean_image ** 2).clamp(min=0).mean()
    between = mean_image.var(dim=(1, 2), unbiased=False).mean()
    if between + within <= 1e-12:
        return 0.0
    return float(((between - within / m) / (between + within)).clamp(0, 1))


def _optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


class _Batches:
    """Endless shuffled mini-batches of indices into M items."""

    def __init__(self, m: int, size: int, gen: torch.Generator):
        self.m, self.size, self.gen = m, min(size, m), gen
        self.order, self.cursor = torch.randperm(m, generator=gen), 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.size > self.m:
            self.order, self.cursor = torch.randperm(self.m, generator=self.gen), 0
        self.cursor += self.size
        return self.order[self.cursor - self.size:self.cursor]


def deterministic(fn: Callable) -> Callable:
    """Run `fn` with torch's deterministic algorithms (restored after), so one seed gives one model.

    Without them, training on 2+ CPU threads was not reproducible: two fits of the default preset with
    seed 0 gave different weights (some accumulations ran in any order across threads); with them,
    identical weights, at no measured cost on this CPU. See `test_same_seed_gives_the_same_model`. `warn_only`: an op without a deterministic
    version (e.g. some CUDA kernels) warns instead of failing the training.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    return wrapper


@deterministic
def train(net: PatternNet, images: torch.Tensor, cfg: TrainConfig, *,
          progress: Callable[[str, int, int, dict[str, float]], None] | None = None) -> dict:
    """Train `net` in place on normal images (M, 3, S, S), uint8 or float in [0, 1].

    Stage 1, pattern generation: Encoder1, Encoder2 and the decoder learn to predict random triplets'
    target patches of (randomly shifted) clean images.
    Stage 2, pattern comparison: the generator is frozen; its predictions for every triplet of the
    training images are computed once, and the Siamese comparator learns, on those predictions against
    the real patches carrying synthetic defects, which differences are normal and which are not.
    `progress(stage, step, total, losses)` is called after every step of each stage ("generator",
    "comparator features" (the frozen path's one pass over the images), "comparator"), with the
    stage's own step count, so a progress bar per stage tells the truth about the time left.
    With `cfg.texture_steps`, stage 1 takes that many steps instead of `cfg.steps` when the images are a
    texture (`position_share` under `cfg.texture_share`): a generator trained longer on a stochastic
    texture draws detail the neighbours cannot determine, which the comparator then has to tolerate.
    Returns a summary: steps per stage, seconds, final losses (and the position share, when measured).
    """
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen_steps, cmp_steps = stage_steps(cfg, len(images))
    data: dict = {}  # what the images look like, when it decides the generator's budget
    if cfg.texture_steps > 0 and cfg.epochs <= 0:
        share = position_share(images)
        data = {"position_share": round(share, 4), "data": "texture" if share < cfg.texture_share else "aligned"}
        if data["data"] == "texture":
            gen_steps = cfg.texture_steps
    if net.cfg.distance != "comparator":
        cmp_steps = 0  # the pixel-distance ablation has no comparator to train
    running: dict[str, float] = {}

    def report(stage: str, step: int, total: int, loss: torch.Tensor | None = None) -> None:
        if loss is not None:
            name = "generator" if stage == "generator" else "comparator"
            running[name] = 0.9 * running.get(name, loss.item()) + 0.1 * loss.item()
        if progress is not None:
            progress(stage, step, total, running)

    start = time.perf_counter()
    encoder3, head = list(net.comparator.parameters()), list(net.comparator_head.parameters())
    is_cmp = {id(p) for p in [*encoder3, *head]}
    generator_params = [p for p in net.parameters() if id(p) not in is_cmp]
    if net.cfg.comparator_view == "image" and not cfg.freeze_comparator and net.cfg.distance == "comparator":
        raise ConfigError("model.comparator_view = 'image' needs train.freeze_comparator = true (a frozen "
                          "pretrained Encoder3 whose projection heads learn on cached whole-image features)")
    if cfg.freeze_comparator:  # a pretrained Encoder3 stays as it is; only the projection head learns
        for p in encoder3:
            p.requires_grad_(False)
    comparator_params = head if cfg.freeze_comparator else [*encoder3, *head]

    # Stage 1: pattern generation.
    net.train()
    opt = _optimizer(generator_params, cfg)
    batches = _Batches(len(images), cfg.batch_size, gen)
    for step in range(gen_steps):
        clean = augment(as_float(images[batches.next()]), cfg, gen).to(device)
        which = net.sample_triplets(len(clean), cfg.triplets_per_image, device)
        loss = net.generator_loss(clean, which)
        _step(opt, loss, generator_params, cfg.lr * lr_factor(step, gen_steps, cfg.warmup_steps))
        report("generator", step + 1, gen_steps, loss)
    generator_s = time.perf_counter() - start

    # Stage 2: pattern comparison, on cached predictions of the frozen generator.
    if cmp_steps:
        net.eval()
        cached_images = images[torch.randperm(len(images), generator=gen)[:cfg.cache_images]]
    if cmp_steps and cfg.freeze_comparator:
        _train_head(net, cached_images, cfg, gen, cmp_steps, report)
    elif cmp_steps:
        with torch.no_grad():
            cache = torch.cat([net.predict_triplets(net.patchify(as_float(cached_images[i:i + 8]).to(device))).half()
                               for i in range(0, len(cached_images), 8)])  # (M', T, n, Dt)
        net.comparator.train()
        synthesize = AnomalySynthesizer(p_anomaly=cfg.anomaly_probability, seed=cfg.seed)
        opt = _optimizer(comparator_params, cfg)
        if cfg.comparator_lr is not None and not cfg.freeze_comparator:  # Encoder3 and head at their own rates
            opt = torch.optim.AdamW([{"params": encoder3, "scale": cfg.comparator_lr / cfg.lr},
                                     {"params": head, "scale": 1.0}],
                                    lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
        batches = _Batches(len(cached_images), cfg.comparator_batch_size, gen)
        for step in range(cmp_steps):
            idx = batches.next()
            defective, mask = synthesize(as_float(cached_images[idx]), generator=gen)
            which = net.sample_triplets(len(idx), cfg.triplets_per_image, device)
            pred = cache[idx.to(device).unsqueeze(1), which].float()
            real, label = net.patchify(defective.to(device)), net.token_labels(mask.to(device))
            if cfg.comparator_augment:  # the same turn / mirror of every patch pair, and the same light
                rot = torch.randint(0, 4, (len(idx),), generator=gen)
                flip = torch.rand(len(idx), generator=gen) < 0.5
                pred, real, label = (net.transform_patches(x, rot, flip) for x in (pred, real, label))
                gain = (1 + 0.2 * (torch.rand(len(idx), 1, 1, 1, generator=gen) * 2 - 1)).to(device)
                shift = (0.2 * (torch.rand(len(idx), 1, 1, 1, generator=gen) * 2 - 1)).to(device)
                pred, real = pred * gain + shift, real * gain + shift
            loss = net.comparator_loss(pred, real, label, which, cfg.contrastive_margin)
            _step(opt, loss, comparator_params, cfg.lr * lr_factor(step, cmp_steps, cfg.warmup_steps))
            report("comparator", step + 1, cmp_steps, loss)
    net.eval()
    return {"generator_steps": gen_steps, "comparator_steps": cmp_steps, **data,
            "generator_seconds": round(generator_s, 1), "seconds": round(time.perf_counter() - start, 1),
            "losses": {k: round(v, 5) for k, v in running.items()}}


HEAD_DEFECT_IMAGES = 1024  # synthetic-defect images whose frozen features are cached (4 to 16 versions per image)


def _train_head(net: PatternNet, images: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, steps: int,
                report: Callable[..., None]) -> None:
    """Stage 2 with a frozen Encoder3: only the projection head learns, so Encoder3's features are computed
    once (generator predictions of every triplet; each image clean and in several defect versions)
    and the contrastive steps run on the cached features: many steps for the price of one pass.
    `report(stage, step, total[, loss])` as in `train`.
    """
    device = next(net.parameters()).device
    synthesize = AnomalySynthesizer(p_anomaly=1.0, seed=cfg.seed)
    variants = min(16, max(4, math.ceil(HEAD_DEFECT_IMAGES / len(images))))
    target = net.triplets[:, 2]
    pred_feats, real_feats, labels = [], [], []
    with torch.no_grad():
        for i in range(0, len(images), 8):
            clean = as_float(images[i:i + 8])
            tokens = net.patchify(clean.to(device))
            pred = net.predict_triplets(tokens)  # (B, T, n, Dt)
            pred_feats.append(net.encode_predicted(tokens, pred).half().cpu())  # (B, T, n, Dw)
            versions, masks = [clean], [torch.zeros_like(clean[:, :1])]
            for _ in range(variants):
                defective, mask = synthesize(clean, generator=gen)
                versions.append(defective)
                masks.append(mask)
            v = torch.stack(versions, 1)  # (B, 1 + V, 3, S, S)
            flat = net.patchify(v.flatten(0, 1).to(device))
            # (B*(1+V), P, n, Dw); 8 images at a time bound the activations
            feats = torch.cat([net.encode_real(chunk) for chunk in flat.split(8)])
            real_feats.append(feats.half().reshape(len(clean), 1 + variants, *feats.shape[1:]).cpu())
            lab = net.token_labels(torch.stack(masks, 1).flatten(0, 1).to(device))
            labels.append(lab.reshape(len(clean), 1 + variants, *lab.shape[1:]).cpu())
            report("comparator features", min(i + 8, len(images)), len(images))
    pred_feats, real_feats, labels = torch.cat(pred_feats), torch.cat(real_feats), torch.cat(labels)

    # Each of the K ensemble heads is trained on its own: own initialisation, own batches, own defect
    # versions and triplets; then it is copied into its rows of `comparator_head`. Why an ensemble:
    # see the `frozen-dinov2` preset (one head's result depends on its random draw).
    dim, k_heads = net.cfg.comparator_dim, net.cfg.head_ensemble
    per_head = max(1, steps // k_heads)
    for k in range(k_heads):
        head = torch.nn.Linear(net.comparator_head.in_features, dim).to(device)
        init_weights(head)
        params = list(head.parameters())
        opt = _optimizer(params, cfg)
        batches = _Batches(len(images), cfg.comparator_batch_size, gen)
        for step in range(per_head):
            idx = batches.next()
            b = len(idx)
            defect = torch.rand(b, generator=gen) < cfg.anomaly_probability
            version = torch.where(defect, torch.randint(1, 1 + variants, (b,), generator=gen), 0)
            which = net.sample_triplets(b, cfg.triplets_per_image).cpu()  # (B, triplets)
            tgt = target.cpu()[which]
            rows = idx.unsqueeze(1)
            pred = pred_feats[rows, which].float().to(device)  # (B, triplets, n, Dw)
            real = real_feats[rows, version.unsqueeze(1), tgt].float().to(device)
            label = labels[rows, version.unsqueeze(1), tgt].to(device)
            dist = 1.0 - (F.normalize(head(pred), dim=-1) * F.normalize(head(real), dim=-1)).sum(-1)
            loss = contrastive_loss(dist, label, cfg.contrastive_margin)
            _step(opt, loss, params, cfg.lr * lr_factor(step, per_head, cfg.warmup_steps))
            report("comparator", k * per_head + step + 1, per_head * k_heads, loss)
        with torch.no_grad():
            net.comparator_head.weight[k * dim:(k + 1) * dim] = head.weight
            net.comparator_head.bias[k * dim:(k + 1) * dim] = head.bias
