"""Evaluate a detector on an MVTec-layout category: metrics, timings, report, pictures of the worst misses."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tqdm import tqdm

from .data.io import read_image, save_png
from .data.layouts import Sample, load_mask_for, test_samples
from .errors import ImageError
from .metrics import evaluate as compute_metrics
from .report import write_report
from .viz import overlay, prediction_panel

log = logging.getLogger("nextpatch")


def output_name(path: Path, root: Path) -> str:
    """A file-name stem unique among inputs under `root`: test/crack/000.png -> test__crack__000."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    return "__".join(rel.with_suffix("").parts)


def evaluate_category(detector, category: str | Path, out_dir: str | Path | None = None, *,
                      progress: bool = True, worst: int = 4, batch_size: int = 8) -> dict:
    """Score every test image of `category` and compute the metrics.

    Returns {"metrics": ..., "rows": [...], "warnings": [...], "predict_ms_per_image": ...}.
    With `out_dir`: writes metrics.json, report.html and overlay/panel PNGs of the worst misses.
    """
    category = Path(category)
    samples, warnings = test_samples(category)
    rows, masks, maps = [], [], []
    kept: list[Sample] = []  # the scored samples, rows' order; images are read again for the worst only
    elapsed = 0.0
    bar = tqdm(total=len(samples), desc=f"evaluate {category.name}", unit="img", disable=not progress)
    for i in range(0, len(samples), batch_size):
        batch = []
        for s in samples[i:i + batch_size]:
            try:
                batch.append((s, read_image(s.path)))
            except ImageError as exc:
                warnings.append(str(exc))
        if batch:
            start = time.perf_counter()
            preds = detector.predict_batch([a for _, a in batch], batch_size=batch_size)
            elapsed += time.perf_counter() - start
            for (s, image), p in zip(batch, preds):
                try:
                    mask = load_mask_for(s, image.shape[:2])
                except ImageError as exc:
                    warnings.append(str(exc))
                    mask = None
                rows.append({"path": str(s.path), "label": s.label, "defect_type": s.defect_type,
                             "score": round(p.score, 5), "is_anomalous": p.is_anomalous})
                masks.append(mask)
                maps.append(p.anomaly_map if mask is not None else None)
                kept.append(s)
        bar.update(len(samples[i:i + batch_size]))
    bar.close()
    for w in warnings:
        log.warning("%s", w)
    metrics = compute_metrics([r["label"] for r in rows], [r["score"] for r in rows],
                              [int(r["is_anomalous"]) for r in rows], masks, maps)
    result = {"category": category.name, "metrics": metrics, "rows": rows, "warnings": warnings,
              "predict_ms_per_image": round(1000 * elapsed / max(1, len(rows)), 1)}
    if out_dir is not None:
        write_outputs(detector, result, kept, Path(out_dir), category, worst)
    return result


def worst_misses(rows: list[dict], k: int) -> list[int]:
    """Indices of the k highest-scoring normals and the k lowest-scoring anomalies."""
    normals = sorted((i for i, r in enumerate(rows) if r["label"] == 0), key=lambda i: -rows[i]["score"])
    anomalies = sorted((i for i, r in enumerate(rows) if r["label"] == 1), key=lambda i: rows[i]["score"])
    return normals[:k] + anomalies[:k]


def write_outputs(detector, result: dict, kept: list, out: Path, category: Path, k: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    chosen = worst_misses(rows, k)
    images_dir = out / "images"
    for i in chosen:  # read again: a test set of 1024 px images would take GBs kept in memory
        sample = kept[i]
        try:
            image = read_image(sample.path)
        except ImageError as exc:
            log.warning("no pictures for %s", exc)
            continue
        p = detector.predict(image)
        name = output_name(sample.path, category)
        save_png(images_dir / f"{name}_overlay.png", overlay(image, p.anomaly_map))
        save_png(images_dir / f"{name}_panel.png", prediction_panel(image, p))
        rows[i]["overlay"] = f"images/{name}_overlay.png"
        rows[i]["panel"] = f"images/{name}_panel.png"
    (out / "metrics.json").write_text(json.dumps(
        {k: v for k, v in result.items() if k != "rows"} | {"threshold": 1.0}, indent=2))
    with open(out / "scores.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    write_report(out, title=f"nextpatch evaluation: {category.name}", metrics=result["metrics"], rows=rows,
                 threshold=1.0, worst=[rows[i] for i in chosen],
                 extra={"category": str(category), "predict ms / image": result["predict_ms_per_image"],
                        "training": json.dumps(detector.training_), "calibration": json.dumps(detector.calibration_)})
