"""Network time of one image: the default preset (tiles at up to 448 px + the memory of normal) against
its parts, the whole image at 224 px without the memory (the default until 2026-12-06) first.

    python benchmarks/tile_cost.py [--size 512] [--repeats 20]

The networks are built untrained (the pretrained comparator is read as usual; the memory bank is
filled with `memory_size` random unit rows, so the search costs what a full bank costs): time does not
depend on what the weights learned. The variants run interleaved, one image at a time, median of
`--repeats` after a warm-up, in this one process: compare them as ratios, this machine's speed moves.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

VARIANTS = {  # name -> model config changes on the default preset
    "whole 224 px, no memory": {"tile_resolution": 0, "memory_layers": ()},
    "whole 224 px + memory@8": {"tile_resolution": 0},
    "tiles 448, no memory": {"memory_layers": ()},
    "default (tiles 448 + memory@8)": {},
}


def build(changes: dict):
    import dataclasses

    from nextpatch.detector import Detector
    from nextpatch.model.torch_model import PatternNet
    from nextpatch.model.weights import init_encoders
    from nextpatch.presets import DEFAULT_PRESET, preset_config

    config = preset_config(DEFAULT_PRESET)
    config.model = dataclasses.replace(config.model, **changes)
    detector = Detector(config)
    net = PatternNet(config.model)
    init_encoders(net, config.train.init_checkpoint, parts=config.train.init_parts)
    if config.model.memory_layers:
        net.memory_bank = F.normalize(torch.randn(config.model.memory_size, net.memory_bank.shape[1]), dim=-1)
    detector.net_, detector.threshold_ = net.eval(), 1.0
    return detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="side of the square test image (px)")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    image = np.random.default_rng(0).random((a.size, a.size, 3), dtype=np.float32)
    detectors = {name: build(changes) for name, changes in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for name, det in detectors.items():  # warm-up
        det.predict(image).score
    for _ in range(a.repeats):
        for name, det in detectors.items():
            start = time.perf_counter()
            det.predict(image).score
            times[name].append(1000 * (time.perf_counter() - start))
    base = statistics.median(times[next(iter(times))])
    print(f"{a.size} x {a.size} px image, {torch.get_num_threads()} threads, median of {a.repeats}:")
    for name, t in times.items():
        print(f"  {name:32s} {statistics.median(t):7.1f} ms  ({statistics.median(t) / base:.2f}x the first)")


if __name__ == "__main__":
    main()
