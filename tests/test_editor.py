"""The evidence-aligned editor and the loop's contradiction check: token alignment, slot spans
and their replacement (hand-computed), the loop with fakes (both editors, the best accepted
edit kept, a claim the judge passes but an evidence sentence contradicts, a claim nothing is
about), and the real default judge over a real index fixing a wrong year end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEditor, FakeJudge, FakeQuestionGenerator, FakeRetriever

from pipeline.errors import ConfigError
from pipeline.types import Passage
from verifiers.editor import DEFAULT_EDITOR, AlignedEditor, EditCandidate, find_contradiction
from verifiers.rarr import RARRConfig, RARRReviser, build_reviser
from verifiers.text import align, apply_diffs, slot_kind, slot_runs, tokenize, transplant

GERMANY_WRONG = "Germany went through its worst inflation in 1931."
GERMANY_RIGHT = "Germany went through its worst inflation in 1923."


def kind(text: str) -> str | None:
    return slot_kind(tokenize(text))


# -- tokens and slots --------------------------------------------------------------------------


def test_tokens_keep_numbers_with_separators_and_offsets() -> None:
    text = "It cost 1,500,000 dollars on 12 May 1937, said O'Brien."
    toks = tokenize(text)
    assert [t.text for t in toks] == [
        "It",
        "cost",
        "1,500,000",
        "dollars",
        "on",
        "12",
        "May",
        "1937",
        ",",
        "said",
        "O'Brien",
        ".",
    ]
    assert all(text[t.start : t.end] == t.text for t in toks)
    assert [t.text for t in tokenize("the 1930s and the 21st century, 3.5 km")] == [
        "the",
        "1930s",
        "and",
        "the",
        "21st",
        "century",
        ",",
        "3.5",
        "km",
    ]


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ("1931", "date"),
        ("12 May 1937", "date"),
        ("May 12, 1937", "date"),
        ("June", "date"),
        ("1930s", "date"),
        ("150,782", "number"),
        ("3 million", "number"),
        ("21st", "number"),
        ("Louis Pasteur", "name"),
        ("Bank of England", "name"),
        ("The", None),  # a sentence opener, not a name
        ("He", None),
        ("may", None),  # the verb, not the month
        ("1931 ,", None),  # a span never ends in punctuation
        ("in 1931", None),  # a word that is neither
        ("of England", None),  # a name starts with a capital
        ("New York. The", None),  # and ends with a capitalised word that is not an opener
    ],
)
def test_slot_kinds(span: str, expected: str | None) -> None:
    assert kind(span) == expected


def test_slot_runs_are_maximal() -> None:
    toks = tokenize("Wilhelm Conrad Röntgen won in 1901, on 10 December 1901, in Stockholm.")
    runs = [(" ".join(t.text for t in toks[i:j]), k) for i, j, k in slot_runs(toks)]
    assert runs == [
        ("Wilhelm Conrad Röntgen", "name"),
        ("1901", "date"),
        ("10 December 1901", "date"),
        ("Stockholm", "name"),
    ]


def _slot_runs_by_every_span(toks: list) -> list[tuple[int, int, str]]:
    """slot_runs by its definition: at each position, the longest span (up to 8 tokens) that
    slot_kind accepts, else move on; no span is skipped without asking slot_kind."""
    out, i = [], 0
    while i < len(toks):
        j = next((j for j in range(min(len(toks), i + 8), i, -1) if slot_kind(toks[i:j]) is not None), None)
        if j is None:
            i += 1
        else:
            out.append((i, j, slot_kind(toks[i:j])))
            i = j
    return out


def test_slot_runs_match_asking_slot_kind_about_every_span() -> None:
    """slot_runs skips positions where no slot can start: it must find the same runs as asking
    about every span, on real prose (the sample corpus) and on mixed numbers, dates and names."""
    import pathlib

    corpus = pathlib.Path(__file__).resolve().parents[1] / "pipeline" / "sample_corpus"
    texts = [f.read_text(encoding="utf-8") for f in sorted(corpus.iterdir()) if f.is_file()]
    texts += ["on 3 June 1937 the Bank of England paid $4,500 million; in the 1920s, Leonardo da Vinci"]
    n_runs = 0
    for text in texts:
        toks = tokenize(text)
        runs = slot_runs(toks)
        assert runs == _slot_runs_by_every_span(toks)
        n_runs += len(runs)
    assert n_runs > 100  # the texts do hold many slots of every kind


# -- alignment -------------------------------------------------------------------------------


def test_a_changed_year_is_the_only_diff() -> None:
    a = align(GERMANY_WRONG, "Germany went through its worst inflation in 1923.")
    # 8 words; 7 identical; the differing slot is 1 word: overlap 7 / (8 - 1) = 1.
    assert (a.words, a.matched, a.slot_words) == (8, 7, 1)
    assert a.overlap == 1.0 and a.coverage == pytest.approx(7 / 8)
    (d,) = a.diffs
    assert (d.start, d.end, d.old, d.new, d.kind) == (44, 48, "1931", "1923", "date")
    assert GERMANY_WRONG[44:48] == "1931"
    assert a.contradicts(0.8) and apply_diffs(GERMANY_WRONG, a.diffs) == GERMANY_RIGHT


def test_day_month_year() -> None:
    claim = "The ship was launched on 12 May 1937 at Belfast."
    a = align(claim, "The ship was launched on 3 June 1937 at Belfast, after two years.")
    (d,) = a.diffs
    assert (d.old, d.new, d.kind) == ("12 May", "3 June", "date")
    # 10 words, "12 May" (2) differ, the other 8 are identical: overlap 8/8.
    assert (a.words, a.matched, a.slot_words, a.overlap) == (10, 8, 2, 1.0)
    assert apply_diffs(claim, a.diffs) == "The ship was launched on 3 June 1937 at Belfast."


def test_number_with_commas_and_a_name() -> None:
    a = align("He received 150,782 SEK from the academy.", "He received 150,182 SEK from the academy in 1901.")
    assert [(d.old, d.new, d.kind) for d in a.diffs] == [("150,782", "150,182", "number")]
    claim = "Penicillin was discovered by Louis Pasteur in London."
    b = align(claim, "Penicillin was discovered by Alexander Fleming in London in 1928.")
    assert [(d.old, d.new, d.kind) for d in b.diffs] == [("Louis Pasteur", "Alexander Fleming", "name")]
    assert apply_diffs(claim, b.diffs) == "Penicillin was discovered by Alexander Fleming in London."


def test_a_value_said_in_another_order_is_paired_by_kind() -> None:
    claim = "In 1931, Germany went through its worst inflation."
    a = align(claim, GERMANY_RIGHT)
    # difflib aligns "germany ... inflation" (6 words); "In" and "1931" are unaligned; the
    # claim's one free date pairs with the sentence's one free date.
    assert [(d.old, d.new) for d in a.diffs] == [("1931", "1923")]
    assert (a.words, a.matched, a.slot_words) == (8, 6, 1) and a.overlap == pytest.approx(6 / 7)
    assert apply_diffs(claim, a.diffs) == "In 1923, Germany went through its worst inflation."


def test_no_contradiction_without_enough_shared_words() -> None:
    a = align("Paris is in France.", "Berlin is in Germany.")
    assert len(a.diffs) == 2 and a.overlap == 1.0  # "is in" matches; two names differ
    assert not a.contradicts(0.8)  # 2 matched words: fewer than 3, and fewer than twice the 2 slot words
    same = align("The Tamar river is 300 km long.", "The Tamar river is 300 km long.")
    assert same.diffs == () and same.coverage == 1.0 and not same.contradicts(0.0)
    other = align("The clock tower was built in 1850.", "The clock tower has four faces.")
    assert other.diffs == ()  # "four" is a word, not a number: nothing to pair with 1850


def test_two_differing_years_give_three_candidates() -> None:
    claim = "Marie Curie won the prize in 1905 and 1912."
    ev = Passage("curie.md", "Marie Curie won the prize in 1903 and 1911. She was born in Warsaw.", "Marie Curie")
    (cands,) = AlignedEditor().propose([claim], [[ev]])
    assert [c.text for c in cands] == [
        "Marie Curie won the prize in 1903 and 1912.",
        "Marie Curie won the prize in 1905 and 1911.",
        "Marie Curie won the prize in 1903 and 1911.",
    ]
    assert all(c.editor == "aligned" and c.evidence == (ev,) for c in cands)
    assert [len(c.diffs) for c in cands] == [1, 1, 2]


def test_the_best_aligned_sentence_decides_a_contradiction() -> None:
    lookalike = Passage("a.md", "The team won the cup in 1998. The team won the cup in 1995.", "Team")
    assert find_contradiction("The team won the cup in 1995.", [lookalike]) is None  # stated verbatim
    found = find_contradiction(
        "The team won the cup in 1996.", [Passage("b.md", "The team won the cup in 1998. It rained.", "Team")]
    )
    assert found is not None and found.passage.doc_id == "b.md"
    assert [(d.old, d.new) for d in found.alignment.diffs] == [("1996", "1998")]


def test_judge_ranked_sentences() -> None:
    ev = Passage("t.md", "The team won the cup in 1998. The team won the cup in 1994.", "Team")
    claim = "The team won the cup in 1996."
    by_tokens = AlignedEditor(sentences=1).propose([claim], [[ev]])[0]
    assert [c.text for c in by_tokens] == ["The team won the cup in 1998."]  # tie on tokens: first sentence
    judge = FakeJudge(rule=lambda e, c: 0.9 if "1994" in e else 0.1)
    by_judge = AlignedEditor(sentences=1, rank="judge", judge=judge).propose([claim], [[ev]])[0]
    assert [c.text for c in by_judge] == ["The team won the cup in 1994."]
    assert judge.pairs == [("The team won the cup in 1998.", claim), ("The team won the cup in 1994.", claim)]
    with pytest.raises(ConfigError, match="needs a judge"):
        AlignedEditor(rank="judge")


def test_transplant_keeps_the_original_spacing() -> None:
    assert (
        transplant(
            "It opened in 1975 (as planned).", "It opened in 1931 (as planned).", "It  opened in 1975 (as planned) ."
        )
        == "It  opened in 1931 (as planned) ."
    )
    assert transplant("a b c", "a B c", "a  b  c") == "a  B  c"
    assert transplant("abc", "abcd", "abc") == "abcd"  # an insertion at the end
    assert transplant("abc", "xyz", "a b c") == "xyz"  # every character replaced: one span


# -- the loop with fakes ---------------------------------------------------------------------------

BRIDGE = Passage(
    "bridge.md", "The Harbour Bridge opened in 1931. It carries a railway.", "Harbour Bridge", 0.0, 120, 176
)
RIVER = Passage("river.md", "The Tamar river is 300 km long.", "Tamar", 0.0, 0, 31)
TOWER = Passage("tower.md", "The clock tower has four faces.", "Clock tower", 0.0, 40, 71)
WRONG = "The Harbour Bridge opened in 1975."
RIGHT = "The Harbour Bridge opened in 1931."
TRUE = "The Tamar river is 300 km long."


def loop(
    editor: Any = None, aligned: AlignedEditor | None = None, judge: FakeJudge | None = None, **cfg: Any
) -> RARRReviser:
    return RARRReviser(
        FakeRetriever([BRIDGE, RIVER, TOWER]),
        judge or FakeJudge(),
        FakeQuestionGenerator(),
        editor,
        RARRConfig(**cfg),
        aligned=aligned,
    )


#: The JSON layout of ``citerag revise --json`` (and of the HTTP API's /v1/revise), key by key
#: and in order, as it was when the results were loose dicts: typed results must not change it.
PASSAGE_KEYS = ["doc_id", "title", "text", "start", "end", "score"]
REVISION_KEYS = ["original", "revised", "edits", "claims", "preservation", "report"]
APPLIED_EDIT_KEYS = ["original_text", "revised_text", "evidence", "support", "preservation", "reason", "editor"]
REMOVAL_KEYS = ["original_text", "revised_text", "evidence", "support", "preservation", "reason"]
ATTEMPT_KEYS = [
    "claim",
    "original_text",
    "revised_text",
    "evidence",
    "support",
    "preservation",
    "accepted",
    "reason",
    "editor",
    "diffs",
    "candidates",
]
CLAIM_KEYS = ["text", "original_text", "start", "end", "status", "supported", "support", "revised", "citations"]


def test_revision_json_keys_are_unchanged() -> None:
    lenient = FakeJudge(rule=lambda e, c: 1.0)  # passes the wrong year: edited because contradicted
    d = json.loads(json.dumps(loop(aligned=AlignedEditor(), judge=lenient).revise(f"{WRONG} {TRUE}").to_dict()))
    assert list(d) == REVISION_KEYS
    (edit,) = d["edits"]
    assert list(edit) == APPLIED_EDIT_KEYS and list(edit["evidence"][0]) == PASSAGE_KEYS
    assert list(d["claims"][0]) == CLAIM_KEYS[:8] + ["editor", "contradicted", "citations"]
    assert list(d["claims"][1]) == CLAIM_KEYS and list(d["claims"][1]["citations"][0]) == PASSAGE_KEYS
    (attempt,) = d["report"]["edits"]
    assert list(attempt) == ATTEMPT_KEYS and list(attempt["candidates"][0]) == [
        "text",
        "editor",
        "diffs",
        "sentence",
        "support",
        "preservation",
        "accepted",
        "reason",
    ]
    research = d["report"]["claims"][0]
    assert list(research["edit"]) == ATTEMPT_KEYS[1:]
    assert list(research["evidence"][0]) == [*PASSAGE_KEYS, "retrieval_score"]
    removed = json.loads(json.dumps(loop(editor=FakeEditor(), policy="remove").revise(WRONG).to_dict()))
    (edit,) = removed["edits"]
    assert list(edit) == REMOVAL_KEYS and edit["revised_text"] == ""
    assert list(removed["claims"][0]) == CLAIM_KEYS[:8] + ["contradicted", "citations"]


def test_aligned_edit_fixes_the_year_and_says_so() -> None:
    res = loop(aligned=AlignedEditor()).revise(f"{WRONG} {TRUE}")
    assert res.revised == f"{RIGHT} {TRUE}"
    c0, c1 = res.claims
    assert (c0.status, c0.editor, c0.text) == ("edited", "aligned", RIGHT)
    assert c1.status == "kept" and c1.text == TRUE and c1.editor is None and "editor" not in c1.to_dict()
    (edit,) = res.revision.edits
    assert edit.editor == "aligned" and edit.evidence[0][0].doc_id == "bridge.md"
    rec = res.report["claims"][0]["edit"]
    assert rec["diffs"] == [{"start": 29, "end": 33, "old": "1975", "new": "1931", "kind": "date"}]
    assert res.report["editors"] == ["aligned"]
    json.dumps(res.to_dict())


def test_both_editors_keep_the_best_accepted_candidate() -> None:
    # The LLM's edit is supported too (every content word is in the passage) but preserves less.
    llm = FakeEditor(lambda c, ev: "Harbour Bridge opened in 1931.")
    res = loop(editor=llm, aligned=AlignedEditor()).revise(WRONG)
    rec = res.report["claims"][0]["edit"]
    assert res.revised == RIGHT and rec["editor"] == "aligned"
    assert [(c["editor"], c["accepted"]) for c in rec["candidates"]] == [("aligned", True), ("llm", True)]
    # Same support (1.0); preservation 1 - 2/34 for the aligned edit against 1 - 6/34 for the LLM's.
    assert [c["preservation"] for c in rec["candidates"]] == [pytest.approx(1 - 2 / 34), pytest.approx(1 - 6 / 34)]
    assert res.report["editors"] == ["aligned", "llm"]
    # By default an accepted aligned edit wins even over a better-supported LLM edit; with
    # prefer_aligned=False the support decides.
    judge = FakeJudge(rule=lambda e, c: 1.0 if c == "The bridge opened in 1931." else (0.995 if c == RIGHT else 0.0))
    llm = FakeEditor(lambda c, ev: "The bridge opened in 1931.")
    assert loop(editor=llm, aligned=AlignedEditor(), judge=judge).revise(WRONG).revised == RIGHT
    assert (
        loop(editor=llm, aligned=AlignedEditor(), judge=judge, prefer_aligned=False).revise(WRONG).revised
        == "The bridge opened in 1931."
    )
    # When only the LLM's edit is accepted, it is kept and recorded as the LLM's.
    judge = FakeJudge(rule=lambda e, c: 1.0 if c == "The bridge opened in 1931." else 0.0)
    res = loop(
        editor=FakeEditor(lambda c, ev: "The bridge opened in 1931."), aligned=AlignedEditor(), judge=judge
    ).revise(WRONG)
    assert res.revised == "The bridge opened in 1931." and res.claims[0].editor == "llm"
    # An identical edit from both editors is judged once and credited to the aligned editor.
    judge = FakeJudge()
    res = loop(editor=FakeEditor(lambda c, ev: RIGHT), aligned=AlignedEditor(), judge=judge).revise(WRONG)
    assert [c["editor"] for c in res.report["claims"][0]["edit"]["candidates"]] == ["aligned"]


def test_a_claim_the_judge_passes_but_the_evidence_contradicts_is_edited() -> None:
    lenient = FakeJudge(rule=lambda e, c: 1.0)  # supports everything, like a judge blind to numbers
    res = loop(aligned=AlignedEditor(), judge=lenient).revise(f"{WRONG} {TRUE}")
    assert res.revised == f"{RIGHT} {TRUE}"
    c0, c1 = res.claims
    assert c0.status == "edited" and c0.contradicted is True
    contra = res.report["claims"][0]["contradiction"]
    assert contra["doc_id"] == "bridge.md" and contra["gate_agreed"] is True
    assert contra["sentence"] == "The Harbour Bridge opened in 1931." and contra["diffs"][0]["new"] == "1931"
    assert c1.status == "kept" and not c1.contradicted and "contradicted" not in c1.to_dict()
    # With only an editor that changes nothing, the contradicted claim is marked, not passed.
    res = loop(editor=FakeEditor(), judge=lenient).revise(WRONG)
    assert res.revised == WRONG and res.claims[0].status == "marked" and res.claims[0].supported is False
    # The check can be switched off: then the judge alone decides.
    res = loop(aligned=AlignedEditor(), judge=lenient, detect_contradictions=False).revise(WRONG)
    assert res.revised == WRONG and res.claims[0].status == "kept"


def test_a_claim_nothing_is_about_stays_marked() -> None:
    res = loop(aligned=AlignedEditor()).revise("The clock tower was built in 1850. Penguins run the port.")
    tower, penguins = res.claims
    assert tower.status == "marked" and res.report["claims"][0]["contradiction"] is None
    assert res.report["claims"][0]["edit"] is None  # the tower passage says nothing about when: no candidate
    assert penguins.status == "marked" and res.report["claims"][1]["evidence"] == []
    assert res.revised == "The clock tower was built in 1850. Penguins run the port."


def test_an_aligned_edit_still_needs_the_judge_and_preservation() -> None:
    never = FakeJudge(rule=lambda e, c: 0.0)
    res = loop(aligned=AlignedEditor(), judge=never).revise(WRONG)
    rec = res.report["claims"][0]["edit"]
    assert (
        res.revised == WRONG and rec["editor"] == "aligned" and not rec["accepted"] and "not supported" in rec["reason"]
    )
    res = loop(aligned=AlignedEditor(), min_preservation=0.95).revise(WRONG)  # 1 - 2/34 = 0.941 < 0.95
    assert res.revised == WRONG and "changes too much" in res.report["claims"][0]["edit"]["reason"]


def test_the_aligned_editor_reads_the_whole_pool_and_the_sentence() -> None:
    # The judge ranks the river passage above the bridge passage for the wrong claim, so with
    # evidence_count=1 only the river passage is selected; the pool still holds the bridge.
    # The bridge passage as a whole (it goes on about a railway) does not support the fix for
    # this judge; its first sentence alone does.
    def rule(e: str, c: str) -> float:
        if c == RIGHT and e.startswith("Harbour Bridge: The Harbour Bridge opened in 1931."):
            return 0.2 if "railway" in e else 0.9
        return 0.3 if "Tamar" in e else 0.1

    judge = FakeJudge(rule=rule, threshold=0.8)
    questions = FakeQuestionGenerator({WRONG: ["Is the Tamar river near it?"]})  # brings the river passage in
    r = loop(aligned=AlignedEditor(), judge=judge, evidence_count=1)
    r.question_generator = questions
    res = r.revise(WRONG)
    rec = res.report["claims"][0]["edit"]
    assert [e["doc_id"] for e in res.report["claims"][0]["evidence"]] == ["river.md"]  # selected
    assert rec["editor"] == "aligned" and rec["accepted"] and rec["support"] == 0.9
    assert rec["candidates"][0]["sentence"] == "The Harbour Bridge opened in 1931."
    assert rec["evidence"][0]["doc_id"] == "bridge.md" and res.claims[0].citations[0][0].doc_id == "bridge.md"
    assert res.revised == RIGHT
    assert ("Harbour Bridge: The Harbour Bridge opened in 1931.", RIGHT) in judge.pairs
    assert ("Harbour Bridge: " + BRIDGE.text, RIGHT) in judge.pairs  # the passage was judged too (0.2)
    r = loop(aligned=AlignedEditor(), judge=judge, evidence_count=1, align_with="selected")
    r.question_generator = questions
    only_selected = r.revise(WRONG)
    assert only_selected.revised == WRONG and only_selected.report["claims"][0]["edit"] is None


def test_an_edit_keeps_the_spacing_of_the_original_sentence() -> None:
    text = "The Harbour  Bridge opened in 1975 .  " + TRUE
    res = loop(aligned=AlignedEditor()).revise(text)
    assert res.revised == "The Harbour  Bridge opened in 1931 .  " + TRUE
    assert res.claims[0].text == "The Harbour  Bridge opened in 1931 ."
    assert res.revision.edits[0].revised_text == RIGHT  # what the judge read


def test_reviser_needs_an_editor_and_build_reviser_checks_the_name() -> None:
    with pytest.raises(ConfigError, match="needs an editor"):
        loop()
    with pytest.raises(ConfigError, match="aligned, llm, both"):
        build_reviser(FakeRetriever([]), None, FakeJudge(), editor="magic")  # type: ignore[arg-type]
    r = build_reviser(FakeRetriever([]), None, FakeJudge(), editor="aligned")
    assert r.editor is None and r.aligned is not None and r.editors == ["aligned"]
    assert (
        build_reviser(FakeRetriever([]), None, FakeJudge()).editors == [DEFAULT_EDITOR] == ["aligned"]
    )  # chosen by the bench
    assert build_reviser(FakeRetriever([]), None, FakeJudge(), editor="both").editors == ["aligned", "llm"]
    assert EditCandidate("x", "llm", ()).to_dict() == {"text": "x", "editor": "llm", "diffs": []}


def test_research_once_settle_with_several_editors() -> None:
    r = loop(aligned=AlignedEditor())
    research = r.research([WRONG, TRUE])
    llm_only = loop(editor=FakeEditor())
    assert [c.status for c in llm_only.settle(research)] == ["marked", "kept"]
    assert [c.status for c in r.settle(research)] == ["edited", "kept"]


# -- real components: the default judge over a real index ------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
WEIMAR_DOC = (
    "Weimar Republic\n\n"
    "Germany went through its worst inflation in 1923. Prices doubled every few days and savings became worthless. "
    "The Rentenmark replaced the old currency in November 1923."
)
RIVER_DOC = "Tamar river\n\nThe Tamar river is 300 km long. It rises in the northern hills and flows south to the sea."
BRIDGE_DOC = "Harbour Bridge\n\nThe Harbour Bridge opened in 1931. The bridge is 503 metres long and carries a railway."


@pytest.fixture(scope="module")
def real_index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from retrievers.index import build_index, load_index

    root = tmp_path_factory.mktemp("editor-corpus")
    docs = root / "docs"
    docs.mkdir()
    for name, text in {"weimar.txt": WEIMAR_DOC, "river.txt": RIVER_DOC, "bridge.txt": BRIDGE_DOC}.items():
        (docs / name).write_text(text, encoding="utf-8")
    build_index(str(docs), str(root / "index"), progress=False)
    return load_index(root / "index")


@pytest.fixture(scope="module")
def default_judge() -> Any:
    if not (ROOT / "verifiers" / "default_judge" / "config.json").is_file() and not os.environ.get("CITERAG_JUDGE_DIR"):
        pytest.skip("the default support judge is not committed in verifiers/default_judge")
    from verifiers.judges import load_judge

    # torch: the gate decision below sits near the threshold calibrated on these weights, and
    # the int8 CPU default flips it (as it flips ~5% of AttributionBench decisions, BENCHMARKS.md)
    return load_judge("default", runtime="torch")


TRUE_TEXTS = ["The Tamar river is 300 km long.", "Prices doubled every few days and savings became worthless."]


def test_default_judge_alone_passes_the_wrong_year(default_judge: Any) -> None:
    """Why the contradiction check exists: the judge rates the wrong year above its threshold."""
    (s,) = default_judge.judge([("Weimar Republic: " + WEIMAR_DOC.split("\n\n", 1)[1], GERMANY_WRONG)])
    assert s >= default_judge.threshold


def test_real_judge_and_index_fix_the_wrong_year(real_index: Any, default_judge: Any) -> None:
    retriever = real_index.retriever("hybrid", embedder=real_index.embedder())
    reviser = RARRReviser(retriever, default_judge, None, None, RARRConfig(questions=False), aligned=AlignedEditor())
    texts = [GERMANY_WRONG, *TRUE_TEXTS, "The Harbour Bridge opened in 1975."]
    wrong, river, prices, bridge = reviser.revise_batch(texts)
    assert wrong.revised == GERMANY_RIGHT
    (c,) = wrong.claims
    assert c.status == "edited" and c.editor == "aligned" and c.citations[0][0].doc_id == "weimar.txt"
    assert c.support >= default_judge.threshold
    assert wrong.report["claims"][0]["contradiction"]["gate_agreed"] is True  # the judge alone passed it
    for res, text in zip((river, prices), TRUE_TEXTS):
        assert res.revised == text and res.claims[0].status == "kept"  # byte-identical
    assert bridge.revised == "The Harbour Bridge opened in 1931." and bridge.claims[0].editor == "aligned"


def test_build_reviser_both_editors_with_the_tiny_model(tiny_vllm: Any, real_index: Any, default_judge: Any) -> None:
    """`--editor both`: the tiny model's questions and edits are noise, and the aligned edit is
    the one kept."""
    retriever = real_index.retriever("hybrid", embedder=real_index.embedder())
    reviser = build_reviser(retriever, tiny_vllm, default_judge, samples=1, editor="both")
    assert reviser.editors == ["aligned", "llm"]
    wrong, true = reviser.revise_batch([GERMANY_WRONG, TRUE_TEXTS[0]])
    assert wrong.revised == GERMANY_RIGHT and wrong.claims[0].editor == "aligned"
    assert {c["editor"] for c in wrong.report["claims"][0]["edit"]["candidates"]} <= {"aligned", "llm"}
    assert true.revised == TRUE_TEXTS[0]
