"""The comparator's arithmetic: float32 vs `comparator_precision = "auto"` (bfloat16 where native), one model.

    python benchmarks/precision.py                      # gravel, the default preset
    python benchmarks/precision.py --category brick

Trains the default preset once on a suite category, then evaluates it and times `Detector.predict` with
Encoder3 in each precision. The two are timed interleaved (one call each in turn, 3 rounds over 20 test
images) because this shared 2-core VM's speed drifts by 20-30% within minutes: back-to-back runs of the
same code do not compare. The accuracy rows use the same trained weights (the training itself ran with
the preset's "auto"). Writes OUT/precision.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE / "data" / "suite"))
    parser.add_argument("--category", default="gravel")
    parser.add_argument("--out", default=str(HERE / "out" / "precision"))
    args = parser.parse_args()

    import torch

    from nextpatch.data.io import read_image
    from nextpatch.data.layouts import test_samples
    from nextpatch.detector import Detector
    from nextpatch.evaluate import evaluate_category
    from nextpatch.model.torch_model import native_bfloat16
    from nextpatch.presets import DEFAULT_PRESET, preset_config
    from suite_data import ensure_suite

    ensure_suite(args.data)
    category = Path(args.data) / args.category
    detector = Detector(preset_config(DEFAULT_PRESET)).fit(category)
    precisions = ("float32", "auto")
    rows = {}
    for precision in precisions:
        detector.net_.cfg.comparator_precision = precision
        m = evaluate_category(detector, category, None, progress=False)["metrics"]
        rows[precision] = {"image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"], "times_ms": []}
    samples, _ = test_samples(category)
    images = [read_image(s.path) for s in samples[:: max(1, len(samples) // 20)][:20]]
    detector.predict(images[0])  # warm-up
    for _ in range(3):
        for image in images:
            for precision in precisions:
                detector.net_.cfg.comparator_precision = precision
                t = time.perf_counter()
                detector.predict(image)
                rows[precision]["times_ms"].append(1000 * (time.perf_counter() - t))
    native = native_bfloat16(torch.device("cpu"))
    print(f"{category.name}, preset {DEFAULT_PRESET}; this CPU computes bfloat16 natively: {native} "
          f"(\"auto\" = {'bfloat16' if native else 'float32'})")
    print("| comparator_precision | image AUROC | pixel AUROC | predict ms/img (median, interleaved) |")
    print("|---|---|---|---|")
    for precision, row in rows.items():
        row["predict_ms"] = round(statistics.median(row["times_ms"]), 1)
        print(f"| {precision} | {row['image_auroc']:.3f} | {row['pixel_auroc']:.3f} | {row['predict_ms']:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "precision.json").write_text(json.dumps({"category": category.name, "native_bfloat16": native,
                                                    "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
