"""Real-data sweep of the fusion weight and the image-score rule, from one fit per category and seed.

    python benchmarks/fusion_sweep.py --data DATA --set dev --seeds 0 --out OUT

The fused token map is linear in its two terms, (1 - w) * prediction + w * memory_scale * memory, and so
are smoothing, stitching and resizing: the sweep scores every test image once with the comparison alone
and once with the memory alone (the same fitted weights, `Detector.replace_config`), keeps the two raw
maps at the working resolution (cached in OUT/<set>/<category>_s<seed>.pt, so a rerun only re-sweeps), and forms every weight's map from
them. Image-score rules on the fused map at the working resolution (h', w'):
- `frac`: mean of the top `score_topk` (1 %) of its pixels (the rule of 2026-12-06 and before),
- `tile`: mean of the top `score_topk` * S * S pixels, a fixed area in working pixels (1 % of one
  network input), whatever the image's size: tiling no longer dilutes a small defect's score,
- `max`: the largest pixel.
Pixel AUROC does not depend on the rule. Fusions at w = 0.75 that are not linear (rows `w0.75/<name>`):
- `gate`: 0.25 * min(prediction, memory) + 0.75 * memory: the comparison counts only where the memory agrees,
- `geometric`: prediction^0.25 * memory^0.75.
With `--whole-memory`, a memory read at a second scale: `benchmarks/knn_baseline.py`'s FeatureKNN on the
same DINOv2 block 8, whole images at 224 px, full memory, its maps (cached in OUT/<set>/<category>_s<seed>_whole.pt)
resized to the working size and given the tiled memory's mean and std on the test's good images (a leak
of one scale and one offset: a bound, not a result); rows `w0.75/whole<a>` fuse the memory term as
(1 - a) * tiled + a * whole, `w0.75/whole-max` as their maximum.
Writes OUT/<set>/<category>_s<seed>.json and prints a JSON line each.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WEIGHTS = (0.0, 0.5, 0.65, 0.75, 0.85, 1.0)
RULES = ("frac", "tile", "max")


def image_score(amap: torch.Tensor, rule: str, topk: float, size: int) -> float:
    flat = amap.flatten()
    if rule == "max":
        return float(flat.amax())
    k = topk * (size * size if rule == "tile" else flat.numel())
    return float(flat.topk(max(1, min(flat.numel(), int(k)))).values.mean())


def raw_maps(category: Path, seed: int, tile_resolution: int, memory_layers: tuple[int, ...]) -> dict:
    """Fit once; every test image's raw prediction and memory maps (working size) and its mask."""
    from nextpatch.data.io import read_image
    from nextpatch.data.layouts import load_mask_for, test_samples
    from nextpatch.detector import Detector
    from nextpatch.presets import DEFAULT_PRESET, preset_config

    config = preset_config(DEFAULT_PRESET)
    config.train.seed = seed
    config.model.memory_layers, config.model.memory_weight = memory_layers, 0.75
    config.model.tile_resolution = tile_resolution
    start = time.perf_counter()
    detector = Detector(config).fit(category)
    train_s = time.perf_counter() - start
    parts = {"prediction": detector.replace_config(memory_layers=()), "memory": detector.replace_config(memory_weight=1.0)}
    samples, _ = test_samples(category)
    out = {"labels": [], "masks": [], "prediction": [], "memory": []}
    for s in samples:
        image = read_image(s.path)
        x = detector.model_input(image)
        for name, det in parts.items():
            p = det.predict_inputs([x], [image.shape[:2]])[0]
            out[name].append(p.small_map * det.threshold_)
        out["labels"].append(s.label)
        out["masks"].append(load_mask_for(s, image.shape[:2]))
    out["train_s"] = round(train_s, 1)
    out["topk"], out["size"] = config.model.score_topk, config.model.image_size
    return out


FUSIONS = {  # name -> token map from the prediction's and the memory's (p, m), at w = 0.75
    "gate": lambda p, m: 0.25 * torch.minimum(p, m) + 0.75 * m,
    "geometric": lambda p, m: p.clamp(min=0) ** 0.25 * m.clamp(min=0) ** 0.75,
}


def whole_memory_maps(category: Path, seed: int, maps: dict) -> list[torch.Tensor]:
    """FeatureKNN's whole-image (224 px, block 8, full memory) maps of the test images, at `maps`' working
    sizes, with the tiled memory's mean and std on the good test images."""
    from knn_baseline import FeatureKNN

    from nextpatch.data.io import read_image
    from nextpatch.data.layouts import test_samples, train_images
    from nextpatch.detector import _resize

    knn = FeatureKNN(depth=8, mode="image", coreset=1.0, seed=seed).fit(train_images(category))
    samples, _ = test_samples(category)
    whole = [_resize(torch.from_numpy(knn._raw(knn._load([read_image(s.path)]))[1][0])[None], m.shape)[0]
             for s, m in zip(samples, maps["memory"])]
    good = [i for i, label in enumerate(maps["labels"]) if label == 0]
    tiled, wk = torch.cat([maps["memory"][i].flatten() for i in good]), torch.cat([whole[i].flatten() for i in good])
    return [(k - wk.mean()) * tiled.std() / wk.std() + tiled.mean() for k in whole]


def sweep(maps: dict, weights=WEIGHTS, rules=RULES) -> dict:
    from nextpatch.detector import _resize
    from nextpatch.metrics import image_auroc, pixel_auroc

    labels, masks = maps["labels"], maps["masks"]
    with_mask = [i for i, m in enumerate(masks) if m is not None]

    def row(fused: list[torch.Tensor], rules=("frac",)) -> dict:
        px = None
        if any(masks[i].any() for i in with_mask):
            px = pixel_auroc([masks[i] for i in with_mask],
                             [_resize(fused[i][None], masks[i].shape)[0].numpy() for i in with_mask])
        return {rule: {"image_auroc": image_auroc(labels, [image_score(f, rule, maps["topk"], maps["size"]) for f in fused]),
                       "pixel_auroc": px} for rule in rules}

    pm = list(zip(maps["prediction"], maps["memory"]))
    rows = {}
    for w in weights:
        for rule, r in row([(1 - w) * p + w * m for p, m in pm], rules).items():
            rows[f"w{w}/{rule}"] = r
    for name, fuse in FUSIONS.items():
        rows[f"w0.75/{name}"] = row([fuse(p, m) for p, m in pm])["frac"]
    if "whole" in maps:
        for a in (0.25, 0.5):
            rows[f"w0.75/whole{a}"] = row([0.25 * p + 0.75 * ((1 - a) * m + a * k)
                                           for (p, m), k in zip(pm, maps["whole"])])["frac"]
        rows["w0.75/whole-max"] = row([0.25 * p + 0.75 * torch.maximum(m, k) for (p, m), k in zip(pm, maps["whole"])])["frac"]
    return rows


def real_set_parser(doc: str) -> argparse.ArgumentParser:
    """The options every real-data sweep takes: --data, --set, --categories, --seeds, --out."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding dev/ and validation/ (benchmarks/real_data.py)")
    ap.add_argument("--set", default="dev", choices=["dev", "validation"])
    ap.add_argument("--categories", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--out", required=True)
    return ap


def each_category(a: argparse.Namespace):
    """Yields (seed, category folder, OUT/<set>/<category>_s<seed> without suffix) for parsed options `a`."""
    root = Path(a.data) / a.set
    cats = a.categories or list(json.loads((root / "manifest.json").read_text())["categories"])
    out = Path(a.out) / a.set
    out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for c in cats:
            yield seed, root / c, out / f"{c}_s{seed}"


def main() -> None:
    ap = real_set_parser(__doc__)
    ap.add_argument("--tile-resolution", type=int, default=448)
    ap.add_argument("--memory-layers", type=int, nargs="+", default=[8])
    ap.add_argument("--whole-memory", action="store_true",
                    help="add a second memory scale: the kNN baseline's whole-image maps (see above)")
    a = ap.parse_args()
    for seed, category, stem in each_category(a):
        cache = stem.with_suffix(".pt")
        if cache.exists():
            maps = torch.load(cache, weights_only=False)
        else:
            maps = raw_maps(category, seed, a.tile_resolution, tuple(a.memory_layers))
            torch.save(maps, cache)
        whole = stem.with_name(stem.name + "_whole.pt")
        if a.whole_memory:
            if not whole.exists():
                torch.save(whole_memory_maps(category, seed, maps), whole)
            maps["whole"] = torch.load(whole)
        r = {"category": category.name, "seed": seed, "train_s": maps["train_s"], "variants": sweep(maps)}
        stem.with_suffix(".json").write_text(json.dumps(r, indent=2))
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
