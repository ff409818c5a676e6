"""Hand-written clean pairs for a support judge: verbatim support, the claim inside a short
passage, a wrong year / wrong number in the same passage, and unrelated evidence.

    .venv/bin/python bench/probe_judge.py [JUDGE]     # JUDGE: default, or a judge folder
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verifiers.judges import load_judge  # noqa: E402

BRIDGE = ("The Harbour Bridge opened in 1931. It crosses the Tamar river between the old town and the port. "
          "The bridge is 503 metres long and carries a road and a railway.")
RIVER = ("The Tamar river is 300 km long. It rises in the northern hills and flows south to the sea. "
         "Salmon swim up the river every autumn.")
PAIRS = [  # (evidence, claim)
    ("The Harbour Bridge opened in 1931.", "The Harbour Bridge opened in 1931."),
    (RIVER, "Salmon swim up the Tamar river every autumn."),
    ("The clock tower has four faces. It was built from red brick.", "The Harbour Bridge opened in 1931."),
    (BRIDGE, "The Harbour Bridge opened in 1931."),
    (BRIDGE, "The Harbour Bridge opened in 1975."),
    (RIVER, "The Tamar river is 300 km long."),
    (RIVER, "The Tamar river is 120 km long."),
    (BRIDGE, "The bridge carries a railway."),
    (BRIDGE, "The bridge is made of wood."),
    ("Marie Curie was born in Warsaw in 1867.", "Marie Curie was born in Paris."),
]


def main() -> None:
    judge = load_judge(sys.argv[1] if len(sys.argv) > 1 else "default")
    print(f"threshold {judge.threshold:.3f}")
    for (evidence, claim), score in zip(PAIRS, judge.judge(PAIRS)):
        print(f"{score:.3f} {'supported' if score >= judge.threshold else 'not     '} | {claim} | {evidence[:50]}")


if __name__ == "__main__":
    main()
