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
Pixel AUROC does not depend on the rule. Writes OUT/<set>/<category>_s<seed>.json and prints a JSON line each.
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


def sweep(maps: dict, weights=WEIGHTS, rules=RULES) -> dict:
    from nextpatch.detector import _resize
    from nextpatch.metrics import image_auroc, pixel_auroc

    labels, masks = maps["labels"], maps["masks"]
    with_mask = [i for i, m in enumerate(masks) if m is not None]
    rows = {}
    for w in weights:
        fused = [(1 - w) * p + w * m for p, m in zip(maps["prediction"], maps["memory"])]
        px = None
        if any(masks[i].any() for i in with_mask):
            px = pixel_auroc([masks[i] for i in with_mask],
                             [_resize(fused[i][None], masks[i].shape)[0].numpy() for i in with_mask])
        for rule in rules:
            scores = [image_score(f, rule, maps["topk"], maps["size"]) for f in fused]
            rows[f"w{w}/{rule}"] = {"image_auroc": image_auroc(labels, scores), "pixel_auroc": px}
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
    a = ap.parse_args()
    for seed, category, stem in each_category(a):
        cache = stem.with_suffix(".pt")
        if cache.exists():
            maps = torch.load(cache, weights_only=False)
        else:
            maps = raw_maps(category, seed, a.tile_resolution, tuple(a.memory_layers))
            torch.save(maps, cache)
        r = {"category": category.name, "seed": seed, "train_s": maps["train_s"], "variants": sweep(maps)}
        stem.with_suffix(".json").write_text(json.dumps(r, indent=2))
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
