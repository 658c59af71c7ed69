"""The CLI verbs end to end on a tiny dataset, and the bad inputs a user will feed them."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nextpatch.cli import build_parser, main
from nextpatch.presets import PRESETS

from .conftest import tiny_config


def run(*args):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "nextpatch.cli", *map(str, args)], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_help_is_true_for_every_verb(capsys):
    parser = build_parser()
    for verb in (["train"], ["predict"], ["evaluate"], ["demo"], ["weights", "import"]):
        with pytest.raises(SystemExit) as exc:
            main([*verb, "--help"])
        assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--config", "--preset", "--epochs", "--seed", "--save-maps", "--init-checkpoint", "--steps", "SOURCE"):
        assert flag in out
    for name in PRESETS:
        assert name in out
    # every flag that --help shows is one the parser really takes
    for action in parser._subparsers._group_actions[0].choices["predict"]._actions:
        assert action.dest


def test_train_predict_evaluate(tmp_path, tiny_dataset):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().to_dict()))
    model = tmp_path / "model"
    code, out, err = run("train", tiny_dataset, "--out", model, "--config", config, "--steps", 40, "--seed", 1)
    assert code == 0, err
    assert (model / "model.safetensors").is_file() and "model saved" in out

    # predict: two folders hold files of the same name; outputs must not collide
    inputs = [tiny_dataset / "test" / "good", tiny_dataset / "test" / "crack"]
    out_dir = tmp_path / "pred"
    code, out, err = run("predict", model, *inputs, "--out", out_dir, "--save-maps", "--visuals", "all")
    assert code == 0, err
    lines = [json.loads(x) for x in (out_dir / "predictions.jsonl").read_text().splitlines()]
    n_images = sum(len(list(d.glob("*.png"))) for d in inputs)
    assert len(lines) == n_images
    assert {"path", "score", "is_anomalous", "map", "overlay", "panel"} <= set(lines[0])
    assert len({x["map"] for x in lines}) == n_images and len({x["panel"] for x in lines}) == n_images
    for line in lines[:3]:
        amap = np.load(line["map"])
        h, w = np.asarray(Image.open(line["path"])).shape[:2]
        assert amap.shape == (h, w) and amap.dtype == np.float32
        assert Image.open(line["panel"]).size[0] == 3 * w

    code, out, err = run("evaluate", model, tiny_dataset, "--out", tmp_path / "eval")
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "confusion"):
        assert key in metrics
    assert "image AUROC" in out
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "<svg" in html and "images/" in html


def test_predict_pictures_only_the_anomalous_by_default(tmp_path, saved_model, tiny_dataset):
    inputs = [tiny_dataset / "test"]
    code, out, err = run("predict", saved_model, *inputs, "--out", tmp_path / "all", "--visuals", "all")
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "all" / "predictions.jsonl").read_text().splitlines()]
    assert all("panel" in x for x in lines)
    code, out, err = run("predict", saved_model, *inputs, "--out", tmp_path / "default", "--batch-size", 3)
    assert code == 0, err
    default = [json.loads(x) for x in (tmp_path / "default" / "predictions.jsonl").read_text().splitlines()]
    assert [x["path"] for x in default] == [x["path"] for x in lines]
    assert np.allclose([x["score"] for x in default], [x["score"] for x in lines], atol=1e-4)  # batch size: same scores
    assert any(x["is_anomalous"] for x in default) and not all(x["is_anomalous"] for x in default)
    for x in default:
        assert ("panel" in x) == x["is_anomalous"]
        assert not x["is_anomalous"] or Path(x["panel"]).is_file() and Path(x["overlay"]).is_file()
    assert len(list((tmp_path / "default").glob("*_panel.png"))) == sum(x["is_anomalous"] for x in default)
    code, out, err = run("predict", saved_model, *inputs, "--out", tmp_path / "none", "--visuals", "none")
    assert code == 0 and not list((tmp_path / "none").glob("*.png"))


def test_train_says_how_the_data_set_the_generator_budget(tmp_path, tiny_dataset):
    config = tiny_config(steps=24)
    config.train.comparator_steps, config.train.texture_steps = 24, 8
    path = tmp_path / "texture.json"
    path.write_text(json.dumps(config.to_dict()))
    code, out, err = run("train", tiny_dataset, "--out", tmp_path / "model", "--config", path)
    assert code == 0, err
    assert "images look like a texture" in out and ": 8 generator steps" in out  # woven: a texture
    saved = json.loads((tmp_path / "model" / "nextpatch.json").read_text())["training"]
    assert saved["generator_steps"] == 8 and saved["data"] == "texture"


def test_predict_with_one_bad_image_scores_the_rest(tmp_path, saved_model, tiny_dataset):
    folder = tmp_path / "in"
    shutil.copytree(tiny_dataset / "test" / "good", folder)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rgba16 = (np.random.default_rng(0).random((70, 50)) * 65535).astype(np.uint16)
    Image.fromarray(rgba16).save(folder / "gray16.png")
    Image.new("RGBA", (80, 60), (10, 200, 30, 128)).save(folder / "rgba.png")
    code, out, err = run("predict", saved_model, folder, "--out", tmp_path / "pred")
    assert code == 1
    assert "corrupt.png" in err and "Traceback" not in err
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert sum("error" in x for x in lines) == 1
    assert sum("score" in x for x in lines) == len(lines) - 1  # 16-bit and RGBA images are scored


@pytest.mark.parametrize("args, needle", [
    (["train", "{tmp}/missing", "--out", "{tmp}/m"], "missing: folder not found"),
    (["train", "{tmp}/empty", "--out", "{tmp}/m"], "no training images found"),
    (["predict", "{tmp}/nomodel", "{tmp}", "--out", "{tmp}/p"], "model directory not found"),
    (["evaluate", "{model}", "{tmp}/empty"], "empty"),
    (["train", "{data}", "--out", "{tmp}/m", "--config", "{tmp}/bad.json"], "unknown"),
])
def test_bad_inputs_give_one_clear_line(tmp_path, saved_model, tiny_dataset, args, needle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text(json.dumps({"train": {"stepz": 3}}))
    args = [a.format(tmp=tmp_path, model=saved_model, data=tiny_dataset) for a in args]
    code, out, err = run(*args)
    assert code == 2
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_reports_a_missing_mask_and_a_wrong_size_mask(tmp_path, saved_model, tiny_dataset):
    data = tmp_path / "cat"
    shutil.copytree(tiny_dataset, data)
    masks = sorted((data / "ground_truth" / "crack").glob("*_mask.png"))
    masks[0].unlink()
    Image.new("L", (10, 10), 255).save(masks[1])
    code, out, err = run("evaluate", saved_model, data, "--out", tmp_path / "eval")
    assert code == 0, err
    assert masks[0].name in err and "10x10" in err


def test_demo_runs_end_to_end(tmp_path):
    """The demo builds its data in code, trains, evaluates and writes reports (tiny step budget here)."""
    code, out, err = run("demo", "--out", tmp_path / "demo", "--steps", 2)
    assert code == 0, err
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert len(summary) == 2
    for s in summary:
        assert (tmp_path / "demo" / "reports" / s["category"] / "report.html").is_file()
        assert s["image_auroc"] is not None


def test_training_log_in_a_file_is_short(tmp_path, tiny_dataset):
    """Output redirected to a file (not a terminal): a line per stage and the summary, no per-step lines."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().to_dict()))
    code, out, err = run("train", tiny_dataset, "--out", tmp_path / "m", "--config", config, "--steps", 30)
    assert code == 0, err
    lines = (out + err).splitlines()
    assert len(lines) < 50 and "\r" not in out + err
    assert any("generator" in x and "done in" in x for x in lines) and "model saved" in out
