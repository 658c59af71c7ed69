"""Shared fixtures: a tiny config, a tiny procedural MVTec-layout dataset, and a detector trained on it once."""
from pathlib import Path

import numpy as np
import pytest
import torch

from nextpatch.config import Config, ModelConfig, TrainConfig
from nextpatch.data.procedural import make_category


def tiny_config(steps: int = 200) -> Config:
    return Config(
        model=ModelConfig(image_size=64, patch_size=16, token_size=4, width=48, heads=4, encoder_depth=1,
                          decoder_depth=1, comparator_depth=2, comparator_dim=32, smoothing_sigma=1.0),
        train=TrainConfig(steps=steps, comparator_steps=3 * steps, batch_size=8, triplets_per_image=32, warmup_steps=20, lr=2e-3,
                          max_shift=2, seed=0, threads=2),
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 64 x 64 'woven' category in MVTec layout: 40 good train images, defects in test/."""
    root = tmp_path_factory.mktemp("data")
    return make_category(root, "woven", n_train=40, n_test_good=6, n_test_per_defect=3, size=64, seed=1)


@pytest.fixture(scope="session")
def trained(tiny_dataset):
    from nextpatch.detector import Detector

    torch.manual_seed(0)
    return Detector(tiny_config()).fit(tiny_dataset)


@pytest.fixture(scope="session")
def saved_model(trained, tmp_path_factory) -> Path:
    return trained.save(tmp_path_factory.mktemp("model") / "m")


def paste_blob(image: np.ndarray, cy: int, cx: int, r: int, color=(1.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `image` with a filled disc of `color`; returns (image, mask)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    out = image.copy()
    out[mask] = color
    return out, mask
