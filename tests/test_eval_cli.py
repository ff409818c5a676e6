"""`citerag eval` on small files: ALCE result JSON, `citerag ask` JSONL, `citerag revise` JSONL.

The logic runs with the word-containment fake judge (patched in for ``load_judge``); one test
scores a file with the real default judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import FakeEditor, FakeJudge, FakeRetriever

from app.cli import cli
from pipeline.errors import InputError
from pipeline.types import AttributedAnswer, Passage, Sentence
from verifiers.rarr import RARRConfig, RARRReviser

BRIDGE = {"title": "Bridge", "text": "The Golden Gate Bridge opened in 1937."}
TOWER = {"title": "Tower", "text": "The Eiffel Tower stands in Paris."}
CATS = {"title": "Cats", "text": "Cats sleep most of the day."}

ALCE = {
    "args": {"model": "someone's"},
    "data": [
        {
            "question": "When did the bridge open?",
            "output": "The Golden Gate Bridge opened in 1937 [1][3]. "
            "The Eiffel Tower stands in Paris [2].\nIgnored [9].",
            "docs": [BRIDGE, TOWER, CATS],
            "answer": "1937",
        },
        {
            "question": "Where is the tower?",
            "output": "The Eiffel Tower stands in Paris [1]. Cats sleep [5].",
            "docs": [TOWER, {"title": "Cats", "sent": "Cats sleep.", "text": "unused"}],
            "qa_pairs": [
                {"question": "Where?", "short_answers": ["Paris"]},
                {"question": "Who?", "short_answers": ["Eiffel"]},
            ],
            "answer": "a long-form reference answer that is not a short answer",
        },
    ],
}


@pytest.fixture()
def fake_judge(monkeypatch: pytest.MonkeyPatch) -> FakeJudge:
    judge = FakeJudge()
    seen: dict[str, Any] = {}

    def load(name: str, **kw: Any) -> FakeJudge:
        seen.update(name=name, **kw)
        if kw.get("threshold") is not None:
            judge.threshold = kw["threshold"]
        return judge

    monkeypatch.setattr("verifiers.judges.load_judge", load)
    judge.loaded_with = seen  # type: ignore[attr-defined]
    return judge


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["-q", "eval", *args])


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_alce_file_json_rows_and_report(tmp_path: Path, fake_judge: FakeJudge) -> None:
    pred = write(tmp_path / "asqa_result.json", ALCE)
    out, report = tmp_path / "rows.jsonl", tmp_path / "report"
    r = invoke("--pred", str(pred), "--json", "--out", str(out), "--report", str(report), "--no-progress")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["n"] == 2 and m["format"] == "alce" and m["skipped"] == 0 and m["truncated"] == 1
    # Example 1: recall 2/2; precision: [1] relevant, [3] irrelevant, [2] relevant = 2/3.
    # Example 2: recall 1/2 ([5] is out of range); precision 1/1.
    cit = m["citation"]
    assert cit["n"] == 2 and cit["recall"] == pytest.approx(0.75) and cit["precision"] == pytest.approx(5 / 6)
    assert cit["f1"] == pytest.approx(2 * 0.75 * (5 / 6) / (0.75 + 5 / 6))
    # str_em from qa_pairs (Paris yes, Eiffel yes); ASQA's long "answer" is not a short answer.
    assert m["answer"]["str_em"] == 1.0 and m["answer"]["n_str_em"] == 1
    assert m["answer"]["em"] == 0.0 and m["answer"]["answer_in_output"] == 1.0 and m["answer"]["n_answers"] == 1
    assert m["rarr"]["attribution"] is not None and m["rarr"]["preservation"] is None
    assert m["settings"] == {
        "threshold": 0.99,
        "at_most_citations": 3,
        "qampari": False,
        "truncate": True,
        "attribution": True,
    }
    assert m["judge"]["name"] == "default" and m["judge"]["pairs"] == len(set(fake_judge.pairs))

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["0", "1"]
    first = rows[0]["sentences"][0]
    assert first["citations"] == [1, 3] and first["recall"] == 1 and first["support"] == 1.0
    assert [(c["n"], c["relevant"]) for c in first["precision"]] == [(1, True), (3, False)]
    assert rows[1]["sentences"][1]["status"] == "out_of_range" and rows[1]["sentences"][1]["claim"] == "Cats sleep."
    assert rows[1]["sentences"][1]["attribution"] == 1.0  # the QA-extracted "sent" is the document text

    page = (report / "index.html").read_text()
    assert "<svg" in page and "citation recall" in page and "Ignored" not in page
    assert "<script" not in page and "<link" not in page and " src=" not in page


def test_table_output_and_options(tmp_path: Path, fake_judge: FakeJudge, caplog: pytest.LogCaptureFixture) -> None:
    pred = write(tmp_path / "qampari_like.json", ALCE)
    args = [
        "eval",
        "--pred",
        str(pred),
        "--threshold",
        "0.5",
        "--at-most-citations",
        "1",
        "--no-attribution",
        "--no-truncate",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "citation recall" in r.stdout and "attribution" not in r.stdout
    assert "add --qampari" in caplog.text  # ALCE switches to QAMPARI mode by file name; we say so
    assert fake_judge.loaded_with["threshold"] == 0.5
    r = invoke("--pred", str(pred), "--json", "--at-most-citations", "0", "--no-truncate")
    m = json.loads(r.stdout)
    assert m["settings"]["at_most_citations"] is None and m["truncated"] == 0


def ask_rows() -> list[dict[str, Any]]:
    passages = (
        Passage("bridge.md", BRIDGE["text"], "Bridge", 0.9, 0, 38),
        Passage("tower.md", TOWER["text"], "Tower", 0.8, 0, 33),
        Passage("cats.md", CATS["text"], "Cats", 0.1, 0, 27),
    )
    first = "The Golden Gate Bridge opened in 1937 [1][7]."
    second = "The Eiffel Tower stands in Paris."
    text = f"{first}\n\n{second}"
    answer = AttributedAnswer(
        "When did the bridge open?",
        text,
        (
            Sentence(first, 0, len(first), (1,), dropped=(7,)),
            Sentence(second, len(first) + 2, len(text), (2,), post_hoc=True),
        ),
        passages,
        {"dropped_citations": [7]},
    )
    return [
        {"id": "q1", "answers": ["1937"], **answer.to_dict()},
        {"id": "q2", "question": "Why?", "error": "the question is longer than the context"},
    ]


def test_ask_jsonl_final_and_written_citations(tmp_path: Path, fake_judge: FakeJudge) -> None:
    pred = tmp_path / "answers.jsonl"
    pred.write_text("\n".join(json.dumps(r) for r in ask_rows()) + "\n")
    r = invoke("--pred", str(pred), "--json", "--no-truncate")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["format"] == "ask" and m["n"] == 1 and m["skipped"] == 1
    # Final: the dropped [7] is gone and the post-hoc [2] is scored, as citerag shows them.
    assert m["citation"]["recall"] == 1.0 and m["citation"]["precision"] == 1.0
    assert m["answer"]["em"] == 0.0 and m["answer"]["answer_in_output"] == 1.0
    # Written: [7] is out of range (recall 0, not counted) and the second sentence cites nothing.
    m = json.loads(invoke("--pred", str(pred), "--json", "--no-truncate", "--ask-citations", "written").stdout)
    assert m["citation"]["recall"] == 0.0 and m["citation"]["precision"] == 0.0
    # ALCE's clean-up keeps only the first paragraph.
    m = json.loads(invoke("--pred", str(pred), "--json").stdout)
    assert m["truncated"] == 1 and m["citation"]["sentences"] == 1


def test_ask_json_single_answer(tmp_path: Path, fake_judge: FakeJudge) -> None:
    row = {k: v for k, v in ask_rows()[0].items() if k not in ("id", "answers")}
    pred = tmp_path / "answer.json"
    pred.write_text(json.dumps(row, indent=2))  # `citerag ask --json` prints one indented object
    m = json.loads(invoke("--pred", str(pred), "--json").stdout)
    assert m["format"] == "ask" and m["n"] == 1 and m["answer"]["n_answers"] == 0


def test_revise_jsonl(tmp_path: Path, fake_judge: FakeJudge) -> None:
    corpus = [
        Passage("bridge.md", BRIDGE["text"], "Bridge", 0.0, 0, 38),
        Passage("cats.md", CATS["text"], "Cats", 0.0, 0, 27),
    ]
    reviser = RARRReviser(
        retriever=FakeRetriever(corpus),
        judge=FakeJudge(),
        question_generator=None,
        editor=FakeEditor(lambda claim, ev: claim.replace("1938", "1937")),
        config=RARRConfig(questions=False),
    )
    original = "The Golden Gate Bridge opened in 1938. Cats sleep most of the day."
    [res] = reviser.revise_batch([original])
    assert res.revised == original.replace("1938", "1937")
    pred = tmp_path / "revised.jsonl"
    pred.write_text(json.dumps({"id": "t1", **res.to_dict()}) + "\n")
    r = invoke("--pred", str(pred), "--json", "--out", str(tmp_path / "rows.jsonl"))
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["format"] == "revise" and m["citation"]["n"] == 0 and m["truncated"] == 0
    rarr = m["rarr"]
    assert rarr["attribution"] == 1.0 and rarr["attribution_original"] == pytest.approx((4 / 5 + 1) / 2)
    assert rarr["preservation"] == pytest.approx(1 - 1 / len(original)) and rarr["n_revised"] == 1
    [row] = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [s["attribution_doc"] for s in row["sentences"]] == [1, 2] and "citations" not in row["sentences"][0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ('{"data": {"output": "x"}}', '"data" must be a list'),
        ('{"data": [{"question": "q"}]}', 'data[0]: expected "output" to be a string (missing)'),
        ('{"data": [{"output": "x", "docs": [{"title": "t"}]}]}', 'docs[0]: expected "text" to be a string'),
        ('{"data": [{"output": "x", "qa_pairs": [{"q": 1}]}]}', 'qa_pairs[0]: expected an object with "short_answers"'),
        ('{"output": "x"}\nnot json\n', ":2: not valid JSON"),
        (
            '{"output": "x"}\n{"original": "a", "revised": "b"}\n',
            ":2: this row is a citerag revise result but the file holds ALCE items",
        ),
        ('{"foo": 1}\n', "cannot tell the format"),
        ('{"question": "q", "error": "boom"}\n', "holds no predictions"),
        ('{"answer": "a [1].", "passages": [{"n": 2, "title": "t", "text": "x"}]}\n', "out of order"),
        # Found by tests/test_fuzz.py: each was a traceback before.
        ("[" * 100_000, "nested too deeply"),
        ('{"output": 1' + "0" * 5000 + "}", "cannot read"),
        ('{"output": "\udcff"}\n\xff', "not UTF-8 text"),
    ],
)
def test_malformed_files_exit_2_naming_the_place(
    tmp_path: Path, content: str, message: str, fake_judge: FakeJudge
) -> None:
    pred = tmp_path / "bad.jsonl"
    pred.write_bytes(content.encode("utf-8", "surrogateescape"))
    r = invoke("--pred", str(pred))
    assert r.exit_code == 2, r.output
    assert message in r.stderr and r.stderr.startswith("error: ")
    assert fake_judge.loaded_with == {}  # checked before any judge is loaded


def test_a_citation_of_thousands_of_digits_is_out_of_range_not_a_crash(tmp_path: Path, fake_judge: FakeJudge) -> None:
    """``[`` and 5,000 digits made ``int`` raise (a traceback from ``citerag eval``, a 500 from
    ``POST /v1/eval``); ALCE's rule reads it as a citation of no document: recall 0."""
    item = {
        "question": "q",
        "output": "Cats sleep [1]. Dogs bark [" + "9" * 5000 + "].",
        "docs": [{"title": "c", "text": "Cats sleep."}, {"title": "d", "text": "Dogs bark."}],
    }
    r = invoke(
        "--pred", str(write(tmp_path / "p.json", {"data": [item]})), "--json", "--out", str(tmp_path / "r.jsonl")
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["citation"]["recall"] == pytest.approx(0.5)
    [row] = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [s["status"] for s in row["sentences"]] == ["judged", "out_of_range"]


def test_option_errors(tmp_path: Path, fake_judge: FakeJudge) -> None:
    pred = write(tmp_path / "p.json", ALCE)
    assert "not found" in invoke("--pred", str(tmp_path / "nope.json")).stderr
    assert "is a folder" in invoke("--pred", str(tmp_path)).stderr
    r = invoke("--pred", str(pred), "--threshold", "1.5")
    assert r.exit_code == 2 and "--threshold" in r.stderr
    r = invoke("--pred", str(pred), "--judge", "llm")
    assert r.exit_code == 2 and "--judge default" in r.stderr
    r = invoke("--pred", str(pred), "--format", "ask")
    assert r.exit_code == 2 and "not --format ask" in r.stderr


def test_eval_is_listed_in_help() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "eval" in r.output


# ---------------------------------------------------------------- the real default judge

EVEREST = {"title": "Mount Everest", "text": "Mount Everest is the highest mountain on Earth above sea level."}
WATER = {"title": "Water", "text": "Water boils at 100 degrees Celsius at sea level."}
PLANTS = {"title": "Photosynthesis", "text": "Plants convert light energy into chemical energy through photosynthesis."}


def test_real_default_judge_scores_a_small_file(tmp_path: Path) -> None:
    data = {
        "data": [
            {  # a verbatim-supported cited sentence, and one citing an unrelated passage
                "question": "Tell me facts.",
                "output": f"{EVEREST['text'][:-1]} [1]. {PLANTS['text'][:-1]} [1].",
                "docs": [EVEREST, WATER, PLANTS],
            },
            {"question": "When does water boil?", "output": f"{WATER['text'][:-1]} [2].", "docs": [EVEREST, WATER]},
        ]
    }
    pred = write(tmp_path / "result.json", data)
    out = tmp_path / "rows.jsonl"
    r = invoke("--pred", str(pred), "--json", "--judge", "default", "--out", str(out))
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["n"] == 2 and m["judge"]["name"] == "default" and 0 < m["settings"]["threshold"] < 1
    assert set(m["citation"]) >= {"recall", "precision", "f1", "n"} and set(m["rarr"]) >= {"attribution", "attributed"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["recall"] for s in rows[0]["sentences"]] == [1, 0]
    assert [s["recall"] for s in rows[1]["sentences"]] == [1]
    assert m["citation"]["recall"] == pytest.approx(0.75) and m["citation"]["precision"] == pytest.approx(0.75)
    # Each sentence is best supported by the document it copies.
    assert [s["attribution_doc"] for s in rows[0]["sentences"]] == [1, 3]


# -- citation-use agreement through the generator ---------------------------------------------------


def test_agreement_through_the_real_tiny_engine(
    tmp_path: Path, fake_judge: FakeJudge, tiny_vllm: Any, tiny_model_dir: Path
) -> None:
    """`--agreement` ablates every shown passage through an in-process vLLM engine and reports
    the same counts as the Python API on the same answers (ALCE's first-line cut applied)."""
    from eval.saliency.agreement import citation_use_agreement
    from eval.saliency.context import answer_from_parts

    src = write(tmp_path / "alce.json", ALCE)
    rows_path = tmp_path / "rows.jsonl"
    r = invoke(
        "--pred",
        str(src),
        "--json",
        "--agreement",
        "--model",
        str(tiny_model_dir),
        "--agreement-threshold",
        "0.05",
        "--out",
        str(rows_path),
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["agreement"]
    answers = [
        answer_from_parts(
            item["question"],
            tuple(
                Passage(f"doc-{i}", d.get("sent", d["text"]), d["title"]) for i, d in enumerate(item["docs"], start=1)
            ),
            item["output"].split("\n")[0],
        )
        for item in ALCE["data"]
    ]
    ref = citation_use_agreement(tiny_vllm, answers, threshold=0.05)  # type: ignore[arg-type]
    assert got["sentences"] == ref.sentences == 4
    assert (got["cited"], got["used"], got["cited_unused"], got["used_uncited"]) == (
        ref.cited,
        ref.used,
        ref.cited_unused,
        ref.used_uncited,
    )
    assert got["method"] == "loo" and got["threshold_nats"] == 0.05 and got["skipped"] == 0
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert [s["cited"] for s in rows[0]["agreement"]] == [[1, 3], [2]]
    assert all(s["used"] is not None for row in rows for s in row["agreement"])


def test_agreement_needs_questions_and_passages(tmp_path: Path, fake_judge: FakeJudge) -> None:
    src = tmp_path / "revised.jsonl"
    src.write_text(
        json.dumps(
            {
                "original": "The bridge opened in 1975.",
                "revised": "The bridge opened in 1931.",
                "edits": [],
                "claims": [],
            }
        )
        + "\n"
    )
    r = invoke("--pred", str(src), "--agreement")
    assert r.exit_code == 2 and "ask` or ALCE files" in r.output
    r = invoke("--pred", str(write(tmp_path / "a.json", ALCE)), "--agreement", "--agreement-threshold", "0")
    assert r.exit_code == 2 and "--agreement-threshold" in r.output


def test_rows_read_as_a_file_is() -> None:
    """``predictions_from_rows`` (what POST /v1/eval uses) reads the rows a file would hold."""
    from eval.formats import predictions_from_rows

    preds = predictions_from_rows(ALCE["data"])
    assert preds.kind == "alce" and preds.path == "predictions"
    assert [e.output for e in preds.examples] == [item["output"] for item in ALCE["data"]]
    assert preds.examples[1].docs[1].text == "Cats sleep."
    with pytest.raises(InputError, match=r"^predictions\[0\]: this row is a ALCE item but --format ask was given"):
        predictions_from_rows(ALCE["data"], "ask")
