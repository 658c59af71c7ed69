"""The benchmark behind the README's table: train the default config per suite category, evaluate, time it.

    python benchmarks/suite.py                                  # whole suite, default preset (builds the data if needed)
    python benchmarks/suite.py --presets scratch frozen-dinov2  # one row per preset, measured in one run
    python benchmarks/suite.py --categories woven pcb --steps 200
    python benchmarks/suite.py --set validation --config my_change.toml  # categories the suite does not use

Each category trains in its own subprocess so its peak memory (max RSS) is its own. Per category:
image AUROC, pixel AUROC, AUPRO@30%, F1-max, train seconds, predict ms/image (median over single-image
calls, model loaded once, batch 1), peak memory. Ablations reuse the trained weights and change only
inference: forward-only (the paper's single direction), rows-only (forward + backward), the other
fusions (min / mean / max), without the colour term, pixel L2 instead of the Siamese comparator, and
the other image-score rule.
Writes OUT/results.json ({preset: [rows]}) and OUT/results.md.
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
sys.path.insert(0, str(HERE))

ABLATIONS = {
    "forward only (paper's single direction)": {"directions": ("right",)},
    "rows only (forward + backward)": {"directions": ("right", "left")},
    # the fusions other than the preset's own (a row equal to the preset is skipped)
    "min fusion (the paper's bi-directional rule)": {"fusion": "min"},
    "mean fusion": {"fusion": "mean"},
    "max fusion": {"fusion": "max"},
    "without the colour term": {"color_weight": 0.0},
    "pixel L2 instead of Siamese comparator": {"distance": "pixel"},
    # the other image-score rule than the preset's own: max of the map <-> mean of its top 1%
    "image score: the other rule (max <-> mean of the top 1%)": lambda m: {"score_topk": 0.0 if m.score_topk else 0.01},
}
METRICS = ("image_auroc", "pixel_auroc", "aupro")


def run_category(category: Path, out: Path, preset: str, config_file: str | None, steps: int | None,
                 seed: int, ablations: bool = True) -> dict:
    """Train + evaluate one category in this process; returns the result row."""
    import numpy as np
    import torch

    from nextpatch.presets import preset_config
    from nextpatch.detector import Detector
    from nextpatch.evaluate import evaluate_category
    from timing import predict_ms

    config = preset_config(preset, config_file)
    if steps:
        config.train.scale_steps(steps)
    config.train.seed = seed
    start = time.perf_counter()
    detector = Detector(config).fit(category)
    train_s = time.perf_counter() - start
    result = evaluate_category(detector, category, out / category.name, progress=False)

    median_ms = predict_ms(detector.predict, category)

    variants = {}
    for name, change in (ABLATIONS.items() if ablations else ()):
        change = change(detector.config.model) if callable(change) else change
        if all(getattr(detector.config.model, k) == v for k, v in change.items()):
            continue  # the preset already is this variant
        variant = detector.replace_config(**change)
        m = evaluate_category(variant, category, None, progress=False)["metrics"]
        variants[name] = {k: m[k] for k in METRICS}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"category": category.name, "preset": preset, **{k: result["metrics"][k] for k in (*METRICS, "f1_max")},
            "confusion": result["metrics"]["confusion"], "train_s": round(train_s, 1),
            "predict_ms": median_ms, "peak_mib": round(peak_mib),
            "threads": torch.get_num_threads(), "steps": [detector.training_["generator_steps"], detector.training_["comparator_steps"]],
            "ablations": variants, "numpy": np.__version__, "torch": torch.__version__}


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _mean(rows, key, src=lambda r: r):
    vals = [src(r)[key] for r in rows if src(r)[key] is not None]
    return sum(vals) / len(vals) if vals else None


def category_table(rows: list[dict]) -> str:
    lines = ["| category | image AUROC | pixel AUROC | AUPRO@30% | F1-max | train s | predict ms/img | peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['category']} | {fmt(r['image_auroc'])} | {fmt(r['pixel_auroc'])} | {fmt(r['aupro'])} | "
                     f"{fmt(r['f1_max'])} | {r['train_s']:.0f} | {r['predict_ms']:.0f} | {r['peak_mib']} |")
    lines.append(f"| **mean** | **{fmt(_mean(rows, 'image_auroc'))}** | **{fmt(_mean(rows, 'pixel_auroc'))}** | "
                 f"**{fmt(_mean(rows, 'aupro'))}** | {fmt(_mean(rows, 'f1_max'))} | {_mean(rows, 'train_s'):.0f} | "
                 f"{_mean(rows, 'predict_ms'):.0f} | {max(r['peak_mib'] for r in rows)} (max) |")
    lines += ["", "Ablations (same trained weights, inference changed; means over the categories above):", "",
              "| variant | image AUROC | pixel AUROC | AUPRO@30% |", "|---|---|---|---|",
              f"| as trained (the preset's directions, fusion, comparator) | {fmt(_mean(rows, 'image_auroc'))} | "
              f"{fmt(_mean(rows, 'pixel_auroc'))} | {fmt(_mean(rows, 'aupro'))} |"]
    for name in ABLATIONS:
        have = [r for r in rows if name in r["ablations"]]  # rows from an older run may lack a variant
        if not have:
            continue  # not run: the preset already is this variant
        lines.append(f"| {name} | " + " | ".join(fmt(_mean(have, k, lambda r: r['ablations'][name]))
                                                  for k in METRICS) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, list[dict]]) -> str:
    cats = sorted({r["category"] for rows in results.values() for r in rows})
    lines = ["| preset | mean image AUROC | mean pixel AUROC | mean AUPRO@30% | "
             + " | ".join(f"{c} (img/pix)" for c in cats) + " | train s | predict ms/img | peak MiB |",
             "|---|---|---|---|" + "---|" * len(cats) + "---|---|---|"]
    for preset, rows in results.items():
        by = {r["category"]: r for r in rows}
        per = " | ".join(f"{fmt(by[c]['image_auroc'])} / {fmt(by[c]['pixel_auroc'])}" if c in by else "-" for c in cats)
        partial = f" ({len(rows)} of {len(cats)} categories)" if len(rows) < len(cats) else ""
        lines.append(f"| {preset}{partial} | **{fmt(_mean(rows, 'image_auroc'))}** | **{fmt(_mean(rows, 'pixel_auroc'))}** | "
                     f"{fmt(_mean(rows, 'aupro'))} | {per} | {_mean(rows, 'train_s'):.0f} | "
                     f"{_mean(rows, 'predict_ms'):.0f} | {max(r['peak_mib'] for r in rows)} |")
    for preset, rows in results.items():
        lines += ["", f"### preset `{preset}`", "", category_table(rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    from nextpatch.presets import DEFAULT_PRESET
    from suite_data import SETS, ensure_suite

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="suite", dest="which",
                        help="the benchmark suite, or the validation set (categories the suite does not use: "
                             "check a change there before it becomes a default; never published)")
    parser.add_argument("--data", help="data folder, built if missing (default: benchmarks/data/SET)")
    parser.add_argument("--out", help="output folder (default: benchmarks/out/SET)")
    parser.add_argument("--categories", nargs="*", help="subset of categories (default: all)")
    parser.add_argument("--presets", nargs="*", default=[DEFAULT_PRESET],
                        help=f"presets to compare, one table row each (default: {DEFAULT_PRESET})")
    parser.add_argument("--config", help="nextpatch config file applied on top of each preset")
    parser.add_argument("--steps", type=int, help="override training steps: N generator, the comparator's in the preset's ratio (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablation rows (saves ~1 min per category)")
    parser.add_argument("--publish", action="store_true",
                        help="also merge this run's preset rows into benchmarks/results/suite.json and suite.md "
                             "(other presets' published rows stay; then: python benchmarks/readme_table.py)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one category in this process
    args = parser.parse_args()
    if args.publish and args.which != "suite":
        parser.error("--publish is for the suite; the validation set's numbers are not published")
    out = Path(args.out or HERE / "out" / args.which)
    out.mkdir(parents=True, exist_ok=True)

    if args.one:
        row = run_category(Path(args.one), out, args.presets[0], args.config, args.steps, args.seed,
                           ablations=not args.no_ablations)
        (out / f"{Path(args.one).name}.json").write_text(json.dumps(row, indent=2))
        return

    data = Path(args.data or HERE / "data" / args.which)
    ensure_suite(data, args.which)
    categories = sorted(p for p in data.iterdir() if (p / "train" / "good").is_dir())
    if args.categories:
        unknown = sorted(set(args.categories) - {c.name for c in categories})
        if unknown:
            parser.error(f"no category {', '.join(unknown)} in {data} (it has: {', '.join(c.name for c in categories)})")
        categories = [c for c in categories if c.name in args.categories]
    results: dict[str, list[dict]] = {}
    for preset in args.presets:
        rows = results.setdefault(preset, [])
        for category in categories:
            cmd = [sys.executable, __file__, "--one", str(category), "--out", str(out / preset),
                   "--seed", str(args.seed), "--presets", preset]
            if args.config:
                cmd += ["--config", args.config]
            if args.steps:
                cmd += ["--steps", str(args.steps)]
            if args.no_ablations:
                cmd += ["--no-ablations"]
            print(f"== {preset} / {category.name}", flush=True)
            subprocess.run(cmd, check=True)
            row = json.loads((out / preset / f"{category.name}.json").read_text())
            print(f"   image AUROC {fmt(row['image_auroc'])} pixel AUROC {fmt(row['pixel_auroc'])} "
                  f"AUPRO {fmt(row['aupro'])} train {row['train_s']:.0f} s predict {row['predict_ms']:.0f} ms "
                  f"peak {row['peak_mib']} MiB", flush=True)
            rows.append(row)
            (out / "results.json").write_text(json.dumps(results, indent=2))  # partial results survive a crash
    table = markdown(results)
    (out / "results.md").write_text(table)
    print(table)
    if args.publish:
        publish(out)


def publish(out: Path) -> None:
    """Merge a finished run's rows (OUT/results.json) into benchmarks/results/suite.json / suite.md: the
    presets of this run replace their published rows, each row stamped with the run's date."""
    results = json.loads((out / "results.json").read_text())
    stamp = time.strftime("%Y-%m-%d", time.localtime((out / "results.json").stat().st_mtime))
    for rows in results.values():
        for r in rows:
            r["measured"] = f"benchmarks/suite.py run of {stamp}"
    target = HERE / "results" / "suite.json"
    published = json.loads(target.read_text()) if target.exists() else {}
    published.update(results)
    target.write_text(json.dumps(published, indent=2))
    (HERE / "results" / "suite.md").write_text(markdown(published))
    print(f"published {', '.join(results)} to {target} and suite.md")


if __name__ == "__main__":
    main()
