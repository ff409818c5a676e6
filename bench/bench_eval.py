"""Benchmark of `citerag eval` (issue 4) on QuoteSum dev (../shared/data/quotesum_dev).

QuoteSum's human answers mark copied spans as ``[ k span ]`` (span quoted from source k).
They become ALCE-style citations: ``span [k]``, the marker put before the span's closing
punctuation, each source cited once per sentence.

1. Scorer sanity: ALCE citation recall and precision of the human answers (which quote their
   sources, so a sound scorer rates them near the top) with the default judge, and a few
   disagreements: cited sentences the judge finds unsupported, citations it calls irrelevant.
2. Speed: the batched, de-duplicated scorer of `citerag eval` (ALCE's metrics only, as
   ``--no-attribution``) against ALCE's own control flow, one judge call per pair and no
   de-duplication, with the same judge on the same answers, side by side in one run; then
   the full `citerag eval` scorer (with RARR attribution) for reference.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_eval.py [--limit 40] [--sanity-limit 0] [--judge default]
        [--threads N] [--part all|sanity|speed]

On a CPU the default judge (a MiniLM cross-encoder) is compute-bound at one thread: a batch
costs what its pairs cost one by one, so the ratio there comes from de-duplication alone.
Batching pays where a call has fixed costs: several threads, a GPU, or an LLM judge.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_ask import SHARED_DATA  # noqa: E402
from eval import alce  # noqa: E402
from eval.alce import CitationInput, ExampleCitations  # noqa: E402
from eval.formats import Doc, Example  # noqa: E402
from eval.scoring import EvalConfig, evaluate  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "quotesum_dev" / "dev.jsonl"
_QUOTE = re.compile(r"\[ (\d+) (.*?) \]")
_CLOSING = re.compile(r"[.!?,;:]+[\"'\u201d\u2019)]*$")
_MARKER = re.compile(r" ?\[(\d+)\]")
_SPACE_PUNCT = re.compile(r"\s+([.,;:!?])")


def convert_summary(summary: str) -> str:
    """``[ k span ]`` quotes as ``span [k]`` citations, each source once per sentence."""

    def cite(m: re.Match[str]) -> str:
        span = m[2].strip()
        end = _CLOSING.search(span)
        cut = end.start() if end else len(span)
        return f"{span[:cut].rstrip()} [{m[1]}]{span[cut:]}"

    text = _SPACE_PUNCT.sub(r"\1", _QUOTE.sub(cite, summary))  # QuoteSum writes "] ." for "]."
    return " ".join(_first_citations_only(s) for s in alce.split_output(text))


def _first_citations_only(sentence: str) -> str:
    seen: set[str] = set()

    def keep(m: re.Match[str]) -> str:
        if m[1] in seen:
            return ""
        seen.add(m[1])
        return m[0]

    return _SPACE_PUNCT.sub(r"\1", _MARKER.sub(keep, sentence))


def load(path: Path) -> list[Example]:
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        docs = [Doc(row.get(f"title{k}", ""), row.get(f"source{k}", "")) for k in range(1, 9)]
        while docs and not docs[-1].text:
            docs.pop()
        examples.append(
            Example(row["unique_id"], "alce", row["question"], convert_summary(row["summary"]), tuple(docs))
        )
    return examples


def citation_inputs(examples: list[Example]) -> list[CitationInput]:
    return [CitationInput(tuple(alce.split_output(alce.clean_output(ex.output)[0])), ex.docs) for ex in examples]


def short(text: str, width: int = 150) -> str:
    return textwrap.shorten(" ".join(text.split()), width, placeholder=" ...")


def sanity(examples: list[Example], judge: object, threshold: float, show: int) -> None:
    t0 = time.perf_counter()
    ev = evaluate(examples, judge.judge, EvalConfig(threshold))  # type: ignore[attr-defined]
    dt = time.perf_counter() - t0
    m = ev.metrics()
    c, r = m["citation"], m["rarr"]
    print(
        f"\n== 1. scorer sanity: QuoteSum dev human answers ({m['n']} answers, {c['sentences']} sentences; {dt:.1f}s)"
    )
    print(f"{'citation recall':<28}{100 * c['recall']:6.1f}")
    print(f"{'citation precision':<28}{100 * c['precision']:6.1f}")
    print(f"{'citation F1':<28}{100 * c['f1']:6.1f}")
    print(
        f"{'multi-citation sentences':<28}{100 * c['multi_citation']:6.1f}%  "
        f"(overcite {100 * (c['overcite'] or 0):.1f}% of the supported ones)"
    )
    print(f"{'RARR attribution':<28}{100 * r['attribution']:6.1f}  (attributed {100 * r['attributed']:.1f}%)")
    unsupported, irrelevant = [], []
    for res in ev.results:
        for s in res.citations.sentences if res.citations else ():
            if s.status == "judged" and not s.recall:
                unsupported.append((res.example, s))
            irrelevant += [(res.example, s, ch) for ch in s.checks if s.recall and not ch.relevant]
    print(f"\ncited sentences judged unsupported: {len(unsupported)}; citations judged irrelevant: {len(irrelevant)}")
    for ex, s in unsupported[:show]:
        n = s.used[0]
        print(f"- [{ex.id}] unsupported (joint support {s.support:.2f}): {short(s.claim)}")
        print(f"    cited [{n}] {ex.docs[n - 1].title}: {short(ex.docs[n - 1].text)}")
    for ex, s, ch in irrelevant[:show]:
        print(
            f"- [{ex.id}] irrelevant [{ch.n}] (alone {ch.alone:.2f}, others without it {ch.without:.2f}): "
            f"{short(s.claim)}"
        )
        print(f"    [{ch.n}] {ex.docs[ch.n - 1].title}: {short(ex.docs[ch.n - 1].text)}")


class CountingJudge:
    """Counts calls and pairs on the way to the real judge."""

    def __init__(self, judge: object) -> None:
        self.inner = judge
        self.calls = 0
        self.pairs = 0

    @property
    def threshold(self) -> float:
        return float(self.inner.threshold)  # type: ignore[attr-defined]

    def judge(self, pairs: list[tuple[str, str]]) -> list[float]:
        self.calls += 1
        self.pairs += len(pairs)
        return self.inner.judge(pairs)  # type: ignore[attr-defined]


def same(a: list[ExampleCitations | None], b: list[ExampleCitations | None]) -> int:
    """Examples whose recall and precision agree (batched vs single-pair float noise aside)."""
    return sum(
        (x is None and y is None)
        or (x is not None and y is not None and (x.recall, x.precision) == (y.recall, y.precision))
        for x, y in zip(a, b)
    )


def speed(examples: list[Example], judge: object, threshold: float) -> None:
    inputs = citation_inputs(examples)
    judge.judge([("Title: warm-up\nThe judge is loaded.", "The judge is loaded.")])  # type: ignore[attr-defined]
    seq = CountingJudge(judge)
    t0 = time.perf_counter()
    sequential = alce.score_citations_sequential(inputs, seq.judge, threshold)
    t_seq = time.perf_counter() - t0
    bat = CountingJudge(judge)
    t0 = time.perf_counter()
    ev = evaluate(examples, bat.judge, EvalConfig(threshold, attribution=False))
    t_bat = time.perf_counter() - t0
    batched = [r.citations for r in ev.results]
    full = CountingJudge(judge)
    t0 = time.perf_counter()
    evaluate(examples, full.judge, EvalConfig(threshold))
    t_full = time.perf_counter() - t0
    print(f"\n== 2. speed on {len(examples)} answers (ALCE citation recall + precision)")
    print(f"{'scorer':<44}{'seconds':>9}{'calls':>7}{'pairs':>7}")
    print(f"{'ALCE control flow, one pair per call':<44}{t_seq:9.2f}{seq.calls:7d}{seq.pairs:7d}")
    print(f"{'citerag eval --no-attribution (batched)':<44}{t_bat:9.2f}{bat.calls:7d}{bat.pairs:7d}")
    print(f"{'citerag eval (+ RARR attribution)':<44}{t_full:9.2f}{full.calls:7d}{full.pairs:7d}")
    print(f"same per-example recall and precision: {same(sequential, batched)} of {len(examples)}")
    print(
        f"\nratio: batched citation scoring is {t_seq / t_bat:.1f}x faster than one pair at a time "
        f"({seq.pairs} judged pairs -> {bat.pairs} distinct, {seq.calls} calls -> {bat.calls})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=40, help="answers for the speed comparison")
    ap.add_argument("--sanity-limit", type=int, default=0, help="answers for the sanity check (0: all)")
    ap.add_argument("--judge", default="default")
    ap.add_argument("--show", type=int, default=3, help="disagreement examples of each kind")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--part", choices=["all", "sanity", "speed"], default="all")
    args = ap.parse_args()

    import torch

    from verifiers.judges import load_judge

    if args.threads:
        torch.set_num_threads(args.threads)
    examples = load(args.data)
    judge = load_judge(args.judge)
    threshold = float(judge.threshold)  # type: ignore[attr-defined]
    print(
        f"QuoteSum dev: {len(examples)} human answers from {args.data}; judge {args.judge} "
        f"(threshold {threshold:.3f}); torch threads {torch.get_num_threads()}"
    )
    print(f"e.g. {short(examples[1].output, 200)}")
    if args.part in ("all", "sanity"):
        sanity(examples[: args.sanity_limit or None], judge, threshold, args.show)
    if args.part in ("all", "speed"):
        speed(examples[: args.limit], judge, threshold)


if __name__ == "__main__":
    main()
