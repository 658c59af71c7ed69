"""Model directories: weights in safetensors, everything else in JSON. Nothing is unpickled.

    MODEL_DIR/
      model.safetensors   the PatternNet state_dict (version 1; `nextpatch update` writes model-vN.safetensors)
      nextpatch.json      format version, package version, model version, config, threshold and
                          calibration statistics, training summary (updates included), the weights
                          file's name and SHA-256, and the previous version's metadata

Versions: `save_detector(..., keep_previous=True)` (what `nextpatch update` does) writes the new weights
under a new name, then replaces nextpatch.json in one atomic rename; a crash at any point leaves the old
or the new version whole. The previous version's metadata rides inside the new one, its weights file is
kept, so `rollback` restores it exactly; older weights files are deleted.

A model written by another major format version, a weights file whose hash does not match (tampered
or truncated), or one whose tensors do not fit the config fails with one line saying so.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .config import Config
from .errors import ConfigError, ModelFileError
from .model.torch_model import PatternNet

FORMAT = "nextpatch-model"
# Major changes break loading; files of an older minor version stay readable (a config key a file lacks
# takes its default). 1.1: model.comparator_precision (1.0 files load as "float32", as they were trained).
# 1.2: model.color_weight with the fitted `color_scale` tensor, fusion "max" (older files: no colour term).
# 1.3: model.comparator_layers and model.head_layers (older files: the last comparator block's features,
# read by every head, as they were trained). Both were removed on 2026-12-06: files holding them at their
# defaults load (`config.REMOVED`), others are refused.
# 1.4: train.texture_steps and train.texture_share (training only; older files load with the rule off).
# 1.5: model.memory_layers / memory_weight / memory_size with the fitted `memory_bank` and `memory_scale`
# tensors (older files load without a memory of normal, as they were trained).
# 1.6: accepted_bank / accepted_radius / inspect_mask tensors, train.mask, version / weights_file /
# previous (older files: nothing accepted, everything inspected, version 1 in model.safetensors).
# 1.7: model.tile_resolution (older files: 0, each image scored whole at S x S).
FORMAT_VERSION = (1, 7)
WEIGHTS, META = "model.safetensors", "nextpatch.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a temporary file renamed over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _drop_unreferenced_weights(root: Path, meta: dict) -> None:
    """Delete weights files that neither the current version nor its previous one names."""
    keep = {meta.get("weights_file", WEIGHTS), (meta.get("previous") or {}).get("weights_file", WEIGHTS)}
    for f in root.glob("model*.safetensors"):
        if f.name not in keep:
            f.unlink(missing_ok=True)


def save_detector(detector, path: str | Path, *, keep_previous: bool = False) -> Path:
    """Write `detector` (a fitted `nextpatch.detector.Detector`) to the directory `path` (created if
    needed). Returns the directory.

    keep_previous: the directory's current model becomes the previous version (see the module doc);
    otherwise the directory holds version 1 alone (a fresh training).
    """
    net = detector._net()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    previous = None
    if keep_previous and (out / META).is_file():
        previous = {k: v for k, v in read_model(out).meta.items() if k != "previous"}
    version = int(previous.get("version", 1)) + 1 if previous else 1
    name = f"model-v{version}.safetensors" if previous else WEIGHTS
    weights = out / name
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"format": FORMAT})
    tmp.replace(weights)
    meta = {
        "format": FORMAT,
        "format_version": ".".join(map(str, FORMAT_VERSION)),
        "nextpatch_version": __version__,
        "version": version,
        "config": detector.config.to_dict(),
        "threshold": detector.threshold_,
        "calibration": detector.calibration_,
        "training": detector.training_,
        "weights_file": name,
        "weights_sha256": sha256(weights),
        "previous": previous,
    }
    _write_json(out / META, meta)
    _drop_unreferenced_weights(out, meta)
    return out


def rollback(path: str | Path) -> dict:
    """Restore the previous version of the model directory `path`; returns the restored metadata."""
    root = Path(path)
    meta = read_model(root).meta
    previous = meta.get("previous")
    if not previous:
        raise ModelFileError(f"{root}: version {meta.get('version', 1)} has no previous version to roll back to")
    restored = dict(previous, version=int(previous.get("version", 1)), previous=None,
                    rolled_back_from=int(meta.get("version", 1)))
    weights = root / restored.get("weights_file", WEIGHTS)
    if not weights.is_file() or sha256(weights) != restored.get("weights_sha256"):
        raise ModelFileError(f"{weights}: the previous version's weights are missing or changed; cannot roll back")
    _write_json(root / META, restored)
    _drop_unreferenced_weights(root, restored)
    return restored


def weights_path(path: str | Path) -> Path:
    """The weights file the model directory's current version reads."""
    root = Path(path)
    try:
        name = json.loads((root / META).read_text()).get("weights_file", WEIGHTS)
    except (OSError, ValueError, AttributeError):
        name = WEIGHTS
    return root / _safe_name(name, root)


def _safe_name(name, root: Path) -> str:
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise ModelFileError(f"{root / META}: bad weights_file {name!r} (a file name in the model directory)")
    return name


@dataclass
class StoredModel:
    """What a model directory holds, read and checked: the network (on the CPU, eval mode) and its metadata.
    `Detector.load` builds a Detector from it; this module does not import the Detector (no import circle)."""

    config: Config
    net: PatternNet
    threshold: float
    calibration: dict
    training: dict
    meta: dict


def read_model(path: str | Path) -> StoredModel:
    """Read and check a model directory written by `save_detector`."""
    root = Path(path)
    if not root.is_dir():
        raise ModelFileError(f"{root}: model directory not found (train one with `nextpatch train`)")
    meta_path = root / META
    if not meta_path.is_file():
        raise ModelFileError(f"{meta_path}: missing; {root} is not a complete nextpatch model directory")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{meta_path}: not valid JSON (the file is damaged; retrain or restore it)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path}: not a nextpatch model file")
    weights = root / _safe_name(meta.get("weights_file", WEIGHTS), root)
    if not weights.is_file():
        raise ModelFileError(f"{weights}: missing; {root} is not a complete nextpatch model directory")
    version = str(meta.get("format_version", "0"))
    major = version.split(".")[0]
    if major != str(FORMAT_VERSION[0]):
        raise ModelFileError(
            f"{root}: model format {version} (written by nextpatch {meta.get('nextpatch_version', '?')}) cannot be read "
            f"by nextpatch {__version__}, which reads format {FORMAT_VERSION[0]}.x; retrain with this version")
    if meta.get("weights_sha256") != sha256(weights):
        raise ModelFileError(f"{weights}: contents do not match the checksum in {META} "
                             "(file truncated or modified); restore it or retrain")
    try:
        config = Config.from_dict(meta["config"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{meta_path}: bad config: {exc}") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights}: cannot be read as safetensors: {exc}") from None
    net = PatternNet(config.model)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise ModelFileError(f"{weights}: tensors do not fit the model config: {' '.join(first)}") from None
    return StoredModel(config=config, net=net.eval(), threshold=float(meta["threshold"]),
                       calibration=meta.get("calibration", {}), training=meta.get("training", {}), meta=meta)
