"""``citerag revise``: RARR-style post-editing of any text against an index."""

from __future__ import annotations

from typing import Any

import click

from app.cli_common import RETRIEVERS, llm_options, ray_options, reference_lines, validated
from app.cli_errors import handle_errors
from verifiers.editor import DEFAULT_EDITOR, EDITORS  # no model import: only the names


@click.command("revise")
@click.option("--text", "text", default=None, help="The text to check and revise.")
@click.option("--input", "input_file", type=click.Path(path_type=str), help='Batch mode: JSONL of {"text": ...}.')
@click.option(
    "--out", "out_file", type=click.Path(path_type=str), help="Batch mode: JSONL results, one per input line."
)
@click.option(
    "--index", "index_dir", required=True, type=click.Path(path_type=str), help="Index built by `citerag index`."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--judge",
    "judge_name",
    default="default",
    show_default=True,
    help="Support judge: a name or a path (see `citerag judge`).",
)
@click.option("--threshold", type=float, default=None, help="Support threshold (default: the judge's calibrated one).")
@click.option(
    "--policy",
    type=click.Choice(["mark", "remove"]),
    default="mark",
    show_default=True,
    help="What to do with a claim no accepted edit fixes.",
)
@click.option(
    "--min-preservation",
    type=float,
    default=0.5,
    show_default=True,
    help="An edit must keep at least this share of the claim (1 - Lev/len).",
)
@click.option(
    "--evidence", "evidence_count", type=int, default=3, show_default=True, help="Evidence passages kept per claim."
)
@click.option(
    "--select-by",
    type=click.Choice(["judge", "retrieval"]),
    default="judge",
    show_default=True,
    help="Rank the pooled evidence by the judge or by retrieval score.",
)
@click.option(
    "--samples",
    type=int,
    default=3,
    show_default=True,
    help="Question-generation samples per claim (0: the claim alone is the query).",
)
@click.option(
    "--editor",
    type=click.Choice(list(EDITORS)),
    default=DEFAULT_EDITOR,
    show_default=True,
    help="aligned: replace only a number, date or name that an otherwise matching evidence sentence gives "
    "differently (no model); llm: RARR's LLM editor; both: every candidate judged, the best accepted kept.",
)
@click.option("--llm-gate", is_flag=True, help="Also ask the generator whether the evidence agrees (both must agree).")
@click.option("--retriever", type=click.Choice(RETRIEVERS), default="hybrid", show_default=True)
@click.option("-k", "--k", type=int, default=3, show_default=True, help="Passages retrieved per query.")
@llm_options(llm_url_help="OpenAI-compatible server instead of an in-process engine.")
@ray_options("--input")
@handle_errors
def revise(
    text: str | None,
    input_file: str | None,
    out_file: str | None,
    index_dir: str,
    as_json: bool,
    judge_name: str,
    threshold: float | None,
    policy: str,
    min_preservation: float,
    evidence_count: int,
    select_by: str,
    samples: int,
    editor: str,
    llm_gate: bool,
    retriever: str,
    k: int,
    backend: str,
    model: str,
    llm_url: str | None,
    llm_api_key: str | None,
    max_model_len: int,
    ray_target: str | None,
    ray_workers: int | None,
    ray_batch_size: int,
) -> None:
    """Check every claim of a text against the index and edit only what the evidence contradicts.

    Supported claims are left exactly as written and cited; a contradicted claim is edited
    when the judge finds the edit supported and enough of it is preserved, else marked
    unsupported (or removed with --policy remove). A claim whose number, date or name differs
    from an evidence sentence that otherwise matches it counts as contradicted even when the
    judge passes it. Prints the revised text, the edits with
    their evidence, and references (or JSON with --json, including the attribution report).
    """
    import json

    from pipeline.config import Settings
    from pipeline.errors import ConfigError, InputError
    from pipeline.io import read_records, write_jsonl_atomic
    from verifiers.rarr import RARRConfig

    if (text is None) == (input_file is None):
        raise InputError("give either --text TEXT or --input FILE.jsonl (with --out FILE.jsonl)")
    if input_file and not out_file:
        raise InputError("--input needs --out FILE.jsonl for the results")
    if ray_target and not input_file:
        raise InputError("--ray runs batch jobs: give --input FILE.jsonl and --out FILE.jsonl")
    if text is not None and not text.strip():
        raise InputError('the text is empty: pass --text "..." with the text to revise')
    if samples < 0:
        raise ConfigError(f"--samples must be 0 or more (got {samples})")
    config = RARRConfig(
        k=k,
        evidence_count=evidence_count,
        select_by=select_by,
        threshold=threshold,  # type: ignore[arg-type]
        min_preservation=min_preservation,
        policy=policy,
        questions=samples > 0,
    )  # type: ignore[arg-type]
    rows = read_records(input_file, "text") if input_file else [{"text": text}]
    settings = validated(
        Settings,
        index=index_dir,
        retriever=retriever,
        k=k,
        backend=backend,
        model=model,
        llm_url=llm_url,
        llm_api_key=llm_api_key,
        max_model_len=max_model_len,
        post_hoc=False,
    )

    from app.batch import ReviseJob, run_batch

    job = ReviseJob(settings, judge_name, config, samples, llm_gate, editor)
    if input_file:
        out_rows = run_batch(job, rows, ray_target, ray_workers, ray_batch_size)
        write_jsonl_atomic(out_file, out_rows)
        done = [r for r in out_rows if "error" not in r]
        n_claims = sum(len(r["claims"]) for r in done)
        n_edits = sum(len(r["edits"]) for r in done)
        failed = len(out_rows) - len(done)
        click.echo(
            f"revised {len(done)} texts ({n_claims} claims, {n_edits} edits) into {out_file}"
            + (f" ({failed} texts failed, see their 'error')" if failed else "")
        )
        return
    results = job.start().reviser.revise_batch([text])
    result = results[0]
    click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if as_json else format_revision(result))


def format_revision(result: Any) -> str:
    """The revised text with citation numbers, the edits with their evidence, and references."""
    from verifiers.claims import join_claims, split_claims

    refs: dict[tuple[str, int, int], tuple[int, dict[str, Any]]] = {}

    def ref(c: dict[str, Any]) -> int:
        key = (c["doc_id"], c["start"], c["end"])
        if key not in refs:
            refs[key] = (len(refs) + 1, c)
        return refs[key][0]

    claims = split_claims(result.original)
    by_start = {c["start"]: c for c in (c.to_dict() for c in result.claims)}
    replacements: dict[int, str | None] = {}
    for i, cl in enumerate(claims):
        info = by_start.get(cl.start)
        if info is None:
            continue
        if info["status"] == "removed":
            replacements[i] = None
            continue
        marks = "".join(f"[{ref(c)}]" for c in info["citations"])
        flag = "" if info["supported"] else " [unsupported]"
        replacements[i] = f"{info['text']}{' ' + marks if marks else ''}{flag}"
    lines = [join_claims(result.original, claims, replacements) if replacements else result.original]
    edits = [e.to_dict() for e in result.revision.edits]
    if edits:
        lines += ["", "Edits:"]
        for e in edits:
            lines.append(f"- {e['original_text']}")
            by = f"  (editor: {e['editor']})" if e.get("editor") else ""
            lines.append(f"+ {e['revised_text']}{by}" if e["revised_text"] else "+ (removed)")
            for ev in e["evidence"][:2]:
                lines.append(f"    evidence [{ref(ev)}] (support {ev['score']:.2f})")
    else:
        lines += ["", "No edits."]
    attempts = {e["original_text"]: e for e in result.report.get("edits", [])}
    marked = [(cl, info) for cl in claims if (info := by_start.get(cl.start)) and info["status"] == "marked"]
    if marked:
        lines += ["", "Unsupported (kept as written):"]
        researched = {c["start"]: c for c in result.report.get("claims", [])}
        for cl, _ in marked:
            attempt = attempts.get(cl.text)
            found = researched.get(cl.start, {})
            if attempt:
                why = f"edit rejected: {attempt['reason']}"
            elif found.get("evidence"):
                why = "the evidence does not support it, and no edit was proposed"
            else:
                why = "no evidence found"
            if found.get("contradiction"):
                c = found["contradiction"]
                values = ", ".join(f"{d['old']!r} -> {d['new']!r}" for d in c["diffs"])
                why += f"; contradicted by {c['doc_id']}: {values}"
            lines.append(f"! {cl.sentence}  ({why})")
    if refs:
        lines += ["", "References:"]
        for n, c in sorted(refs.values(), key=lambda t: t[0]):
            lines += reference_lines(
                n, c["title"], c["doc_id"], c["start"], c["end"], c["text"], c.get("page"), c.get("page_end")
            )
    lines.append(f"\npreservation: {result.revision.preservation:.3f}")
    return "\n".join(lines)
