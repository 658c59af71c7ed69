"""How much of a suite result is the random draw: the suite run once per training seed, then per-category
mean, spread and worst case of image / pixel AUROC.

    python benchmarks/seeds.py --seeds 0 1 2 --publish   # the README's seed table (then benchmarks/readme_table.py)
    python benchmarks/seeds.py --seeds 0 1 2 --categories grass gravel pcb
    python benchmarks/seeds.py --config my_change.toml --out benchmarks/out/seeds_my_change   # a change, over seeds
    python benchmarks/seeds.py --set validation --config my_change.toml --out benchmarks/out/val_my_change  # and off the suite

The suite's test sets are small (25 good, 40 defective images per category), and training draws its
batches, triplets and synthetic defects at random, so one seed's AUROC moves by a few hundredths; a
change should beat that spread before it is kept. Each seed is one `benchmarks/suite.py` run without
ablations (its own subprocesses, rows in OUT/seed<N>/). A seed whose suite run finished with the same
categories, preset and config, and the same resolved settings (OUT/seed<N>/results.md and run.json), is read,
not run again: an interrupted run resumes; a changed default preset or config file runs again; `--rerun`
redoes it. Writes OUT/seeds.json and OUT/seeds.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("image_auroc", "pixel_auroc")


def summarize(runs: dict[int, list[dict]]) -> dict[str, dict]:
    """{seed: suite rows} -> {category: {metric: {"mean", "std", "min", "values"}}}, plus "mean" over categories."""
    by_cat: dict[str, dict[str, list[float]]] = {}
    for rows in runs.values():
        for r in rows:
            for m in METRICS:
                by_cat.setdefault(r["category"], {}).setdefault(m, []).append(r[m])
    per_seed_mean = {m: [statistics.mean(r[m] for r in rows) for rows in runs.values()] for m in METRICS}
    out = {}
    for cat, vals in [*sorted(by_cat.items()), ("mean", per_seed_mean)]:
        out[cat] = {m: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                        "min": min(v), "values": v} for m, v in vals.items()}
    return out


def markdown(summary: dict[str, dict], seeds: list[int]) -> str:
    lines = [f"Seeds {', '.join(map(str, seeds))}: mean +- standard deviation (worst seed)", "",
             "| category | image AUROC | pixel AUROC |", "|---|---|---|"]
    for cat, s in summary.items():
        cells = [f"{s[m]['mean']:.3f} +- {s[m]['std']:.3f} ({s[m]['min']:.3f})" for m in METRICS]
        name = f"**{cat}** (per-seed suite means)" if cat == "mean" else cat
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from suite_data import SETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--categories", nargs="*", help="subset of categories (default: all)")
    parser.add_argument("--preset", help="preset (default: the default preset)")
    parser.add_argument("--config", help="nextpatch config file applied on top of the preset")
    parser.add_argument("--set", choices=sorted(SETS), default="suite", dest="which",
                        help="run on the suite or on the validation set (benchmarks/suite_data.py); never published")
    parser.add_argument("--out", help="output folder (default: benchmarks/out/seeds, or seeds_validation)")
    parser.add_argument("--publish", action="store_true",
                        help="also copy seeds.md / seeds.json to benchmarks/results/ (then: python benchmarks/readme_table.py)")
    parser.add_argument("--rerun", action="store_true", help="run seeds whose results are already in OUT again")
    args = parser.parse_args()
    if args.publish and args.which != "suite":
        parser.error("--publish is for the suite; the validation set's numbers are not published")
    out = Path(args.out or HERE / "out" / ("seeds" if args.which == "suite" else f"seeds_{args.which}"))
    # what the seeds train, resolved: a folder run with another default preset (or an edited config file)
    # must not be taken for this one, even under the same names
    from nextpatch.presets import preset_config, resolve_preset

    settings = preset_config(resolve_preset(args.preset)[0], args.config).to_dict()
    runs: dict[int, list[dict]] = {}
    for seed in args.seeds:
        done = out / f"seed{seed}"
        setup = json.loads(json.dumps({"categories": args.categories, "preset": args.preset,  # as run.json reads back
                                       "config": args.config, "seed": seed, "settings": settings}))
        if args.which != "suite":  # the suite's run.json files keep their old form
            setup["set"] = args.which
        finished = (done / "results.md").exists() and (done / "run.json").exists()  # suite.py writes results.md last
        if finished and json.loads((done / "run.json").read_text()) == setup and not args.rerun:
            print(f"== seed {seed}: already in {done} (--rerun to redo it)", flush=True)
            runs[seed] = next(iter(json.loads((done / "results.json").read_text()).values()))
            continue
        (done / "results.md").unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / "suite.py"), "--seed", str(seed), "--no-ablations",
               "--out", str(done), "--set", args.which]
        if args.categories:
            cmd += ["--categories", *args.categories]
        if args.preset:
            cmd += ["--presets", args.preset]
        if args.config:
            cmd += ["--config", args.config]
        print(f"== seed {seed}", flush=True)
        done.mkdir(parents=True, exist_ok=True)
        (done / "run.json").write_text(json.dumps(setup))
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"seed {seed}: benchmarks/suite.py failed (its output is above); finished seeds are kept in {out}")
        runs[seed] = next(iter(json.loads((done / "results.json").read_text()).values()))
    summary = summarize(runs)
    (out / "seeds.json").write_text(json.dumps({"seeds": args.seeds, "config": args.config, "summary": summary}, indent=2))
    table = markdown(summary, args.seeds)
    (out / "seeds.md").write_text(table)
    if args.publish:
        for name in ("seeds.md", "seeds.json"):
            (HERE / "results" / name).write_text((out / name).read_text())
    print(table)


if __name__ == "__main__":
    main()
