"""`nextpatch export`: the verb's parser and command (onnx imports only when it runs)."""
from __future__ import annotations

BACKENDS = ("torch", "onnx")  # what `predict --backend` and `serve --backend` run the network with


def add_parser(sub) -> None:
    """Register `export` on the CLI's subparsers."""
    p = sub.add_parser(
        "export", help="export a trained model's whole inference network to ONNX",
        description="Write the model's inference network (generation, comparison, fusion, smoothing, "
                    "normalisation) as one ONNX graph: input 'image' (N, 3, S, S) float32 in [0, 1], outputs "
                    "'anomaly_map' (N, S, S; 1.0 = the threshold) and 'expected_image' (N, 3, S, S). The model's "
                    "config and threshold travel in the file's metadata. `nextpatch predict --backend onnx` and "
                    "`nextpatch serve --backend onnx` run it with onnxruntime. Needs the optional extra: "
                    "pip install \"nextpatch[export]\".")
    p.add_argument("model", metavar="MODEL_DIR", help="model directory written by `nextpatch train`")
    p.add_argument("--out", metavar="FILE.onnx",
                   help="file to write (default MODEL_DIR/model.onnx, where --backend onnx looks first)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .export import _require, export_model

    _require("onnx")
    out = export_model(args.model, args.out)
    print(f"wrote {out} ({out.stat().st_size / (1 << 20):.1f} MB); run it with "
          f"`nextpatch predict {args.model} IMAGES --out OUT --backend onnx`")
    return 0
