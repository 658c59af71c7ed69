"""Feedback-loop benchmark (issue 26, part 5): a normal variation the model never saw, absorbed by `update`.

    python benchmarks/feedback.py --data /work/realdata --category wood-planks --out benchmarks/out/feedback

On one category of the real-data benchmark (`benchmarks/real_data.py`, MVTec layout under DATA/dev/):

1. `--holdout` (20) train/good images are kept out of training; the default preset is trained on the rest
   (its wall time is the training time).
2. A normal variation the training never showed (`--variation`, see VARIATIONS) is applied to the
   held-out train images (the update pool) and to the category's test/good images (the evaluation set:
   never absorbed, the same set for every k).
3. Before, and after `Detector.update` with the first k = 5, 10, 20 varied pool images (each k from the
   trained model, not cumulative): the false-reject rate on the varied evaluation set, the image
   (and pixel) AUROC on the category's test set (its defects and its unvaried test/good, via
   `nextpatch.evaluate.evaluate_category`), the false-reject rate on the unvaried test/good, and the
   update's time (in memory, and with the new version saved as `nextpatch update` does).

The calibrated rate is the false-reject rate of the trained model on the unvaried test/good, floored at
one image of the evaluation set (a rate below one image in |eval| cannot be told apart from 0).
The bar (issue 26): after k = 10, FRR on the variation <= 2 x the calibrated rate, image AUROC drop
<= 0.01, update time <= 10 % of the training time.

Writes OUT/feedback.json and OUT/feedback.md (the table); OUT/model holds the trained model.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------ variations
def tint(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new batch of material: warmer colour (red up, blue down), per image a little different."""
    gains = np.array([1.12, 1.0, 0.80]) * rng.uniform(0.97, 1.03, size=3)
    return np.clip(image * gains, 0, 1).astype(np.float32)


def dark(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A lighting change: gain 0.6-0.7 (the training's nuisance gain spans 0.85-1.15)."""
    return np.clip(image * rng.uniform(0.6, 0.7), 0, 1).astype(np.float32)


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Focus drift: Gaussian blur of sigma 2-2.5 px (the training's nuisance blur is at most 1 px)."""
    s = rng.uniform(2.0, 2.5)
    return ndimage.gaussian_filter(image, sigma=(s, s, 0), mode="reflect").astype(np.float32)


def stamp(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A harmless mark: an ink stamp (a dark-blue ring around a bar), 12 % of the short side, anywhere."""
    h, w = image.shape[:2]
    r = 0.06 * min(h, w)
    cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - cy, xx - cx)
    ink = (np.abs(d - 0.8 * r) <= 0.15 * r) | ((np.abs(yy - cy) <= 0.12 * r) & (np.abs(xx - cx) <= 0.5 * r))
    alpha = ndimage.gaussian_filter(ink.astype(np.float32), 0.7)[..., None] * rng.uniform(0.75, 0.9)
    return (image * (1 - alpha) + np.array([0.12, 0.16, 0.45], np.float32) * alpha).astype(np.float32)


VARIATIONS = {"tint": tint, "dark": dark, "blur": blur, "stamp": stamp}


# ------------------------------------------------------------------------------------ measuring
def frr(detector, images: list[np.ndarray]) -> tuple[float, list[float]]:
    scores = [float(p.score) for p in detector.predict_batch(images)]
    return float(np.mean([s > 1.0 for s in scores])), scores


def evaluate(detector, category: Path, varied: list[np.ndarray]) -> dict:
    from nextpatch.evaluate import evaluate_category

    r = evaluate_category(detector, category, None, progress=False)
    m = r["metrics"]
    good = [row["is_anomalous"] for row in r["rows"] if row["label"] == 0]
    rate, scores = frr(detector, varied)
    return {"image_auroc": m["image_auroc"], "pixel_auroc": m.get("pixel_auroc"),
            "frr_variation": rate, "frr_test_good": float(np.mean(good)),
            "median_score_variation": float(np.median(scores)),
            "predict_ms": r["predict_ms_per_image"]}


def run(args) -> dict:
    from nextpatch.data.io import read_image
    from nextpatch.data.layouts import train_images
    from nextpatch.detector import Detector
    from nextpatch.presets import DEFAULT_PRESET, preset_config

    category = Path(args.data) / "dev" / args.category
    if not category.is_dir():
        category = Path(args.data) / args.category
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    paths = train_images(category)
    order = rng.permutation(len(paths))
    pool_paths = [paths[i] for i in order[:args.holdout]]
    train_paths = [paths[i] for i in sorted(order[args.holdout:])]
    vary = VARIATIONS[args.variation]
    vrng = np.random.default_rng(args.seed + 1000)
    pool = [vary(read_image(p), vrng) for p in pool_paths]
    varied_eval = [vary(read_image(p), vrng) for p in sorted((category / "test" / "good").glob("*.png"))]

    model_dir = out / "model"
    if args.model:  # a model trained by an earlier run on the same split (exploration); its recorded time
        detector = Detector.load(args.model)
        train_s = float(detector.training_.get("fit_seconds", detector.training_["seconds"]))
        if Path(args.model).resolve() != model_dir.resolve():
            shutil.copytree(args.model, model_dir, dirs_exist_ok=True)
    else:
        config = preset_config(DEFAULT_PRESET)
        config.train.seed = args.seed
        print(f"training {args.category} on {len(train_paths)} images ({DEFAULT_PRESET})", flush=True)
        start = time.perf_counter()
        detector = Detector(config).fit(train_paths)
        train_s = time.perf_counter() - start
        detector.training_["fit_seconds"] = round(train_s, 1)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        detector.save(model_dir)
    print(f"trained in {train_s:.0f} s; measuring before", flush=True)
    before = evaluate(detector, category, varied_eval)
    rows = [{"k": 0, **before, "update_s": None, "update_save_s": None}]
    print(json.dumps(rows[-1]), flush=True)
    for k in args.ks:
        d = Detector.load(model_dir)
        start = time.perf_counter()
        d.update(pool[:k])
        update_s = time.perf_counter() - start
        scratch = out / f"model-k{k}"
        if scratch.exists():
            shutil.rmtree(scratch)
        shutil.copytree(model_dir, scratch)
        start = time.perf_counter()  # what `nextpatch update` does around it: load, update, save a version
        from nextpatch.update_cli import update_model

        update_model(scratch, pool[:k], device="cpu")
        update_save_s = time.perf_counter() - start
        shutil.rmtree(scratch)
        rows.append({"k": k, **evaluate(d, category, varied_eval), "update_s": round(update_s, 2),
                     "update_save_s": round(update_save_s, 2), "accepted": d.training_["updates"][-1]})
        print(json.dumps(rows[-1]), flush=True)
    calibrated = max(before["frr_test_good"], 1.0 / len(varied_eval))
    at10 = next((r for r in rows if r["k"] == 10), None)
    bar = None
    if at10:
        bar = {"frr_ok": at10["frr_variation"] <= 2 * calibrated,
               "auroc_ok": before["image_auroc"] - at10["image_auroc"] <= 0.01,
               "time_ok": at10["update_save_s"] <= 0.10 * train_s}
    return {"category": args.category, "variation": args.variation, "variation_doc": vary.__doc__,
            "seed": args.seed, "preset": "default", "train_images": len(train_paths),
            "pool": len(pool), "eval_variation_images": len(varied_eval), "train_s": round(train_s, 1),
            "calibrated_rate": calibrated, "threshold": detector.threshold_, "rows": rows, "bar_at_10": bar}


def table(r: dict) -> str:
    lines = [f"{r['category']}, variation `{r['variation']}` ({r['variation_doc'].split(':')[0].lower()}), seed "
             f"{r['seed']}: trained on {r['train_images']} images in {r['train_s']:.0f} s; "
             f"false-reject rate on {r['eval_variation_images']} varied test/good images never absorbed; "
             f"calibrated rate {r['calibrated_rate']:.3f}.", "",
             "| update with | FRR on the variation | FRR test/good | image AUROC | pixel AUROC | update s (in memory / with save) | share of training |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        px = "-" if row["pixel_auroc"] is None else f"{row['pixel_auroc']:.3f}"
        if row["k"]:
            t = f"{row['update_s']:.2f} / {row['update_save_s']:.2f}"
            share = f"{row['update_save_s'] / r['train_s']:.1%}"
        else:
            t, share = "-", "-"
        what = "before (trained model)" if row["k"] == 0 else f"{row['k']} images"
        lines.append(f"| {what} | {row['frr_variation']:.3f} | {row['frr_test_good']:.3f} | "
                     f"{row['image_auroc']:.3f} | {px} | {t} | {share} |")
    if r["bar_at_10"]:
        lines += ["", "Bar at 10 images: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["bar_at_10"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/realdata", help="folder holding dev/ (benchmarks/real_data.py's output)")
    ap.add_argument("--category", default="wood-planks")
    ap.add_argument("--variation", default="stamp", choices=sorted(VARIATIONS))
    ap.add_argument("--out", default=str(HERE / "out" / "feedback"), help="results and the trained model (OUT/model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", type=int, default=20, help="train/good images kept out of training: the update pool")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--model", help="reuse a model this script trained before on the same split (skips training)")
    args = ap.parse_args()
    if max(args.ks) > args.holdout:
        sys.exit(f"--ks up to {max(args.ks)} need --holdout >= {max(args.ks)}")
    result = run(args)
    out = Path(args.out)
    (out / "feedback.json").write_text(json.dumps(result, indent=2))
    (out / "feedback.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
