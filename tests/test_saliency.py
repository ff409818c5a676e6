"""Saliency of evidence use (eval.saliency), its faithfulness checks, pictures and CLI.

Arithmetic is pinned with a fake generator whose log-probs are a known linear function of
which documents the prompt holds; backends and gradients run on the tiny random Llama; the
ranking test (an answer copied from one passage ranks that passage first) needs a model that
can copy, so it runs on SmolLM2 (slow).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import FakeGenerator, FakeTokenizer

from eval.faithfulness import check_faithfulness, summarize
from eval.heatmap import render_html, write_html, write_png
from eval.saliency import (
    METHODS,
    answer_from_dict,
    answer_from_parts,
    attribute,
    citation_use_agreement,
    compare_citations,
    context_cite,
    leave_one_out,
    prepare,
    read_answers,
    resolve_methods,
    used_sources,
)
from eval.saliency.ablation import logit_prob, loo_masks
from pipeline.errors import ConfigError, ContextBudgetError, InputError
from pipeline.prompting import build_prompt
from pipeline.types import AttributedAnswer, Passage

PASSAGES = (
    Passage("fr", "The capital of France is Paris. Paris lies on the river Seine.", "France"),
    Passage("wa", "Water boils at one hundred degrees Celsius at sea level."),
    Passage("mo", "The moon orbits the earth about once every twenty seven days."),
)
QUESTION = "What is the capital of France?"
ANSWER = "The capital of France is Paris [1]. It lies on the Seine [1][3]."

#: Effect (nats) of passage n on the first word of answer sentence j: W[j][n - 1].
W = np.array([[6.0, 0.5, 2.0], [3.0, 0.0, -1.0]])


def linear_fake(answer: str) -> FakeGenerator:
    """Every answer token has log-prob -1, except the first token of sentence j, which gets
    -20 + sum of W[j][n-1] over the documents n the prompt shows (whole-passage effects) or
    over the shown sentences of each passage, each worth W[j][n-1] / (sentences in n)."""
    tokenizer = FakeTokenizer()
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=\. ))\S", answer)]

    def score(p: str, c: str) -> list[float]:
        assert c == answer
        presence = np.zeros(len(PASSAGES))
        for n, passage in enumerate(PASSAGES):
            sents = [s for s in re.split(r"(?<=\.) ", passage.text)]
            presence[n] = sum(s in p for s in sents) / len(sents)
        row, pos = [], 0
        for tok in tokenizer.encode(c):
            text = tokenizer.decode([tok])
            j = starts.index(pos) if pos in starts else None
            row.append(-20.0 + float(W[j] @ presence) if j is not None else -1.0)
            pos += len(text)
        return row

    return FakeGenerator(max_context=4096, tokenizer=tokenizer, scorer=score)


@pytest.fixture()
def answer() -> AttributedAnswer:
    return answer_from_parts(QUESTION, PASSAGES, ANSWER)


# -- context: sources, ablated prompts, answer tokens ------------------------------------------


def test_prepare_rebuilds_the_ask_prompt_and_ablates_with_stable_numbers(answer: AttributedAnswer) -> None:
    gen = FakeGenerator()
    ctx = prepare(answer, gen)
    built = build_prompt(
        QUESTION,
        PASSAGES,
        gen.tokenizer,
        max_context=gen.max_context,
        max_new_tokens=len(gen.tokenizer.encode(ANSWER)) + 1,
    )
    assert ctx.prompt == built.text
    assert [s.label for s in ctx.sources("passage")] == ["[1]", "[2]", "[3]"]
    assert [s.label for s in ctx.sources("sentence")] == ["[1].1", "[1].2", "[2].1", "[3].1"]
    assert ctx.sources("sentence")[1].text == "Paris lies on the river Seine."
    no_first = ctx.prompt_for([False, True, True], "passage")
    assert "Document [1]" not in no_first and "Paris" not in no_first
    assert "Document [2]: Water" in no_first and "Document [3]: The moon" in no_first
    cut = ctx.prompt_for([True, False, True, True], "sentence")
    assert "Document [1] (Title: France): The capital of France is Paris.\n" in cut and "Seine" not in cut
    assert ctx.prompt_for([False, False, True, True], "sentence") == no_first
    with pytest.raises(ValueError):
        ctx.prompt_for([True], "passage")
    with pytest.raises(InputError, match="valid levels: passage, sentence"):
        ctx.sources("word")  # type: ignore[arg-type]


def test_answer_tokens_skip_markers_and_gaps(answer: AttributedAnswer) -> None:
    ctx = prepare(answer, FakeGenerator())
    assert [s.citations for s in ctx.sentences] == [(1,), (1, 3)]
    marked = "".join(t.text for t in ctx.tokens if t.marker)
    assert marked == "[1][1][3]"
    gap = [t for t in ctx.tokens if t.sentence == -1]
    assert [t.text for t in gap] == [" "]  # only the space between the two sentences
    first = "".join(t.text for t in ctx.tokens if t.sentence == 0 and not t.marker)
    assert first == "The capital of France is Paris ."
    w = ctx.token_weights()
    assert w.shape == (2, len(ctx.tokens)) and w.sum() == sum(t.scorable for t in ctx.tokens)


def test_passages_that_do_not_fit_are_an_error(answer: AttributedAnswer) -> None:
    gen = FakeGenerator()
    ctx = prepare(answer, gen)
    needed = len(gen.tokenizer.encode(ctx.prompt)) + len(ctx.tokens) + 1
    assert prepare(answer, FakeGenerator(max_context=needed)).prompt == ctx.prompt
    with pytest.raises(ContextBudgetError, match="only 2 of the 3 passages fit .* raise --max-model-len"):
        prepare(answer, FakeGenerator(max_context=needed - 1))


# -- ablation arithmetic -------------------------------------------------------------------------


def test_loo_recovers_the_known_effects_in_one_scoring_call(answer: AttributedAnswer) -> None:
    gen = linear_fake(ANSWER)
    ctx = prepare(answer, gen)
    (att,) = leave_one_out(gen, [ctx], "passage")
    assert gen.score_calls == 1
    np.testing.assert_allclose(att.scores, W, atol=1e-9)
    n_tok = [sum(t.scorable for t in ctx.tokens if t.sentence == j) for j in range(2)]
    np.testing.assert_allclose(att.info["full_logprob"], [-20 + W[j].sum() - (n_tok[j] - 1) for j in range(2)])
    assert att.ranking(0) == [0, 2, 1] and [s.label for s in att.top(1, 2)] == ["[1]", "[2]"]
    (sent,) = leave_one_out(gen, [ctx], "sentence")
    np.testing.assert_allclose(sent.scores, np.c_[W[:, :1] / 2, W[:, :1] / 2, W[:, 1:]], atol=1e-9)


def test_loo_masks_shape() -> None:
    m = loo_masks(3)
    assert m.shape == (4, 3) and m[0].all() and (m[1:].sum(axis=1) == 2).all() and not m[1:].diagonal().any()


def test_contextcite_surrogate_recovers_linear_effects(answer: AttributedAnswer) -> None:
    gen = linear_fake(ANSWER)
    ctx = prepare(answer, gen)
    (att,) = context_cite(gen, [ctx], "passage", n_masks=64, seed=3)
    assert gen.score_calls == 1
    # The logit of a tiny probability is its log: the surrogate is the linear model itself,
    # up to Lasso's shrinkage (alpha / Var(mask) = 0.04).
    np.testing.assert_allclose(att.scores, W, atol=0.1)
    full = leave_one_out(gen, [ctx], "passage")[0].info["full_logprob"]
    np.testing.assert_allclose(att.predict(np.ones((1, 3), dtype=bool))[0], logit_prob(full), atol=0.3)
    (cv,) = context_cite(gen, [ctx], "passage", n_masks=64, seed=3, alpha=None)
    np.testing.assert_allclose(cv.scores, W, atol=0.1)
    with pytest.raises(InputError, match="at least 2"):
        context_cite(gen, [ctx], "passage", n_masks=1)


def test_logit_prob() -> None:
    lp = np.log(np.array([0.5, 0.1, 1e-30]))
    np.testing.assert_allclose(logit_prob(lp), [0.0, np.log(0.1 / 0.9), np.log(1e-30)], rtol=1e-9)


def test_methods_registry() -> None:
    assert METHODS == ("loo", "contextcite", "ig", "ixg")
    assert resolve_methods("ixg,loo") == ("loo", "ixg")
    assert resolve_methods(["all"]) == METHODS
    with pytest.raises(InputError, match="valid methods: loo, contextcite, ig, ixg, all"):
        resolve_methods("shap")


def test_gradient_methods_need_the_transformers_backend(answer: AttributedAnswer) -> None:
    gen = linear_fake(ANSWER)
    with pytest.raises(ConfigError, match="--backend transformers"):
        attribute(gen, [answer], ("loo", "ig"))
    assert gen.score_calls == 0  # nothing was scored before the error


# -- faithfulness ----------------------------------------------------------------------------------


def test_faithfulness_arithmetic(answer: AttributedAnswer) -> None:
    gen = linear_fake(ANSWER)
    reports = attribute(gen, [answer], ("loo", "contextcite"), n_masks=32)
    gen.score_calls = 0
    (rep,) = check_faithfulness(gen, reports, k=1, seeds=4, n_heldout=16, seed=7)
    assert gen.score_calls == 1
    loo = rep.faithfulness["loo"]
    np.testing.assert_allclose(loo.topk_drop, W.max(axis=1))
    # The random sources come from the documented seeded stream.
    rng = np.random.default_rng([7, 1])
    picks = [int(rng.choice(3, 1, replace=False)[0]) for _ in range(4)]
    np.testing.assert_allclose(loo.random_drop, W[:, picks].mean(axis=1))
    np.testing.assert_allclose(loo.lds, [1.0, 1.0])  # the effects are exactly linear
    assert rep.faithfulness["contextcite"].mean_lds == pytest.approx(1.0)
    summary = summarize([rep])
    assert summary["loo"]["sentences"] == 2 and summary["loo"]["topk_drop"] == pytest.approx(W.max(axis=1).mean())
    d = rep.to_dict()["faithfulness"]["loo"]
    assert d["k"] == 1 and len(d["per_sentence"]) == 2
    (k3,) = check_faithfulness(gen, reports, k=5, seeds=2)  # k clamped to the 3 sources
    np.testing.assert_allclose(k3.faithfulness["loo"].topk_drop, k3.faithfulness["loo"].random_drop)
    with pytest.raises(InputError):
        check_faithfulness(gen, reports, k=0)


# -- citation-use agreement ---------------------------------------------------------------------


def test_compare_citations_counts() -> None:
    cited = [[(1,), (1, 3)], [(2,), ()]]
    used = [[(1, 3), (1,)], [None, (2,)]]
    agg = compare_citations(cited, used)
    assert (agg.sentences, agg.cited, agg.used, agg.cited_unused, agg.used_uncited, agg.exact) == (3, 3, 4, 1, 2, 0)
    assert agg.cited_but_unused_rate == pytest.approx(1 / 3)
    assert agg.used_but_uncited_rate == pytest.approx(2 / 4)
    assert agg.per_answer[1][0]["used"] is None
    assert agg.to_dict()["exact_rate"] == 0.0
    empty = compare_citations([[()]], [[()]])
    assert empty.cited_but_unused_rate is None and empty.exact == 1
    with pytest.raises(InputError):
        compare_citations([[(1,)]], [[]])


def test_used_sources_and_agreement(answer: AttributedAnswer) -> None:
    gen = linear_fake(ANSWER)
    (att,) = leave_one_out(gen, [prepare(answer, gen)], "passage")
    assert used_sources(att, threshold=1.0) == [(1, 3), (1,)]
    assert used_sources(att, threshold=1.0, max_sources=1) == [(1,), (1,)]
    gen.score_calls = 0
    agg = citation_use_agreement(gen, [answer, answer], threshold=1.0)
    assert gen.score_calls == 1  # both answers in one batched call
    # Sentence 1 cites [1] and used [1][3]; sentence 2 cites [1][3] and used [1].
    assert (agg.sentences, agg.cited, agg.used, agg.cited_unused, agg.used_uncited) == (4, 6, 6, 2, 2)
    assert agg.cited_but_unused_rate == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="passage-level"):
        used_sources(leave_one_out(gen, [prepare(answer, gen)], "sentence")[0])


def test_progress_scores_in_chunks_with_the_same_result(
    answer: AttributedAnswer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval.saliency.ablation as ablation

    gen = linear_fake(ANSWER)
    ctx = prepare(answer, gen)
    (one,) = leave_one_out(gen, [ctx], "sentence")
    gen.score_calls = 0
    monkeypatch.setattr(ablation, "PROGRESS_CHUNK", 2)
    (chunked,) = leave_one_out(gen, [ctx], "sentence", progress=True)
    n_prompts = 1 + len(ctx.sources("sentence"))
    assert gen.score_calls == -(-n_prompts // 2) > 1
    np.testing.assert_array_equal(chunked.scores, one.scores)


# -- reading answers -------------------------------------------------------------------------------


def test_answer_round_trip_from_ask_json(tmp_path: Path, answer: AttributedAnswer) -> None:
    d = answer.to_dict()
    back = answer_from_dict(json.loads(json.dumps(d)))
    assert back.text == answer.text and back.sentences == answer.sentences
    assert [p.text for p in back.passages] == [p.text for p in PASSAGES]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(d, indent=2))
    assert len(read_answers(str(one))) == 1
    many = tmp_path / "many.jsonl"
    many.write_text(json.dumps(d) + "\n\n" + json.dumps(d) + "\n")
    assert len(read_answers(str(many))) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(d) + "\n{oops\n")
    with pytest.raises(InputError, match="bad.jsonl:2"):
        read_answers(str(bad))
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty.json is empty: expected the output of `citerag ask --json`"):
        read_answers(str(empty))
    with pytest.raises(InputError, match="passages"):
        answer_from_dict({"question": "q", "answer": "a"})
    wrong = dict(d, sentences=[dict(d["sentences"][0], start=3)])
    with pytest.raises(InputError, match="sentence 1 does not match"):
        prepare(answer_from_dict(wrong), FakeGenerator())


def test_passages_verify_added_are_not_part_of_the_explained_context(answer: AttributedAnswer) -> None:
    """`ask --verify` output lists evidence it found ("shown": false) after the shown passages;
    the generator never saw it, so attribution explains the shown passages only."""
    from dataclasses import replace

    extra = Passage("extra.txt", "Evidence found later.", "Extra", 1.0, 0, 21)
    last = answer.sentences[-1]
    cited_extra = replace(last, citations=(*last.citations, len(answer.passages) + 1))
    verified = AttributedAnswer(
        answer.question,
        answer.text,
        (*answer.sentences[:-1], cited_extra),
        (*answer.passages, extra),
        {},
        n_shown=len(answer.passages),
    )
    back = answer_from_dict(json.loads(json.dumps(verified.to_dict())))
    assert back.passages == answer.passages[: len(back.passages)] and len(back.passages) == len(answer.passages)
    assert back.sentences[-1].citations == last.citations
    assert back.report["unshown_passages_left_out"] == 1


# -- pictures --------------------------------------------------------------------------------------


def test_html_and_png(tmp_path: Path) -> None:
    passages = PASSAGES + (Passage("x", "<script>alert(1)</script> & more."),)
    ans = answer_from_parts(QUESTION, passages, ANSWER)
    gen = FakeGenerator()
    (rep,) = attribute(gen, [ans], ("loo", "contextcite"), "sentence", n_masks=8)
    page = render_html(rep, 1)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http" not in page and "<mark>It lies on the Seine [1][3].</mark>" in page
    assert page.count('class="doc"') == 2 * len(passages)
    assert "[1].2:" in page  # hover titles carry source labels and values
    write_html(rep, tmp_path / "h.html", 0)
    png = write_png(rep, tmp_path / "sub" / "p.png", 1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="between 1 and 2"):
        render_html(rep, 2)


# -- tiny model: backends and gradients --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tf(tiny_model_dir: Path) -> Any:
    from pipeline.generators.hf import TransformersGenerator

    return TransformersGenerator(str(tiny_model_dir), batch_size=8)


def test_ablation_agrees_between_vllm_and_transformers(tiny_vllm: Any, tiny_tf: Any, answer: AttributedAnswer) -> None:
    for level in ("passage", "sentence"):
        a = attribute(tiny_vllm, [answer], ("loo", "contextcite"), level, n_masks=12)[0]  # type: ignore[arg-type]
        b = attribute(tiny_tf, [answer], ("loo", "contextcite"), level, n_masks=12)[0]  # type: ignore[arg-type]
        assert a.context.prompt == b.context.prompt
        for name in ("loo", "contextcite"):
            assert np.isfinite(a.attributions[name].scores).all()
            np.testing.assert_allclose(a.attributions[name].scores, b.attributions[name].scores, atol=1e-3)
        np.testing.assert_allclose(
            a.attributions["loo"].info["full_logprob"], b.attributions["loo"].info["full_logprob"], atol=1e-3
        )


def _manual_ixg(gen: Any, ctx: Any, sentence: int) -> np.ndarray:
    """Input x gradient of one sentence's log-prob, per prompt token, with plain autograd."""
    import torch

    from pipeline.generators.base import score_ids

    p, c = score_ids(gen.tokenizer, ctx.prompt, ctx.answer)
    ids = torch.tensor([p + c])
    x = gen.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logp = torch.log_softmax(gen.model(inputs_embeds=x).logits[0, len(p) - 1 : -1].float(), -1)
    lp = logp[torch.arange(len(c)), torch.tensor(c)]
    target = (lp * torch.tensor(ctx.token_weights()[sentence], dtype=torch.float32)).sum()
    (grad,) = torch.autograd.grad(target, x)
    return (grad * x).sum(-1)[0, : len(p)].detach().numpy()


def test_gradient_matrix_shapes_and_aggregation(tiny_tf: Any, answer: AttributedAnswer) -> None:
    (rep,) = attribute(tiny_tf, [answer], ("ig", "ixg"), "passage", n_steps=4)
    ctx = rep.context
    for name in ("ig", "ixg"):
        tok = rep.tokens[name]
        assert tok.matrix.shape == (len(ctx.tokens), len(tok.evidence_tokens))
        scorable = np.array([t.scorable for t in ctx.tokens])
        assert np.isnan(tok.matrix[~scorable]).all() and np.isfinite(tok.matrix[scorable]).all()
        # Evidence tokens tile each passage's text exactly.
        for n, p in enumerate(ctx.passages, start=1):
            assert "".join(p.text[t.start : t.end] for t in tok.evidence_tokens if t.passage == n).strip() == p.text
        per_sentence = ctx.token_weights() @ np.nan_to_num(tok.matrix)
        expected = np.stack(
            [per_sentence[:, [t.passage == n for t in tok.evidence_tokens]].sum(axis=1) for n in (1, 2, 3)], axis=1
        )
        np.testing.assert_allclose(rep.attributions[name].scores, expected, rtol=1e-9)
    # Both methods are linear in the target: one pass per sentence gives the same rows.
    (fast,) = attribute(tiny_tf, [answer], ("ig", "ixg"), "passage", n_steps=4, token_matrix=False)
    assert fast.tokens == {}
    for name in ("ig", "ixg"):
        np.testing.assert_allclose(fast.attributions[name].scores, rep.attributions[name].scores, rtol=1e-3, atol=1e-4)
    assert "max_convergence_delta" in rep.attributions["ig"].info
    # Input x gradient matches plain autograd, summed over each passage's tokens.
    manual = _manual_ixg(tiny_tf, ctx, 0)
    from eval.saliency.gradient import evidence_tokens
    from pipeline.generators.base import score_ids

    positions, ev = evidence_tokens(ctx, score_ids(tiny_tf.tokenizer, ctx.prompt, ctx.answer)[0])
    by_passage = [manual[[pos for pos, t in zip(positions, ev) if t.passage == n]].sum() for n in (1, 2, 3)]
    np.testing.assert_allclose(rep.attributions["ixg"].scores[0], by_passage, rtol=1e-3, atol=1e-4)
    # Byte-level BPE glues spaces to the next word, so every evidence token lies in a
    # sentence and a passage's score is the sum of its sentences' scores.
    assert all(t.sentence > 0 for t in ev)
    (sent,) = attribute(tiny_tf, [answer], ("ixg",), "sentence", token_matrix=False)
    np.testing.assert_allclose(
        sent.attributions["ixg"].scores[:, :2].sum(axis=1), rep.attributions["ixg"].scores[:, 0], rtol=1e-3, atol=1e-5
    )


def test_integrated_gradients_one_step_is_the_midpoint_gradient(tiny_tf: Any, answer: AttributedAnswer) -> None:
    """With one Gauss-Legendre point IG is (x - baseline) * grad f at the midpoint: pins the
    baseline (zero evidence embeddings) and the target."""
    import torch

    from eval.saliency.gradient import evidence_tokens
    from pipeline.generators.base import score_ids

    (rep,) = attribute(tiny_tf, [answer], ("ig",), "passage", n_steps=1, token_matrix=False)
    ctx = rep.context
    p, c = score_ids(tiny_tf.tokenizer, ctx.prompt, ctx.answer)
    positions, ev = evidence_tokens(ctx, p)
    x = tiny_tf.model.get_input_embeddings()(torch.tensor([p + c])).detach()
    mid = x.clone()
    mid[0, positions] *= 0.5
    mid.requires_grad_(True)
    logp = torch.log_softmax(tiny_tf.model(inputs_embeds=mid).logits[0, len(p) - 1 : -1].float(), -1)
    lp = logp[torch.arange(len(c)), torch.tensor(c)]
    (grad,) = torch.autograd.grad((lp * torch.tensor(ctx.token_weights()[1], dtype=torch.float32)).sum(), mid)
    per_token = (grad * x).sum(-1)[0].numpy()
    expected = [per_token[[pos for pos, t in zip(positions, ev) if t.passage == n]].sum() for n in (1, 2, 3)]
    np.testing.assert_allclose(rep.attributions["ig"].scores[1], expected, rtol=1e-3, atol=1e-5)


# -- CLI -----------------------------------------------------------------------------------------------


def test_cli_end_to_end(tiny_model_dir: Path, tmp_path: Path, answer: AttributedAnswer) -> None:
    from app.cli import cli

    src = tmp_path / "answer.json"
    src.write_text(json.dumps(answer.to_dict()))
    html, png = tmp_path / "heat.html", tmp_path / "scores.png"
    r = CliRunner().invoke(
        cli,
        [
            "attribute",
            str(src),
            "--method",
            "all",
            "--backend",
            "transformers",
            "--model",
            str(tiny_model_dir),
            "--json",
            "--html",
            str(html),
            "--png",
            str(png),
            "--sentence",
            "2",
            "--faithfulness",
            "--masks",
            "8",
            "--n-steps",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["methods"]) == set(METHODS) and set(out["faithfulness"]) == set(METHODS)
    assert len(out["methods"]["loo"]["scores"]) == 2 and len(out["methods"]["loo"]["scores"][0]) == 3
    tokens = out["methods"]["ixg"]["tokens"]
    assert len(tokens["matrix"]) == len(tokens["answer_tokens"]) and len(tokens["matrix"][0]) == len(
        tokens["evidence_tokens"]
    )
    assert "<mark>It lies on the Seine [1][3].</mark>" in html.read_text()
    assert png.read_bytes()[:4] == b"\x89PNG"

    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps({"title": p.title, "text": p.text}) + "\n" for p in PASSAGES))
    r = CliRunner().invoke(
        cli,
        [
            "attribute",
            "--question",
            QUESTION,
            "--passages",
            str(passages),
            "--answer",
            ANSWER,
            "--level",
            "sentence",
            "--backend",
            "transformers",
            "--model",
            str(tiny_model_dir),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Sentence 2: It lies on the Seine [1][3]." in r.output and "[1].2" in r.output


def test_cli_input_errors(tmp_path: Path, answer: AttributedAnswer) -> None:
    from app.cli import cli

    src = tmp_path / "answer.json"
    src.write_text(json.dumps(answer.to_dict()))
    run = CliRunner().invoke
    r = run(cli, ["attribute", str(src), "--method", "ig"])
    assert r.exit_code == 2 and "--backend transformers" in r.output
    r = run(
        cli, ["attribute", str(src), "--method", "ixg", "--backend", "transformers", "--llm-url", "http://127.0.0.1:9"]
    )
    assert r.exit_code == 2 and "drop --llm-url" in r.output
    r = run(cli, ["attribute"])
    assert r.exit_code == 2 and "--question" in r.output
    r = run(cli, ["attribute", str(src), "--question", "q"])
    assert r.exit_code == 2 and "not both" in r.output
    r = run(cli, ["attribute", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "not found" in r.output
    two = tmp_path / "two.jsonl"
    two.write_text(json.dumps(answer.to_dict()) + "\n" + json.dumps(answer.to_dict()) + "\n")
    r = run(cli, ["attribute", str(two), "--html", str(tmp_path / "h.html")])
    assert r.exit_code == 2 and "one answer" in r.output
    r = run(cli, ["attribute", str(src), "--masks", "1"])
    assert r.exit_code == 2 and "--masks" in r.output
    r = run(cli, ["attribute", str(src), "--sentence", "3"])
    assert r.exit_code == 2 and "between 1 and 2" in r.output


def test_cli_on_the_default_vllm_backend(
    tiny_vllm: Any, tiny_model_dir: Path, tmp_path: Path, answer: AttributedAnswer
) -> None:
    """The command's default path: an in-process vLLM engine (closed when the command ends),
    the same numbers as the session's engine."""
    from app.cli import cli

    src = tmp_path / "answer.json"
    src.write_text(json.dumps(answer.to_dict()))
    r = CliRunner().invoke(
        cli, ["attribute", str(src), "--model", str(tiny_model_dir), "--json", "--level", "sentence"]
    )
    assert r.exit_code == 0, r.output
    (ref,) = attribute(tiny_vllm, [answer], ("loo",), "sentence")
    np.testing.assert_allclose(
        np.array(json.loads(r.stdout)["methods"]["loo"]["scores"], dtype=float),
        ref.attributions["loo"].scores,
        atol=1e-4,
    )


# -- SmolLM2: an answer copied from one passage ranks it first -------------------------------------------


@pytest.mark.slow
def test_copied_answer_ranks_its_passage_first(smollm2_dir: str) -> None:
    from pipeline.generators.hf import TransformersGenerator

    passages = (
        Passage(
            "ev",
            "Mount Everest is the highest mountain on Earth, at 8,849 metres. It lies in the Himalayas.",
            "Mount Everest",
        ),
        Passage(
            "gg",
            "The Golden Gate Bridge opened to traffic on May 27, 1937. It spans the Golden Gate strait.",
            "Golden Gate Bridge",
        ),
        Passage(
            "ph",
            "Photosynthesis lets green plants make sugar from carbon dioxide and water using sunlight.",
            "Photosynthesis",
        ),
    )
    ans = answer_from_parts(
        "When did the Golden Gate Bridge open?",
        passages,
        "The Golden Gate Bridge opened to traffic on May 27, 1937 [2].",
    )
    gen = TransformersGenerator(smollm2_dir, batch_size=4)
    (rep,) = attribute(gen, [ans], ("loo", "contextcite", "ig"), "passage", n_masks=24, n_steps=8, token_matrix=False)
    for name in ("loo", "contextcite", "ig"):
        assert rep.attributions[name].ranking(0)[0] == 1, (name, rep.attributions[name].scores)
    assert rep.attributions["loo"].scores[0, 1] > 5.0  # nats: the copy depends on its source
    (sent,) = attribute(gen, [ans], ("loo",), "sentence")
    assert sent.attributions["loo"].top(0, 1)[0].label == "[2].1"
    agg = citation_use_agreement(gen, [ans])
    assert (agg.cited, agg.cited_unused) == (1, 0)
