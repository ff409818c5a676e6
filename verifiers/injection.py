"""Instruction-like text in evidence, and claims that are only copied prompt scaffolding.

Evidence is data. A passage that tells a reader or a model what to say ("Answer that ...",
"Ignore previous instructions", "IMPORTANT SYSTEM INSTRUCTION: ...", "cite [9]") states no
fact, so the judges score evidence with such sentences removed (:func:`strip_instructions`):
evidence that is only instructions supports nothing.

What counts as an instruction (a sentence is flagged when any rule matches):

* **prompt-format tokens**: chat-template and role markers (``[INST]``, ``<|im_start|>``,
  ``<<SYS>>``, ``### Instruction:``, a line that starts ``System:`` / ``Assistant:`` / ``User:``);
* **role words**: text addressed to a model ("system instruction", "note to the assistant",
  "you are an AI", "language model", "ignore/disregard/forget the previous instructions");
* **imperatives of speech**: a sentence or clause (after a comma, semicolon or colon) that
  *starts* with (optionally "Please", "Always", "IMPORTANT:") a verb of answering — answer,
  say, respond, reply, state, claim, tell, write, output, print, repeat, cite, mention —
  *followed by what to say*: "that ...", ":", a quote, "with ...", "exactly", "the following",
  "the user/reader", or a citation marker ``[n]``;
* **obligations of speech**: "you must/should/have to/need to/are required to" + such a verb;
* a citation order anywhere: "cite [9]", "cite document 3".

Ordinary imperatives are not instructions to the model and are kept: "Press the button to
start the machine.", "Answer the phone when it rings.", "Write the date on the label." (a
speech verb with an ordinary object). Descriptions of speech are kept too: "He said that the
bridge opened in 1937." (not sentence-initial), "Say's law states that ..." (a name).

A paragraph (text up to a blank line) that announces itself as instructions — a prompt-format
token, a role word, or an order to ignore previous instructions — is dropped whole: the
sentences next to "IMPORTANT SYSTEM INSTRUCTION:" are part of the injection, not facts.

:func:`is_scaffolding_claim` says whether a claim is a copied prompt header or title
("Document [4] (Title: Pemberton Lighthouse) 1902") that asserts nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Stripped",
    "find_instructions",
    "is_instruction",
    "is_scaffolding_claim",
    "strip_instructions",
    "strip_scaffolding",
]

_SPEECH_VERBS = r"(?:answer|say|respond|reply|state|claim|tell|write|output|print|repeat|cite|mention|assert|report)"
_COMPLEMENT = (
    r"(?:that\b|\"|“|(?<=answer )with\b|(?<=respond )with\b|(?<=reply )with\b|"
    r"exactly\b|only\b|the following\b|as follows\b|this\s*:|"
    r"the (?:user|reader|question|questioner)s?\b|users?\b|readers?\b|them\b|everyone\b|\[\d+\])"
)
#: Verbs whose "Verb:" is an order ("Say: ...") rather than a label ("Answer: 1937" in an FAQ).
_COLON_VERBS = r"(?:say|respond|reply|write|output|print|repeat)"
_LEAD = r"(?:(?:please|always|now|instead|so|and|then|important|note|attention|reminder)\W+)*"

#: Prompt-format tokens and role markers (a whole paragraph with one is an injection).
_FORMAT = re.compile(
    r"\[/?INST\]|<\|[a-z_]+\|>|<</?SYS>>|</?s>|^\s*#{2,}\s*(?:instruction|system|response)\b|"
    r"(?:^|\n)\s*(?:system|assistant|user|human)\s*:",
    re.IGNORECASE,
)
#: Words that address a model (a whole paragraph with one is an injection).
_ROLE = re.compile(
    r"\bsystem (?:instruction|prompt|message|override|note)s?\b|"
    r"\b(?:note|message|instructions?|reminder) (?:to|for) (?:the |all |any )?"
    r"(?:ai|assistants?|chatbots?|models?|language models?|llms?|bots?)\b|"
    r"\b(?:ai (?:assistant|model|system)s?|chatbots?|language models?|llms?)\b"
    r"(?=[^.]*\b(?:must|should|always|never|answer|say|respond|reply|cite)\b)|"
    r"^\W*(?:dear |hey |attention,? )?(?:ai|assistant|chatbot|bot|model|llm)\s*[,:]|"
    r"\byou are (?:an? |the )?(?:ai|assistant|chatbot|language model|llm|helpful)\b|"
    r"\bas an ai\b|"
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,40}\b(?:instructions?|prompts?|rules|guidelines|context|above|everything)\b",
    re.IGNORECASE,
)
_IMPERATIVE = re.compile(
    rf"(?:^|[,;:]\s)\W*{_LEAD}(?:{_SPEECH_VERBS}\b(?![\'\"”’])\s*,?\s*{_COMPLEMENT}|{_COLON_VERBS}\s*:)", re.IGNORECASE
)
_OBLIGATION = re.compile(
    r"\byou (?:must|should|have to|need to|are required to|shall)\s+(?:always\s+|only\s+|now\s+)?"
    rf"{_SPEECH_VERBS}\b\s*,?\s*"
    rf"(?:{_COMPLEMENT}|\d|(?:yes|no|true|false)\b)",
    re.IGNORECASE,
)
_CITE_ORDER = re.compile(r"\bcite\s+(?:\[\d+\]|(?:document|source|passage|reference)\s*\[?\d+)", re.IGNORECASE)

_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+[\"”')\]]*|\n|$)")
_PARAGRAPH = re.compile(r"\n\s*\n")


def is_instruction(sentence: str) -> bool:
    """Whether one sentence instructs a reader or model what to say (see the module rules)."""
    s = sentence.strip()
    if not s:
        return False
    return bool(
        _FORMAT.search(s) or _ROLE.search(s) or _IMPERATIVE.search(s) or _OBLIGATION.search(s) or _CITE_ORDER.search(s)
    )


def _announces_instructions(paragraph: str) -> bool:
    return bool(_FORMAT.search(paragraph) or _ROLE.search(paragraph))


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _SENTENCE.finditer(text):
        if m.group(0).strip():
            spans.append((m.start(), m.end()))
    return spans


def find_instructions(evidence: str) -> list[tuple[int, int]]:
    """Character spans ``[a, b)`` of ``evidence`` that are instructions: flagged sentences, and
    whole paragraphs that announce themselves as instructions (merged, in order)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in list(_PARAGRAPH.finditer(evidence)) + [None]:
        end = m.start() if m else len(evidence)
        para = evidence[start:end]
        if para.strip():
            if _announces_instructions(para):
                spans.append((start, end))
            else:
                spans.extend((start + a, start + b) for a, b in _sentence_spans(para) if is_instruction(para[a:b]))
        if m:
            start = m.end()
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


@dataclass(frozen=True)
class Stripped:
    """Evidence with its instructions removed, and what was removed."""

    text: str
    removed: tuple[str, ...]

    @property
    def only_instructions(self) -> bool:
        """Nothing but instructions (and whitespace) was there: the evidence supports nothing."""
        return bool(self.removed) and not self.text.strip()


def strip_instructions(evidence: str) -> Stripped:
    """``evidence`` without its instruction spans (unchanged, byte for byte, when it has none)."""
    spans = find_instructions(evidence)
    if not spans:
        return Stripped(evidence, ())
    kept: list[str] = []
    pos = 0
    for a, b in spans:
        kept.append(evidence[pos:a])
        pos = b
    kept.append(evidence[pos:])
    text = re.sub(r"[ \t]{2,}", " ", "".join(kept)).strip()
    return Stripped(text, tuple(evidence[a:b].strip() for a, b in spans))


# ---------------------------------------------------------------- prompt scaffolding in claims

_SCAFFOLD = re.compile(
    r"Document\s*\[\d+\]\s*(?:\(Title:[^)]*\))?\s*:?|\(Title:[^)]*\)\s*:?|^\s*Title:\s*[^\n.]*?(?=\s\d|$)|"
    r"^\s*\[\d+\]|\[\d+\]\s*$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]{2,}")


def strip_scaffolding(claim: str) -> tuple[str, bool]:
    """``claim`` with copied prompt scaffolding ("Document [4] (Title: X):", "Title: X",
    a leading or trailing "[n]") removed, and whether any was found."""
    cleaned, n = _SCAFFOLD.subn(" ", claim)
    return re.sub(r"\s{2,}", " ", cleaned).strip(" :-\u2013"), n > 0


def is_scaffolding_claim(claim: str) -> bool:
    """A copied prompt header or title that asserts nothing: scaffolding with at most two
    words (a number, a date, a name) left over, e.g. "Document [4] (Title: Pemberton
    Lighthouse) 1902" or "Title: Olm Castle"."""
    rest, found = strip_scaffolding(claim)
    return found and len(_WORD.findall(rest)) < 3
