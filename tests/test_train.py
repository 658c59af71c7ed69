"""Training-loop rules that depend on the data: the generator's budget for textures vs aligned parts."""
import numpy as np
import torch

from nextpatch.data import procedural as P
from nextpatch.detector import Detector
from nextpatch.train import position_share

from .conftest import tiny_config


def _images(kind, n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(kind(rng, size), dtype=np.float32) for _ in range(n)]


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)


def test_position_share_tells_a_texture_from_an_aligned_part():
    woven, pcb = _tensor(_images(P.woven, 20)), _tensor(_images(P.pcb, 20))
    assert position_share(woven) < 0.05   # any window of the weave: position explains nothing
    assert position_share(pcb) > 0.3      # the same board layout in every image


def test_position_share_subtracts_the_chance_level():
    # 5 images of pure noise: their mean image still varies over positions (by within / 5, a raw share
    # of 1/6); the chance correction takes that away
    noise = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert position_share(noise) < 0.05
    assert position_share(torch.zeros(4, 3, 32, 32)) == 0.0  # constant images: no variance, no share


def test_texture_steps_apply_to_textures_only():
    config = tiny_config(steps=24)
    config.train.comparator_steps = 24
    config.train.texture_steps = 8
    texture = Detector(config).fit(_images(P.woven, 12))
    assert texture.training_["generator_steps"] == 8
    assert texture.training_["data"] == "texture"
    aligned = Detector(config).fit(_images(P.pcb, 12))
    assert aligned.training_["generator_steps"] == 24
    assert aligned.training_["data"] == "aligned"
    assert aligned.training_["position_share"] > config.train.texture_share


def test_an_explicit_step_count_overrides_the_texture_rule():
    config = tiny_config(steps=24)
    config.train.texture_steps = 8
    config.train.scale_steps(12)  # what `--steps 12` does: 12 generator steps, whatever the data
    assert (config.train.steps, config.train.texture_steps) == (12, 0)
