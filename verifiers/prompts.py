"""Documents are data, never instructions: how evidence is quoted inside prompts.

Evidence goes between triple quotes on one line. Inside it, triple quotes are reduced to
one quote (a passage cannot close the fence), line breaks become spaces (it cannot start a
new "Claim:" or "Fixed claim:" line) and bracketed numbers become parentheses (it cannot
pose as a citation marker or a numbered document).
"""

from __future__ import annotations

import re

from pipeline.prompting import quote_document_text


def neutralize(text: str) -> str:
    """``text`` on one line, with no fence and no citation-like ``[n]`` left in it."""
    return re.sub(r'"{2,}', '"', quote_document_text(text))


def fence(text: str) -> str:
    return f'"""{neutralize(text)}"""'
