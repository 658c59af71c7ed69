"""Model directories: safetensors + JSON round trip; other versions and damaged files fail with one clear line."""
import json
import shutil

import numpy as np
import pytest

from nextpatch.detector import Detector
from nextpatch.errors import ModelFileError
from nextpatch.model_io import META, WEIGHTS


def test_round_trip_gives_identical_predictions(trained, saved_model, tiny_dataset):
    assert sorted(p.name for p in saved_model.iterdir()) == sorted([META, WEIGHTS])
    loaded = Detector.load(saved_model)
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    a, b = trained.predict(image), loaded.predict(image)
    assert a.score == pytest.approx(b.score, rel=1e-5)
    np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)
    meta = json.loads((saved_model / META).read_text())
    assert meta["threshold"] == pytest.approx(trained.threshold_)
    assert meta["config"]["model"]["image_size"] == 64 and meta["nextpatch_version"]


def copy_model(saved_model, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(saved_model, dst)
    return dst


def test_other_major_version_is_refused(saved_model, tmp_path):
    model = copy_model(saved_model, tmp_path)
    meta = json.loads((model / META).read_text())
    meta["format_version"], meta["nextpatch_version"] = "2.0", "2.3.0"
    (model / META).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"format 2\.0 .*nextpatch 2\.3\.0.*retrain"):
        Detector.load(model)


def test_older_minor_version_loads_with_defaults(saved_model, tmp_path):
    model = copy_model(saved_model, tmp_path)
    meta = json.loads((model / META).read_text())
    meta["format_version"] = "1.0"
    del meta["config"]["model"]["comparator_precision"]  # 1.0 files predate these keys
    del meta["config"]["model"]["color_weight"]
    (model / META).write_text(json.dumps(meta))
    loaded = Detector.load(model)
    assert loaded.config.model.comparator_precision == "float32"
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    assert loaded.predict(image).score == pytest.approx(Detector.load(saved_model).predict(image).score, rel=1e-5)


def test_a_removed_option_loads_at_its_default_and_is_refused_otherwise(saved_model, tmp_path):
    """Files of 1.3-1.7 hold model.head_layers and comparator_layers (removed 2026-12-06): at their
    defaults they load as before; a model trained with one is refused with why, not with a traceback or
    an unknown-key error."""
    model = copy_model(saved_model, tmp_path)
    meta = json.loads((model / META).read_text())
    meta["config"]["model"]["head_layers"] = []
    meta["config"]["model"]["comparator_layers"] = []
    (model / META).write_text(json.dumps(meta))
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    assert Detector.load(model).predict(image).score == pytest.approx(Detector.load(saved_model).predict(image).score,
                                                                      rel=1e-5)
    meta["config"]["model"]["head_layers"] = [[2], [2]]
    (model / META).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="head_layers .*removed.*retrain"):
        Detector.load(model)
    meta["config"]["model"]["head_layers"], meta["config"]["model"]["comparator_layers"] = [], [2, 3]
    (model / META).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="comparator_layers .*removed.*retrain"):
        Detector.load(model)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_weights_are_refused(saved_model, tmp_path, damage):
    model = copy_model(saved_model, tmp_path)
    data = bytearray((model / WEIGHTS).read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-100] ^= 0xFF
    (model / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="truncated or modified"):
        Detector.load(model)


def test_missing_pieces(saved_model, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        Detector.load(tmp_path / "nowhere")
    model = copy_model(saved_model, tmp_path)
    (model / WEIGHTS).unlink()
    with pytest.raises(ModelFileError, match="missing"):
        Detector.load(model)
    model2 = tmp_path / "m2"
    shutil.copytree(saved_model, model2)
    (model2 / META).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Detector.load(model2)
