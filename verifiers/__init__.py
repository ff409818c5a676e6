"""RARR-style verification and revision (claims, questions, evidence, agreement gate, editor). Built in issue 3."""
