"""Speculative retrieval for iterative In-Context RALM (pipeline/iterative.py).

The contract: under a deterministic (greedy) generator, ``--iterative --speculative`` gives
exactly the answers of ``--iterative``, with fewer calls to the real retriever. Checked over
many questions with the real BM25 index and with a retriever that cannot rank a cache, then
with the real MiniLM + FAISS index, and end to end with the real SmolLM2 on vLLM's CPU engine.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import FakeGenerator, FakeRetriever, FakeTokenizer
from retriever_fixtures import TOPICS, minilm_embedder

from pipeline.errors import InputError
from pipeline.rag import IterativeConfig, RAGPipeline
from pipeline.types import Generation, GenerationParams, Passage
from retrievers.bm25 import BM25Retriever


def _sentences(stem: str, title: str, text: str) -> list[Passage]:
    """One passage per sentence of a topic, with its real span in the text."""
    return [Passage(f"{stem}.md", m.group(), title, 0, m.start(), m.end()) for m in re.finditer(r"[^.]+\.", text)]


PASSAGES = [p for topic in TOPICS for p in _sentences(*topic)]
QUESTIONS = [f"What about {title.lower()} and {TOPICS[(i * 7) % len(TOPICS)][0]}?" for i, (_, title, _) in
             enumerate(TOPICS)] * 2  # fmt: skip


def _greedy_like(prompt: str, params: GenerationParams) -> Generation:
    """A deterministic function of the whole prompt, as greedy decoding is: it writes words of
    the passages it was shown (so the next query, and the next retrieval, depend on them)."""
    h = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    words = re.findall(r"[a-z]{4,}", prompt.split("Question")[0].lower()) or ["nothing"]
    n = params.max_tokens
    text = "".join(" " + words[(h >> (9 * j)) % len(words)] for j in range(n))
    return Generation(text, finish_reason="stop" if h % 9 == 0 else "length")


def _pipe(retriever: Any, **cfg: Any) -> tuple[RAGPipeline, FakeGenerator]:
    gen = FakeGenerator(_greedy_like, 8192, tokenizer=FakeTokenizer(words=True))
    it = IterativeConfig(stride=4, query_tokens=cfg.pop("query_tokens", 6), **cfg)
    pipe = RAGPipeline(retriever, gen, k=3, iterative=it, params=GenerationParams(max_tokens=48), citations="post-hoc")
    return pipe, gen


def _same(a: Any, b: Any) -> None:
    """Equal answers: text, sentences, citations, passages and spans; retrieval scores within
    1e-5 (a dense query embedded in another batch differs in the last float bits, as it does
    between two plain runs with other batch sizes)."""
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("timings", None), d.pop("rounds", None), d.pop("speculation", None)
    sa, sb = ([p.pop("score") for p in d["passages"]] for d in (da, db))
    assert da == db
    assert sa == pytest.approx(sb, abs=1e-5)


class _Counting:
    """Counts the queries a retriever gets (and keeps its optional methods)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls, self.queries = inner, 0, 0

    def retrieve(self, queries: Any, k: int) -> Any:
        self.calls += 1
        self.queries += len(queries)
        return self.inner.retrieve(queries, k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("spec_stride, adaptive, prefetch", [(3, True, 20), (1, False, 0), (6, False, 5)])
def test_speculative_equals_plain_with_real_bm25(spec_stride: int, adaptive: bool, prefetch: int) -> None:
    bm25 = BM25Retriever.build(PASSAGES)
    plain_ret, spec_ret = _Counting(bm25), _Counting(bm25)
    plain = _pipe(plain_ret)[0].ask_batch(QUESTIONS, progress=False)
    spec_pipe, gen = _pipe(spec_ret, speculative=True, spec_stride=spec_stride, adaptive=adaptive, prefetch=prefetch)
    spec = spec_pipe.ask_batch(QUESTIONS, progress=False)
    for a, b in zip(plain, spec):
        _same(a, b)
    stats = spec[0].report["speculation"]
    # Both paths ran: accepted guesses and rollbacks that regenerated.
    assert stats["accepted"] > 0 and stats["rollbacks"] > 0 and stats["wasted_rounds"] >= stats["rollbacks"]
    assert stats["retrieve_calls"] == spec_ret.calls
    if spec_stride > 1 and not adaptive:
        assert spec_ret.calls < plain_ret.calls
    assert sum(len(a.passages) for a in spec) > len(QUESTIONS)  # iterative rounds really re-retrieved


def test_speculative_without_cache_ranking_guesses_the_last_passages() -> None:
    """A retriever with no ``retrieve_from`` (here a fake) is speculated as 'same as last round'."""
    fake = FakeRetriever(PASSAGES, pad=True)
    plain = _pipe(FakeRetriever(PASSAGES, pad=True), query_tokens=12)[0].ask_batch(QUESTIONS[:20], progress=False)
    spec = _pipe(fake, query_tokens=12, speculative=True)[0].ask_batch(QUESTIONS[:20], progress=False)
    for a, b in zip(plain, spec):
        _same(a, b)
    assert not hasattr(fake, "retrieve_from") and spec[0].report["speculation"]["accepted"] > 0


def test_bm25_cache_scores_equal_full_scores_and_ranking() -> None:
    bm25 = BM25Retriever.build(PASSAGES)
    rng = np.random.default_rng(0)
    for q in QUESTIONS[:15] + ["lava chess queen honey", "zzz unknown"]:
        full = bm25.retrieve([q], 4)[0]
        rows = sorted(set(rng.choice(len(PASSAGES), 12, replace=False).tolist()))
        tokens = bm25._tokenize_queries([q])[0]
        assert np.array_equal(bm25._candidate_scores(tokens, np.array(rows)), bm25._scores(tokens)[rows])
        cands = [PASSAGES[r] for r in rows] + full  # holds the real top-4: the same list, scores included
        got = bm25.retrieve_from([q], [cands], 4)[0]
        assert [(p.key, p.score) for p in got] == [(p.key, p.score) for p in full]
    q = "honeybees queen colonies"
    assert [p.key for p in bm25.retrieve([q], 9)[0][:4]] == [p.key for p in bm25.retrieve([q], 4)[0]]


def test_dense_cache_ranking_equals_faiss_on_candidates_holding_the_top_k() -> None:
    from retrievers.dense import DenseRetriever

    dense = DenseRetriever.build(PASSAGES, minilm_embedder())
    for q in QUESTIONS[:10]:
        full = dense.retrieve([q], 4)[0]
        cands = list(reversed(PASSAGES[::3])) + full
        got = dense.retrieve_from([q], [cands], 4)[0]
        assert [p.key for p in got] == [p.key for p in full]
        assert [p.score for p in got] == pytest.approx([p.score for p in full], abs=1e-5)
    plain = _pipe(dense, query_tokens=12)[0].ask_batch(QUESTIONS[:24], progress=False)
    spec = _pipe(dense, query_tokens=12, speculative=True)[0].ask_batch(QUESTIONS[:24], progress=False)
    for a, b in zip(plain, spec):
        _same(a, b)
    assert spec[0].report["speculation"]["accepted"] > 0


def test_bad_speculation_settings_are_input_errors() -> None:
    with pytest.raises(InputError, match="--spec-stride"):
        IterativeConfig(speculative=True, spec_stride=0)
    with pytest.raises(InputError, match="--prefetch"):
        IterativeConfig(speculative=True, prefetch=-1)


def test_smollm2_speculative_cli_equals_iterative(sample_index: Path, smollm2_dir: str, tmp_path: Path) -> None:
    """End to end through `citerag ask` with the real SmolLM2 on vLLM's CPU engine, greedy."""
    import json
    import subprocess
    import sys

    qs = tmp_path / "q.jsonl"
    qs.write_text("".join(json.dumps({"question": q}) + "\n" for q in [
        "When did the Golden Gate Bridge open?", "What did Marie Curie discover?", "How tall is Mount Everest?",
        "Who built the first telescope?", "What is photosynthesis?", "Why is the sky blue?",
    ]))  # fmt: skip
    outs = []
    for extra in ([], ["--speculative", "--spec-stride", "2"]):
        out = tmp_path / f"out{len(extra)}.jsonl"
        cmd = [sys.executable, "-m", "app.cli", "ask", "--index", str(sample_index), "--questions", str(qs),
               "--out", str(out), "--iterative", "--stride", "4", "--max-tokens", "24", "--retriever", "bm25",
               "--citations", "post-hoc", *extra]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append([json.loads(line) for line in out.read_text().splitlines()])
    for a, b in zip(*outs):
        for d in (a, b):
            d.pop("timings", None), d.pop("rounds", None)
        spec = b.pop("speculation")
        assert a == b  # BM25 scores are exact: nothing is left out of the comparison
    assert spec["speculated"] > 0 and spec["accepted"] > 0


def test_scheduler_speculates_only_where_retrieval_is_dear() -> None:
    from pipeline.iterative import best_stride

    # Retrieval is 1% of a round and a quarter of the guesses are wrong: retrieve for real.
    assert best_stride(0.75, round_s=1.0, retrieve_s=0.01, check_s=0.01, most=8) == 0
    # Retrieval costs as much as generating, a check of many rounds as one, guesses are right.
    assert best_stride(0.98, round_s=1.0, retrieve_s=1.0, check_s=1.0, most=8) >= 4
    # Always right and a free check: the longest stride.
    assert best_stride(1.0, round_s=1.0, retrieve_s=0.5, check_s=0.0, most=8) == 8


def test_switching_between_guessing_and_real_retrieval_keeps_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler may turn speculation off (0) and on again mid-run; answers stay the same."""
    import itertools

    import pipeline.iterative as it

    choices = itertools.cycle([0, 0, 2, 0, 3, 1])
    monkeypatch.setattr(it, "best_stride", lambda *a, **k: next(choices))
    bm25 = BM25Retriever.build(PASSAGES)
    plain = _pipe(bm25)[0].ask_batch(QUESTIONS, progress=False)
    spec = _pipe(bm25, speculative=True, spec_stride=2)[0].ask_batch(QUESTIONS, progress=False)
    for a, b in zip(plain, spec):
        _same(a, b)
    stats = spec[0].report["speculation"]
    assert stats["plain_rounds"] > 0 and stats["speculated"] > 0 and stats["rollbacks"] > 0


def test_cli_speculative_needs_iterative_and_passes_its_settings(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(cli, ["ask", "Why?", "--index", str(tmp_path / "none"), "--speculative"])
    assert result.exit_code == 2 and "--speculative speeds up the iterative loop: add --iterative" in result.output
    result = CliRunner().invoke(cli, ["ask", "Why?", "--index", str(tmp_path), "--iterative", "--spec-stride", "9"])
    assert result.exit_code == 2 and "--spec-stride" in result.output
