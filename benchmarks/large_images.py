"""Peak memory of `fit` and `evaluate` on large images: what they keep in memory must not grow with the files' size.

    python benchmarks/large_images.py                  # 200 training images and the test set at 1024 x 1024
    python benchmarks/large_images.py --size 2048 --n-train 100

Data: the suite's grass category (built on first use, nothing downloaded), its training images repeated
(mirrored or turned by 180 degrees) up to --n-train and upscaled to --size px, its test images and masks upscaled alike
(benchmarks/data/large/grass_SIZE, built on first use). Each measurement runs in its own subprocess and
reports its peak resident memory:
1. `Detector(config).fit(folder)` with the `scratch` preset and a budget of 2 steps per stage, so that
   what is measured is reading the images and holding them, not the model's training;
2. `evaluate_category` of that model on the large test set (its maps stay at the input's size for the
   pixel metrics; the images need not).
Writes OUT/large_images.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(root: Path, size: int, n_train: int) -> Path:
    """An MVTec-layout copy of the suite's grass with every image upscaled to `size` px."""
    from PIL import Image

    from suite_data import ensure_suite

    src = ensure_suite(HERE / "data" / "suite") / "grass"
    dst = root / f"grass_{size}"
    good = sorted((src / "train" / "good").glob("*.png"))
    if len(list((dst / "train" / "good").glob("*.png"))) >= n_train:
        return dst
    print(f"building {dst} ({n_train} training images at {size} px)", flush=True)
    flips = [None, Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_180]
    (dst / "train" / "good").mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        image = Image.open(good[i % len(good)]).convert("RGB").resize((size, size), Image.BILINEAR)
        flip = flips[(i // len(good)) % len(flips)]
        (image if flip is None else image.transpose(flip)).save(dst / "train" / "good" / f"{i:04d}.png")
    for part, resample in (("test", Image.BILINEAR), ("ground_truth", Image.NEAREST)):
        for path in sorted((src / part).glob("*/*.png")):
            out = dst / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).resize((size, size), resample).save(out)
    return dst


def run_one(what: str, category: Path, model_dir: Path) -> dict:
    from nextpatch.detector import Detector

    start = time.perf_counter()
    if what == "fit":
        from nextpatch.presets import preset_config

        config = preset_config("scratch")
        config.train.steps, config.train.comparator_steps, config.train.warmup_steps = 2, 2, 1
        detector = Detector(config).fit(category)
        detector.save(model_dir)
        extra = {"images": detector.training_["images"] + detector.calibration_["images"]}
    else:
        from nextpatch.evaluate import evaluate_category

        result = evaluate_category(Detector.load(model_dir), category, model_dir / "evaluation", progress=False)
        extra = {"images": len(result["rows"]), "pixel_auroc": result["metrics"]["pixel_auroc"]}
    return {"step": what, "seconds": round(time.perf_counter() - start, 1),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--data", default=str(HERE / "data" / "large"))
    parser.add_argument("--out", default=str(HERE / "out" / "large_images"))
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: STEP CATEGORY MODEL_DIR
    args = parser.parse_args()
    if args.one:
        what, category, model_dir = args.one
        print(json.dumps(run_one(what, Path(category), Path(model_dir))))
        return
    category = build(Path(args.data), args.size, args.n_train)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for what in ("fit", "evaluate"):
        proc = subprocess.run([sys.executable, __file__, "--one", what, str(category), str(out / "model")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{what} failed:\n{proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{what:8s} {row['images']} images of {args.size} px: {row['seconds']} s, peak {row['peak_mib']} MiB",
              flush=True)
    (out / "large_images.json").write_text(json.dumps({"size": args.size, "rows": rows}, indent=2))
    print("\n| step | images | px | seconds | peak MiB |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['images']} | {args.size} | {row['seconds']} | {row['peak_mib']} |")


if __name__ == "__main__":
    main()
