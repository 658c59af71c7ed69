"""How cost grows with the training set: nextpatch (default preset) vs the feature-kNN baseline.

    python benchmarks/scaling.py                        # 50, 200, 800 training images
    python benchmarks/scaling.py --sizes 50 200 --out /tmp/scaling

Data: the procedural `woven` category made with 800 training images (benchmarks/data/scaling/woven,
built on first use, nothing downloaded); each size trains on the first N of them and is tested on the
same test set. Per (method, N), in its own subprocess: fit seconds, model size (nextpatch: its saved
model folder on disk; kNN: its memory bank, float32), predict ms/image (median over 20 single-image
calls, model loaded once, batch 1), image AUROC, peak memory.
Writes OUT/scaling.json and OUT/scaling.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("nextpatch", "knn")


def build(root: Path, n_train: int) -> Path:
    from nextpatch.data import procedural as P

    category = root / "woven"
    have = len(list((category / "train" / "good").glob("*.png"))) if category.is_dir() else 0
    if have < n_train:
        print(f"building {category} with {n_train} training images", flush=True)
        P.make_category(root, "woven", n_train=n_train, n_test_good=20, n_test_per_defect=4, seed=1)
    return category


def run_one(method: str, category: Path, n: int) -> dict:
    from nextpatch.data.layouts import train_images
    from nextpatch.evaluate import evaluate_category
    from timing import predict_ms

    paths = sorted(train_images(category))[:n]
    start = time.perf_counter()
    if method == "nextpatch":
        from nextpatch.detector import Detector

        model = Detector().fit(paths)
        fit_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            model.save(tmp)
            size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    else:
        from knn_baseline import FeatureKNN

        model = FeatureKNN(mode="image").fit(paths)
        fit_s = time.perf_counter() - start
        size = model.model_bytes()
    metrics = evaluate_category(model, category, None, progress=False)["metrics"]
    median_ms = predict_ms(model.predict, category)
    return {"method": method, "train_images": n, "fit_s": round(fit_s, 1), "model_mib": round(size / 2 ** 20, 2),
            "predict_ms": median_ms, "image_auroc": metrics["image_auroc"],
            "pixel_auroc": metrics["pixel_auroc"],
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def markdown(rows: list[dict]) -> str:
    lines = ["| method | train images | fit s | model MiB | predict ms/img | image AUROC | pixel AUROC | peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['train_images']} | {r['fit_s']:.0f} | {r['model_mib']} | "
                     f"{r['predict_ms']:.0f} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['peak_mib']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE / "data" / "scaling"))
    parser.add_argument("--out", default=str(HERE / "out" / "scaling"))
    parser.add_argument("--sizes", nargs="*", type=int, default=[50, 200, 800])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: METHOD N
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    category = Path(args.data) / "woven"
    if args.one:
        method, n = args.one[0], int(args.one[1])
        (out / f"{method}_{n}.json").write_text(json.dumps(run_one(method, category, n), indent=2))
        return
    build(Path(args.data), max(args.sizes))
    rows = []
    for method in args.methods:
        for n in args.sizes:
            subprocess.run([sys.executable, __file__, "--one", method, str(n), "--data", args.data, "--out", str(out)],
                           check=True)
            row = json.loads((out / f"{method}_{n}.json").read_text())
            print(f"{method:9s} {n:4d} images: fit {row['fit_s']:.0f} s, model {row['model_mib']} MiB, predict "
                  f"{row['predict_ms']:.0f} ms, image AUROC {row['image_auroc']:.3f}, peak {row['peak_mib']} MiB", flush=True)
            rows.append(row)
            (out / "scaling.json").write_text(json.dumps(rows, indent=2))
    (out / "scaling.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
