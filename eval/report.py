"""``citerag eval --report DIR``: one self-contained ``index.html`` for people.

Tables of every figure, inline SVG bar charts and histograms drawn here (no network, no
scripts, no external files), and the examples with the lowest citation recall, each sentence
coloured by ALCE's decision and its citations marked. Any extra metrics section (see
:mod:`eval.scoring`) is shown as a table of its figures.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.alce import claim_text
from eval.scoring import Evaluation, ExampleResult

#: Figures shown as bars, by section: (section, key, label).
HEADLINE = (
    ("citation", "recall", "citation recall"),
    ("citation", "precision", "citation precision"),
    ("citation", "f1", "citation F1"),
    ("rarr", "attribution", "attribution (mean max support)"),
    ("rarr", "attributed", "sentences attributed"),
    ("rarr", "preservation", "preservation"),
    ("rarr", "f1", "attribution-preservation F1"),
    ("answer", "str_em", "ASQA str_em"),
    ("answer", "em", "exact match"),
    ("answer", "answer_in_output", "answer in output"),
    ("answer", "qampari_f1", "QAMPARI F1"),
    ("agreement", "cited_but_unused_rate", "citations the sentence did not use"),
    ("agreement", "used_but_uncited_rate", "used passages left uncited"),
)
#: Numbers that are not fractions (shown as they are, not in percent).
PLAIN = frozenset({"threshold", "threshold_nats", "qampari_predictions"})
STATUS_COLOURS = {"supported": "#2e7d32", "unsupported": "#c62828", "no_citation": "#9e9e9e", "out_of_range": "#ef6c00"}
# A backslash at the end of a line continues it (no newline in the string).
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}\
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777}
.charts{display:flex;flex-wrap:wrap;gap:24px}.chart{flex:0 0 auto}
.s{padding:1px 2px;border-radius:3px}.s-supported{background:#e8f5e9}.s-unsupported{background:#ffebee}
.s-no_citation{background:#f1f1f1}.s-out_of_range{background:#fff3e0}
.c{font-size:.85em;font-weight:600}.c-irrelevant{text-decoration:line-through;color:#c62828}
details{margin:.3em 0}summary{cursor:pointer;color:#1565c0}\
.doc{white-space:pre-wrap;font-size:.9em;color:#444;margin:.2em 0 .6em 1em}
.legend span{margin-right:1em}
"""


def write_report(
    directory: str | os.PathLike[str],
    evaluation: Evaluation,
    metrics: Mapping[str, Any],
    *,
    title: str,
    worst: int = 50,
) -> Path:
    """Write ``index.html`` into ``directory`` (created) and return its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "index.html"
    tmp = out / ".index.html.tmp"
    tmp.write_text(render(evaluation, metrics, title=title, worst=worst), encoding="utf-8")
    os.replace(tmp, target)
    return target


def render(evaluation: Evaluation, metrics: Mapping[str, Any], *, title: str, worst: int = 50) -> str:
    e = html.escape
    judge = metrics.get("judge", {})
    about = [f"{metrics['n']} examples"]
    if "format" in metrics:
        about.append(f"{e(str(metrics['format']))} format")
    if metrics.get("skipped"):
        about.append(f"{metrics['skipped']} rows skipped")
    if metrics.get("truncated"):
        about.append(f"{metrics['truncated']} outputs cut at their first newline (ALCE's rule)")
    about.append(
        f"judge {e(str(judge.get('name', '')))}: a pair is supported when its probability reaches "
        f"{evaluation.config.threshold:.3f}; {evaluation.judge_pairs} distinct pairs judged in "
        f"{evaluation.judge_rounds} round{'' if evaluation.judge_rounds == 1 else 's'}"
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class=muted>{'; '.join(about)}. Fractions are shown as percentages.</p>",
    ]
    bars = [
        (label, metrics[sec][key])
        for sec, key, label in HEADLINE
        if isinstance(metrics.get(sec), dict) and metrics[sec].get(key) is not None
    ]
    if bars:
        parts += ["<h2>Summary</h2>", bar_chart(bars)]
    parts += ["<h2>All figures</h2>", "<div class=charts>"]
    for name, value in metrics.items():
        if isinstance(value, dict):
            parts.append(f"<div class=chart><b>{e(name)}</b>{_figures_table(value)}</div>")
    parts.append("</div>")
    parts += ["<h2>Distributions</h2>", "<div class=charts>"]
    results = evaluation.results
    rec = [r.citations.recall for r in results if r.citations]
    prec = [r.citations.precision for r in results if r.citations]
    support = [s.support for r in results if r.citations for s in r.citations.sentences if s.support is not None]
    attribution = [a.support for r in results if r.attribution for a in r.attribution.sentences]
    thr = evaluation.config.threshold
    for label, values, line in (
        ("per-example citation recall", rec, None),
        ("per-example citation precision", prec, None),
        ("joint-passage support of cited sentences", support, thr),
        ("best support of each sentence (attribution)", attribution, thr),
    ):
        if values:
            parts.append(
                f"<div class=chart><b>{e(label)}</b> <span class=muted>({len(values)})</span><br>"
                f"{histogram(values, threshold=line)}</div>"
            )
    parts.append("</div>")
    statuses = _status_counts(results)
    if statuses:
        parts += [
            "<h3>Sentences by ALCE decision</h3>",
            bar_chart(
                [(k.replace("_", " "), v / sum(statuses.values())) for k, v in statuses.items()],
                colours=[STATUS_COLOURS[k] for k in statuses],
            ),
        ]
    shown = sorted(results, key=_sort_key)[:worst]
    if shown:
        parts += [f"<h2>Examples ({len(shown)} of {len(results)}, lowest citation recall first)</h2>", _legend()]
        parts += [_example_html(r, thr) for r in shown]
    parts.append("</body></html>")
    return "\n".join(parts)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "<span class=muted>n/a</span>"
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if key not in PLAIN and 0 <= value <= 1 else f"{value:.4g}"
    return html.escape(str(value))


def _figures_table(figures: Mapping[str, Any]) -> str:
    rows = []
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        rows.append(f"<tr><td>{html.escape(key)}</td><td class=num>{_fmt(key, value)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def bar_chart(items: Sequence[tuple[str, float]], *, colours: Sequence[str] | None = None, width: int = 640) -> str:
    """Horizontal bars for values in [0, 1], labelled with the value in percent."""
    label_w, row_h, bar_w = 240, 24, width - 240 - 60
    h = row_h * len(items) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        v = min(max(float(value), 0.0), 1.0)
        colour = colours[i] if colours else "#1976d2"
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">{html.escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 8}" fill="#eee"/>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{v * bar_w:.1f}" height="{row_h - 8}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}" font-size="12">{100 * float(value):.1f}%</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(
    values: Sequence[float], *, bins: int = 10, threshold: float | None = None, width: int = 320, height: int = 160
) -> str:
    """Counts of values in [0, 1] in ``bins`` equal bins, with an optional threshold line."""
    counts = [0] * bins
    for v in values:
        counts[min(max(int(float(v) * bins), 0), bins - 1)] += 1
    top = max(counts) or 1
    pad_l, pad_b, pad_t = 30, 20, 8
    plot_w, plot_h = width - pad_l - 6, height - pad_b - pad_t
    bw = plot_w / bins
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    out.append(f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{pad_l + plot_w}" y2="{pad_t + plot_h}" stroke="#999"/>')
    for i, c in enumerate(counts):
        bh = plot_h * c / top
        x = pad_l + i * bw
        out.append(
            f'<rect x="{x + 1:.1f}" y="{pad_t + plot_h - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" '
            f'fill="#1976d2"><title>{i / bins:.1f}-{(i + 1) / bins:.1f}: {c}</title></rect>'
        )
    for t in (0, 0.5, 1):
        out.append(
            f'<text x="{pad_l + t * plot_w:.1f}" y="{height - 5}" font-size="10" text-anchor="middle">{t:g}</text>'
        )
    out.append(f'<text x="{pad_l - 4}" y="{pad_t + 10}" font-size="10" text-anchor="end">{top}</text>')
    if threshold is not None:
        x = pad_l + min(max(threshold, 0.0), 1.0) * plot_w
        out.append(
            f'<line x1="{x:.1f}" y1="{pad_t}" x2="{x:.1f}" y2="{pad_t + plot_h}" stroke="#c62828" '
            f'stroke-dasharray="4 3"><title>threshold {threshold:.3f}</title></line>'
        )
    out.append("</svg>")
    return "".join(out)


def _status(s: Any) -> str:
    if s.status != "judged":
        return str(s.status)
    return "supported" if s.recall else "unsupported"


def _status_counts(results: Sequence[ExampleResult]) -> dict[str, int]:
    counts = {k: 0 for k in STATUS_COLOURS}
    for r in results:
        for s in r.citations.sentences if r.citations else ():
            counts[_status(s)] += 1
    return {k: v for k, v in counts.items() if v}


def _sort_key(r: ExampleResult) -> tuple[float, float]:
    if r.citations:
        return (r.citations.recall, r.citations.precision)
    att = r.attribution.attribution if r.attribution else None
    return (att if att is not None else 1.0, 0.0)


def _legend() -> str:
    return (
        "<p class=legend>"
        + "".join(f'<span class="s s-{k}">{k.replace("_", " ")}</span>' for k in STATUS_COLOURS)
        + '<span class="c c-irrelevant">[n]</span> irrelevant citation (precision)</p>'
    )


def _example_html(r: ExampleResult, threshold: float) -> str:
    e = html.escape
    ex = r.example
    head = [f"<b>{e(ex.id)}</b>"]
    if ex.question:
        head.append(e(ex.question))
    figures = []
    if r.citations:
        figures.append(f"recall {100 * r.citations.recall:.0f}%, precision {100 * r.citations.precision:.0f}%")
    if r.attribution and r.attribution.attribution is not None:
        figures.append(f"attribution {100 * r.attribution.attribution:.0f}%")
    if r.preservation is not None:
        figures.append(f"preservation {100 * r.preservation:.0f}%")
    if r.truncated:
        figures.append("output cut at its first newline")
    body = []
    for i, text in enumerate(r.sentences):
        if r.citations:
            s = r.citations.sentences[i]
            irrelevant = {c.n for c in s.checks if not c.relevant} if s.recall else set()
            marks = "".join(
                f'<span class="c{" c-irrelevant" if n in irrelevant else ""}">[{n}]</span>' for n in s.cited
            )
            tip = f"support {s.support:.2f}" if s.support is not None else s.status.replace("_", " ")
            body.append(f'<span class="s s-{_status(s)}" title="{e(tip)}">{e(s.claim)} {marks}</span>')
        else:
            a = r.attribution.sentences[i] if r.attribution else None
            cls = "" if a is None else ("supported" if a.support >= threshold else "unsupported")
            tip = "" if a is None else f"best support {a.support:.2f} (document {a.doc})"
            body.append(f'<span class="s s-{cls}" title="{e(tip)}">{e(claim_text(text))}</span>')
    docs = "".join(
        f"<div class=doc><b>[{n}] {e(d.title)}</b>\n{e(d.text)}</div>" for n, d in enumerate(ex.docs, start=1)
    )
    original = (
        f"<details><summary>original</summary><div class=doc>{e(ex.original)}</div></details>"
        if ex.original is not None
        else ""
    )
    return (
        f"<div><p>{' &middot; '.join(head)}<br><span class=muted>{e('; '.join(figures))}</span></p>"
        f"<p>{' '.join(body) or '<span class=muted>(no sentences)</span>'}</p>{original}"
        f"<details><summary>{len(ex.docs)} documents</summary>{docs}</details></div><hr>"
    )
