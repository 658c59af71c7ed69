"""ONNX export of a trained model, and a Detector whose network runs in onnxruntime (extra `nextpatch[export]`).

    nextpatch export MODEL_DIR --out model.onnx
    nextpatch predict MODEL_DIR IMAGES... --out OUT --backend onnx

The graph is the whole inference network, `PatternNet.forward` (generation, comparison, fusion,
smoothing, the expected image) followed by the normalisation by the threshold:

    image (N, 3, S, S) float32 in [0, 1]  ->  anomaly_map (N, S, S): map / threshold (1.0 = the threshold)
                                               expected_image (N, 3, S, S) in [0, 1]

with a dynamic batch dimension. The model's metadata (config, threshold, calibration, training summary,
the SHA-256 of the weights it came from) travels in the file's `metadata_props`, so the .onnx file alone
is enough to score images (`OnnxDetector.from_file`).

Precision: the graph is exported in float32. A comparator set to bfloat16 autocast
(`comparator_precision = "auto"` on a CPU with native bfloat16, or "bfloat16") does not export as
such; its float32 path is exported instead, so on such a CPU the ONNX maps agree with a float32 torch
run (to 1e-5 here), not with the bfloat16 one (which differs from float32 by about 1e-2).

Export goes through the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`); the dynamo one
needs `onnxscript`, which the extra does not install. One op needs help: `Tensor.index_add_` (the
expected image sums the predictions of each patch) exports as a ScatterElements that overwrites
repeated indices instead of adding them; `_index_add_symbolic` emits ScatterElements with
reduction="add" (opset >= 16). And the tracer bakes the example's batch size into some index
assignments (`dense[:, slot] = dist`), so the network is traced for one image and the file runs it in an
ONNX Loop over the batch (`batch_loop`): the batch is dynamic, whatever ops `PatternNet.forward` uses.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import Config
from .detector import Detector
from .errors import ModelFileError, NextpatchError

OPSET = 17  # onnxruntime >= 1.14 runs it; ScatterElements reduction="add" needs >= 16
ONNX_FORMAT = "nextpatch-onnx"
ONNX_NAME = "model.onnx"  # where `nextpatch export MODEL_DIR` writes by default, and --backend onnx looks
INSTALL_HINT = 'ONNX needs the optional extra: pip install "nextpatch[export]"'


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise NextpatchError(f"{module} is not installed; {INSTALL_HINT}") from None


class InferenceGraph(torch.nn.Module):
    """What is exported: the network's forward, its map divided by the threshold."""

    def __init__(self, net: torch.nn.Module, threshold: float):
        super().__init__()
        self.net = net
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        amap, expected = self.net(image)
        return amap / self.threshold, expected


def _index_add_symbolic(g, self, dim, index, other, alpha=None):
    """aten::index_add -> ScatterElements(reduction="add"): repeated indices are summed, as torch does."""
    from torch.onnx import symbolic_helper

    d = symbolic_helper._maybe_get_const(dim, "i")
    rank = other.type().dim()
    if not isinstance(d, int) or rank is None:
        return symbolic_helper._unimplemented("index_add", "unknown dim or rank", self)
    axes = g.op("Constant", value_t=torch.tensor([i for i in range(rank) if i != d], dtype=torch.long))
    idx = g.op("Expand", g.op("Unsqueeze", index, axes), g.op("Shape", other))
    return g.op("ScatterElements", self, idx, other, axis_i=d, reduction_s="add")


def batch_loop(single, size: int):
    """A graph traced for one image (1, 3, S, S) -> the same network over a batch: an ONNX Loop whose
    body is the single-image graph (weights stay outside it, read once), its outputs stacked."""
    import onnx
    from onnx import TensorProto, helper

    g1 = single.graph
    (inp,) = g1.input
    names = [o.name for o in g1.output]  # anomaly_map, expected_image
    body_nodes = [helper.make_node("Unsqueeze", ["i", "axes0"], ["i1"]),
                  helper.make_node("Add", ["i1", "one"], ["i2"]),
                  helper.make_node("Slice", ["image", "i1", "i2", "axes0"], ["image_1"]),
                  helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    for node in g1.node:
        node.input[:] = ["image_1" if x == inp.name else x for x in node.input]
        body_nodes.append(node)
    f32 = TensorProto.FLOAT
    body = helper.make_graph(
        body_nodes, "one_image",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info(names[0], f32, [1, size, size]),
         helper.make_tensor_value_info(names[1], f32, [1, 3, size, size])])
    nodes = [helper.make_node("Shape", ["image"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Loop", ["n", "true"], [f"{n}_stacked" for n in names], body=body),
             *[helper.make_node("Squeeze", [f"{n}_stacked", "axes1"], [n]) for n in names]]
    consts = [helper.make_tensor("zero", TensorProto.INT64, [], [0]), helper.make_tensor("one", TensorProto.INT64, [1], [1]),
              helper.make_tensor("axes0", TensorProto.INT64, [1], [0]), helper.make_tensor("axes1", TensorProto.INT64, [1], [1]),
              helper.make_tensor("true", TensorProto.BOOL, [], [True])]
    graph = helper.make_graph(
        nodes, "nextpatch", [helper.make_tensor_value_info("image", f32, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(names[0], f32, ["batch", size, size]),
         helper.make_tensor_value_info(names[1], f32, ["batch", 3, size, size])],
        initializer=consts + list(g1.initializer))
    model = helper.make_model(graph, opset_imports=single.opset_import, ir_version=single.ir_version)
    onnx.checker.check_model(model)
    return model


def float32_net(detector: Detector) -> torch.nn.Module:
    """A CPU float32 copy of the detector's network (bfloat16 autocast does not export)."""
    net = copy.deepcopy(detector._net()).cpu().eval()
    for module in net.modules():
        cfg = getattr(module, "cfg", None)
        if dataclasses.is_dataclass(cfg) and getattr(cfg, "comparator_precision", "float32") != "float32":
            module.cfg = dataclasses.replace(cfg, comparator_precision="float32")
    return net


def export_bytes(detector: Detector, *, weights_sha256: str = "", opset: int = OPSET) -> bytes:
    """The detector's inference graph as a serialised ONNX model, its metadata in `metadata_props`."""
    onnx = _require("onnx")
    if detector.threshold_ is None:
        raise NextpatchError("the detector is not fitted: call fit() or Detector.load() before exporting")
    from torch.onnx import register_custom_op_symbolic

    register_custom_op_symbolic("aten::index_add", _index_add_symbolic, opset)
    graph = InferenceGraph(float32_net(detector), detector.threshold_).eval()
    size = detector.config.model.image_size
    example = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic; the test checks the result
            torch.onnx.export(graph, (example,), buffer, input_names=["image"],
                              output_names=["anomaly_map", "expected_image"], opset_version=opset,
                              dynamo=False)
    except (torch.onnx.errors.OnnxExporterError, torch.onnx.errors.UnsupportedOperatorError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NextpatchError(f"this model's network does not export to ONNX opset {opset}: {first}") from None
    model = batch_loop(onnx.load_from_string(buffer.getvalue()), size)
    meta = {"format": ONNX_FORMAT, "nextpatch_version": __version__,
            "config": json.dumps(detector.config.to_dict()), "threshold": repr(float(detector.threshold_)),
            "calibration": json.dumps(detector.calibration_), "training": json.dumps(detector.training_),
            "weights_sha256": weights_sha256, "precision": "float32"}
    mask = detector._tiled_mask()
    if mask is not None:  # a tiled model's mask applies to stitched maps, outside the graph: it travels here
        meta["inspect_mask"] = encode_mask(mask)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = "nextpatch anomaly detector: image (N,3,S,S) in [0,1] -> anomaly_map (N,S,S) / threshold, expected_image"
    return model.SerializeToString()


def export_model(model_dir: str | Path, out: str | Path | None = None) -> Path:
    """Export the model directory `model_dir` to `out` (default MODEL_DIR/model.onnx). Returns the file."""
    from .model_io import sha256, weights_path

    model_dir = Path(model_dir)
    detector = Detector.load(model_dir, device="cpu")
    out = Path(out) if out is not None else model_dir / ONNX_NAME
    data = export_bytes(detector, weights_sha256=sha256(weights_path(model_dir)))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as exc:
        raise NextpatchError(f"{out}: cannot be written ({exc.strerror or exc}); choose another --out") from None
    return out


def encode_mask(mask: torch.Tensor) -> str:
    """An inspection mask (S, S) in [0, 1] -> base64 of its values as bytes (0-255), for the metadata."""
    return base64.b64encode((mask.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes()).decode("ascii")


def decode_mask(text: str, size: int) -> torch.Tensor:
    """The inverse of `encode_mask`: (size, size) float32 in [0, 1]."""
    data = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if data.size != size * size:
        raise ValueError(f"inspect_mask holds {data.size} values, not {size} x {size}")
    return torch.from_numpy(data.reshape(size, size).astype(np.float32) / 255.0)


class OnnxDetector(Detector):
    """A Detector whose network runs in onnxruntime: only `_forward` differs from the torch one, so
    everything around it (batching, scores, resizing to the input's size) is the same code."""

    def __init__(self, config: Config, session, *, source: str = ""):
        super().__init__(config)
        self.session_ = session
        self.source_ = source
        self.mask_: torch.Tensor | None = None  # a tiled model's inspection mask (metadata "inspect_mask")

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<memory>", threads: int = 0, device: str = "cpu") -> "OnnxDetector":
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
        # idle pool threads sleep instead of spinning: the image reader and the picture writer share
        # the cores with the network (spinning made whole-process predict 4.5x decode instead of 3.6x)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise ModelFileError(f"{source}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]}); "
                                 "export it again with `nextpatch export MODEL_DIR --out FILE.onnx`") from None
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT:
            raise ModelFileError(f"{source}: an ONNX file not written by `nextpatch export` (no nextpatch metadata)")
        try:
            config = Config.from_dict(json.loads(meta["config"]))
            detector = cls(config, session, source=source)
            detector.threshold_ = float(meta["threshold"])
            detector.calibration_ = json.loads(meta.get("calibration", "{}"))
            detector.training_ = json.loads(meta.get("training", "{}"))
            detector.mask_ = decode_mask(meta["inspect_mask"], config.model.image_size) if "inspect_mask" in meta else None
        except (KeyError, ValueError, TypeError, NextpatchError) as exc:
            raise ModelFileError(f"{source}: bad nextpatch metadata ({exc}); export it again") from None
        detector.weights_sha256_ = meta.get("weights_sha256", "")
        return detector

    @classmethod
    def from_file(cls, path: str | Path, **kw) -> "OnnxDetector":
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: ONNX file not found (write one with `nextpatch export MODEL_DIR --out {path}`)")
        return cls.from_bytes(path.read_bytes(), source=str(path), **kw)

    def _tiled_mask(self) -> torch.Tensor | None:
        return self.mask_

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        amap, expected = self.session_.run(["anomaly_map", "expected_image"], {"image": image})
        # the graph's map is normalised; the Detector's contract is the raw map (scores divide later)
        return torch.from_numpy(amap) * self.threshold_, torch.from_numpy(expected)

    def _net(self):
        raise NextpatchError(f"{self.source_ or 'this detector'} runs in onnxruntime and has no torch network; "
                             "load the model directory with Detector.load() to train, save or export it")

    def fit(self, *args, **kwargs):
        self._net()


def load_backend(model: str | Path, backend: str = "torch", device: str | None = None) -> Detector:
    """The detector that `nextpatch predict` (and `serve`) runs: `model` is a model directory or an
    exported .onnx file; `backend` "torch" or "onnx".

    With "onnx" and a model directory: MODEL_DIR/model.onnx when it was exported from these very weights,
    else the graph is exported in memory now (a few seconds; `nextpatch export MODEL_DIR` keeps it).
    """
    model = Path(model)
    if model.suffix == ".onnx" or model.is_file():
        if backend != "onnx":
            raise NextpatchError(f"{model}: an ONNX file runs with --backend onnx (or pass the model directory)")
        return OnnxDetector.from_file(model, device=device or "cpu")
    if backend == "torch":
        return Detector.load(model, device=device)
    if backend != "onnx":
        raise NextpatchError(f"unknown backend {backend!r} (use 'torch' or 'onnx')")
    _require("onnxruntime")
    from .model_io import read_model, sha256, weights_path

    stored = read_model(model)  # checks the directory (and the weights' checksum) first
    cached = model / ONNX_NAME
    if cached.is_file():
        detector = OnnxDetector.from_file(cached, device=device or "cpu")
        if detector.weights_sha256_ == stored.meta.get("weights_sha256"):
            return detector
    torch_detector = Detector(stored.config)
    torch_detector.net_, torch_detector.threshold_ = stored.net, stored.threshold
    torch_detector.calibration_, torch_detector.training_ = stored.calibration, stored.training
    data = export_bytes(torch_detector, weights_sha256=sha256(weights_path(model)))
    return OnnxDetector.from_bytes(data, source=str(model), device=device or "cpu")
