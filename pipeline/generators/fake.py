"""A canned-reply generator and a toy tokenizer for model-free tests."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence

from pipeline.generators.base import check_params, check_prompts, check_score_inputs, cut_at_stop, reject_regex
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)

_PIECE = re.compile(r"\s+|\w+|[^\w\s]")


class FakeTokenizer:
    """Splits text into runs of whitespace, word characters and single punctuation marks.

    Ids are assigned on first sight (stable within one instance), so ``decode(encode(s)) == s``.
    Its chat template is a plain ``role: content`` transcript ending in ``assistant:``.
    """

    def __init__(self, chat_template: bool = True) -> None:
        self._ids: dict[str, int] = {}
        self._pieces: list[str] = []
        self.chat_template = chat_template
        self.bos_token_id: int | None = None

    def _id(self, piece: str) -> int:
        i = self._ids.get(piece)
        if i is None:
            i = self._ids[piece] = len(self._pieces)
            self._pieces.append(piece)
        return i

    def encode(self, text: str) -> list[int]:
        return [self._id(p) for p in _PIECE.findall(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._pieces[i] for i in ids)

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        if not self.chat_template:
            return None
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"


class FakeGenerator:
    """A ``Generator`` that returns canned replies and records every prompt it saw.

    ``replies`` is either a list (used in turn, cycling when exhausted) or a function from
    prompt to reply. Replies honour ``stop`` and ``max_tokens`` (counted in
    :class:`FakeTokenizer` pieces). ``score`` returns deterministic pseudo log-probs in
    ``[-10, 0)`` derived from a hash of the prompt and the token.
    """

    def __init__(self, replies: list[str] | Callable[[str], str] | None = None, max_context: int = 4096) -> None:
        self.replies = replies if replies is not None else ["I don't know."]
        self.max_context = max_context
        self._tokenizer = FakeTokenizer()
        self._turn = 0
        #: Every prompt passed to ``generate``, in order.
        self.prompts: list[str] = []
        #: Every ``(prompt, continuation)`` pair passed to ``score``, in order.
        self.scored: list[tuple[str, str]] = []
        #: The ``GenerationParams`` of each ``generate`` call.
        self.calls: list[GenerationParams] = []

    @property
    def tokenizer(self) -> FakeTokenizer:
        return self._tokenizer

    def _reply(self, prompt: str) -> str:
        if callable(self.replies):
            return self.replies(prompt)
        if not self.replies:
            return ""
        reply = self.replies[self._turn % len(self.replies)]
        self._turn += 1
        return reply

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        check_params(params)
        # Canned replies cannot honour a constraint; pretending to would hide a missing backend.
        reject_regex(params, "fake")
        texts = check_prompts(prompts)
        self.calls.append(params)
        out = []
        for prompt in texts:
            self.prompts.append(prompt)
            text, hit = cut_at_stop(self._reply(prompt), params.stop)
            ids = self._tokenizer.encode(text)
            reason = "stop"
            if len(ids) > params.max_tokens:
                ids = ids[: params.max_tokens]
                text = self._tokenizer.decode(ids)
                reason = "length"
            out.append(Generation(text=text, token_ids=tuple(ids), finish_reason=reason))
        return out

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        ps, cs = check_score_inputs(prompts, continuations)
        result = []
        for p, c in zip(ps, cs):
            self.scored.append((p, c))
            row = []
            for j, t in enumerate(self._tokenizer.encode(c)):
                h = hashlib.sha256(f"{p}\x00{j}\x00{self._tokenizer.decode([t])}".encode()).digest()
                row.append(-10.0 * int.from_bytes(h[:4], "big") / 2**32 - 1e-6)
            result.append(row)
        return result
