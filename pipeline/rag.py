"""The answer pipeline: retrieve, prompt (In-Context RALM), generate, cite.

``RAGPipeline.ask_batch`` batches retrieval and generation across questions. The iterative
mode of In-Context RALM re-retrieves every ``stride`` generated tokens, using the last
``query_tokens`` tokens (question + answer so far) as the query; passages keep one number
for the whole answer, so every ``[n]`` refers to a passage the generator was shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from pipeline.citations import PostHocCiter, cite_answer
from pipeline.cleaning import SCAFFOLD_STOPS, CleanedAnswer, clean_answer
from pipeline.constrained import (
    ConstraintSpec,
    check_citation_mode,
    generate_constrained,
    resolve_citation_mode,
    tail_reserve,
)
from pipeline.errors import CiteragError, ConfigError, InputError
from pipeline.iterative import IterativeConfig, ask_iterative
from pipeline.progress import progress_bar
from pipeline.prompting import BuiltPrompt, PromptConfig, build_prompt, validate_question
from pipeline.protocols import Generator, Retriever
from pipeline.types import AttributedAnswer, Generation, GenerationParams, Passage

log = logging.getLogger(__name__)


@dataclass
class RAGPipeline:
    retriever: Retriever
    generator: Generator
    k: int = 5
    params: GenerationParams = field(default_factory=GenerationParams)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    post_hoc: PostHocCiter | None = None
    iterative: IterativeConfig | None = None
    #: Prompts sent to the generator per call (also the progress-bar step).
    batch_size: int = 64
    #: Stop at and remove the prompt's scaffolding (pipeline.cleaning); False keeps raw output.
    clean: bool = True
    #: "auto" (default): "constrained" when the generator can constrain decoding and the loop
    #: is not iterative, else "post-hoc" (resolved at ask time, see ``citation_mode``: a vLLM
    #: server is only asked what it is when the first question comes);
    #: "post-hoc": the model writes markers if it can, uncited sentences get ``post_hoc``;
    #: "constrained": decoding forces a citation on every sentence (pipeline/constrained.py);
    #: "use-aware": as post-hoc here; grounding re-cites by use (verifiers/grounding.py).
    citations: str = "auto"
    constraint: ConstraintSpec = field(default_factory=ConstraintSpec)
    #: Called with each prompt once it is built, before generation: how a streaming caller
    #: (pipeline.streaming.SentenceStream) learns which passages the generator is shown. Not
    #: called by the iterative loop, whose shown passages grow while it generates.
    on_prompt: Callable[[BuiltPrompt], None] | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InputError(f"k must be at least 1 (got {self.k})")
        check_citation_mode(self.citations)
        if self.citations == "constrained" and self.iterative is not None:
            raise ConfigError("constrained citations do not work with --iterative yet: drop one of them")

    def citation_mode(self) -> str:
        """The citation mode in force: ``citations`` with "auto" resolved for this generator
        (and post hoc when ``max_tokens`` leaves no room for a sentence and its citation tail)."""
        mode = resolve_citation_mode(self.citations, self.generator, iterative=self.iterative is not None)
        if (
            self.citations == "auto"
            and mode == "constrained"
            and self.params.max_tokens <= tail_reserve(self.k, self.constraint)
        ):
            return "post-hoc"
        return mode

    def ask(self, question: str) -> AttributedAnswer:
        return self.ask_batch([question], progress=False)[0]

    def ask_batch(self, questions: Sequence[str], progress: bool = True) -> list[AttributedAnswer]:
        """Answer every question; raises on the first invalid one (see ``ask_many``)."""
        qs = [validate_question(q) for q in questions]
        if self.iterative is not None:
            return ask_iterative(self, qs, progress)
        t0 = time.perf_counter()
        retrieved = self.retriever.retrieve(qs, self.k)
        t1 = time.perf_counter()
        prompts = [self._build(q, ps) for q, ps in zip(qs, retrieved)]
        if self.on_prompt is not None:
            for p in prompts:
                self.on_prompt(p)
        t2 = time.perf_counter()
        gens = []
        params = self._generation_params()
        with progress_bar(total=len(prompts), desc="answering", enabled=progress, unit="q") as bar:
            for i in range(0, len(prompts), self.batch_size):
                chunk = prompts[i : i + self.batch_size]
                gens.extend(self._generate(chunk, params))
                bar.update(len(chunk))
        t3 = time.perf_counter()
        answers = [
            self._finish(
                q, g.text, p.shown, truncated=g.finish_reason == "length", retrieved=len(ps), prompt_tokens=p.n_tokens
            )
            for q, g, p, ps in zip(qs, gens, prompts, retrieved)
        ]
        t4 = time.perf_counter()
        timings = {
            "retrieve_s": t1 - t0,
            "prompt_s": t2 - t1,
            "generate_s": t3 - t2,
            "cite_s": t4 - t3,
            "total_s": t4 - t0,
            "batch_size": len(qs),
        }
        return [a.with_report(timings=timings) for a in answers]

    def ask_many(self, questions: Sequence[str], progress: bool = True) -> list[AttributedAnswer | CiteragError]:
        """Like ``ask_batch`` but an invalid question yields its error in place of an answer."""
        results: list[AttributedAnswer | CiteragError | None] = [None] * len(questions)
        good: list[int] = []
        for i, q in enumerate(questions):
            try:
                validate_question(q)
                good.append(i)
            except CiteragError as exc:
                results[i] = exc
        if good:
            try:
                answers = self.ask_batch([questions[i] for i in good], progress)
            except CiteragError:
                if len(good) == 1:
                    raise
                # Find the offending question(s) one by one rather than failing the batch.
                answers = []
                for i in good:
                    try:
                        answers.append(self.ask_batch([questions[i]], progress=False)[0])
                    except CiteragError as exc:
                        answers.append(exc)  # type: ignore[arg-type]
            for i, a in zip(good, answers):
                results[i] = a
        return [r for r in results if r is not None]

    # -- internals -------------------------------------------------------------------------

    def _build(self, question: str, passages: Sequence[Passage], **kw: object) -> BuiltPrompt:
        return build_prompt(
            question,
            passages,
            self.generator.tokenizer,
            max_context=self.generator.max_context,
            max_new_tokens=self.params.max_tokens,
            cfg=self.prompt,
            **kw,  # type: ignore[arg-type]
        )

    def _generation_params(self, max_tokens: int | None = None) -> GenerationParams:
        """The decoding parameters plus stop strings at the prompt's scaffolding."""
        stop = tuple(dict.fromkeys((*self.params.stop, *(SCAFFOLD_STOPS if self.clean else ()))))
        return replace(self.params, stop=stop, max_tokens=max_tokens or self.params.max_tokens)

    def _generate(self, chunk: Sequence[BuiltPrompt], params: GenerationParams) -> list[Generation]:
        if self.citation_mode() == "constrained":
            done = generate_constrained(
                self.generator, [p.text for p in chunk], [len(p.shown) for p in chunk], params, self.constraint
            )
            return [r.generation for r in done]
        return self.generator.generate([p.text for p in chunk], params)

    def _finish(
        self, question: str, raw: str, shown: Sequence[Passage], *, truncated: bool = False, **report: object
    ) -> AttributedAnswer:
        cleaned = self.clean_text(raw, shown, truncated=truncated)
        text = cleaned.text
        # Constrained answers cite on every sentence by construction, so post hoc adds nothing
        # there; it still covers a server that ignored the constraint (counted, never hidden).
        parsed = cite_answer(text, shown, self.post_hoc, question)
        rep: dict[str, object] = {
            "citation_mode": self.citation_mode(),
            "dropped_citations": list(parsed.dropped),
            "post_hoc_citations": parsed.post_hoc_count,
            "prompt_layout": self.prompt.layout,
        }
        if cleaned.changed:
            rep["cleaned"] = {"removed": list(cleaned.removed), "raw_text": raw.strip()}
        rep.update(report)
        return AttributedAnswer(question, text, parsed.sentences, tuple(shown), rep)

    def clean_text(self, raw: str, shown: Sequence[Passage], *, truncated: bool = False) -> CleanedAnswer:
        """The answer text of ``raw`` generated output (scaffolding removed unless ``clean`` is
        False): the one cleaning of the final answer and of a streamed answer's sentences."""
        if not self.clean:
            return CleanedAnswer(raw.strip())
        return clean_answer(raw, {n: p.title for n, p in enumerate(shown, start=1)}, truncated=truncated)

    def _iterative_prompt(
        self,
        question: str,
        retrieved: Sequence[Passage],
        reg: list[Passage],
        numbered: dict[tuple[str, int, int], int],
        prefix: str,
    ) -> BuiltPrompt:
        numbers, nxt = [], len(reg) + 1
        for p in retrieved:
            if p.key in numbered:
                numbers.append(numbered[p.key])
            else:
                numbers.append(nxt)
                nxt += 1
        built = self._build(question, retrieved, numbers=numbers, answer_prefix=prefix)
        # Register newly shown passages (as shown: truncated spans). ``built.shown`` is a prefix
        # of ``retrieved`` in order (dropped documents are a suffix), so their tentative numbers
        # are the largest of this round and numbering stays dense.
        for n, shown, p in zip(built.numbers, built.shown, retrieved):
            if n == len(reg) + 1:
                reg.append(shown)
                numbered[p.key] = n
        return built
