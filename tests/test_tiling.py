"""Scoring at (close to) native resolution: overlapping tiles that keep the aspect ratio."""
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from nextpatch.data.io import list_images, read_image
from nextpatch.tiling import Layout, tile_starts, tiles_of, working_size

from .conftest import paste_blob, tiny_config


@pytest.mark.parametrize("h, w", [(1616, 1000), (460, 1130), (300, 300), (100, 630), (224, 224)])
def test_working_size_keeps_the_aspect_and_bounds_the_long_side(h, w):
    wh, ww = working_size(h, w, 224, 448)
    assert max(wh, ww) <= max(448, round(224 * max(h, w) / min(h, w)))  # only a thin image goes past R
    assert min(wh, ww) >= 224
    assert abs(wh / ww - h / w) < 0.02 * h / w
    assert working_size(h, w, 224, 0) == (224, 224)


@pytest.mark.parametrize("length", [224, 225, 300, 448, 449, 1000])
def test_tiles_cover_the_image_with_the_fewest_windows(length):
    starts = tile_starts(length, 224)
    assert len(starts) == -(-length // 224)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + 224] = True
    assert covered.all() and starts[-1] + 224 == length


def test_stitching_the_tiles_of_an_image_gives_it_back():
    image = torch.rand(3, 300, 500)
    tiles, (layout,) = tiles_of([image], 224)
    assert tiles.shape == (len(layout), 3, 224, 224) == (6, 3, 224, 224)
    torch.testing.assert_close(layout.stitch(tiles), image)
    # a value seen by one tile only lands where that tile lies
    marks = torch.zeros(len(layout), 224, 224)
    marks[-1] = 1.0
    stitched = Layout.of(300, 500, 224).stitch(marks)
    assert stitched[-1, -1] == 1.0 and stitched[0, 0] == 0.0


@pytest.fixture(scope="module")
def large_dataset(tmp_path_factory):
    """192 x 192 'woven' images: a 64 px network sees them at 3x smaller scale when they are resized whole."""
    from nextpatch.data.procedural import make_category

    return make_category(tmp_path_factory.mktemp("large"), "woven", n_train=16, n_test_good=6, n_test_per_defect=1,
                         size=192, seed=2)


@pytest.fixture(scope="module")
def tiled(large_dataset):
    from nextpatch.detector import Detector

    config = tiny_config(steps=150)
    config.model = dataclasses.replace(config.model, tile_resolution=192)
    torch.manual_seed(0)
    return Detector(config).fit(large_dataset)


def test_a_small_defect_on_a_large_image_is_found_where_it_is(tiled, large_dataset):
    normals = [read_image(p) for p in list_images(large_dataset / "test" / "good")]
    assert tiled.training_["tiles"] == 9 * tiled.training_["images"]  # 3 x 3 tiles of 64 px per 192 px image
    normal_scores = [tiled.predict(x).score for x in normals]
    spots = [(40, 150), (100, 30), (160, 100), (70, 70), (130, 170), (30, 40)]
    defects = [paste_blob(x, cy, cx, 3)[0] for x, (cy, cx) in zip(normals, spots)]  # 3 px: 1 px if shrunk whole
    predictions = [tiled.predict(x) for x in defects]
    assert min(p.score for p in predictions) > max(normal_scores)
    for p, (cy, cx) in zip(predictions, spots):
        assert p.anomaly_map.shape == (192, 192) and p.expected_image.shape == (192, 192, 3)
        y, x = np.unravel_index(p.anomaly_map.argmax(), p.anomaly_map.shape)
        assert abs(y - cy) <= 12 and abs(x - cx) <= 12


def test_tiled_model_saves_loads_and_scores_the_same(tiled, large_dataset, tmp_path):
    from nextpatch.detector import Detector

    image = read_image(list_images(large_dataset / "test" / "good")[0])
    back = Detector.load(tiled.save(tmp_path / "m"))
    assert back.config.model.tile_resolution == 192
    assert back.predict(image).score == pytest.approx(tiled.predict(image).score, rel=1e-5)


def test_onnx_backend_scores_tiles_as_torch_does(tiled, large_dataset):
    """Tiling happens outside the exported graph, so onnxruntime reads the same stitched maps."""
    pytest.importorskip("onnxruntime")
    from nextpatch.export import OnnxDetector, export_bytes

    onnx_detector = OnnxDetector.from_bytes(export_bytes(tiled))
    assert onnx_detector.config.model.tile_resolution == 192
    images = sorted((large_dataset / "test").rglob("*.png"))[:3]
    for a, b in zip(tiled.predict_batch(images), onnx_detector.predict_batch(images)):
        assert a.anomaly_map.shape == b.anomaly_map.shape == (192, 192)
        assert abs(a.score - b.score) < 1e-3 and float(np.abs(a.anomaly_map - b.anomaly_map).max()) < 1e-3


def test_a_tiled_model_masks_the_whole_image_in_torch_and_onnx(tiled, large_dataset, tmp_path):
    """The inspection mask covers the whole image, not each tile: applied to the stitched map, and carried
    to onnxruntime in the export's metadata."""
    from nextpatch.detector import Detector

    masked = Detector.load(tiled.save(tmp_path / "m"))
    mask = np.ones((192, 192), np.float32)
    mask[:, 96:] = 0.0  # inspect the left half only
    assert masked.set_mask(mask) == pytest.approx(0.5, abs=0.01)
    normal = read_image(list_images(large_dataset / "test" / "good")[0])
    outside, inside = paste_blob(normal, 100, 160, 3)[0], paste_blob(normal, 100, 40, 3)[0]
    p_out, p_in = masked.predict(outside), masked.predict(inside)
    assert p_out.anomaly_map[:, 104:].max() == 0.0 and p_in.anomaly_map[:, 104:].max() == 0.0
    assert p_out.score < tiled.predict(outside).score and p_in.score > p_out.score
    y, x = np.unravel_index(p_in.anomaly_map.argmax(), p_in.anomaly_map.shape)
    assert abs(y - 100) <= 12 and abs(x - 40) <= 12
    back = Detector.load(masked.save(tmp_path / "masked"))  # the mask travels with the model
    assert back.predict(outside).score == pytest.approx(p_out.score, rel=1e-5)
    if importlib.util.find_spec("onnxruntime") is not None:
        from nextpatch.export import OnnxDetector, export_bytes

        onnx_detector = OnnxDetector.from_bytes(export_bytes(masked))
        for image, p in ((outside, p_out), (inside, p_in)):
            q = onnx_detector.predict(image)
            assert abs(q.score - p.score) < 1e-3 and float(np.abs(q.anomaly_map - p.anomaly_map).max()) < 1e-3


def test_a_tiled_model_absorbs_one_marked_image_and_still_fails_a_defect(tiled, large_dataset, tmp_path):
    """`update` with one image of several tiles: the accepted radius is that image's own spread (its tiles
    taken together, not as separate images), so the mark passes and a disc of another look still fails.
    Taken as 4 images, the tiles' spread set a radius 3x as wide and every defect passed (0.13-0.14)."""
    from nextpatch.detector import Detector

    from .test_feedback import stamp_cross

    normals = [read_image(p) for p in list_images(large_dataset / "test" / "good")]
    marked = [stamp_cross(x, cy, cx) for x, (cy, cx) in zip(normals, [(40, 150), (100, 30), (160, 100)])]
    defects = [paste_blob(x, cy, cx, 6)[0] for x, (cy, cx) in zip(normals, [(40, 150), (100, 30), (160, 100)])]
    copy = Detector.load(tiled.save(tmp_path / "m"))
    before = [copy.predict(x).score for x in marked]
    copy.update([marked[0]])
    info = copy.training_["updates"][-1]
    assert info["images"] == 1 and info["radius"] > 0
    assert before[0] > 1.0 and copy.predict(marked[0]).score <= 1.0
    assert min(copy.predict(x).score for x in defects) > 1.0


def test_an_image_seen_at_another_scale_than_the_training_images_is_flagged(tiled, large_dataset, tmp_path, capsys):
    """A full camera frame for a model trained on crops is shrunk to the tiles' resolution: its texture is
    at another scale than the model learnt, so its score means little (the default flagged every such
    frame in benchmarks/throughput.py). The API and `nextpatch predict` (its summary and the image's line)
    say so; an image of the training images' size passes silently."""
    import json

    from PIL import Image

    from nextpatch.cli import main

    assert tiled.training_["input_scale"] == [1.0, 1.0]  # 192 px images scored at 192 px
    normal = read_image(list_images(large_dataset / "test" / "good")[0])
    frame = np.tile(normal, (3, 3, 1))  # 576 px of the same good texture, seen at 192 px: 0.33x
    assert tiled.scale_warning(tiled.predict(normal)) is None
    assert "0.33x its pixels (576 x 576 px)" in tiled.scale_warning(tiled.predict(frame))
    assert tiled.scale_warning(tiled.predict(frame[:288, :288])) is None  # 0.67x: within 1.5x of training's

    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in (("frame.png", frame), ("normal.png", normal)):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / name)
    model = tiled.save(tmp_path / "m")
    main(["predict", str(model), str(folder), "--out", str(tmp_path / "out")])
    assert "1 of 2 images" in capsys.readouterr().err
    lines = {Path(x["path"]).name: x for x in map(json.loads, (tmp_path / "out" / "predictions.jsonl").read_text().splitlines())}
    assert "0.33x" in lines["frame.png"]["scale_warning"] and "scale_warning" not in lines["normal.png"]
