"""Support judges: windowing, de-duplication, label order, thresholds, training formats,
calibration, the tiny-model code paths (BERT cross-encoder, T5 seq2seq, vLLM LLM judge) and
the real committed default judge on clear pairs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, InputError, ModelNotFoundError
from pipeline.protocols import Pair, SupportJudge
from verifiers.judge_eval import binary_scores, calibrate_threshold, evaluate_judge, held_out_macro_f1
from verifiers.judge_train import (
    LabelledPair,
    TrainConfig,
    augment_pairs,
    detect_format,
    pairs_from_row,
    parse_data_spec,
    read_pairs,
    train_judge,
)
from verifiers.judges import (
    CARD_NAME,
    WindowedJudge,
    read_card,
    save_threshold,
    support_index,
    window_spans,
    write_card,
)

WORDS = (
    "the a bridge opened in 1931 1975 city river paris france capital is was of and cat dog sat on mat "
    "moon earth orbits sun water boils at degrees sea level golden gate san francisco year built "
    "not red blue green tower iron 1 0 premise : hypothesis . , claim evidence"
).split()


# ------------------------------------------------------------------ fakes


class WordJudge(WindowedJudge):
    """Splits on spaces; support = 1 when every claim word is in the window, else 0.1.
    Records every scored batch so tests can see windows and batching."""

    def __init__(self, max_words: int = 8, stride: int = 2, batch_size: int = 4) -> None:
        self.max_words = max_words
        self.window_stride = stride
        self.batch_size = batch_size
        self.batches: list[list[Pair]] = []

    def evidence_budget(self, claim: str) -> int:
        return self.max_words

    def split_evidence(self, evidence: str, size: int) -> list[str]:
        words = evidence.split()
        return [" ".join(words[a:b]) for a, b in window_spans(len(words), size, self.window_stride)]

    def score_windows(self, pairs: Sequence[Pair]) -> list[float]:
        self.batches.append(list(pairs))
        return [1.0 if set(c.split()) <= set(e.split()) else 0.1 for e, c in pairs]


def test_window_spans_cover_with_overlap() -> None:
    assert window_spans(5, 8, 2) == [(0, 5)]
    assert window_spans(0, 8, 2) == [(0, 0)]
    spans = window_spans(20, 8, 2)
    assert spans == [(0, 8), (6, 14), (12, 20)]
    covered = set()
    for a, b in spans:
        assert b - a <= 8
        covered |= set(range(a, b))
    assert covered == set(range(20))


def test_long_evidence_takes_the_max_over_windows() -> None:
    judge = WordJudge(max_words=8, stride=2)
    filler = " ".join(f"w{i}" for i in range(30))
    evidence = f"{filler} the bridge opened in 1931 {filler}"
    [score] = judge.judge([(evidence, "bridge opened 1931")])
    assert score == 1.0  # found in a middle window, not cut off
    assert sum(len(b) for b in judge.batches) > 5  # it really was windowed
    [miss] = judge.judge([(evidence, "bridge opened 1975")])
    assert miss == pytest.approx(0.1)


def test_identical_pairs_are_judged_once_and_batched() -> None:
    judge = WordJudge(max_words=100, batch_size=4)
    pairs = [("a b c", "a"), ("a b c", "z"), ("a b c", "a"), ("x y", "x"), ("a b c", "a"), ("p", "q")]
    scores = judge.judge(pairs)
    assert scores == [1.0, 0.1, 1.0, 1.0, 1.0, 0.1]
    scored = [p for b in judge.batches for p in b]
    assert len(scored) == 4  # four distinct pairs
    assert [len(b) for b in judge.batches] == [4]  # one batch of at most batch_size


class ShortWindowJudge(WordJudge):
    """WordJudge whose window is shared with the claim: ``window`` words in all."""

    def __init__(self, window: int = 12, **kw: int) -> None:
        super().__init__(**kw)
        self.window = window

    def evidence_budget(self, claim: str) -> int:
        return self.window - len(claim.split())


def test_long_claims_are_split_and_every_part_must_be_supported() -> None:
    judge = ShortWindowJudge(window=24, stride=2, batch_size=64)
    # A claim must leave half the window (12 words) for evidence, else it is judged in parts:
    # its sentences, and word chunks of at most 12 words for a sentence longer than that.
    twelve = "a b c d e f. g h i j k l."
    assert judge.claim_parts(twelve) == [twelve]
    assert judge.claim_parts(twelve + " m n.") == ["a b c d e f.", "g h i j k l.", "m n."]
    words = " ".join(f"w{i}" for i in range(15))
    assert judge.claim_parts(words) == [" ".join(f"w{i}" for i in range(12)), "w12 w13 w14"]
    evidence = "a b c d e f. g h i j k l. m n."
    [all_there, one_missing] = judge.judge([(evidence, twelve + " m n."), (evidence, twelve + " m q.")])
    # every part supported in some window -> 1.0; one part unsupported -> its 0.1 (the minimum)
    assert all_there == 1.0 and one_missing == pytest.approx(0.1)
    assert judge.last_stats["claims_split"] == 2 and judge.last_stats["claim_parts"] == 6
    assert len(judge.batches) == 1  # the parts of both pairs went through one batched call


def test_a_claim_of_one_enormous_word_is_cut_by_characters() -> None:
    class CharJudge(ShortWindowJudge):
        def evidence_budget(self, claim: str) -> int:
            return self.window - len(claim) // 4

    judge = CharJudge(window=40)
    parts = judge.claim_parts("x" * 200)
    assert "".join(parts) == "x" * 200 and all(judge.evidence_budget(p) >= 20 for p in parts)


def test_judge_rejects_a_bare_pair() -> None:
    with pytest.raises(InputError):
        WordJudge().judge(("evidence", "claim"))  # type: ignore[arg-type]


def test_fake_satisfies_the_protocol() -> None:
    assert isinstance(WordJudge(), SupportJudge)


def test_support_index_reads_names_not_positions() -> None:
    assert support_index({0: "contradiction", 1: "neutral", 2: "entailment"}) == 2
    assert support_index({0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}) == 0
    assert support_index({0: "not_entailment", 1: "entailment"}) == 1
    assert support_index({"0": "not attributable", "1": "attributable"}) == 1
    with pytest.raises(ConfigError, match="LABEL_0"):
        support_index({0: "LABEL_0", 1: "LABEL_1"})


def test_threshold_card_round_trip(tmp_path: Path) -> None:
    assert read_card(tmp_path) == {}
    write_card(tmp_path, {"threshold": 0.5, "labels": {"0": "not_entailment", "1": "entailment"}})
    save_threshold(tmp_path, 0.37, data=["x.jsonl"], macro_f1=0.7)
    card = json.loads((tmp_path / CARD_NAME).read_text())
    assert card["threshold"] == pytest.approx(0.37)
    assert card["labels"]["1"] == "entailment"  # the rest of the card is kept
    assert card["calibration"]["macro_f1"] == 0.7


# ------------------------------------------------------------------ training data formats

SNLI = {"premise": "A cat sat on the mat.", "hypothesis": "A cat sat.", "label": "entailment"}
NLI = {
    "premise": "Paris is in France.",
    "hypothesis": "Paris is in Spain.",
    "label": "not_supported",
    "source": "rte_glue",
}
WICE = {
    "claim": "The bridge opened in 1931.",
    "evidence": ["Intro.", "The bridge opened in 1931.", "It is red.", "Built by many."],
    "label": "supported",
    "supporting_sentences": [[1], [1, 2]],
}
AB = {
    "claim": "The bridge opened in 1931.",
    "references": ["Title: Bridge\n\nThe bridge opened in 1975."],
    "attribution_label": "not attributable",
    "src_dataset": "ExpertQA",
}


def test_format_detection() -> None:
    assert detect_format(SNLI) == "snli"
    assert detect_format(NLI) == "nli"
    assert detect_format(WICE) == "wice"
    assert detect_format(AB) == "attributionbench"
    with pytest.raises(InputError, match="attributionbench"):
        detect_format({"text": "x"})


def test_pairs_from_each_format() -> None:
    assert pairs_from_row(SNLI) == [LabelledPair("A cat sat on the mat.", "A cat sat.", 1, "snli")]
    assert pairs_from_row({**SNLI, "label": "-"}) == []
    assert pairs_from_row(NLI)[0].label == 0
    wice = pairs_from_row(WICE)
    assert wice[0] == LabelledPair(" ".join(WICE["evidence"]), WICE["claim"], 1, "wice")
    assert [p.evidence for p in wice[1:]] == ["The bridge opened in 1931.", "The bridge opened in 1931. It is red."]
    assert all(p.label == 1 for p in wice)
    assert len(pairs_from_row(WICE, extra=False)) == 1
    partial = pairs_from_row({**WICE, "label": "partially_supported"})
    assert [p.label for p in partial] == [0]  # no extra positives from a partial claim
    [ab] = pairs_from_row(AB)
    assert ab.label == 0 and ab.source == "ExpertQA" and "1975" in ab.evidence


def test_read_pairs_mixed_file_and_sampling(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in (SNLI, NLI, WICE, AB)) + "\n\n")
    pairs = read_pairs(f)
    assert len(pairs) == 1 + 1 + 3 + 1
    assert len(read_pairs(f, max_pairs=2, seed=1)) == 2
    assert read_pairs(f, max_pairs=2, seed=1) == read_pairs(f, max_pairs=2, seed=1)
    assert parse_data_spec(f"{f}@2") == (str(f), 2)
    assert parse_data_spec(str(f)) == (str(f), None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"premise": "a", "hypothesis": "b", "label": "maybe"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_pairs(bad)


def test_augmented_pairs_keep_labels_honest() -> None:
    base = [
        LabelledPair("The bridge opened in 1937. It spans the strait.", "The bridge opened in 1937.", 1, "x"),
        LabelledPair(
            "Marie Curie won 2 Nobel prizes. She was born in Warsaw. She studied in Paris.",
            "Curie won 2 Nobel prizes.",
            1,
            "x",
        ),
        LabelledPair("A dog runs in a park.", "A cat sleeps.", 0, "x"),
        LabelledPair("Everest is 8849 metres high.", "Everest is 8849 metres high.", 1, "x"),
    ]
    out = augment_pairs(base, seed=3, rate=20)
    assert len(out) >= 40 and out == augment_pairs(base, seed=3, rate=20)  # seeded
    kinds = {p.source for p in out}
    assert kinds == {"aug_number", "aug_passage", "aug_verbatim", "aug_unrelated"}  # the v2 kinds by default
    for p in out:
        if p.source == "aug_number":
            # the claim's number was changed to one the evidence does not state: unsupported
            src = next(b for b in base if b.evidence == p.evidence)
            assert p.label == 0 and p.claim != src.claim
            assert [w for w in p.claim.split() if w.strip(".").isdigit() and w.strip(".") not in p.evidence]
        elif p.source == "aug_passage":
            # the original evidence sits, whole, inside a longer passage; the label is kept
            src = next(b for b in base if b.evidence in p.evidence and b.claim == p.claim)
            assert p.label == src.label and len(p.evidence) > len(src.evidence)
        elif p.source == "aug_verbatim":
            assert p.label == 1 and p.claim in p.evidence and p.claim != p.evidence
        else:
            assert p.label == 0 and not any(b.claim == p.claim and b.evidence == p.evidence for b in base)
    assert augment_pairs(base[:1]) == []


def test_v3_augmentation_kinds_are_labelled_as_their_kind_says() -> None:
    from verifiers.judge_train import AUGMENT_KINDS

    base = [
        LabelledPair("The bridge opened in 1937. It spans the strait.", "The bridge opened in 1937.", 1, "x"),
        LabelledPair("Marie Curie won 2 Nobel prizes in Paris.", "Curie won 2 Nobel prizes in Paris.", 1, "x"),
        LabelledPair(
            "Ada Lovelace wrote notes on the engine of Charles Babbage.",
            "The notes on the engine of Charles Babbage were written by Ada Lovelace.",
            1,
            "x",
        ),
        LabelledPair("A dog runs in a park near Lake Geneva.", "A cat sleeps near Lake Geneva.", 0, "x"),
        LabelledPair("Everest is 8849 metres high.", "Everest is 8849 metres high.", 1, "x"),
    ]
    out = augment_pairs(base, seed=5, rate=60, kinds=AUGMENT_KINDS)
    assert out == augment_pairs(base, seed=5, rate=60, kinds=AUGMENT_KINDS)  # seeded
    kinds = {p.source for p in out}
    assert kinds >= {
        "aug_instruct",
        "aug_question",
        "aug_quote",
        "aug_entity",
        "aug_header",
        "aug_long_supported",
        "aug_long_unsupported",
    }
    claims = {b.claim for b in base}
    for p in out:
        if p.source in ("aug_instruct", "aug_question", "aug_quote"):
            # the evidence instructs / asks / reports the claim, never asserts it
            assert p.label == 0 and p.claim in claims
            assert p.evidence not in {b.evidence for b in base if b.label == 1 and b.claim == p.claim}
            if p.source == "aug_instruct":  # and the injection guard recognises every template
                assert is_instruction_text(p.evidence)
        elif p.source == "aug_entity":
            # a name shared by claim and evidence was replaced by one the evidence lacks
            assert p.label == 0 and p.claim not in claims
        elif p.source == "aug_header":
            from verifiers.injection import is_scaffolding_claim

            assert p.label == 0 and is_scaffolding_claim(p.claim)
        elif p.source.startswith("aug_long"):
            n_sentences = p.claim.count(". ") + 1
            assert n_sentences >= 2 and p.label == (p.source == "aug_long_supported")
            if p.label:  # every sentence is a supported claim whose evidence is included
                assert all(b.evidence in p.evidence for b in base if b.claim.rstrip(".") + "." in p.claim)
    with pytest.raises(InputError, match="unknown augmentation"):
        augment_pairs(base, kinds=("nonsense",))


def is_instruction_text(text: str) -> bool:
    from verifiers.injection import find_instructions

    return bool(find_instructions(text))


# ------------------------------------------------------------------ calibration and evaluation


def test_calibration_picks_the_separating_threshold() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.35, 0.6, 0.9]
    t, f1 = calibrate_threshold(labels, scores)
    assert 0.3 < t <= 0.35 and f1 == 1.0
    assert binary_scores(labels, [s >= 0.5 for s in scores]).macro_f1 < 1.0


def test_held_out_calibration_is_not_optimistic() -> None:
    # Separable scores: any fold's threshold separates the other fold too.
    labels = [0, 1] * 20
    scores = [0.2 + 0.001 * i if y == 0 else 0.7 + 0.001 * i for i, y in enumerate(labels)]
    assert held_out_macro_f1(labels, scores) == 1.0
    # Pure noise: the in-sample calibrated threshold looks better than chance; held out it does not.
    import random

    rng = random.Random(0)
    labels = [rng.randint(0, 1) for _ in range(400)]
    scores = [rng.random() for _ in labels]
    _, in_sample = calibrate_threshold(labels, scores)
    assert held_out_macro_f1(labels, scores) < in_sample
    with pytest.raises(ValueError):
        held_out_macro_f1([1], [0.5])


def test_evaluate_judge_per_source_and_threshold() -> None:
    pairs = [
        LabelledPair("a b", "a", 1, "S1"),
        LabelledPair("a b", "z", 0, "S1"),
        LabelledPair("c d", "c", 1, "S2"),
        LabelledPair("c d", "q", 0, "S2"),
    ]
    res = evaluate_judge(WordJudge(), pairs)
    assert res["n"] == 4 and res["accuracy"] == 1.0 and res["macro_f1"] == 1.0
    assert res["threshold"] == 0.5 and set(res["per_source"]) == {"S1", "S2"}
    res_hi = evaluate_judge(WordJudge(), pairs, threshold=1.5)  # nothing passes
    assert res_hi["macro_f1"] < 1.0
    res_cal = evaluate_judge(WordJudge(), pairs, calibrate=True)
    assert res_cal["macro_f1"] == 1.0 and 0.1 < res_cal["threshold"] <= 1.0


def _ab_rows(n_questions: int = 12) -> list[dict]:
    """AttributionBench-format rows: per question one supported and one unsupported claim that
    WordJudge gets right, plus (for every third question) one it gets wrong."""
    rows = []
    for q in range(n_questions):
        ref = f"the bridge opened in {1900 + q} and the tower is red"
        rows.append(
            {
                "question": f"When did bridge {q} open?",
                "claim": f"the bridge opened in {1900 + q}",
                "references": [ref],
                "attribution_label": "attributable",
                "src_dataset": "S1",
            }
        )
        rows.append(
            {
                "question": f"when did  BRIDGE {q} open",
                "claim": "the cat sat on the mat",
                "references": [ref],
                "attribution_label": "not attributable",
                "src_dataset": "S2",
            }
        )
        if q % 3 == 0:
            rows.append(
                {
                    "question": f"When did bridge {q} open?",
                    "claim": "the tower is red",
                    "references": [ref],
                    "attribution_label": "not attributable",
                    "src_dataset": "S2",
                }
            )
    return rows


def test_split_by_question_is_deterministic_and_keeps_a_question_together(tmp_path: Path) -> None:
    from verifiers.judge_eval import load_eval_pairs, question_key, split_of

    f = tmp_path / "ab.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _ab_rows(40)))
    everything = load_eval_pairs([f])
    sel = load_eval_pairs([f], split="selection")
    rep = load_eval_pairs([f], split="report")
    assert len(sel) + len(rep) == len(everything) and sel and rep
    # "When did bridge 3 open?" and "when did  BRIDGE 3 open" are one question: same half
    assert question_key(everything[0]) == question_key(everything[1]) == "when did bridge 0 open"
    assert not {question_key(p) for p in sel} & {question_key(p) for p in rep}
    assert [split_of(p) for p in everything] == [split_of(p) for p in load_eval_pairs([f])]
    with pytest.raises(InputError, match="selection, report"):
        load_eval_pairs([f], split="train")


def test_bootstrap_interval_resamples_questions() -> None:
    from verifiers.judge_eval import bootstrap_macro_f1

    labels = [1, 0] * 20
    perfect = [bool(y) for y in labels]
    assert bootstrap_macro_f1(labels, perfect, [str(i // 2) for i in range(40)]) == (1.0, 1.0)
    # one question holds every error: resampling questions gives a wide interval around the figure
    preds = [bool(y) if i >= 8 else not y for i, y in enumerate(labels)]
    groups = ["bad"] * 8 + [str(i) for i in range(32)]
    lo, hi = bootstrap_macro_f1(labels, preds, groups, seed=3)
    point = binary_scores(labels, preds).macro_f1
    assert lo < point < hi == 1.0
    assert (lo, hi) == bootstrap_macro_f1(labels, preds, groups, seed=3)  # fixed seed


def test_protocol_fits_on_selection_and_reports_the_report_half(tmp_path: Path) -> None:
    from verifiers.judge_eval import evaluate_protocol, load_eval_pairs, split_of

    f = tmp_path / "ab.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _ab_rows(30)))
    pairs = load_eval_pairs([f])
    res = evaluate_protocol(WordJudge(), pairs, calibrate=True, resamples=200)
    assert res["scored"] == len(pairs) and res["refused"] == 0 and res["calibrated_on"] == "selection"
    sel = [p for p in pairs if split_of(p) == "selection"]
    assert res["selection"]["n"] == len(sel) and res["report"]["n"] == len(pairs) - len(sel)
    t, _ = calibrate_threshold([p.label for p in sel], WordJudge().judge([(p.evidence, p.claim) for p in sel]))
    assert res["threshold"] == round(t, 6)
    # WordJudge supports "the tower is red" (its words are in the reference), labelled unsupported:
    # the only errors; by hand, report macro-F1 from the report half's counts
    rep = [p for p in pairs if split_of(p) == "report"]
    wrong = sum(1 for p in rep if p.claim == "the tower is red")
    pos = sum(p.label for p in rep)
    neg = len(rep) - pos
    f_pos = 2 * pos / (2 * pos + wrong)
    f_neg = 2 * (neg - wrong) / (2 * (neg - wrong) + wrong)
    assert res["report"]["macro_f1"] == round((f_pos + f_neg) / 2, 4)
    lo, hi = res["report"]["macro_f1_ci95"]
    assert lo <= res["report"]["macro_f1"] <= hi


def test_judge_eval_cli_saves_a_threshold_only_when_asked(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from app.cli import cli

    judge_dir = tmp_path / "judge"
    shutil.copytree(tiny_bert_dir, judge_dir)
    write_card(judge_dir, {"threshold": 0.5})
    f = tmp_path / "ab.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _ab_rows(16)))
    runner = CliRunner()
    base = ["judge", "eval", "--data", str(f), "--judge", str(judge_dir), "--bootstrap", "50"]
    out = runner.invoke(cli, [*base, "--split", "both", "--calibrate", "--json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["refused"] == 0 and res["scored"] == res["n"] == len(_ab_rows(16))
    assert "saved_to" not in res and read_card(judge_dir) == {"threshold": 0.5}  # calibrating alone saves nothing
    text = runner.invoke(cli, [*base, "--split", "selection", "--calibrate"])
    assert text.exit_code == 0 and "not saved: add --save-threshold" in text.output and "refused 0" in text.output
    bad = runner.invoke(cli, [*base, "--split", "report", "--calibrate", "--save-threshold"])
    assert bad.exit_code == 2 and "in-sample" in bad.output
    assert runner.invoke(cli, [*base, "--save-threshold"]).exit_code == 2  # without --calibrate
    saved = runner.invoke(cli, [*base, "--split", "both", "--calibrate", "--save-threshold", "--json"])
    assert saved.exit_code == 0, saved.output
    card = read_card(judge_dir)
    assert card["threshold"] == json.loads(saved.stdout.strip().splitlines()[-1])["threshold"]
    assert card["calibration"]["split"] == "selection" and "macro_f1_ci95" in card["calibration"]["report"]


# ------------------------------------------------------------------ tiny real models


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-label BertForSequenceClassification whose support label is at index 0."""
    from tiny_model import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS, ("entailment", "not_entailment"))


def test_cross_encoder_reads_id2label_and_windows(tiny_bert_dir: Path) -> None:
    import torch

    from verifiers.judges import CrossEncoderJudge, load_judge

    judge = CrossEncoderJudge(str(tiny_bert_dir), batch_size=3, max_length=24, window_stride=4)
    assert judge.support_id == 0  # read from the permuted id2label, not assumed to be last
    short = ("the cat sat on the mat", "the cat sat")
    long_ev = " ".join(["the river is blue and the tower is red ."] * 6) + " the bridge opened in 1931"
    assert len(judge.windows(long_ev, "the bridge opened in 1931")) > 2
    got = judge.judge([short, (long_ev, "the bridge opened in 1931"), short])
    assert got[0] == got[2] and all(0.0 <= s <= 1.0 for s in got)
    # The long pair's score is the max over its windows, each scored on its own.
    windows = judge.windows(long_ev, "the bridge opened in 1931")
    per_window = judge.score_windows([(w, "the bridge opened in 1931") for w in windows])
    assert got[1] == pytest.approx(max(per_window), abs=1e-5)
    # Support is the softmax probability of the entailment label (index 0).
    feats = judge.tokenizer([short[0]], [short[1]], return_tensors="pt")
    with torch.inference_mode():
        p = torch.softmax(judge.model(**feats).logits, -1)[0, 0].item()
    assert got[0] == pytest.approx(p, abs=1e-5)
    assert isinstance(load_judge(str(tiny_bert_dir)), CrossEncoderJudge)


def test_tiny_training_run_saves_a_loadable_judge(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from verifiers.judges import CrossEncoderJudge

    rows = []
    for i in range(10):
        rows += [
            {
                "premise": f"the bridge opened in 1931 {i}",
                "hypothesis": "the bridge opened in 1931",
                "label": "entailment",
            },
            {
                "premise": f"the cat sat on the mat {i}",
                "hypothesis": "the dog sat",
                "label": "contradiction",
                "source": "x",
            },
            {
                "claim": "the moon orbits the earth",
                "evidence": ["the moon orbits the earth .", "the sun"],
                "label": "supported",
                "supporting_sentences": [[0]],
            },
            {
                "claim": "water boils at 0 degrees",
                "references": ["water boils at 1 degrees"],
                "attribution_label": "not attributable",
                "src_dataset": "S",
            },
        ]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "judge"
    cfg = TrainConfig(
        data=[str(data)],
        out=str(out),
        base=str(tiny_bert_dir),
        batch_size=8,
        max_steps=2,
        max_length=32,
        seed=3,
        progress=False,
    )
    train_judge(cfg)
    card = read_card(out)
    assert card["training"]["steps"] == 2 and card["training"]["seed"] == 3
    assert card["threshold"] == 0.5 and card["labels"] == {"0": "not_entailment", "1": "entailment"}
    assert (out / "model.safetensors").is_file()
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        name = next(iter(f.keys()))
        assert str(f.get_tensor(name).dtype) == "torch.float16"
    judge = CrossEncoderJudge(str(out))
    assert judge.support_id == 1 and judge.max_length == 32
    [s] = judge.judge([("the bridge opened in 1931", "the bridge opened in 1931")])
    assert 0.0 <= s <= 1.0


def test_training_stops_when_its_wall_time_is_spent(tiny_bert_dir: Path, tmp_path: Path) -> None:
    rows = [
        {"premise": f"the cat sat {i}", "hypothesis": "the cat sat", "label": ["entailment", "neutral"][i % 2]}
        for i in range(40)
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "judge"
    cfg = TrainConfig(
        data=[str(data)],
        out=str(out),
        base=str(tiny_bert_dir),
        batch_size=2,
        epochs=5,
        max_length=32,
        max_minutes=1e-5,
        progress=False,
    )
    train_judge(cfg)
    card = read_card(out)["training"]
    assert 1 <= card["steps"] < 100  # 100 steps by count; the time ran out first
    assert card["stopped_by_time"] is True and card["schedule_steps"] == 100


def test_a_time_stopped_run_is_reproduced_by_stop_after_steps(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule counts steps, never seconds: the weights of a run --max-minutes cut short are
    those of the same command with --stop-after-steps at the step it reached, byte for byte."""
    import itertools
    import types

    from safetensors.torch import load_file

    import verifiers.judge_train as jt

    rows = [
        {"premise": f"the cat sat on mat {i}", "hypothesis": "the cat sat", "label": ["entailment", "neutral"][i % 2]}
        for i in range(40)
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))

    def run(out: Path, **kw: object) -> dict:
        # A clock that moves one second each time it is read: a loaded machine, made deterministic.
        ticks = itertools.count(1_000_000)
        monkeypatch.setattr(
            jt,
            "time",
            types.SimpleNamespace(
                time=lambda: float(next(ticks)), **{k: getattr(jt.time, k) for k in ("strftime", "gmtime")}
            ),
        )
        cfg = TrainConfig(
            data=[str(data)],
            out=str(out),
            base=str(tiny_bert_dir),
            batch_size=2,
            epochs=5,
            max_length=32,
            warmup=0.0,
            lr=1e-3,
            seed=3,
            progress=False,
            log_every=1000,
            **kw,
        )
        train_judge(cfg)
        return read_card(out)["training"]

    first = run(tmp_path / "timed", max_minutes=20 / 60)
    assert first["stopped_by_time"] and 5 <= first["steps"] < first["schedule_steps"]
    second = run(tmp_path / "stepped", stop_after_steps=first["steps"])
    assert second["steps"] == first["steps"] and not second["stopped_by_time"]
    a = load_file(tmp_path / "timed" / "model.safetensors")
    b = load_file(tmp_path / "stepped" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(bool((a[k] == b[k]).all()) for k in a)


def test_seq2seq_judge_on_a_tiny_t5(tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    from verifiers.judges import Seq2SeqNLIJudge, load_judge

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *sorted(set(WORDS))])}
    wl = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    wl.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(tmp_path)
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_kv=8,
        num_heads=2,
        num_layers=1,
        d_ff=32,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path)

    judge = load_judge(str(tmp_path))
    assert isinstance(judge, Seq2SeqNLIJudge)
    assert judge.yes_id == vocab["1"] and judge.no_id == vocab["0"]
    judge.max_length = 24
    long_ev = " ".join(["the river is blue and the tower is red ."] * 5)
    assert len(judge.windows(long_ev, "the tower is red")) > 1
    scores = judge.judge([("the cat sat on the mat", "the cat sat"), (long_ev, "the tower is red")])
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_llm_judge_with_the_fake_generator_reads_logprobs() -> None:
    from fakes import FakeGenerator

    from verifiers.judges import LLMJudge, load_judge

    gen = FakeGenerator()
    judge = load_judge("llm", generator=gen)
    assert isinstance(judge, LLMJudge)
    scores = judge.judge([("The bridge opened in 1931.", "The bridge opened in 1931."), ("x", "y")])
    assert all(0.0 < s < 1.0 for s in scores)
    conts = {c for _, c in gen.scored}
    assert conts == {"Yes", "No"}  # the chat template ends the prompt at the assistant turn
    assert all(p.rstrip().endswith("assistant:") for p, _ in gen.scored)
    with pytest.raises(ConfigError, match="generator"):
        load_judge("llm")


@pytest.mark.slow
def test_llm_judge_through_tiny_vllm(tiny_vllm: object) -> None:
    from verifiers.judges import LLMJudge

    judge = LLMJudge(tiny_vllm, window_tokens=64)  # type: ignore[arg-type]
    long_ev = "The river is blue and the tower is red. " * 40
    scores = judge.judge([("The bridge opened in 1931.", "The bridge opened in 1931."), (long_ev, "The tower is red.")])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)


def test_unknown_judge_names_are_listed(tmp_path: Path) -> None:
    from verifiers.judges import load_judge

    with pytest.raises(ModelNotFoundError, match="default, llm"):
        load_judge(str(tmp_path / "nope"))


# ------------------------------------------------------------------ the real default judge

CLEAR = {
    "verbatim": (
        "The Golden Gate Bridge is a suspension bridge in San Francisco. It opened to traffic in 1937 "
        "and was the longest suspension bridge in the world at the time.",
        "The Golden Gate Bridge opened in 1937.",
    ),
    "contradiction": (
        "The Golden Gate Bridge is a suspension bridge in San Francisco. It opened to traffic in 1937.",
        "The Golden Gate Bridge has never been opened to traffic.",
    ),
    "unrelated": (
        "Water boils at 100 degrees Celsius at sea level; at high altitude it boils at a lower temperature.",
        "Marie Curie won two Nobel Prizes.",
    ),
}


@pytest.fixture(scope="module")
def default_judge() -> SupportJudge:
    """On torch: these tests hold the committed weights to the threshold calibrated on them;
    the int8 ONNX judge (the CPU default) is compared with torch in tests/test_judge_onnx.py
    (it moves a score by ~0.02 on average; the long claim below from 0.80 to 0.73, under the threshold)."""
    from verifiers.judges import load_judge

    return load_judge("default", runtime="torch")


def test_default_judge_is_committed_small_and_calibrated() -> None:
    from verifiers.judges import DEFAULT_JUDGE_DIR

    weights = DEFAULT_JUDGE_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 50 * 1024 * 1024
    card = read_card(DEFAULT_JUDGE_DIR)
    assert 0.0 < card["threshold"] < 1.0 and "calibration" in card
    assert card["training"]["seed"] is not None and card["training"]["steps"] > 0


def test_default_judge_on_clear_pairs(default_judge: SupportJudge) -> None:
    names = list(CLEAR)
    scores = dict(zip(names, default_judge.judge([CLEAR[n] for n in names])))
    [copied] = default_judge.judge([(CLEAR["verbatim"][1], CLEAR["verbatim"][1])])
    threshold = default_judge.threshold
    assert scores["verbatim"] > 0.5 and copied > 0.5
    # The threshold calibrated on AttributionBench (long web evidence) sits high; clear
    # failures fall below both it and 0.5.
    assert scores["contradiction"] < 0.5 and scores["contradiction"] < threshold
    assert scores["unrelated"] < 0.5 and scores["unrelated"] < threshold
    assert scores["verbatim"] > scores["contradiction"] and scores["verbatim"] > scores["unrelated"]


GOLDEN = (
    "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate strait. It opened to traffic "
    "in 1937. It was designed by Joseph Strauss. Its towers are 227 metres tall."
)


def test_default_judge_scores_a_claim_longer_than_its_window(default_judge: SupportJudge) -> None:
    sentences = [s + "." for s in GOLDEN.rstrip(".").split(". ")]
    long_claim = " ".join(sentences * 6)  # every sentence is in the evidence
    judge = default_judge
    assert judge._n_tokens(long_claim) > 192  # type: ignore[attr-defined]  # more than the whole window
    parts = judge.claim_parts(long_claim)  # type: ignore[attr-defined]
    assert parts == sentences * 6  # one part per sentence
    assert all(judge.evidence_budget(p) >= judge.evidence_budget("") // 2 for p in parts)  # type: ignore[attr-defined]
    wrong = long_claim.replace("in 1937.", "in 1975.", 1)  # one sentence of one part now contradicts
    supported, unsupported = judge.judge([(GOLDEN, long_claim), (GOLDEN, wrong)])
    assert supported >= judge.threshold > unsupported  # type: ignore[attr-defined]
    assert judge.last_stats["claims_split"] == 2  # type: ignore[attr-defined]


def test_cross_encoder_batch_follows_the_device() -> None:
    from verifiers.judges import default_batch_size

    assert default_batch_size("cpu") == 32
    assert default_batch_size("cuda") == default_batch_size("cuda:1") == 128
    assert default_batch_size("mps") == 32  # unmeasured devices keep the CPU's batch


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (run on the device machine: BENCHMARKS.md, judge on a GPU)")
def test_auto_runs_the_default_judge_on_the_gpu_with_the_cpus_decisions() -> None:
    """On a GPU ``auto`` is torch there, not ONNX on the CPU, and its decisions are the CPU's."""
    from verifiers.judges import CrossEncoderJudge, load_judge

    gpu = load_judge("default", runtime="auto")
    assert isinstance(gpu, CrossEncoderJudge) and str(gpu.device).startswith("cuda")
    assert gpu.batch_size == 128  # the GPU's batch (BATCH_SIZE), not the CPU's 32
    cpu = load_judge("default", runtime="torch", device="cpu")
    pairs = [
        ("The Golden Gate Bridge opened in 1937.", "The bridge opened in 1937."),
        ("The Golden Gate Bridge opened in 1937.", "The bridge opened in 1990."),
        ("Marie Curie won two Nobel Prizes, in physics and chemistry.", "Curie won a Nobel Prize in chemistry."),
        ("Everest was first climbed in 1953 by Hillary and Norgay.", "Everest has never been climbed."),
    ]
    a, b = gpu.judge(pairs), cpu.judge(pairs)
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-2
    assert gpu.decide(a) == cpu.decide(b)
