"""Image AUROC per defect kind, from the scores a suite run wrote: where the misses are.

    python benchmarks/per_kind.py                                    # the last compare run's nextpatch rows
    python benchmarks/per_kind.py benchmarks/out/suite/frozen-dinov2  # any suite output folder

Reads CATEGORY/scores.jsonl (one line per test image: defect_type, score) under the folder; each kind's
AUROC is its defective images against all good test images of the category. Prints a Markdown table;
with --out also writes it there.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nextpatch.metrics import image_auroc

HERE = Path(__file__).resolve().parent


def per_kind(folder: Path) -> dict[str, dict[str, float]]:
    """{category: {defect kind: image AUROC}} for every CATEGORY/scores.jsonl under `folder`."""
    out = {}
    for scores in sorted(folder.glob("*/scores.jsonl")):
        rows = [json.loads(line) for line in scores.read_text().splitlines() if line.strip()]
        good = [r["score"] for r in rows if r["label"] == 0]
        kinds = sorted({r["defect_type"] for r in rows if r["label"] == 1})
        out[scores.parent.name] = {
            kind: image_auroc([0] * len(good) + [1] * len(bad), good + bad)
            for kind in kinds for bad in [[r["score"] for r in rows if r["defect_type"] == kind]]}
    return out


def markdown(table: dict[str, dict[str, float]]) -> str:
    kinds = sorted({k for row in table.values() for k in row})
    lines = ["| category | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for cat, row in table.items():
        lines.append(f"| {cat} | " + " | ".join(f"{row[k]:.2f}" if k in row else "-" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default=str(HERE / "out" / "compare" / "nextpatch" / "frozen-dinov2"))
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    table = per_kind(Path(args.folder))
    if not table:
        raise SystemExit(f"{args.folder}: no CATEGORY/scores.jsonl found (run benchmarks/suite.py first)")
    text = markdown(table)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
