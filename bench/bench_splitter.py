"""The answer sentence splitter (pipeline.citations.sentence_spans: a regex and an abbreviation
list) against library splitters, on real generated answers, side by side in one run.

Candidates: NLTK's Punkt English model (the ``punkt`` package eval/ already uses for ALCE) and
pysbd when it is installed (not a requirement: ``pip install pysbd`` to include it). Each
library gets the same handling around it as the regex has (split per line, whitespace
trimmed, markers that open a sentence moved to the previous one), so only the sentence
boundaries differ. Prints every answer on which a library splits differently from the regex,
then a count and the time per answer.

    .venv/bin/python bench/bench_splitter.py [answers.jsonl ...]
    (default: the answer files of bench/out and bench/out/cite_modes)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.citations import _TRAILING_MARKERS, _trim, sentence_spans  # noqa: E402

Spans = list[tuple[int, int]]


def around(split_line: Callable[[str], Spans]) -> Callable[[str], Spans]:
    """``split_line`` (spans of one line) wrapped in the regex splitter's line and marker handling."""

    def spans(text: str) -> Spans:
        raw = [(b.start() + s, b.start() + e) for b in re.finditer(r"[^\n]+", text) for s, e in split_line(b.group())]
        out: Spans = []
        for s, e in (_trim(text, s, e) for s, e in raw):
            if s >= e:
                continue
            lead = _TRAILING_MARKERS.match(text, s, e)
            if lead and out:
                out[-1] = (out[-1][0], lead.end())
                s, e = _trim(text, lead.end(), e)
                if s >= e:
                    continue
            out.append((s, e))
        return out

    return spans


def candidates() -> dict[str, Callable[[str], Spans]]:
    import punkt

    tok = punkt.tokenizer_for("english")
    out = {"punkt": around(lambda line: list(tok.span_tokenize(line)))}
    try:
        import pysbd
    except ImportError:
        return out
    seg = pysbd.Segmenter(language="en", clean=False, char_span=True)
    out["pysbd"] = around(lambda line: [(sp.start, sp.end) for sp in seg.segment(line)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "out"
    files = args.files or sorted(
        f
        for f in [*out_dir.glob("*.jsonl"), *out_dir.glob("cite_modes/*.jsonl")]
        if "corpus" not in f.name and "index" not in f.name
    )
    answers: list[str] = []
    for f in files:
        for line in f.open():
            row = json.loads(line)
            answers.append(row.get("answer") or row.get("text") or "")
    uniq = list(dict.fromkeys(a for a in answers if a.strip()))
    print(f"{len(answers)} answers from {len(files)} files, {len(uniq)} distinct and non-empty")
    if not uniq:
        return
    splitters = {"regex": sentence_spans, **candidates()}
    seconds = {}
    results = {}
    for name, fn in splitters.items():
        t = time.perf_counter()
        results[name] = [fn(a) for a in uniq]
        seconds[name] = time.perf_counter() - t
    differ = {}
    for name in splitters:
        if name == "regex":
            continue
        differ[name] = 0
        for a, mine, theirs in zip(uniq, results["regex"], results[name]):
            if mine != theirs:
                differ[name] += 1
                print(f"--- {name} differs\n  regex: {[a[s:e] for s, e in mine]}")
                print(f"  {name}: {[a[s:e] for s, e in theirs]}")
    print(f"{'splitter':<10}{'differs':>10}{'ms/answer':>12}")
    for name in splitters:
        print(f"{name:<10}{differ.get(name, 0):>10}{seconds[name] / len(uniq) * 1e3:>12.3f}")
    ratios = [
        f"{n} splits {differ[n]} of {len(uniq)} answers differently, "
        f"{seconds[n] / seconds['regex']:.1f}x the regex's time"
        for n in differ
    ]
    print("ratio: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
