"""Tables of the real-data benchmark's results: per category and the set's mean, per variant and seed.

    python benchmarks/real_table.py OUT [OUT ...]          # folders written by benchmarks/real.py --out OUT

Reads every OUT/<set>/<category>_s<seed>.json and prints, per set, one markdown table whose cells are
image / pixel AUROC (elpv has image labels only, so its pixel cell is "-" and the pixel mean is over the
other categories), with a mean row per seed and, where a variant ran on several seeds, their mean.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def load(folders: list[Path]) -> dict[str, list[dict]]:
    """{set: [result, ...]} from real.py's per-category JSON files."""
    out: dict[str, list[dict]] = defaultdict(list)
    for folder in folders:
        for path in sorted(folder.glob("*/*_s*.json")):
            out[path.parent.name].append(json.loads(path.read_text()))
    return out


def cell(image: float | None, pixel: float | None) -> str:
    if image is None:
        return "-"
    return f"{image:.3f} / " + ("-" if pixel is None else f"{pixel:.3f}")


def mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def set_table(results: list[dict]) -> str:
    names = list(dict.fromkeys(n for r in results for n in r["variants"]))
    seeds = sorted({r["seed"] for r in results})
    cats = list(dict.fromkeys(r["category"] for r in results))
    by = {(r["category"], r["seed"]): r for r in results}
    lines = ["| category | seed | " + " | ".join(names) + " |", "|---|---" + "|---" * len(names) + "|"]
    for c in cats:
        for s in seeds:
            r = by.get((c, s))
            if r is None:
                continue
            v = r["variants"]
            lines.append(f"| {c} | {s} | " + " | ".join(
                cell(v[n]["image_auroc"], v[n]["pixel_auroc"]) if n in v else "-" for n in names) + " |")

    def mean_row(label: str, chosen: list[dict]) -> str:
        cells = []
        for n in names:
            rows = [r["variants"][n] for r in chosen if n in r["variants"]]
            complete = len(rows) == len(chosen) and rows
            cells.append(f"**{cell(mean([x['image_auroc'] for x in rows]), mean([x['pixel_auroc'] for x in rows]))}**"
                         if complete else "-")
        return f"| mean ({len({r['category'] for r in chosen})} categories) | {label} | " + " | ".join(cells) + " |"

    for s in seeds:
        lines.append(mean_row(str(s), [r for r in results if r["seed"] == s]))
    if len(seeds) > 1:
        lines.append(mean_row("all", results))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="--out folders of benchmarks/real.py")
    a = ap.parse_args()
    for name, results in sorted(load(a.folders).items()):
        print(f"\n**{name}**\n")
        print(set_table(results))


if __name__ == "__main__":
    main()
