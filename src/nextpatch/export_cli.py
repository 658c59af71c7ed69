"""`nextpatch export`: the verb's parser and command (onnx imports only when it runs); `verb_parser`,
the registration it shares with `nextpatch serve`."""
from __future__ import annotations

BACKENDS = ("torch", "onnx")  # what `predict --backend` and `serve --backend` run the network with


def verb_parser(sub, name: str, func, *, help: str, description: str, extra: str, many_models: bool = False):
    """Register verb `name` running `func`, for the verbs of an optional extra (`export`, `serve`).

    Adds the MODEL_DIR positional (one, or one or more with `many_models`) and ends the description with
    the extra's install line. Returns the subparser for the verb's own options."""
    p = sub.add_parser(name, help=help,
                       description=f"{description} Needs the optional extra: pip install \"nextpatch[{extra}]\".")
    if many_models:
        p.add_argument("models", nargs="+", metavar="MODEL_DIR", help="model directories written by `nextpatch train`")
    else:
        p.add_argument("model", metavar="MODEL_DIR", help="model directory written by `nextpatch train`")
    p.set_defaults(func=func)
    return p


def add_parser(sub) -> None:
    """Register `export` on the CLI's subparsers."""
    p = verb_parser(
        sub, "export", cmd_export, extra="export", help="export a trained model's whole inference network to ONNX",
        description="Write the model's inference network (generation, comparison, fusion, smoothing, "
                    "normalisation) as one ONNX graph: input 'image' (N, 3, S, S) float32 in [0, 1], outputs "
                    "'anomaly_map' (N, S, S; 1.0 = the threshold) and 'expected_image' (N, 3, S, S). The model's "
                    "config and threshold travel in the file's metadata. `nextpatch predict --backend onnx` and "
                    "`nextpatch serve --backend onnx` run it with onnxruntime.")
    p.add_argument("--out", metavar="FILE.onnx",
                   help="file to write (default MODEL_DIR/model.onnx, where --backend onnx looks first)")


def cmd_export(args) -> int:
    from .export import _require, export_model

    _require("onnx")
    out = export_model(args.model, args.out)
    print(f"wrote {out} ({out.stat().st_size / (1 << 20):.1f} MB); run it with "
          f"`nextpatch predict {args.model} IMAGES --out OUT --backend onnx`")
    return 0
