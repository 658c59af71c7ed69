"""Tests for nextpatch.report (HTML report with inline SVG)."""
from __future__ import annotations

import numpy as np

from nextpatch.metrics import evaluate
from nextpatch.report import svg_curve, svg_histogram, write_report


def _inputs():
    rng = np.random.default_rng(0)
    labels = [0] * 6 + [1] * 6
    scores = [float(v) for v in rng.random(12) + np.array(labels) * 0.6]
    threshold = 0.9
    predicted = [s >= threshold for s in scores]
    masks = [np.zeros((16, 16), bool) for _ in labels]
    for m in masks[6:]:
        m[4:8, 4:8] = True
    maps = [m + 0.5 * rng.random((16, 16)) for m in masks]
    metrics = evaluate(labels, scores, predicted, masks, maps)
    types = ["good"] * 6 + ["scratch"] * 3 + ["crack"] * 3
    rows = [
        {
            "path": f"test/{t}/{i:03d}.png",
            "label": y,
            "defect_type": t,
            "score": s,
            "is_anomalous": p,
            "overlay": f"overlays/{i:03d}.png",
            "panel": f"panels/{i:03d}.png",
        }
        for i, (y, t, s, p) in enumerate(zip(labels, types, scores, predicted))
    ]
    rows[0]["path"] = "test/good/<evil>&.png"
    worst = [rows[0], rows[7]]
    return metrics, rows, threshold, worst


def test_write_report_contents(tmp_path):
    metrics, rows, threshold, worst = _inputs()
    path = write_report(tmp_path / "out", title="Bottle <eval>", metrics=metrics, rows=rows,
                        threshold=threshold, worst=worst, extra={"model": "tiny", "seed": 0})
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # Headline metrics, formatted.
    assert f"{metrics['image_auroc']:.3f}" in text
    assert f"{metrics['pixel_auroc']:.3f}" in text
    assert f"{metrics['aupro']:.3f}" in text
    assert f"{metrics['f1_max']:.3f}" in text
    c = metrics["confusion"]
    assert f"{c['tp']} / {c['fp']} / {c['tn']} / {c['fn']}" in text
    assert f"{100 * c['false_reject_rate']:.1f}%" in text
    assert f"{100 * c['escape_rate']:.1f}%" in text
    assert "AUPRO@30%" in text
    # Two ROC curves and a histogram, all inline SVG; no scripts or external assets.
    assert text.count("<svg") == 3
    assert text.count("<polyline") == 2
    assert "Image ROC" in text and "Pixel ROC" in text
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Escaping: the raw `<evil>` never reaches the HTML.
    assert "<evil>" not in text and "&lt;evil&gt;&amp;.png" in text
    assert "Bottle &lt;eval&gt;" in text
    # Worst misses embedded by relative path; other rows' images are not.
    for r in worst:
        assert f'src="{r["overlay"]}"' in text and f'src="{r["panel"]}"' in text
    assert 'src="overlays/003.png"' not in text
    # Per-defect-type table and run details.
    assert "scratch" in text and "crack" in text and "Run details" in text


def test_write_report_handles_missing_values(tmp_path):
    metrics = evaluate([0, 0, 0], [0.1, 0.2, 0.3], [0, 0, 1])  # single class, no masks
    rows = [{"path": f"{i}.png", "label": 0, "defect_type": "good", "score": s, "is_anomalous": s > 0.25}
            for i, s in enumerate([0.1, 0.2, 0.3])]
    text = write_report(tmp_path, title="t", metrics=metrics, rows=rows, threshold=0.25, worst=[]).read_text()
    assert "n/a" in text and "no data" in text and "No misses." in text
    assert "NaN" not in text and ">nan" not in text


def test_svg_helpers():
    s = svg_curve([0.0, 0.2, 1.0], [0.0, 0.8, 1.0], title="ROC", label="AUROC 0.900")
    assert s.startswith("<svg") and s.endswith("</svg>") and "AUROC 0.900" in s and "<polyline" in s
    h = svg_histogram([0.1, 0.2, 0.2], [0.8, 0.9], threshold=0.5, bins=10)
    assert h.count("<rect") >= 3 + 2 and "threshold 0.5" in h
    assert svg_histogram([], [], None).startswith("<svg")
    assert "no data" in svg_curve([], [])
