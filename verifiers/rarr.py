"""The RARR loop (Gao et al. 2022, "RARR: Researching and Revising What Language Models Say").

For every claim (sentence) of a text: generate verification questions, retrieve evidence
for them (and for the claim itself) from the index, pool it with the passages the claim
already cites, select the best evidence, and run the agreement gate. A claim the evidence
agrees with is left exactly as it was and cited. A claim it disagrees with goes to the
editors, conditioned on that evidence. So does a claim the judge passes but an evidence
sentence contradicts: one that otherwise matches the claim word for word but gives another
number, date or name (:func:`verifiers.editor.find_contradiction`). The editors propose
candidates (the evidence-aligned editor one per differing span, the LLM editor one line); a
candidate is accepted only when the judge finds it supported by the evidence it was made
from AND its character-level preservation ``max(1 - Lev(x, y) / len(x), 0)`` reaches
``min_preservation``, and the best accepted one is kept: an aligned one first
(``prefer_aligned``), then by highest support, then highest preservation. Otherwise the
policy applies: ``mark`` keeps the claim, flagged unsupported; ``remove`` deletes it. A claim
nothing in the evidence is about is left marked.

Every stage is a component passed in (``QuestionGenerator``, ``Retriever``,
``SupportJudge``, ``Editor``, ``AlignedEditor``), and every stage is batched across all
claims of all texts. :meth:`RARRReviser.research` (questions, evidence, gate) and
:meth:`RARRReviser.settle` (contradictions, edits, decisions) can be run apart, so that
several editors can be compared on the same research.
Citations only ever point at passages the judge (and, for edits, the editor) was shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pipeline.errors import ConfigError, InputError
from pipeline.protocols import Retriever, SupportJudge
from pipeline.types import (
    ClaimResult,
    ClaimStatus,
    Edit,
    EditAttempt,
    Passage,
    Revision,
    RevisionResult,
    SupportedPassage,
)
from verifiers.claims import Claim, ClaimSplitter, SentenceClaimSplitter, join_claims
from verifiers.editor import (
    DEFAULT_EDITOR,
    DEFAULT_MIN_OVERLAP,
    EDITORS,
    AlignedEditor,
    EditCandidate,
    Editor,
    EditorName,
    find_contradiction,
)
from verifiers.evidence import EvidenceRetriever, EvidenceSelector, SelectBy, Selected, evidence_text
from verifiers.gate import AgreementGate, GateDecision, LLMGate, supporting
from verifiers.questions import QuestionGenerator, dedupe
from verifiers.text import preservation, transplant

log = logging.getLogger(__name__)

Policy = Literal["mark", "remove"]
POLICIES: tuple[str, ...] = ("mark", "remove")
Status = ClaimStatus


@dataclass(frozen=True)
class RARRConfig:
    #: Passages retrieved per query (the claim itself and each question).
    k: int = 3
    #: Evidence passages kept per claim after selection (shown to the gate).
    evidence_count: int = 3
    select_by: SelectBy = "judge"
    #: Support threshold of the judge; None: the judge's own ``threshold`` (else 0.5).
    threshold: float | None = None
    #: An edit must preserve at least this much of the claim (character-level Levenshtein).
    min_preservation: float = 0.5
    policy: Policy = "mark"
    #: Passages shown to the editor, best-supported first (RARR edits against one at a time;
    #: SmolLM2-135M copied the claim unchanged when shown a second, unrelated passage).
    edit_evidence: int = 1
    #: At most this many citations per claim.
    max_citations: int = 2
    #: Generate verification questions (False: the claim alone is the query).
    questions: bool = True
    #: Whose sentences the aligned editor and the contradiction check align the claim with:
    #: every pooled passage, the selected ones first ("pool"), or only the selected ones. The
    #: judge may rank a passage that gives a wrong value low, below passages about the topic.
    align_with: Literal["pool", "selected"] = "pool"
    #: A claim the judge passes is still sent to the editors when its best-aligned evidence
    #: sentence otherwise matches it (this overlap, see verifiers.text.Alignment) but gives
    #: another number, date or name.
    detect_contradictions: bool = True
    min_overlap: float = DEFAULT_MIN_OVERLAP
    #: With both editors: an accepted aligned edit wins, and the LLM's edit is kept only when
    #: no aligned candidate is accepted. False: the best accepted candidate (highest support,
    #: then preservation) wins whichever editor made it. On the selection half of
    #: bench/bench_postedit.py the judge preferred LLM rewrites that kept the wrong value.
    prefer_aligned: bool = True

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        if not 0.0 <= self.min_preservation <= 1.0:
            raise ConfigError(f"--min-preservation must be between 0 and 1 (got {self.min_preservation})")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"the support threshold must be between 0 and 1 (got {self.threshold})")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ConfigError(f"the minimum overlap must be between 0 and 1 (got {self.min_overlap})")
        if self.align_with not in ("pool", "selected"):
            raise ConfigError(f"unknown align_with {self.align_with!r}: choose one of pool, selected")
        for name in ("k", "evidence_count", "edit_evidence", "max_citations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")


def sentence_evidence(c: EditCandidate) -> str:
    """What the judge reads for the evidence sentence an aligned candidate was made from."""
    title = c.evidence[0].title if c.evidence else ""
    return f"{title}: {c.sentence}" if title and not c.sentence.startswith(title) else c.sentence


@dataclass(frozen=True)
class ClaimCheck:
    """What the loop found and did for one claim."""

    claim: str
    questions: tuple[str, ...]
    evidence: Selected
    decision: GateDecision
    status: Status
    #: The claim's final text: ``claim`` itself unless edited; None when removed.
    final: str | None
    supported: bool
    #: Support of ``final`` by its citations (supported), else the best support seen.
    support: float
    citations: tuple[SupportedPassage, ...]
    #: The chosen (else the best rejected) edit attempt, when the claim went to the editors;
    #: ``edit.editor`` names the editor, ``edit.candidates`` lists every attempt.
    edit: EditAttempt | None = None
    #: The evidence sentence that contradicts the claim (otherwise matching, another value).
    contradiction: dict[str, Any] | None = None

    def report(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "questions": list(self.questions),
            "evidence": [
                {**p.to_dict(support=s), "retrieval_score": p.score}
                for p, s in zip(self.evidence.passages, self.evidence.support)
            ],
            "candidates": self.evidence.candidates,
            "gate": self.decision.to_dict(),
            "contradiction": self.contradiction,
            "status": self.status,
            "edit": self.edit.to_dict() if self.edit is not None else None,
        }


@dataclass(frozen=True)
class Research:
    """What the loop found for one claim before any edit: questions, evidence, gate."""

    claim: str
    questions: tuple[str, ...]
    evidence: Selected
    decision: GateDecision
    #: Every passage pooled for the claim (cited, then retrieved), before selection.
    pool: tuple[Passage, ...] = ()

    def alignable(self, align_with: str) -> list[Passage]:
        """The passages to align the claim with: the selected ones, then (``pool``) the rest."""
        out = list(self.evidence.passages)
        if align_with == "pool":
            keys = {p.key for p in out}
            out += [p for p in self.pool if p.key not in keys]
        return out


@dataclass
class RARRReviser:
    retriever: Retriever
    judge: SupportJudge
    question_generator: QuestionGenerator | None
    #: The editor that writes one edit per claim (RARR's LLM editor); None: aligned edits only.
    editor: Editor | None
    config: RARRConfig = field(default_factory=RARRConfig)
    splitter: ClaimSplitter = field(default_factory=SentenceClaimSplitter)
    llm_gate: LLMGate | None = None
    #: The evidence-aligned editor (several candidates per claim); None: the editor alone.
    aligned: AlignedEditor | None = None

    def __post_init__(self) -> None:
        if self.editor is None and self.aligned is None:
            raise ConfigError("the reviser needs an editor: pass editor=LLMEditor(...) and/or aligned=AlignedEditor()")

    @property
    def editors(self) -> list[str]:
        names = [self.aligned.name] if self.aligned is not None else []
        return names + ([str(getattr(self.editor, "name", "llm"))] if self.editor is not None else [])

    @property
    def threshold(self) -> float:
        if self.config.threshold is not None:
            return self.config.threshold
        return float(self.judge.threshold)

    # -- the loop over claims ---------------------------------------------------------------

    def check(self, claims: Sequence[str], cited: Sequence[Sequence[Passage]] | None = None) -> list[ClaimCheck]:
        """Research and (if needed) revise each claim; ``cited[i]`` joins claim i's evidence."""
        return self.settle(self.research(claims, cited))

    def research(self, claims: Sequence[str], cited: Sequence[Sequence[Passage]] | None = None) -> list[Research]:
        """Questions, evidence retrieval and selection, and the gate, for every claim (batched)."""
        cfg, thr = self.config, self.threshold
        claims = list(claims)
        if not claims:
            return []
        t0 = time.perf_counter()
        if cfg.questions and self.question_generator is not None:
            questions = self.question_generator.questions(claims)
        else:
            questions = [[] for _ in claims]
        questions = [dedupe(qs, exclude=[c]) for c, qs in zip(claims, questions)]
        queries = [[c, *qs] for c, qs in zip(claims, questions)]
        pools = EvidenceRetriever(self.retriever, cfg.k).gather(queries, cited)
        selected = EvidenceSelector(self.judge, cfg.evidence_count, cfg.select_by).select(claims, pools)
        decisions = AgreementGate(thr, self.llm_gate).decide(claims, selected)
        log.info("researched %d claims in %.2fs", len(claims), time.perf_counter() - t0)
        return [
            Research(c, tuple(q), s, d, tuple(p))
            for c, q, s, d, p in zip(claims, questions, selected, decisions, pools)
        ]

    def settle(self, research: Sequence[Research]) -> list[ClaimCheck]:
        """Contradiction check, edits by every editor, the judge on every candidate, decisions."""
        cfg, thr = self.config, self.threshold
        t0 = time.perf_counter()
        contradictions: dict[int, dict[str, Any]] = {}
        if cfg.detect_contradictions:
            for i, r in enumerate(research):
                found = find_contradiction(r.claim, r.alignable(cfg.align_with), cfg.min_overlap)
                if found is not None:
                    contradictions[i] = {
                        **found.passage.to_dict(),
                        **found.alignment.to_dict(),
                        "gate_agreed": r.decision.agree,
                    }
        todo = [
            i for i, r in enumerate(research) if (not r.decision.agree or i in contradictions) and r.evidence.passages
        ]
        cands: dict[int, list[EditCandidate]] = {i: [] for i in todo}
        if self.aligned is not None and todo:
            proposed = self.aligned.propose(
                [research[i].claim for i in todo], [research[i].alignable(cfg.align_with) for i in todo]
            )
            for i, cs in zip(todo, proposed):
                cands[i].extend(cs)
        if self.editor is not None and todo:
            shown = {i: tuple(research[i].evidence.passages[: cfg.edit_evidence]) for i in todo}
            edits = self.editor.edit([research[i].claim for i in todo], [list(shown[i]) for i in todo])
            name = str(getattr(self.editor, "name", "llm"))
            for i, e in zip(todo, edits):
                if all(c.text != e for c in cands[i]):  # the same text from both editors: judged once
                    cands[i].append(EditCandidate(e, name, shown[i]))
        flat = [(i, c) for i in todo for c in cands[i]]
        # An aligned candidate is judged against its passage and against the sentence it was
        # aligned with (titled): a sentence of the passage that supports it is evidence too,
        # and the judge is weaker on a long passage than on the one sentence that matters.
        pairs = [(evidence_text(p), c.text) for _, c in flat for p in c.evidence]
        n_passage_pairs = len(pairs)
        pairs += [(sentence_evidence(c), c.text) for _, c in flat if c.sentence]
        scores = self.judge.judge(pairs) if pairs else []
        passage_scores, sentence_scores = iter(scores[:n_passage_pairs]), iter(scores[n_passage_pairs:])
        records: dict[int, list[tuple[EditCandidate, list[float], EditAttempt]]] = {i: [] for i in todo}
        for i, c in flat:
            support = [float(next(passage_scores)) for _ in c.evidence]
            if c.sentence:
                by_sentence = float(next(sentence_scores))
                support = [max(x, by_sentence) for x in support]
            records[i].append((c, support, self._judge_edit(research[i].claim, c, support, thr)))
        log.info(
            "settled %d claims (%d sent to the editors, %d candidates) in %.2fs",
            len(research),
            len(todo),
            len(flat),
            time.perf_counter() - t0,
        )

        out = []
        for i, r in enumerate(research):
            sel, dec, claim, qs = r.evidence, r.decision, r.claim, r.questions
            contra = contradictions.get(i)
            if dec.agree and contra is None:
                cites = supporting(sel.passages, sel.support, thr, cfg.max_citations)
                out.append(
                    ClaimCheck(claim, qs, sel, dec, "kept", claim, True, cites[0][1], tuple(cites), None, contra)
                )
                continue
            record = None
            if records.get(i):
                tried = records[i]
                aligned_first = cfg.prefer_aligned and self.aligned is not None
                best = max(
                    range(len(tried)),
                    key=lambda j: (
                        tried[j][2].accepted,
                        aligned_first and tried[j][0].editor == self.aligned.name,  # type: ignore[union-attr]
                        tried[j][2].support,
                        tried[j][2].preservation,
                        -j,
                    ),
                )
                cand, support, record = tried[best]
                record = replace(
                    record,
                    diffs=tuple(d.to_dict() for d in cand.diffs),
                    candidates=tuple(
                        {
                            **c.to_dict(),
                            "support": rec.support,
                            "preservation": rec.preservation,
                            "accepted": rec.accepted,
                            "reason": rec.reason,
                        }
                        for c, _, rec in tried
                    ),
                )
                if record.accepted:
                    cites = supporting(cand.evidence, support, thr, cfg.max_citations)
                    out.append(
                        ClaimCheck(
                            claim, qs, sel, dec, "edited", cand.text, True, cites[0][1], tuple(cites), record, contra
                        )
                    )
                    continue
            status: Status = "removed" if cfg.policy == "remove" else "marked"
            final = None if status == "removed" else claim
            out.append(ClaimCheck(claim, qs, sel, dec, status, final, False, dec.score, (), record, contra))
        return out

    def _judge_edit(self, claim: str, cand: EditCandidate, support: list[float], thr: float) -> EditAttempt:
        edit, shown = cand.text, cand.evidence
        best = max(support, default=0.0)
        pres = preservation(claim, edit)
        if not edit.strip():
            accepted, reason = False, "the editor returned nothing"
        elif edit.strip() == claim.strip():
            accepted, reason = False, "the editor changed nothing"
        elif best < thr:
            accepted, reason = False, f"the edit is not supported by the evidence (support {best:.3f} < {thr:.3f})"
        elif pres < self.config.min_preservation:
            accepted, reason = (
                False,
                f"the edit changes too much (preservation {pres:.3f} < {self.config.min_preservation:.3f})",
            )
        else:
            accepted, reason = (
                True,
                f"supported (support {best:.3f} >= {thr:.3f}) "
                f"and preserving ({pres:.3f} >= {self.config.min_preservation:.3f})",
            )
        return EditAttempt(claim, edit, tuple(zip(shown, support)), best, pres, accepted, reason, cand.editor)

    # -- texts ------------------------------------------------------------------------------

    def revise(self, text: str) -> RevisionResult:
        return self.revise_batch([text])[0]

    def research_texts(self, texts: Sequence[str]) -> list[Research]:
        """The research of every checkable claim of ``texts``, to pass to :meth:`revise_batch`
        (one research, settled by several revisers that differ only in their editors)."""
        split = [self.splitter.split(t) for t in texts]
        return self.research([c.text for cl in split for c in cl if c.checkable])

    def revise_batch(self, texts: Sequence[str], research: Sequence[Research] | None = None) -> list[RevisionResult]:
        """Revise every text; all claims of all texts go through each stage together.

        ``research``: :meth:`research_texts` of these same texts, to skip questions,
        retrieval and the gate (the timings then cover only the edits).
        """
        t0 = time.perf_counter()
        split = [self.splitter.split(t) for t in texts]
        flat = [(ti, ci) for ti, cl in enumerate(split) for ci, c in enumerate(cl) if c.checkable]
        claims = [split[ti][ci].text for ti, ci in flat]
        if research is None:
            checks = self.check(claims)
        elif [r.claim for r in research] != claims:
            raise InputError("the research given is not of these texts: pass research_texts(texts) of the same texts")
        else:
            checks = self.settle(research)
        by_text: dict[int, dict[int, ClaimCheck]] = {}
        for (ti, ci), chk in zip(flat, checks):
            by_text.setdefault(ti, {})[ci] = chk
        dt = time.perf_counter() - t0
        results = [self._compose(t, split[ti], by_text.get(ti, {})) for ti, t in enumerate(texts)]
        for r in results:
            r.report["timings"] = {"total_s": dt, "claims": len(flat), "texts": len(texts)}
        return results

    def _compose(self, text: str, claims: list[Claim], checks: dict[int, ClaimCheck]) -> RevisionResult:
        replacements: dict[int, str | None] = {}
        applied: list[Edit] = []
        attempts: list[dict[str, Any]] = []
        out_claims: list[ClaimResult] = []
        evidence: dict[tuple[str, int, int], Passage] = {}
        for ci, claim in enumerate(claims):
            chk = checks.get(ci)
            if chk is None:
                continue
            for p in chk.evidence.passages:
                evidence.setdefault(p.key, p)
            if chk.edit is not None:
                attempts.append({"claim": ci, **chk.edit.to_dict()})
            if chk.status == "edited":
                assert chk.final is not None and chk.edit is not None
                replacements[ci] = chk.final
                applied.append(chk.edit.applied())
            elif chk.status == "removed":
                replacements[ci] = None
                applied.append(
                    Edit(
                        claim.sentence,
                        "",
                        tuple(zip(chk.evidence.passages, chk.evidence.support)),
                        chk.decision.score,
                        0.0,
                        "removed: no accepted edit and the evidence does not support the claim"
                        + (f" ({chk.edit.reason})" if chk.edit else ""),
                    )
                )
            final = claim.sentence if chk.status in ("kept", "marked") else (chk.final or "")
            if chk.status == "edited" and not claim.markers and claim.text != claim.sentence:
                # Keep the sentence's own spacing where the edit did not touch it.
                final = transplant(claim.text, final, claim.sentence) or final
                replacements[ci] = final
            out_claims.append(
                ClaimResult(
                    final,
                    claim.sentence,
                    claim.start,
                    claim.end,
                    chk.status,
                    chk.supported,
                    chk.support,
                    chk.citations,
                    editor=chk.edit.editor if chk.status == "edited" and chk.edit else None,
                    contradicted=chk.contradiction is not None,
                )
            )
        revised = join_claims(text, claims, replacements) if replacements else text
        pres = preservation(text, revised)
        report = {
            "threshold": self.threshold,
            "policy": self.config.policy,
            "min_preservation": self.config.min_preservation,
            "select_by": self.config.select_by,
            "editors": self.editors,
            "claims": [
                {"index": ci, "start": claims[ci].start, "end": claims[ci].end, **chk.report()}
                for ci, chk in sorted(checks.items())
            ],
            "edits": attempts,
            "preservation": pres,
        }
        revision = Revision(text, revised, tuple(applied), tuple(evidence.values()), pres)
        return RevisionResult(revision, tuple(out_claims), report)


def build_reviser(
    retriever: Retriever,
    generator: Any,
    judge: SupportJudge,
    config: RARRConfig | None = None,
    *,
    samples: int = 3,
    temperature: float = 0.0,
    seed: int = 0,
    llm_gate: bool = False,
    editor: EditorName = DEFAULT_EDITOR,
) -> RARRReviser:
    """The loop with the LLM stages (questions, optional gate) on ``generator``, and the
    editors named by ``editor``: ``llm`` (RARR's LLM editor), ``aligned`` (evidence-aligned
    minimal edits, no model) or ``both`` (every candidate judged, the best accepted kept)."""
    from verifiers.editor import LLMEditor
    from verifiers.questions import LLMQuestionGenerator

    if editor not in EDITORS:
        raise ConfigError(f"unknown editor {editor!r}: choose one of {', '.join(EDITORS)}")
    config = config or RARRConfig()
    return RARRReviser(
        retriever=retriever,
        judge=judge,
        question_generator=LLMQuestionGenerator(generator, samples=samples, temperature=temperature, seed=seed),
        editor=LLMEditor(generator) if editor in ("llm", "both") else None,
        config=config,
        llm_gate=LLMGate(generator) if llm_gate else None,
        aligned=AlignedEditor(min_overlap=config.min_overlap) if editor in ("aligned", "both") else None,
    )
