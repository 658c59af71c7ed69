"""Real-data benchmark (issue 24): nextpatch's parts ablated, beside the kNN baseline on the same weights.

    python benchmarks/real_data.py benchmarks/data/real            # build dev/ and validation/ once
    python benchmarks/real.py --data benchmarks/data/real --set dev --seeds 0 1 2

Per category and seed: one Detector fit of the default preset (its memory of normal at `--memory-layers`,
its tiles at `--tile-resolution`; both default to the preset's); its inference-only variants read the
same fitted weights (`Detector.replace_config`): `prediction` (the paper's comparison alone, the default
until 2026-12-06), `memory` (memory alone), `both@w` (fused with memory_weight w; the default preset is
`both@0.75`); named in `--only`, the comparison's parts (`COMPARISON_PARTS`: without the colour term, the
generator's pixel error instead of the Siamese comparator, min fusion). Beside them `knn`: `benchmarks/knn_baseline.py`'s FeatureKNN on
the same DINOv2 weights (block `--knn-depth`, full memory, whole images at 224 px, the team's baseline)
and, with `--tile-resolution R` (nextpatch scores tiles at up to R px, `nextpatch.tiling`), `knn-tiled`:
the same kNN on the same tiles, so that what tiling earns is not credited to nextpatch's own parts. Metrics from nextpatch's own
`evaluate_category`; writes OUT/<set>/<category>_s<seed>.json as each finishes, and OUT/<set>.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


COMPARISON_PARTS = {  # inference-only variants of the paper's comparison (`Detector.replace_config`)
    "prediction-siamese": {"color_weight": 0.0},  # the Siamese distance without the colour term
    "prediction-pixel": {"distance": "pixel", "color_weight": 0.0},  # the generator's pixel error, no comparator
    "prediction-min": {"fusion": "min"},  # the two directions fused by their minimum instead of the maximum
}


def run_one(category: Path, seed: int, memory_layers: tuple[int, ...] | None, weights: list[float] | None,
            knn_depth: int, tile_resolution: int | None = None, only: set[str] | None = None,
            config_file: Path | None = None) -> dict:
    """Fit once, evaluate the variants (all, or those named in `only`) and the kNN baselines."""
    from knn_baseline import FeatureKNN

    from nextpatch.data.layouts import train_images
    from nextpatch.detector import Detector
    from nextpatch.evaluate import evaluate_category
    from nextpatch.presets import DEFAULT_PRESET, preset_config

    config = preset_config(DEFAULT_PRESET, config_file)
    config.train.seed = seed
    if memory_layers is not None:
        config.model.memory_layers = memory_layers
    config.model.memory_weight = weights[0] if weights else config.model.memory_weight
    if tile_resolution is not None:
        config.model.tile_resolution = tile_resolution
    tile_resolution = config.model.tile_resolution
    weights = weights or [config.model.memory_weight]
    start = time.perf_counter()
    detector = Detector(config).fit(category)
    train_s = time.perf_counter() - start
    variants = {"prediction": detector.replace_config(memory_layers=()),
                "memory": detector.replace_config(memory_weight=1.0)}
    for w in weights:
        variants[f"both@{w}"] = detector.replace_config(memory_weight=w)
    variants = {k: v for k, v in variants.items() if not only or k in only}
    # the comparison's own parts, only when named in `only`: which of them is weak on real data
    for name, changes in COMPARISON_PARTS.items():
        if name in (only or ()):
            variants[name] = detector.replace_config(memory_layers=(), **changes)
    rows = {}
    for name, det in variants.items():
        r = evaluate_category(det, category, None, progress=False)
        m = r["metrics"]
        rows[name] = {"image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"],
                      "predict_ms": r["predict_ms_per_image"]}
    for name, tiles in [("knn", 0)] + ([("knn-tiled", tile_resolution)] if tile_resolution else []):
        if only and name not in only:
            continue
        start = time.perf_counter()
        knn = FeatureKNN(depth=knn_depth, mode="image", coreset=1.0, seed=seed,
                         tile_resolution=tiles).fit(train_images(category))
        knn_s = time.perf_counter() - start
        r = evaluate_category(knn, category, None, progress=False)
        rows[name] = {"image_auroc": r["metrics"]["image_auroc"], "pixel_auroc": r["metrics"]["pixel_auroc"],
                      "predict_ms": r["predict_ms_per_image"], "train_s": round(knn_s, 1)}
    return {"category": category.name, "seed": seed, "memory_layers": list(config.model.memory_layers),
            "tile_resolution": tile_resolution, "tiles": detector.training_.get("tiles"),
            "train_s": round(train_s, 1), "memory_bank": detector.training_.get("memory_bank"),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "variants": rows}


def table(results: list[dict]) -> str:
    names = list(dict.fromkeys(n for r in results for n in r["variants"]))
    lines = ["| category | seed | train s | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for r in results:
        cells = []
        for n in names:
            if n not in r["variants"]:
                cells.append("-")
                continue
            v = r["variants"][n]
            px = "-" if v["pixel_auroc"] is None else f"{v['pixel_auroc']:.3f}"
            cells.append(f"{v['image_auroc']:.3f} / {px}")
        lines.append(f"| {r['category']} | {r['seed']} | {r['train_s']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE / "data" / "real"), help="folder holding dev/ and validation/")
    ap.add_argument("--set", default="dev", choices=["dev", "validation"])
    ap.add_argument("--categories", nargs="*", help="default: every category of the set's manifest")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--memory-layers", type=int, nargs="+", help="default: the preset's")
    ap.add_argument("--weights", type=float, nargs="+", help="memory weights of the both@W variants (default: the preset's)")
    ap.add_argument("--knn-depth", type=int, default=8)
    ap.add_argument("--tile-resolution", type=int,
                    help="model.tile_resolution: score tiles of images resized to this long side (0: whole at 224; "
                         "default: the preset's)"),
    ap.add_argument("--only", nargs="*", metavar="VARIANT",
                    help="evaluate only these (prediction, memory, both@W, knn, knn-tiled); default all; "
                         f"the comparison's parts ({', '.join(COMPARISON_PARTS)}) only when named here")
    ap.add_argument("--config", type=Path, help="a config file applied on the default preset (nextpatch train --config)")
    ap.add_argument("--out", default=str(HERE / "out" / "real"))
    a = ap.parse_args()
    root = Path(a.data) / a.set
    cats = a.categories or list(json.loads((root / "manifest.json").read_text())["categories"])
    out = Path(a.out) / a.set
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in a.seeds:
        for c in cats:
            r = run_one(root / c, seed, tuple(a.memory_layers) if a.memory_layers else None, a.weights, a.knn_depth,
                        a.tile_resolution, set(a.only or ()), a.config)
            (out / f"{c}_s{seed}.json").write_text(json.dumps(r, indent=2))
            results.append(r)
            print(json.dumps(r), flush=True)
    (Path(a.out) / f"{a.set}.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
