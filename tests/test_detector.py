"""The detector end to end on a tiny model: defects score above normals, where they are."""
import numpy as np
import pytest

from nextpatch.data.io import list_images, read_image
from nextpatch.detector import Detector
from nextpatch.errors import DataError, NextpatchError

from .conftest import paste_blob, tiny_config


def test_pasted_defect_scores_above_normals(trained, tiny_dataset):
    normals = [read_image(p) for p in list_images(tiny_dataset / "test" / "good")]
    normal_scores = [trained.predict(x).score for x in normals]
    defects = [paste_blob(x, 20 + 7 * i, 40 - 5 * i, 5)[0] for i, x in enumerate(normals)]
    defect_scores = [trained.predict(x).score for x in defects]
    assert min(defect_scores) > max(normal_scores)
    assert np.mean([p.is_anomalous for p in map(trained.predict, defects)]) >= 0.8


def test_anomaly_map_peaks_on_the_defect(trained, tiny_dataset):
    image = read_image(list_images(tiny_dataset / "test" / "good")[0])
    defective, mask = paste_blob(image, 44, 22, 5)
    amap = trained.predict(defective).anomaly_map
    assert amap[mask].mean() > 2 * amap[~mask].mean()
    peak = np.unravel_index(amap.argmax(), amap.shape)
    assert abs(peak[0] - 44) <= 8 and abs(peak[1] - 22) <= 8


def test_outputs_at_input_size_and_normalised(trained, tiny_dataset):
    image = read_image(list_images(tiny_dataset / "test" / "good")[0])
    big = np.kron(image, np.ones((3, 2, 1), dtype=np.float32))  # 192 x 128, not the model's 64 x 64
    p = trained.predict(big)
    assert p.anomaly_map.shape == (192, 128) and p.anomaly_map.dtype == np.float32
    assert p.expected_image.shape == (192, 128, 3)
    assert p.score == pytest.approx(p.raw_score / trained.threshold_)
    assert p.is_anomalous == (p.score > 1.0)


def test_panel_of_a_large_image_is_capped_and_shows_the_defect_where_it_is(trained, tiny_dataset):
    from nextpatch.viz import colorize, prediction_panel

    image = read_image(list_images(tiny_dataset / "test" / "good")[0])
    defective, _ = paste_blob(image, 44, 22, 5)
    big = np.kron(defective, np.ones((24, 12, 1), dtype=np.float32))  # 1536 x 768: tiles shrink to 768 x 384
    p = trained.predict(big)
    picture = prediction_panel(big, p, max_side=768)
    assert picture.shape == (768 + 18, 3 * 384, 3)
    heat = picture[18:, 2 * 384:].astype(np.float32) / 255  # the overlay tile; red where the map is high
    hot = colorize(np.full((1, 1), 2.0))[0, 0]
    closeness = -np.abs(heat - hot).sum(axis=2)
    y, x = np.unravel_index(closeness.argmax(), closeness.shape)
    assert abs(y - 44 * 12) <= 8 * 12 and abs(x - 22 * 6) <= 8 * 6  # the defect at (44, 22) of 64 x 64


def test_threshold_calibrated_on_held_out_normals(trained):
    cal = trained.calibration_
    assert cal["images"] >= 3
    assert trained.threshold_ == pytest.approx(cal["mean"] + 3.0 * max(cal["std"], 0.02 * cal["mean"]))
    assert trained.training_["images"] + cal["images"] == 40


def test_expected_image_resembles_normal_texture(trained, tiny_dataset):
    """The generator predicts the texture, not noise: closer to the real image than a flat grey."""
    image = read_image(list_images(tiny_dataset / "test" / "good")[1])
    expected = trained.predict(image).expected_image
    err = np.abs(expected - image).mean()
    assert err < np.abs(image.mean() - image).mean() * 1.05
    assert err < np.abs(0.5 - image).mean()


def test_score_samples_and_batch_agree(trained, tiny_dataset):
    paths = list_images(tiny_dataset / "test" / "good")[:3]
    raw = trained.score_samples(paths)
    single = [trained.predict(read_image(p)).raw_score for p in paths]
    np.testing.assert_allclose(raw, single, rtol=1e-4)


def test_fit_rejects_too_few_images(tmp_path, tiny_dataset):
    with pytest.raises(DataError, match="at least"):
        Detector(tiny_config(steps=2)).fit(list_images(tiny_dataset / "train" / "good")[:3])


def test_fit_skips_unreadable_images_and_names_them(tmp_path, tiny_dataset, caplog):
    folder = tmp_path / "good"
    folder.mkdir()
    for p in list_images(tiny_dataset / "train" / "good")[:8]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    det = Detector(tiny_config(steps=2)).fit(folder)
    assert det.training_["images"] + det.calibration_["images"] == 8
    assert "broken.png" in caplog.text


class _LiveImages:
    """Stands in for `read_image` and counts how many images it returned are still alive (the most at
    any read), to show that a function does not keep every image it reads."""

    def __init__(self):
        self.refs, self.most = [], 0

    def __call__(self, path):
        import gc
        import weakref

        gc.collect()
        self.refs = [r for r in self.refs if r() is not None]
        image = read_image(path)
        self.refs.append(weakref.ref(image))
        self.most = max(self.most, len(self.refs))
        return image


def test_fit_reads_one_image_at_a_time(tmp_path, tiny_dataset, monkeypatch):
    """Training images are resized to the model's size as they are read: a folder of large files must
    not be held in memory at full size (800 images of 1024 px were 10 GB as float arrays)."""
    import nextpatch.data.io as io_module
    import nextpatch.detector as detector_module

    reads = _LiveImages()
    for module in (io_module, detector_module):  # wherever fit reads from
        monkeypatch.setattr(module, "read_image", reads)
    seen = []
    paths = list_images(tiny_dataset / "train" / "good")[:8]
    det = Detector(tiny_config(steps=2)).fit(paths, progress=lambda stage, step, total, _: seen.append((stage, step, total)))
    assert det.training_["images"] + det.calibration_["images"] == 8
    assert reads.most <= 2  # the one being resized and the next one, whatever the number of images (here 8)
    assert ("reading images", 8, 8) in seen


def test_unfitted_detector_says_so():
    with pytest.raises(NextpatchError, match="not fitted"):
        Detector(tiny_config()).predict(np.zeros((64, 64, 3), np.float32))


def test_same_seed_gives_the_same_model(tmp_path):
    """Training is reproducible on several threads. It was not: some accumulations ran in any order on
    2 threads. At 64 px the tensors are too small to be split across threads, hence 128 px and width 128."""
    import dataclasses

    import torch

    from nextpatch.data.procedural import make_category

    data = make_category(tmp_path, "woven", n_train=24, n_test_good=2, n_test_per_defect=1, size=128, seed=1)
    fits = []
    for _ in range(2):
        cfg = tiny_config(steps=10)
        cfg.model = dataclasses.replace(cfg.model, image_size=128, patch_size=32, token_size=8, width=128)
        cfg.train.comparator_steps, cfg.train.threads = 10, 2
        fits.append(Detector(cfg).fit(data).net_.state_dict())
    assert all(torch.equal(fits[0][k], fits[1][k]) for k in fits[0])
    assert not torch.are_deterministic_algorithms_enabled()  # the global setting is restored after training


def test_colour_term_flags_a_soft_discoloration_more(tiny_dataset, tmp_path):
    """A smooth brightness stain raises the score more with the colour term than without it;
    the fitted colour scale survives save / load."""
    config = tiny_config(steps=100)
    config.model.color_weight = 1.0
    detector = Detector(config).fit(tiny_dataset)
    assert detector.calibration_["color_scale"] > 0
    without = detector.replace_config(color_weight=0.0)
    normals = [read_image(p) for p in list_images(tiny_dataset / "test" / "good")]
    yy, xx = np.mgrid[:64, :64]
    stain = np.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / (2 * 8.0 ** 2))[..., None].astype(np.float32)
    stained = [np.clip(x - 0.25 * stain, 0, 1) for x in normals]

    def gain(det):  # how much the stain raises the score, relative to the normal image's own
        return np.mean([det.predict(s).raw_score / det.predict(x).raw_score for x, s in zip(normals, stained)])

    assert gain(detector) > gain(without) and gain(detector) > 1.2
    loaded = Detector.load(detector.save(tmp_path / "m"))
    assert float(loaded.net_.color_scale) == pytest.approx(detector.calibration_["color_scale"])
    assert loaded.predict(stained[0]).score == pytest.approx(detector.predict(stained[0]).score, rel=1e-5)


def test_memory_of_normal_flags_a_smoothed_region_and_survives_save(tiny_dataset, tmp_path):
    """A region whose texture is smoothed away scores higher with the memory of normal than with the
    comparison alone; the bank and its scale are fitted, saved and loaded with the weights."""
    config = tiny_config(steps=60)
    config.model.comparator_view, config.model.comparator_position = "image", False
    config.model.memory_layers, config.model.memory_weight = (2,), 0.5
    config.train.freeze_comparator = True  # the image view reads a frozen Encoder3 (here: random, untrained)
    detector = Detector(config).fit(tiny_dataset)
    assert detector.training_["memory_bank"] == len(detector.net_.memory_bank) > 0
    assert detector.calibration_["memory_scale"] > 0
    without = detector.replace_config(memory_layers=(), memory_weight=0.5)
    normals = [read_image(p) for p in list_images(tiny_dataset / "test" / "good")]
    smoothed = []
    for x in normals:
        s = x.copy()
        s[20:44, 20:44] = x[20:44, 20:44].mean(axis=(0, 1))  # texture smoothed away (a flat inpaint)
        smoothed.append(s)

    def gain(det):
        return np.mean([det.predict(s).raw_score / det.predict(x).raw_score for x, s in zip(normals, smoothed)])

    assert gain(detector) > gain(without)
    loaded = Detector.load(detector.save(tmp_path / "m"))
    assert loaded.net_.memory_bank.shape == detector.net_.memory_bank.shape
    assert loaded.predict(smoothed[0]).score == pytest.approx(detector.predict(smoothed[0]).score, rel=1e-5)


def test_evaluate_keeps_no_test_images_in_memory(trained, tiny_dataset, tmp_path, monkeypatch):
    """evaluate_category holds the maps it needs for the pixel metrics, not the decoded test images
    (a test set of 1024 px images would take GBs): the worst misses' pictures are read again."""
    import nextpatch.evaluate as evaluate_module

    reads = _LiveImages()
    monkeypatch.setattr(evaluate_module, "read_image", reads)
    result = evaluate_module.evaluate_category(trained, tiny_dataset, tmp_path / "eval", progress=False, worst=2,
                                               batch_size=4)
    assert len(result["rows"]) > 12  # several batches
    assert reads.most <= 2 * 4  # one batch being scored (and the next being read), not the whole test set
    pictures = [r for r in result["rows"] if "panel" in r]
    assert len(pictures) == 4 and all((tmp_path / "eval" / r["panel"]).is_file() for r in pictures)
