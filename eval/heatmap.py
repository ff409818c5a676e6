"""Pictures of a :class:`~eval.saliency.SaliencyReport` for one answer sentence: a
self-contained HTML heatmap of the evidence (no scripts, fonts or network) and a PNG bar plot
of per-source scores (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from eval.saliency.results import SaliencyReport
from pipeline.errors import InputError

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.answer mark { background: #ffe58a; }
.doc { margin: .6rem 0; padding: .4rem .6rem; border-left: 3px solid #ccc; }
.doc h3 { font-size: .9rem; margin: 0 0 .2rem; color: #555; }
.doc span[title] { border-radius: 2px; }
table { border-collapse: collapse; font-size: .9rem; } td, th { padding: .1rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend { color: #555; font-size: .9rem; }
"""


def check_sentence(report: SaliencyReport, sentence: int) -> None:
    """Raise an :class:`InputError` unless 0-based ``sentence`` is an answer sentence."""
    n = len(report.context.sentences)
    if not 0 <= sentence < n:
        raise InputError(f"--sentence must be between 1 and {n} (the answer has {n} sentences); got {sentence + 1}")


def colour(score: float, scale: float) -> str:
    """CSS background for ``score``: red when it raised the sentence's probability, blue when it
    lowered it, opacity proportional to ``|score| / scale``."""
    if not scale or math.isnan(score):
        return "transparent"
    a = min(abs(score) / scale, 1.0) * 0.85
    return f"rgba(214,39,40,{a:.3f})" if score > 0 else f"rgba(31,119,180,{a:.3f})"


def render_html(report: SaliencyReport, sentence: int = 0) -> str:
    """The heatmap page for 0-based answer ``sentence``: every method's colouring of the
    evidence (tokens for gradient methods with a token matrix, sources otherwise)."""
    check_sentence(report, sentence)
    ctx = report.context
    e = html.escape
    sent = ctx.sentences[sentence]
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>citerag attribution: sentence {sentence + 1}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Evidence use for answer sentence {sentence + 1}</h1>",
        f"<p><b>Question:</b> {e(ctx.question)}</p>",
        '<p class="answer"><b>Answer:</b> '
        + e(ctx.answer[: sent.start])
        + "<mark>"
        + e(sent.text)
        + "</mark>"
        + e(ctx.answer[sent.end :])
        + "</p>",
        f"<p>Cited: {', '.join(f'[{n}]' for n in sent.citations) or 'nothing'}. Level: {e(report.level)}.</p>",
        '<p class="legend">Red: the evidence raised this sentence\'s log-probability; blue: it lowered it. '
        "Colour strength is relative to the largest absolute score of each method; hover for values (nats).</p>",
    ]
    for name, att in report.attributions.items():
        scores = att.scores[sentence]
        parts.append(f"<h2>{e(name)}</h2>")
        if np.isnan(scores).all():
            parts.append("<p>This sentence has no scorable token (only citation markers).</p>")
            continue
        parts.append("<table><tr><th>source</th><th>score</th><th>text</th></tr>")
        for i in att.ranking(sentence)[:5]:
            s = att.sources[i]
            snippet = s.text if len(s.text) <= 90 else s.text[:87] + "..."
            parts.append(f'<tr><td>{e(s.label)}</td><td class="num">{scores[i]:.3f}</td><td>{e(snippet)}</td></tr>')
        parts.append("</table>")
        tok = report.tokens.get(name)
        if tok is not None:
            rows = np.nan_to_num(tok.matrix) * ctx.token_weights()[sentence][:, None]
            values = rows.sum(axis=0)
            pieces = [
                (t.passage, t.start, t.end, float(v), f"{t.text!r}: {v:.4f}")
                for t, v in zip(tok.evidence_tokens, values)
            ]
        else:
            pieces = [
                (s.passage, s.start, s.end, float(scores[i]), f"{s.label}: {scores[i]:.3f}")
                for i, s in enumerate(att.sources)
            ]
        scale = max((abs(v) for *_, v, _ in pieces if not math.isnan(v)), default=0.0)
        for n, p in enumerate(ctx.passages, start=1):
            title = f" (Title: {e(p.title)})" if p.title else ""
            parts.append(f'<div class="doc"><h3>Document [{n}]{title}</h3><p>')
            cursor = 0
            for _, s0, s1, v, tip in sorted(x for x in pieces if x[0] == n):
                if s0 < cursor:
                    continue
                parts.append(e(p.text[cursor:s0]))
                parts.append(f'<span title="{e(tip)}" style="background:{colour(v, scale)}">{e(p.text[s0:s1])}</span>')
                cursor = s1
            parts.append(e(p.text[cursor:]) + "</p></div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(report: SaliencyReport, path: str | Path, sentence: int = 0) -> Path:
    """Write :func:`render_html` to ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report, sentence), encoding="utf-8")
    return out


def write_png(report: SaliencyReport, path: str | Path, sentence: int = 0) -> Path:
    """A bar chart per method of the per-source scores for 0-based answer ``sentence``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_sentence(report, sentence)
    names = list(report.attributions)
    labels = [s.label for s in report.sources]
    fig = Figure(figsize=(3.2 * max(len(names), 1) + 1, 0.32 * len(labels) + 1.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(names), 1), sharey=True, squeeze=False)[0]
    y = np.arange(len(labels))
    for ax, name in zip(axes, names):
        vals = np.nan_to_num(report.attributions[name].scores[sentence])
        ax.barh(y, vals, color=["#d62728" if v > 0 else "#1f77b4" for v in vals])
        ax.axvline(0, color="#444", linewidth=0.6)
        ax.set_title(name)
        ax.set_xlabel("score (nats)")
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    fig.suptitle(f"Sources of answer sentence {sentence + 1} ({report.level} level)")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out
