"""The RARR loop (Gao et al. 2022, "RARR: Researching and Revising What Language Models Say").

For every claim (sentence) of a text: generate verification questions, retrieve evidence
for them (and for the claim itself) from the index, pool it with the passages the claim
already cites, select the best evidence, and run the agreement gate. A claim the evidence
agrees with is left exactly as it was and cited. A claim it disagrees with goes to the
editor, conditioned on that evidence; the edit is accepted only when the judge finds it
supported by the evidence the editor was shown AND its character-level preservation
``max(1 - Lev(x, y) / len(x), 0)`` reaches ``min_preservation``. Otherwise the policy
applies: ``mark`` keeps the claim, flagged unsupported; ``remove`` deletes it.

Every stage is a component passed in (``QuestionGenerator``, ``Retriever``,
``SupportJudge``, ``Editor``), and every stage is batched across all claims of all texts.
Citations only ever point at passages the judge (and, for edits, the editor) was shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.protocols import Retriever, SupportJudge
from pipeline.types import Passage, Revision
from verifiers.claims import Claim, ClaimSplitter, SentenceClaimSplitter, join_claims
from verifiers.editor import Editor
from verifiers.evidence import EvidenceRetriever, EvidenceSelector, Selected, SelectBy, evidence_text
from verifiers.gate import AgreementGate, GateDecision, LLMGate, supporting
from verifiers.questions import QuestionGenerator, dedupe
from verifiers.text import preservation

log = logging.getLogger(__name__)

Policy = Literal["mark", "remove"]
POLICIES: tuple[str, ...] = ("mark", "remove")
Status = Literal["kept", "edited", "marked", "removed"]


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

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        if not 0.0 <= self.min_preservation <= 1.0:
            raise ConfigError(f"--min-preservation must be between 0 and 1 (got {self.min_preservation})")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"the support threshold must be between 0 and 1 (got {self.threshold})")
        for name in ("k", "evidence_count", "edit_evidence", "max_citations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")


def passage_dict(p: Passage, support: float | None = None) -> dict[str, Any]:
    """A passage for JSON output; ``score`` is the judge's support when given."""
    return {
        "doc_id": p.doc_id,
        "title": p.title,
        "text": p.text,
        "start": p.start,
        "end": p.end,
        "score": float(support) if support is not None else p.score,
    }


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
    citations: tuple[tuple[Passage, float], ...]
    #: The editor's attempt, when the gate disagreed and there was evidence.
    edit: dict[str, Any] | None = None

    def report(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "questions": list(self.questions),
            "evidence": [
                {**passage_dict(p, s), "retrieval_score": p.score}
                for p, s in zip(self.evidence.passages, self.evidence.support)
            ],
            "candidates": self.evidence.candidates,
            "gate": self.decision.to_dict(),
            "status": self.status,
            "edit": self.edit,
        }


@dataclass(frozen=True)
class RevisionResult:
    revision: Revision
    claims: tuple[dict[str, Any], ...]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def original(self) -> str:
        return self.revision.original

    @property
    def revised(self) -> str:
        return self.revision.revised

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.revision.original,
            "revised": self.revision.revised,
            "edits": [dict(e) for e in self.revision.edits],
            "claims": [dict(c) for c in self.claims],
            "preservation": self.revision.preservation,
            "report": self.report,
        }


@dataclass
class RARRReviser:
    retriever: Retriever
    judge: SupportJudge
    question_generator: QuestionGenerator | None
    editor: Editor
    config: RARRConfig = field(default_factory=RARRConfig)
    splitter: ClaimSplitter = field(default_factory=SentenceClaimSplitter)
    llm_gate: LLMGate | None = None

    @property
    def threshold(self) -> float:
        if self.config.threshold is not None:
            return self.config.threshold
        return float(getattr(self.judge, "threshold", 0.5))

    # -- the loop over claims ---------------------------------------------------------------

    def check(self, claims: Sequence[str], cited: Sequence[Sequence[Passage]] | None = None) -> list[ClaimCheck]:
        """Research and (if needed) revise each claim; ``cited[i]`` joins claim i's evidence."""
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
        t1 = time.perf_counter()

        todo = [i for i, d in enumerate(decisions) if not d.agree and selected[i].passages]
        shown = {i: list(selected[i].passages[: cfg.edit_evidence]) for i in todo}
        edits = self.editor.edit([claims[i] for i in todo], [shown[i] for i in todo]) if todo else []
        pairs = [(evidence_text(p), e) for i, e in zip(todo, edits) for p in shown[i]]
        scores = self.judge.judge(pairs) if pairs else []
        edit_support: dict[int, list[float]] = {}
        pos = 0
        for i in todo:
            edit_support[i] = [float(x) for x in scores[pos : pos + len(shown[i])]]
            pos += len(shown[i])
        t2 = time.perf_counter()
        log.info("checked %d claims (%d sent to the editor) in %.2fs + %.2fs", len(claims), len(todo), t1 - t0, t2 - t1)

        out = []
        proposed = dict(zip(todo, edits))
        for i, claim in enumerate(claims):
            sel, dec = selected[i], decisions[i]
            qs = tuple(questions[i])
            if dec.agree:
                cites = supporting(sel.passages, sel.support, thr, cfg.max_citations)
                out.append(ClaimCheck(claim, qs, sel, dec, "kept", claim, True, cites[0][1], tuple(cites)))
                continue
            record = None
            if i in proposed:
                record = self._judge_edit(claim, proposed[i], shown[i], edit_support[i], thr)
                if record["accepted"]:
                    edited = proposed[i]
                    cites = supporting(shown[i], edit_support[i], thr, cfg.max_citations)
                    out.append(ClaimCheck(claim, qs, sel, dec, "edited", edited, True, cites[0][1], tuple(cites), record))
                    continue
            if cfg.policy == "remove":
                out.append(ClaimCheck(claim, qs, sel, dec, "removed", None, False, dec.score, (), record))
            else:
                out.append(ClaimCheck(claim, qs, sel, dec, "marked", claim, False, dec.score, (), record))
        return out

    def _judge_edit(self, claim: str, edit: str, shown: list[Passage], support: list[float], thr: float) -> dict[str, Any]:
        best = max(support, default=0.0)
        pres = preservation(claim, edit)
        if not edit.strip():
            accepted, reason = False, "the editor returned nothing"
        elif edit.strip() == claim.strip():
            accepted, reason = False, "the editor changed nothing"
        elif best < thr:
            accepted, reason = False, f"the edit is not supported by the evidence (support {best:.3f} < {thr:.3f})"
        elif pres < self.config.min_preservation:
            accepted, reason = False, f"the edit changes too much (preservation {pres:.3f} < {self.config.min_preservation:.3f})"
        else:
            accepted, reason = True, f"supported (support {best:.3f} >= {thr:.3f}) and preserving ({pres:.3f} >= {self.config.min_preservation:.3f})"
        return {
            "original_text": claim,
            "revised_text": edit,
            "evidence": [passage_dict(p, s) for p, s in zip(shown, support)],
            "support": best,
            "preservation": pres,
            "accepted": accepted,
            "reason": reason,
        }

    # -- texts ------------------------------------------------------------------------------

    def revise(self, text: str) -> RevisionResult:
        return self.revise_batch([text])[0]

    def revise_batch(self, texts: Sequence[str]) -> list[RevisionResult]:
        """Revise every text; all claims of all texts go through each stage together."""
        t0 = time.perf_counter()
        split = [self.splitter.split(t) for t in texts]
        flat = [(ti, ci) for ti, cl in enumerate(split) for ci, c in enumerate(cl) if c.checkable]
        checks = self.check([split[ti][ci].text for ti, ci in flat])
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
        applied: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        out_claims: list[dict[str, Any]] = []
        evidence: dict[tuple[str, int, int], Passage] = {}
        for ci, claim in enumerate(claims):
            chk = checks.get(ci)
            if chk is None:
                continue
            for p in chk.evidence.passages:
                evidence.setdefault(p.key, p)
            if chk.edit is not None:
                attempts.append({"claim": ci, **chk.edit})
            if chk.status == "edited":
                assert chk.final is not None and chk.edit is not None
                replacements[ci] = chk.final
                applied.append({k: chk.edit[k] for k in ("original_text", "revised_text", "evidence", "support", "preservation", "reason")})
            elif chk.status == "removed":
                replacements[ci] = None
                applied.append({
                    "original_text": claim.sentence,
                    "revised_text": "",
                    "evidence": [passage_dict(p, s) for p, s in zip(chk.evidence.passages, chk.evidence.support)],
                    "support": chk.decision.score,
                    "preservation": 0.0,
                    "reason": "removed: no accepted edit and the evidence does not support the claim"
                    + (f" ({chk.edit['reason']})" if chk.edit else ""),
                })
            final = claim.sentence if chk.status in ("kept", "marked") else (chk.final or "")
            out_claims.append({
                "text": final,
                "original_text": claim.sentence,
                "start": claim.start,
                "end": claim.end,
                "status": chk.status,
                "supported": chk.supported,
                "support": chk.support,
                "revised": chk.status in ("edited", "removed"),
                "citations": [passage_dict(p, s) for p, s in chk.citations],
            })
        revised = join_claims(text, claims, replacements) if replacements else text
        pres = preservation(text, revised)
        report = {
            "threshold": self.threshold,
            "policy": self.config.policy,
            "min_preservation": self.config.min_preservation,
            "select_by": self.config.select_by,
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
) -> RARRReviser:
    """The loop with the LLM stages (questions, editor, optional gate) on ``generator``."""
    from verifiers.editor import LLMEditor
    from verifiers.questions import LLMQuestionGenerator

    return RARRReviser(
        retriever=retriever,
        judge=judge,
        question_generator=LLMQuestionGenerator(generator, samples=samples, temperature=temperature, seed=seed),
        editor=LLMEditor(generator),
        config=config or RARRConfig(),
        llm_gate=LLMGate(generator) if llm_gate else None,
    )
