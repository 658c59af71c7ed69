"""The models a server answers for, loaded once at start, and the bounded queue in front of them.

A *predictor* is anything with `.predict(array) -> Prediction` (score, is_anomalous, anomaly_map,
expected_image, raw_score), `.scale_warning(prediction) -> str | None` and the fitted attributes of a
`Detector` (`threshold_`, `config`, `training_`, `calibration_`). `load_predictor` makes one per backend
with `nextpatch.export.load_backend`, the same loader as `nextpatch predict --backend`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from ..drift import ScoreMonitor
from ..errors import NextpatchError

log = logging.getLogger("nextpatch.serve")

T = TypeVar("T")


class Predictor(Protocol):
    threshold_: float | None
    config: Any
    training_: dict
    calibration_: dict

    def predict(self, image: np.ndarray) -> Any: ...

    def scale_warning(self, prediction: Any) -> str | None: ...


def load_predictor(model_dir: str | Path, backend: str = "torch", device: str | None = None) -> Predictor:
    """The predictor for `model_dir` on `backend`; errors are one-line `NextpatchError`s."""
    from ..export import load_backend

    return load_backend(model_dir, backend=backend, device=device)


@dataclass
class ServedModel:
    """One model as the server shows it: its predictor, what `GET /v1/models` says about it, the
    recent scores (`drift.ScoreMonitor`), and the feedback loop that updates it in place."""

    name: str
    path: Path
    backend: str
    predictor: Predictor
    meta: dict = field(default_factory=dict)  # the model directory's nextpatch.json, when readable
    monitor: ScoreMonitor | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.monitor is None:
            updated = bool((getattr(self.predictor, "training_", None) or {}).get("updates"))
            self.monitor = ScoreMonitor(self.predictor.calibration_ or {}, self.predictor.threshold_ or 1.0,
                                        updated=updated)

    def accept_good(self, image: np.ndarray) -> dict:
        """Feedback "this image is normal": update the model in memory, save a new version of its directory
        (atomically: the previous version is kept), and return the update's summary.

        If the update or the save fails, the model in memory is put back as it was: what is served is always
        what the directory's current version holds."""
        if not hasattr(self.predictor, "update") or self.backend != "torch":
            raise NextpatchError(f"model {self.name!r} runs on --backend {self.backend}; feedback updates the torch "
                                 "model: serve it with --backend torch, or run `nextpatch update` and export again")
        with self.lock:  # one update at a time; predictions go on with the old bank until it is swapped
            net = self.predictor.net_
            bank, radius = net.accepted_bank, net.accepted_radius.clone()
            updates = list(self.predictor.training_.get("updates", []))
            try:
                self.predictor.update([image])
                self.predictor.save(self.path, keep_previous=True)
            except BaseException:
                net.accepted_bank = bank
                net.accepted_radius.copy_(radius)
                if updates:
                    self.predictor.training_["updates"] = updates
                else:
                    self.predictor.training_.pop("updates", None)
                raise
            self.meta = _read_meta(self.path)
            self.predictor.version_ = int(self.meta.get("version", 1))
            self.monitor.updated = True
        return self.predictor.training_["updates"][-1]

    def info(self) -> dict:
        p, meta = self.predictor, self.meta
        sha = str(meta.get("weights_sha256", ""))
        return {"name": self.name, "version": sha[:12] or "unknown", "backend": self.backend,
                "model_version": int(meta.get("version", 1)),
                "mask": (p.calibration_.get("mask") or {}).get("inspected"),
                "format_version": str(meta.get("format_version", "")),
                "nextpatch_version": str(meta.get("nextpatch_version", "")),
                "threshold": float(p.threshold_), "image_size": int(p.config.model.image_size),
                "training": _json_safe(p.training_), "calibration": _json_safe(p.calibration_)}


def _json_safe(value: Any) -> Any:
    """Only what JSON can carry (the summaries are small dicts of numbers and strings)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {}


def _read_meta(model_dir: Path) -> dict:
    try:
        meta = json.loads((model_dir / "nextpatch.json").read_text())
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


class ModelRegistry:
    """Models by name (each model directory's folder name)."""

    def __init__(self, models: Iterable[ServedModel] = ()):
        self._models: dict[str, ServedModel] = {}
        for m in models:
            self.add(m)

    @classmethod
    def load(cls, model_dirs: Iterable[str | Path], backend: str = "torch", device: str | None = None,
             loader: Callable[[Path, str, str | None], Predictor] = load_predictor) -> "ModelRegistry":
        registry = cls()
        for d in model_dirs:
            path = Path(d)
            name = path.resolve().name
            if name in registry._models:
                raise NextpatchError(f"{path}: a second model named {name!r} (models are named by their folder; "
                                     f"rename one of {registry._models[name].path} and {path})")
            registry.add(ServedModel(name, path, backend, loader(path, backend, device), _read_meta(path)))
        return registry

    def add(self, model: ServedModel) -> None:
        self._models[model.name] = model

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self):
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)


class InferenceQueue:
    """At most `workers` inferences run (in worker threads, off the event loop) and `waiting` more wait;
    a request beyond that is refused (503 + Retry-After) instead of queueing without bound.

    `try_acquire` / `release` are called on the event loop only, so the counter needs no lock.
    """

    def __init__(self, workers: int = 1, waiting: int = 32):
        if workers < 1 or waiting < 0:
            raise NextpatchError(f"--workers must be >= 1 and --queue-size >= 0 (got {workers} and {waiting})")
        self.workers, self.waiting_max = workers, waiting
        self.capacity = workers + waiting
        self.in_flight = 0
        self.refused = 0
        self._ms = 50.0  # moving average of one inference, for Retry-After
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nextpatch-infer")

    def try_acquire(self) -> bool:
        if self.in_flight >= self.capacity:
            self.refused += 1
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: whole seconds, at least 1."""
        return max(1, math.ceil(self.capacity * self._ms / self.workers / 1000))

    async def run(self, fn: Callable[..., T], *args) -> T:
        def timed():
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._ms = 0.8 * self._ms + 0.2 * (time.perf_counter() - start) * 1000

        return await asyncio.get_running_loop().run_in_executor(self._executor, timed)

    def stats(self) -> dict:
        return {"workers": self.workers, "capacity": self.capacity, "in_flight": self.in_flight,
                "refused": self.refused}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
