"""A self-contained HTML evaluation report: inline CSS and SVG, no scripts, no external assets.

The only files the report refers to are the overlay / panel PNGs of the rows, by paths relative
to the report's folder, so the folder can be zipped and opened anywhere.
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["svg_curve", "svg_histogram", "write_report"]

_NORMAL_COLOR = "#2b7bba"
_ANOMALY_COLOR = "#d9534f"
_THRESHOLD_COLOR = "#333"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em;
     border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .25em .8em; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f6f6f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.miss td { background: #fff3f2; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 4px; padding: .5em; max-width: 520px; }
figure img { max-width: 100%; display: block; margin-bottom: .3em; }
figcaption { font-size: .9em; color: #555; word-break: break-all; }
.muted { color: #777; }
svg text { font: 11px sans-serif; fill: #333; }
"""


# ----------------------------------------------------------------------------- formatting

def _fmt(value: Any, digits: int = 3) -> str:
    """A number for display: ``None`` / nan -> ``n/a``, floats with ``digits`` decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _pct(value: Any) -> str:
    """A rate in [0, 1] as a percentage with one decimal, or ``n/a``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100.0 * float(value):.1f}%"


def _src(path: Any) -> str:
    """An ``<img src>`` value: forward slashes, URL-quoted, HTML-escaped."""
    return html.escape(quote(Path(str(path)).as_posix(), safe="/:"), quote=True)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------- SVG

def svg_curve(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    title: str = "ROC",
    label: str = "",
    x_label: str = "false positive rate",
    y_label: str = "true positive rate",
    size: int = 320,
    diagonal: bool = True,
) -> str:
    """A curve on the unit square as inline SVG: axes with ticks, optional chance diagonal, legend.

    An empty curve draws the axes and "no data".
    """
    pad_l, pad_r, pad_t, pad_b = 48, 12, 28, 40
    w = h = size
    pw, ph = w - pad_l - pad_r, h - pad_t - pad_b

    def px(x: float) -> float:
        return pad_l + min(max(x, 0.0), 1.0) * pw

    def py(y: float) -> float:
        return pad_t + (1.0 - min(max(y, 0.0), 1.0)) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="{_esc(title)}">',
        f'<text x="{w / 2:.0f}" y="16" text-anchor="middle" font-weight="bold">{_esc(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{px(t):.1f}" y1="{pad_t + ph}" x2="{px(t):.1f}" y2="{pad_t + ph + 4}" stroke="#999"/>')
        parts.append(f'<text x="{px(t):.1f}" y="{pad_t + ph + 15}" text-anchor="middle">{t:g}</text>')
        parts.append(f'<line x1="{pad_l - 4}" y1="{py(t):.1f}" x2="{pad_l}" y2="{py(t):.1f}" stroke="#999"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{pad_l + pw / 2:.0f}" y="{h - 6}" text-anchor="middle">{_esc(x_label)}</text>')
    parts.append(
        f'<text x="12" y="{pad_t + ph / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad_t + ph / 2:.0f})">{_esc(y_label)}</text>'
    )
    if diagonal:
        parts.append(
            f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" '
            'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    if len(xs) and len(xs) == len(ys):
        pts = " ".join(f"{px(float(x)):.1f},{py(float(y)):.1f}" for x, y in zip(xs, ys))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_ANOMALY_COLOR}" stroke-width="2"/>')
        if label:
            lx, ly = pad_l + pw - 8, pad_t + ph - 10
            parts.append(f'<line x1="{lx - 6.5 * len(label) - 22:.0f}" y1="{ly - 4}" x2="{lx - 6.5 * len(label) - 4:.0f}" y2="{ly - 4}" stroke="{_ANOMALY_COLOR}" stroke-width="2"/>')
            parts.append(f'<text x="{lx}" y="{ly}" text-anchor="end">{_esc(label)}</text>')
    else:
        parts.append(f'<text x="{pad_l + pw / 2:.0f}" y="{pad_t + ph / 2:.0f}" text-anchor="middle" class="muted">no data</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def svg_histogram(
    normal: Sequence[float],
    anomalous: Sequence[float],
    threshold: float | None = None,
    *,
    bins: int = 30,
    title: str = "Score histogram",
    width: int = 480,
    height: int = 320,
) -> str:
    """Score histograms of normal and anomalous images (overlaid) with the threshold as a line."""
    pad_l, pad_r, pad_t, pad_b = 40, 12, 28, 40
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    values = [float(v) for v in (*normal, *anomalous)]
    if threshold is not None and math.isfinite(threshold):
        values.append(float(threshold))
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins

    def counts(vs: Iterable[float]) -> list[int]:
        c = [0] * bins
        for v in vs:
            c[min(int((float(v) - lo) / step), bins - 1)] += 1
        return c

    cn, ca = counts(normal), counts(anomalous)
    top = max([*cn, *ca, 1])

    def px(v: float) -> float:
        return pad_l + (v - lo) / (hi - lo) * pw

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-weight="bold">{_esc(title)}</text>',
    ]
    bw = pw / bins
    for c, color in ((cn, _NORMAL_COLOR), (ca, _ANOMALY_COLOR)):
        for i, n in enumerate(c):
            if n:
                bh = n / top * ph
                parts.append(
                    f'<rect x="{pad_l + i * bw:.1f}" y="{pad_t + ph - bh:.1f}" width="{max(bw - 1, 1):.1f}" '
                    f'height="{bh:.1f}" fill="{color}" fill-opacity="0.55"/>'
                )
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + ph}" x2="{pad_l + pw}" y2="{pad_t + ph}" stroke="#999"/>')
    parts.append(f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + ph}" stroke="#999"/>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{px(v):.1f}" y="{pad_t + ph + 15}" text-anchor="middle">{v:.3g}</text>')
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + 4}" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + ph}" text-anchor="end">0</text>')
    parts.append(f'<text x="{pad_l + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">anomaly score</text>')
    if threshold is not None and math.isfinite(threshold):
        x = px(float(threshold))
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad_t}" x2="{x:.1f}" y2="{pad_t + ph}" stroke="{_THRESHOLD_COLOR}" '
            'stroke-width="2" stroke-dasharray="5 3"/>'
        )
        parts.append(f'<text x="{x + 4:.1f}" y="{pad_t + 12}">threshold {threshold:.4g}</text>')
    legend_x = pad_l + pw - 130
    for k, (name, color, n) in enumerate(
        (("normal", _NORMAL_COLOR, len(normal)), ("anomalous", _ANOMALY_COLOR, len(anomalous)))
    ):
        y = pad_t + 8 + 16 * k
        parts.append(f'<rect x="{legend_x}" y="{y}" width="12" height="10" fill="{color}" fill-opacity="0.55"/>')
        parts.append(f'<text x="{legend_x + 16}" y="{y + 9}">{name} ({n})</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- report

def _table(header: Sequence[str], body: Iterable[Sequence[str]], row_classes: Iterable[str] | None = None,
           num_cols: Sequence[int] = ()) -> str:
    """An HTML table; cells must already be escaped."""
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    classes = iter(row_classes) if row_classes is not None else None
    for row in body:
        cls = next(classes, "") if classes is not None else ""
        attr = f' class="{cls}"' if cls else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>" for i, c in enumerate(row))
        out.append(f"<tr{attr}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _headline(metrics: dict[str, Any], threshold: float) -> str:
    c = metrics.get("confusion") or {}
    rows = [
        ("Image AUROC", _fmt(metrics.get("image_auroc"))),
        ("Pixel AUROC", _fmt(metrics.get("pixel_auroc"))),
        ("AUPRO@30%", _fmt(metrics.get("aupro"))),
        ("F1-max", f"{_fmt(metrics.get('f1_max'))} <span class=\"muted\">(at score "
                   f"{_fmt(metrics.get('f1_threshold'), 4)})</span>"),
        ("Threshold", _fmt(float(threshold), 4)),
        ("TP / FP / TN / FN", " / ".join(_fmt(c.get(k)) for k in ("tp", "fp", "tn", "fn"))),
        ("False-reject rate (normals flagged)", _pct(c.get("false_reject_rate"))),
        ("Escape rate (anomalies missed)", _pct(c.get("escape_rate"))),
        ("Precision / recall", f"{_fmt(c.get('precision'))} / {_fmt(c.get('recall'))}"),
        ("Accuracy", _pct(c.get("accuracy"))),
    ]
    skipped = metrics.get("pixel_samples_skipped")
    if skipped:
        rows.append(("Images left out of pixel metrics (no mask)", _fmt(skipped)))
    return _table(("Metric", "Value"), rows, num_cols=(1,))


def _defect_table(rows: Sequence[dict[str, Any]]) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("defect_type", "")), []).append(r)
    body = []
    for name in sorted(groups, key=lambda k: (k != "good", k)):
        g = groups[name]
        mean = sum(float(r["score"]) for r in g) / len(g)
        flagged = sum(bool(r.get("is_anomalous")) for r in g) / len(g)
        body.append((_esc(name), str(len(g)), _fmt(mean, 4), _pct(flagged)))
    return _table(("Defect type", "Images", "Mean score", "Flagged anomalous"), body, num_cols=(1, 2, 3))


def _is_miss(r: dict[str, Any]) -> bool:
    return bool(r.get("is_anomalous")) != bool(int(r.get("label", 0)))


def _gallery(worst: Sequence[dict[str, Any]]) -> str:
    if not worst:
        return '<p class="muted">No misses.</p>'
    figs = []
    for r in worst:
        kind = "anomaly, low score" if int(r.get("label", 0)) else "normal, high score"
        if _is_miss(r):
            kind += " (missed)" if int(r.get("label", 0)) else " (false reject)"
        imgs = "".join(
            f'<img src="{_src(r[key])}" alt="{key}" loading="lazy">' for key in ("panel", "overlay") if r.get(key)
        )
        figs.append(
            f"<figure>{imgs}<figcaption><b>{kind}</b> &middot; {_esc(r.get('defect_type', ''))} &middot; "
            f"score {_fmt(float(r['score']), 4)}<br>{_esc(r.get('path', ''))}</figcaption></figure>"
        )
    return '<div class="gallery">' + "\n".join(figs) + "</div>"


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    metrics: dict[str, Any],
    rows: list[dict[str, Any]],
    threshold: float,
    worst: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    ``metrics`` is the dict from :func:`nextpatch.metrics.evaluate`. Each row of ``rows`` has
    ``path``, ``label`` (0/1), ``defect_type``, ``score``, ``is_anomalous`` and optionally
    ``overlay`` / ``panel`` (PNG paths relative to ``out_dir``). ``worst`` are the rows shown in
    the gallery (highest-scoring normals, lowest-scoring anomalies). ``extra`` is shown as a
    key / value table ("Run details").
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    roc = metrics.get("roc") or {"fpr": [], "tpr": []}
    proc = metrics.get("pixel_roc") or {"fpr": [], "tpr": []}
    normal = [float(r["score"]) for r in rows if not int(r.get("label", 0))]
    anomalous = [float(r["score"]) for r in rows if int(r.get("label", 0))]

    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="muted">{len(rows)} images: {len(normal)} normal, {len(anomalous)} anomalous.</p>',
        "<h2>Headline metrics</h2>",
        _headline(metrics, threshold),
        "<h2>Curves</h2>",
        '<div class="plots">',
        svg_curve(roc["fpr"], roc["tpr"], title="Image ROC",
                  label=f"AUROC {_fmt(metrics.get('image_auroc'))}"),
        svg_curve(proc["fpr"], proc["tpr"], title="Pixel ROC",
                  label=f"AUROC {_fmt(metrics.get('pixel_auroc'))}"),
        svg_histogram(normal, anomalous, threshold, title="Image scores by class"),
        "</div>",
        "<h2>By defect type</h2>",
        _defect_table(rows),
        "<h2>Worst misses</h2>",
        _gallery(worst),
    ]
    if extra:
        sections += ["<h2>Run details</h2>",
                     _table(("Key", "Value"), ((_esc(k), _esc(v)) for k, v in extra.items()))]
    body = [
        (_esc(r.get("path", "")), str(int(r.get("label", 0))), _esc(r.get("defect_type", "")),
         _fmt(float(r["score"]), 4), "yes" if r.get("is_anomalous") else "no")
        for r in rows
    ]
    sections += [
        "<h2>All scores</h2>",
        _table(("Image", "Label", "Defect type", "Score", "Flagged"), body,
               row_classes=("miss" if _is_miss(r) else "" for r in rows), num_cols=(1, 3)),
        "</body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(sections), encoding="utf-8")
    return path
