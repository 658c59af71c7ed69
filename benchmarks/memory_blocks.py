"""Which DINOv2 blocks feed the memory of normal: one fit per category and seed, the memory refitted per choice.

    python benchmarks/memory_blocks.py --data DATA --set dev --seeds 0 --blocks 5 8 8,11 --out OUT

The default preset is fitted once (its memory at block 8). For each block choice the comparator's
pretrained ViT (frozen in the default preset, so its first 8 blocks are the fitted model's) is read to
the deepest block named, and only the memory bank and its scale are fitted again, on the same training
tiles and held-out images as the fit's. The comparison's map is the same for every choice; each
choice's memory map is fused with it at the weights below, as `benchmarks/fusion_sweep.py` does.
Writes OUT/<set>/<category>_s<seed>.json (image / pixel AUROC per block choice and weight).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WEIGHTS = (0.5, 0.75, 1.0)


def refit_memory(detector, category: Path, blocks: tuple[int, ...]):
    """A copy of the fitted `detector` whose memory reads `blocks`, fitted on the fit's own split."""
    from nextpatch.detector import Detector
    from nextpatch.model.torch_model import PatternNet
    from nextpatch.model.weights import init_encoders

    config = dataclasses.replace(detector.config, model=dataclasses.replace(
        detector.config.model, memory_layers=blocks, memory_weight=1.0))
    net = PatternNet(config.model)
    init_encoders(net, config.train.init_checkpoint, parts=("comparator",))
    wanted = net.state_dict()
    state = {k: v for k, v in detector.net_.state_dict().items() if k in wanted and not k.startswith("memory_")}
    missing, _ = net.load_state_dict(state, strict=False)
    assert all(k.startswith(("comparator.blocks.", "memory_")) for k in missing), missing
    tc = config.train
    inputs = detector._read_inputs(category)  # the fit's split, drawn as Detector.fit draws it
    perm = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(tc.seed)).tolist()
    n_cal = max(tc.min_calibration_images, int(round(tc.calibration_fraction * len(inputs))))
    net.eval()
    start = time.perf_counter()
    net.fit_memory(detector._tiles([inputs[i] for i in perm[n_cal:]]), seed=tc.seed)
    net.fit_memory_scale(detector._tiles([inputs[i].float() / 255.0 for i in perm[:n_cal]]))
    variant = Detector(config)
    variant.net_, variant.threshold_ = net, detector.threshold_
    return variant, round(time.perf_counter() - start, 1)


def run_one(category: Path, seed: int, choices: list[tuple[int, ...]]) -> dict:
    from nextpatch.data.io import read_image
    from nextpatch.data.layouts import load_mask_for, test_samples
    from nextpatch.detector import Detector
    from nextpatch.presets import DEFAULT_PRESET, preset_config

    from fusion_sweep import sweep

    config = preset_config(DEFAULT_PRESET)
    config.train.seed = seed
    detector = Detector(config).fit(category)
    parts = {"prediction": detector.replace_config(memory_layers=())}
    fit_s = {}
    for blocks in choices:
        if blocks == config.model.memory_layers:  # the fit's own memory
            parts[blocks], fit_s[blocks] = detector.replace_config(memory_weight=1.0), None
        else:
            parts[blocks], fit_s[blocks] = refit_memory(detector, category, blocks)
    samples, _ = test_samples(category)
    maps: dict = {name: [] for name in parts} | {"labels": [], "masks": []}
    for s in samples:
        image = read_image(s.path)
        x = detector.model_input(image)
        for name, det in parts.items():
            maps[name].append(det.predict_inputs([x], [image.shape[:2]])[0].small_map * det.threshold_)
        maps["labels"].append(s.label)
        maps["masks"].append(load_mask_for(s, image.shape[:2]))
    rows = {}
    for blocks in choices:
        one = {"prediction": maps["prediction"], "memory": maps[blocks], "labels": maps["labels"],
               "masks": maps["masks"], "topk": config.model.score_topk, "size": config.model.image_size}
        name = "+".join(map(str, blocks))
        for key, value in sweep(one, WEIGHTS, ("frac",)).items():
            rows[f"{name}/{key.split('/')[0]}"] = value | {"memory_fit_s": fit_s[blocks]}
    return {"category": category.name, "seed": seed, "variants": rows}


def main() -> None:
    from fusion_sweep import each_category, real_set_parser

    ap = real_set_parser(__doc__)
    ap.add_argument("--blocks", nargs="+", default=["5", "8", "8,11"], help="block choices, e.g. 5 8 8,11")
    a = ap.parse_args()
    choices = [tuple(int(b) for b in c.split(",")) for c in a.blocks]
    for seed, category, stem in each_category(a):
        r = run_one(category, seed, choices)
        stem.with_suffix(".json").write_text(json.dumps(r, indent=2))
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
