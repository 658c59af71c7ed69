"""The public API: `Detector(config).fit(images)`, `.predict(image)`, `.save(dir)`, `Detector.load(dir)`.

Modelled on scikit-learn's IsolationForest: `fit` returns self, `score_samples` gives raw scores, and
the threshold is set at fit time from held-out normal images; fitted attributes end in `_`.

Scores are normalised so that 1.0 is the threshold: `score = raw / threshold_`. Anomaly maps are
divided by the same number, so a map value above 1 is "as abnormal as an image at the threshold".
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .data.io import expand_inputs, read_image
from .data.layouts import train_images
from .errors import DataError, ImageError, NextpatchError
from .model.torch_model import PatternNet
from .tiling import apply_mask, input_scale, scale_warning, split_tiles, tiles_of, to_working_input
from .train import train

log = logging.getLogger("nextpatch")

ImageLike = str | Path | np.ndarray


@dataclass
class Prediction:
    """What the detector says about one image.

    The score is computed at the working resolution (S x S, or the stitched tiles' h' x w' with
    `model.tile_resolution`; `nextpatch.tiling`); `anomaly_map` and `expected_image` are that result
    resized once to the input image's own size (H, W), on first access: a caller that only reads the
    score (most images of a production run) pays no full-size resize.
    """

    score: float                 # normalised: 1.0 = the threshold
    is_anomalous: bool
    raw_score: float             # before normalisation
    shape: tuple[int, int]       # (H, W) of the input image
    small_map: torch.Tensor = field(repr=False)       # (h', w') float32, same normalisation as `score`
    small_expected: torch.Tensor = field(repr=False)  # (3, h', w') float32 in [0, 1]

    @property
    def input_scale(self) -> float:
        """Working pixels per image pixel (`nextpatch.tiling.input_scale`): the scale the network saw."""
        return input_scale(self.shape, tuple(self.small_map.shape[-2:]))

    @cached_property
    def anomaly_map(self) -> np.ndarray:
        """(H, W) float32, same normalisation as `score` (bilinear from the working resolution)."""
        return self.map_at(self.shape)

    @cached_property
    def expected_image(self) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1]: what the generator expected to see."""
        return self.expected_at(self.shape)

    def map_at(self, shape: tuple[int, int]) -> np.ndarray:
        """The map at another size (h, w), e.g. a picture's smaller one; not cached."""
        return _resize(self.small_map[None], shape)[0].numpy().astype(np.float32, copy=False)

    def expected_at(self, shape: tuple[int, int]) -> np.ndarray:
        """The expected image at another size (h, w, 3); not cached."""
        return _resize(self.small_expected, shape).clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32)


def _resize(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (C, H, W), bilinear; unchanged when already that size."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x[None], size=tuple(shape), mode="bilinear", align_corners=False)[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NextpatchError(f"unknown device {name!r} (use 'auto', 'cpu' or 'cuda')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NextpatchError(f"device {name!r} asked for, but this torch has no CUDA device; use --device cpu")
    return device


class Detector:
    """Anomaly detector: pattern generation + Siamese comparison + bi-directional inference."""

    def __init__(self, config: Config | None = None):
        """`config=None` takes the default preset (see `nextpatch.presets`), or its fallback when the
        optional extra it needs is not installed."""
        if config is None:
            from .presets import preset_config, resolve_preset

            name, notice = resolve_preset(None)
            if notice:
                log.warning(notice)
            config = preset_config(name)
        self.config = config
        self.config.model.validate()
        self.net_: PatternNet | None = None
        self.threshold_: float | None = None
        self.calibration_: dict = {}
        self.training_: dict = {}
        self.version_: int = 1

    # --------------------------------------------------------------------------------- fitting
    def fit(self, images: ImageLike | Iterable[ImageLike], *,
            progress: Callable[[str, int, int, dict], None] | None = None) -> "Detector":
        """Train on normal images: a folder (plain or MVTec category), image paths, or (H, W, 3) arrays.

        `progress(stage, step, total, losses)` is called after each training step (see `train.train`).

        Part of the images (`train.calibration_fraction`) is held out to set the threshold.
        """
        tc = self.config.train
        inputs, scales = self._read_inputs(images, progress)
        min_images = tc.min_calibration_images + 2
        if len(inputs) < min_images:
            raise DataError(f"training needs at least {min_images} good images, got {len(inputs)}")
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        device = resolve_device(tc.device)
        perm = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(tc.seed)).tolist()
        n_cal = max(tc.min_calibration_images, int(round(tc.calibration_fraction * len(inputs))))
        # images are held out whole (their score is the stitched map's); the networks learn from tiles
        calibration = [inputs[i].float() / 255.0 for i in perm[:n_cal]]
        training = self._tiles([inputs[i] for i in perm[n_cal:]])

        torch.manual_seed(tc.seed)
        net = PatternNet(self.config.model)
        if tc.init_checkpoint:
            from .model.weights import init_encoders

            log.info("initialised from %s", init_encoders(net, tc.init_checkpoint, parts=tc.init_parts))
        self.net_ = net.to(device)
        if tc.mask:  # before training's summary and calibration: the threshold is set on masked maps
            share = self.set_mask(tc.mask)
        self.training_ = train(self.net_, training, tc, progress=progress)
        self.training_["images"] = len(inputs) - n_cal
        self.training_["input_scale"] = [round(min(scales), 4), round(max(scales), 4)]  # `scale_warning`
        if len(training) != len(inputs) - n_cal:
            self.training_["tiles"] = len(training)
        if self.config.model.memory_layers:
            if progress is not None:
                progress("memory of normal", 0, 1, {})
            self.training_["memory_bank"] = self.net_.fit_memory(training, seed=tc.seed)
        held_out = self._tiles(calibration)
        # the terms' scales before the threshold, which depends on them; colour first (the memory's
        # scale is measured against the whole comparison, colour term included)
        scales = {"color_scale": self.net_.fit_color_scale(held_out), "memory_scale": self.net_.fit_memory_scale(held_out)}
        self.calibrate(calibration)
        if self.config.model.color_weight > 0:
            self.calibration_["color_scale"] = scales["color_scale"]
        if self.config.model.memory_layers:
            self.calibration_["memory_scale"] = scales["memory_scale"]
        if tc.mask:
            self.calibration_["mask"] = {"file": str(tc.mask), "inspected": round(share, 4)}
        return self

    def update(self, images: ImageLike | Iterable[ImageLike], *,
               progress: Callable[[str, int, int, dict], None] | None = None) -> "Detector":
        """Absorb new good images without retraining: their tokens join the accepted normals
        (`nextpatch.model.accepted`), so they and their like pass; the threshold is kept.

        Records what was added in `training_["updates"]`. Returns self.
        """
        if self.threshold_ is None:
            raise NextpatchError("the detector is not fitted: call fit() or Detector.load() before update()")
        start = time.perf_counter()
        inputs, _ = self._read_inputs(images, progress)
        if not inputs:
            raise DataError("update() got no readable good image")
        tiles, layouts = tiles_of(inputs, self.config.model.image_size)
        info = self._net().fit_accepted(tiles, seed=self.config.train.seed, groups=[len(lay) for lay in layouts])
        info.update({"images": len(inputs), "seconds": round(time.perf_counter() - start, 2),
                     "when": time.strftime("%Y-%m-%d %H:%M:%S")})
        self.training_.setdefault("updates", []).append(info)
        return self

    def set_mask(self, mask: np.ndarray | str | Path) -> float:
        """The inspection mask: (H, W) values in [0, 1] or an image file, white = inspect, any size
        (resized to the image). Pixels outside never raise the map or the score. Returns the inspected share."""
        if isinstance(mask, (str, Path)):
            mask = read_image(mask).mean(axis=2)
        mask = np.asarray(mask, dtype=np.float32)
        if mask.ndim != 2:
            raise DataError(f"an inspection mask must be (H, W), got shape {mask.shape}")
        share = self._net().set_mask(torch.from_numpy(mask))
        if share <= 0:
            raise DataError("the inspection mask is black everywhere: nothing would be inspected (white = inspect)")
        return share

    def calibrate(self, images: Sequence[torch.Tensor]) -> "Detector":
        """Set the threshold from held-out normal images: working inputs [(3, h, w)] in [0, 1] (or (M, 3, S, S))."""
        raw = self._raw_scores(images)
        tc = self.config.train
        mean, std = float(raw.mean()), float(raw.std()) if len(raw) > 1 else 0.0
        if tc.false_reject_rate is not None:
            threshold = float(np.quantile(raw, 1.0 - tc.false_reject_rate))
        else:
            threshold = mean + tc.threshold_sigma * max(std, 0.02 * mean)
        self.threshold_ = max(threshold, 1e-8)
        self.calibration_ = {"images": int(len(raw)), "mean": mean, "std": std, "max": float(raw.max()),
                             "median": float(np.median(raw)), "share_above": float((raw > self.threshold_).mean()),
                             "threshold": self.threshold_, "rule": (f"quantile {1 - tc.false_reject_rate}"
                             if tc.false_reject_rate is not None else f"mean + {tc.threshold_sigma} std")}
        return self

    # ------------------------------------------------------------------------------ inference
    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self._net()
        device = next(net.parameters()).device
        amap, expected = net(batch.to(device))
        return amap.cpu(), expected.cpu()

    def _maps(self, inputs: Sequence[torch.Tensor], batch_size: int = 8) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Working inputs [(3, h, w)] in [0, 1] -> raw anomaly maps [(h, w)] and expected images [(3, h, w)]:
        the network on every tile (`batch_size` tiles at a time), stitched back per input."""
        tiles, layouts = tiles_of(list(inputs), self.config.model.image_size)
        outs = [self._forward(tiles[i:i + batch_size]) for i in range(0, len(tiles), batch_size)]
        amaps, expected = torch.cat([a for a, _ in outs]), torch.cat([e for _, e in outs])
        mask = self._tiled_mask()
        return ([apply_mask(lay.stitch(m), mask) for lay, m in zip(layouts, split_tiles(amaps, layouts))],
                [lay.stitch(e) for lay, e in zip(layouts, split_tiles(expected, layouts))])

    def _raw_scores(self, images: Sequence[torch.Tensor], batch_size: int = 8) -> np.ndarray:
        return torch.stack([self._image_score(m) for m in self._maps(images, batch_size)[0]]).numpy()

    def _image_score(self, amap: torch.Tensor) -> torch.Tensor:
        """One raw anomaly map (h, w) -> the image's raw score: its max, or the mean of its top fraction."""
        flat = amap.flatten()
        topk = self.config.model.score_topk
        if topk <= 0:
            return flat.amax()
        return flat.topk(max(1, int(topk * flat.numel()))).values.mean()

    def score_samples(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Raw (unnormalised) anomaly scores, higher = more abnormal."""
        return np.array([p.raw_score for p in self.predict_batch(images)])

    def predict(self, image: ImageLike) -> Prediction:
        """Score one image (path or (H, W, 3) float array in [0, 1])."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageLike], batch_size: int = 8) -> list[Prediction]:
        """Score several images; each result is at its own image's size."""
        out: list[Prediction] = []
        for i in range(0, len(images), batch_size):
            arrays = [read_image(x) if isinstance(x, (str, Path)) else _check_array(x) for x in images[i:i + batch_size]]
            out += self.predict_inputs([self.model_input(a) for a in arrays], [a.shape[:2] for a in arrays])
        return out

    def model_input(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) float [0, 1] -> the working input (3, h', w'): (3, S, S), or the size its tiles cover."""
        m = self.config.model
        return to_working_input(image, m.image_size, m.tile_resolution)

    def predict_inputs(self, inputs: Sequence[torch.Tensor], shapes: Sequence[tuple[int, int]]) -> list[Prediction]:
        """Score working inputs [(3, h', w')] in [0, 1] (see `model_input`) of images of sizes `shapes` (N x (H, W)).

        Scores and normalisation happen at the working resolution; each Prediction resizes its map to
        (H, W) only when it is read.
        """
        if self.threshold_ is None:
            raise NextpatchError("the detector is not fitted: call fit() or Detector.load()")
        amaps, expected = self._maps(inputs)
        out = []
        for shape, m, e in zip(shapes, amaps, expected):
            r = float(self._image_score(m))
            score = r / self.threshold_
            out.append(Prediction(score=score, is_anomalous=bool(score > 1.0), raw_score=r, shape=tuple(shape),
                                  small_map=m / self.threshold_, small_expected=e))
        return out

    def scale_warning(self, prediction: Prediction) -> str | None:
        """A line when `prediction`'s image was seen at a scale the training images were not
        (`nextpatch.tiling.scale_warning`); None when it was, or for a model that did not record its scales."""
        return scale_warning(self.training_.get("input_scale"), prediction.input_scale, prediction.shape)

    def predict_stream(self, paths: Iterable[Path], batch_size: int = 8, readers: int = 1
                       ) -> Iterator[tuple[Path, Prediction | ImageError, np.ndarray | None]]:
        """Score image files as they are read: yields (path, Prediction or the ImageError, image (H, W, 3) or None),
        in the order given.

        `readers` threads decode and resize ahead of the network, one batch ahead, so memory is bounded by
        the batch size (about 2 batches of decoded images), not by the number of files (`paths` may be a
        generator).
        """
        def load(path: Path):
            try:
                image = read_image(path)
            except ImageError as exc:
                return path, exc, None, None
            return path, None, image, self.model_input(image)

        def scored(batch: list) -> list:
            if not batch:
                return []
            preds = self.predict_inputs([x for _, _, x in batch], [image.shape[:2] for _, image, _ in batch])
            return [(path, p, image) for (path, image, _), p in zip(batch, preds)]

        batch: list = []
        for path, error, image, x in prefetch(load, paths, ahead=batch_size, workers=readers):
            if error is not None:  # the images before it first, so results stay in order
                yield from scored(batch)
                batch = []
                yield path, error, None
                continue
            batch.append((path, image, x))
            if len(batch) == batch_size:
                yield from scored(batch)
                batch = []
        yield from scored(batch)

    # ------------------------------------------------------------------------------- plumbing
    def _net(self) -> PatternNet:
        if self.net_ is None:
            raise NextpatchError("the detector is not fitted: call fit() or Detector.load()")
        return self.net_

    def _tiled_mask(self) -> torch.Tensor | None:
        """The inspection mask (S, S) that `_maps` applies to stitched maps: only a tiled model's, and
        only when one is set (an untiled network applies its own, inside the exported graph)."""
        if self.config.model.tile_resolution <= 0:
            return None
        mask = self._net().inspect_mask.detach().cpu()
        return None if bool((mask >= 1).all()) else mask

    def _tiles(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Working inputs [(3, h, w)] -> all their tiles (K, 3, S, S), same dtype."""
        return tiles_of(list(inputs), self.config.model.image_size)[0]

    def _read_inputs(self, images: ImageLike | Iterable[ImageLike],
                     progress: Callable[[str, int, int, dict], None] | None = None
                     ) -> tuple[list[torch.Tensor], list[float]]:
        """Images as uint8 working inputs [(3, h', w')] (`model_input`), and the scale each is seen at
        (`nextpatch.tiling.input_scale`).

        Images are read and resized one at a time, so memory grows with the working size, not the
        files': 800 images of 1024 x 1024 would take 10 GB as float arrays, 120 MB at 224 x 224. Arrays
        come first, then files, in the order given; an unreadable file is skipped with a warning naming it.
        """
        if isinstance(images, (str, Path)):
            items: list = train_images(images)
        elif isinstance(images, np.ndarray):
            raise DataError("fit() takes a folder, a list of paths or a list of arrays, not one array")
        else:
            items = list(images)
        arrays = [x for x in items if isinstance(x, np.ndarray)]
        files = [Path(x) for x in items if not isinstance(x, np.ndarray)]
        files = expand_inputs(files) if files else []
        total, out, scales = len(arrays) + len(files), [], []
        for item in [*arrays, *files]:
            try:
                image = _check_array(item) if isinstance(item, np.ndarray) else read_image(item)
            except ImageError as err:
                log.warning("skipped: %s", err)
                continue
            out.append((self.model_input(image) * 255).round().to(torch.uint8))
            scales.append(input_scale(image.shape[:2], tuple(out[-1].shape[-2:])))
            if progress is not None:
                progress("reading images", len(out), total, {})
        return out, scales

    def save(self, path: str | Path, *, keep_previous: bool = False) -> Path:
        """Write the model directory; `keep_previous` keeps its current model as the previous version
        (`nextpatch update`; see `nextpatch.model_io`)."""
        from .model_io import save_detector

        return save_detector(self, path, keep_previous=keep_previous)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Detector":
        """Read a model directory written by `save` (checked: format version, checksum, tensor shapes)."""
        from .model_io import read_model

        stored = read_model(path)
        detector = cls(stored.config)
        detector.net_ = stored.net.to(resolve_device(device or stored.config.train.device)).eval()
        detector.threshold_ = stored.threshold
        detector.calibration_, detector.training_ = stored.calibration, stored.training
        detector.version_ = int(stored.meta.get("version", 1))
        return detector

    def replace_config(self, **model_changes) -> "Detector":
        """A copy that shares the trained weights but changes inference-only model settings
        (directions, fusion, distance, smoothing, color_weight): used by the ablation benchmark.
        The threshold is kept, so only the variant's rankings (AUROCs) are meaningful, not its decisions."""
        other = Detector(dataclasses.replace(self.config, model=dataclasses.replace(self.config.model, **model_changes)))
        net = PatternNet(other.config.model)
        state = self._net().state_dict()
        if "color_scale" in net.state_dict() and "color_scale" not in state:
            raise NextpatchError("color_weight > 0 needs a model fitted with a colour term (its scale is set at fit time)")
        wanted = net.state_dict()
        # the variant drops a fitted term, or pretrained blocks that only the memory read
        state = {k: v for k, v in state.items() if k in wanted}
        net.load_state_dict(state)
        other.net_ = net.to(next(self._net().parameters()).device).eval()
        other.threshold_, other.calibration_, other.training_ = self.threshold_, dict(self.calibration_), dict(self.training_)
        return other


def _check_array(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != 3:
        raise DataError(f"an image array must be (H, W, 3) float in [0, 1], got {getattr(x, 'shape', type(x))}")
    return x.astype(np.float32, copy=False)


def prefetch(fn: Callable, items: Iterable, *, ahead: int, workers: int = 1) -> Iterator:
    """fn(item) for each item, in order, computed by `workers` threads at most `ahead` items in advance."""
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="nextpatch-read") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (or failed): drop what was not started
            for future in pending:
                future.cancel()
