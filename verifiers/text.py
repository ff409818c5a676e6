"""Edit distance and RARR's preservation score (character level, no dependencies)."""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """Character-level Levenshtein distance (insert, delete, substitute: cost 1 each).

    Classic dynamic programme with two rows: O(len(a) * len(b)) time, O(min) memory.
    """
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def preservation(original: str, revised: str) -> float:
    """RARR's character-level preservation ``max(1 - Lev(x, y) / len(x), 0)``.

    An empty original is fully preserved only by an empty revision.
    """
    if not original:
        return 1.0 if not revised else 0.0
    return max(1.0 - levenshtein(original, revised) / len(original), 0.0)
