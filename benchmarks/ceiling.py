"""What the best of everything we have measured would reach on the suite: a ceiling for our bars.

For each suite category, take the best image AUROC (and, separately, the best pixel AUROC) of *any*
published row: every nextpatch preset (benchmarks/results/suite.json), every peer of the comparison
(compare.json: anomalib's models, the feature-kNN, the nextpatch default of that run) and every
kNN baseline variant (knn.json). The mean of those per-category bests is what an oracle would get
that picks, after seeing the test labels, the best measured method separately for every category
and for every metric. It is generous on purpose (single runs, the best seed of whatever ran, a
different method per category): if even it stays under a bar, no method we can run here reaches it.

    python benchmarks/ceiling.py            # prints the table, writes benchmarks/results/ceiling.md / .json
    python benchmarks/ceiling.py --extra benchmarks/out/seeds*/seeds.json   # also unpublished explorations

`--extra` adds the per-seed values of `benchmarks/seeds.py` runs (their seeds.json: one row per seed
and category), e.g. the option configs tried on the way, which are not in benchmarks/results/.
Rows without a value for a metric (a peer with no anomaly map) do not compete for it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("image_auroc", "pixel_auroc")
BARS = {"issue 2": (0.97, 0.95), "issue 3": (0.985, 0.97)}


def seed_rows(path: Path) -> list[tuple[str, dict]]:
    """(name, row) per seed and category of a `benchmarks/seeds.py` seeds.json."""
    data = json.loads(path.read_text())
    rows = []
    for cat, metrics in data["summary"].items():
        if cat == "mean":
            continue
        for i, seed in enumerate(data["seeds"]):
            row = {"category": cat}
            for m in METRICS:
                if m in metrics:
                    row[m] = metrics[m]["values"][i]
            rows.append((f"{path.parent.name}/seed{seed}", row))
    return rows


def measured_rows(extra: list[Path] = ()) -> list[tuple[str, dict]]:
    """(method name, row) for every published per-category row, and those of the `extra` seeds.json."""
    rows: list[tuple[str, dict]] = []
    for path in extra:
        rows += seed_rows(path)
    suite = RESULTS / "suite.json"
    if suite.exists():
        for preset, preset_rows in json.loads(suite.read_text()).items():
            rows += [(f"nextpatch {preset}", r) for r in preset_rows]
    compare = RESULTS / "compare.json"
    if compare.exists():
        for method in json.loads(compare.read_text())["methods"]:
            name = method["key"] if method["key"] != "nextpatch" else "nextpatch (compare run)"
            rows += [(name, r) for r in method["rows"]]
    knn = RESULTS / "knn.json"
    if knn.exists():
        for r in json.loads(knn.read_text()):
            rows.append((f"kNN {r.get('mode')} depth {r.get('depth')} coreset {r.get('coreset')}", r))
    return rows


def ceiling(rows: list[tuple[str, dict]]) -> dict:
    """{"categories": {cat: {metric: [value, method]}}, "mean": {metric: value}, "runs": n}.

    Only the suite's categories count (a validation-set seeds.json passed as extra adds nothing)."""
    from suite_data import PHOTOS, PROCEDURAL

    best: dict[str, dict[str, list]] = {}
    for name, row in rows:
        if row["category"] not in PROCEDURAL + PHOTOS:
            continue
        for metric in METRICS:
            value = row.get(metric)
            if value is None:
                continue
            slot = best.setdefault(row["category"], {})
            if metric not in slot or value > slot[metric][0]:
                slot[metric] = [float(value), name]
    cats = sorted(best)
    mean = {m: sum(best[c][m][0] for c in cats) / len(cats) for m in METRICS if all(m in best[c] for c in cats)}
    return {"categories": {c: best[c] for c in cats}, "mean": mean, "runs": len({n for n, _ in rows})}


def markdown(result: dict) -> str:
    lines = [f"Best value per category over {result['runs']} measured runs of methods, presets and configs "
             f"(`{result['command']}`)", "",
             "| category | best image AUROC (by) | best pixel AUROC (by) |", "|---|---|---|"]
    for cat, slot in result["categories"].items():
        cells = [f"{slot[m][0]:.3f} ({slot[m][1]})" if m in slot else "n/a" for m in METRICS]
        lines.append(f"| {cat} | {cells[0]} | {cells[1]} |")
    mean = result["mean"]
    lines.append(f"| **mean of the bests** | **{mean.get('image_auroc', float('nan')):.3f}** | "
                 f"**{mean.get('pixel_auroc', float('nan')):.3f}** |")
    lines.append("")
    for issue, (img, pix) in BARS.items():
        verdict = [f"image {mean['image_auroc']:.3f} {'>=' if mean['image_auroc'] >= img else '<'} {img}",
                   f"pixel {mean['pixel_auroc']:.3f} {'>=' if mean['pixel_auroc'] >= pix else '<'} {pix}"]
        lines.append(f"- against {issue}'s bar: {', '.join(verdict)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--extra", nargs="*", type=Path, default=[],
                    help="seeds.json files of benchmarks/seeds.py runs to include (unpublished explorations)")
    args = ap.parse_args(argv)
    for path in args.extra:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read it as JSON ({e})")
            return 1
        if not isinstance(data, dict) or "summary" not in data or "seeds" not in data:
            print(f"{path}: not a seeds.json of benchmarks/seeds.py (no 'seeds' and 'summary')")
            return 1
    result = ceiling(measured_rows(args.extra))
    if not result["categories"]:
        print("no published results in benchmarks/results/")
        return 1
    result["command"] = " ".join(["python benchmarks/ceiling.py"] + (["--extra"] + [str(p) for p in args.extra] if args.extra else []))
    text = markdown(result)
    (RESULTS / "ceiling.md").write_text(text)
    (RESULTS / "ceiling.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
