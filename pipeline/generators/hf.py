"""Generator on plain transformers (``AutoModelForCausalLM``), no vLLM needed.

Slower than vLLM, but it exposes the torch model (``.model``, ``.hf_tokenizer``) for
gradient-based attribution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ModelNotFoundError
from pipeline.generators.base import (
    HFTokenizer,
    check_params,
    check_prompts,
    check_score_inputs,
    cut_at_stop,
    fit_max_tokens,
    reject_regex,
    score_ids,
)
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)


class TransformersGenerator:
    """A ``Generator`` running a causal LM with transformers on ``device`` (CPU by default).

    ``generate`` is left-padded and batched (``batch_size`` prompts per forward); greedy when
    ``temperature == 0``. ``max_model_len`` caps the context window below the model's
    ``max_position_embeddings`` (the same option as the vLLM backend). Stop strings cut the text
    at their first occurrence (excluded, as vLLM does). ``score`` is one forward pass per batch
    in fp32 by default.
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        batch_size: int = 8,
        device: str = "cpu",
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(model).expanduser()
        if local.exists():
            model = str(local)
        try:
            hf_tok = AutoTokenizer.from_pretrained(model)
            self.model: Any = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype))
        except OSError as exc:
            raise ModelNotFoundError(
                f"transformers cannot load {model!r} ({str(exc).splitlines()[0] if str(exc) else exc}); "
                "pass a local model folder or a hub id available offline"
            ) from exc
        self.model.to(device).eval()
        self.model_name = model
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.hf_tokenizer: Any = hf_tok
        if hf_tok.pad_token_id is None:
            hf_tok.pad_token = hf_tok.eos_token
        self._tokenizer = HFTokenizer(hf_tok)
        cfg_len = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_context: int = int(min(max_model_len, cfg_len) if max_model_len else cfg_len)
        self.seed = seed

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for src in (self.model.generation_config.eos_token_id, self.hf_tokenizer.eos_token_id):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(int(i) for i in src)
        return sorted(ids)

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """One generation per prompt, in input order, ``batch_size`` prompts at a time."""
        import torch

        check_params(params)
        reject_regex(params, "transformers")
        texts = check_prompts(prompts)
        ids = [self._tokenizer.encode_prompt(t) for t in texts]
        budgets = [fit_max_tokens(len(p), params.max_tokens, self.max_context, index=i) for i, p in enumerate(ids)]
        out: list[Generation] = []
        pad = int(self.hf_tokenizer.pad_token_id)
        eos = self._eos_ids()
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size]
            budget = min(budgets[start : start + self.batch_size])
            width = max(len(b) for b in batch)
            input_ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=self.device)
            kwargs: dict[str, Any] = dict(
                max_new_tokens=budget,
                pad_token_id=pad,
                eos_token_id=eos or None,
            )
            if params.temperature > 0:
                torch.manual_seed(params.seed if params.seed is not None else self.seed)
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if params.stop:
                kwargs.update(stop_strings=list(params.stop), tokenizer=self.hf_tokenizer)
            with torch.no_grad():
                seqs = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
            for row in seqs[:, width:].tolist():
                out.append(self._finish(row, eos, pad, budget, params.stop))
        return out

    def _finish(self, row: list[int], eos: list[int], pad: int, budget: int, stop: Sequence[str]) -> Generation:
        toks: list[int] = []
        reason = "length"
        for t in row:
            if t in eos:
                reason = "stop"
                break
            toks.append(t)
        else:
            # A row that stopped early (stop string) while others went on is padded at the end.
            while toks and toks[-1] == pad:
                toks.pop()
        text = self.hf_tokenizer.decode(toks, skip_special_tokens=True)
        text, hit = cut_at_stop(text, stop)
        if hit:
            reason = "stop"
            # Keep only the tokens that make up the kept text (approximately: whole tokens).
            kept: list[int] = []
            for t in toks:
                if len(self.hf_tokenizer.decode(kept + [t], skip_special_tokens=True)) > len(text):
                    break
                kept.append(t)
            toks = kept
        elif reason == "length" and len(toks) < budget:
            reason = "stop"
        return Generation(text=text, token_ids=tuple(toks), finish_reason=reason)

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Log-prob of each continuation token after its prompt (right-padded forward passes)."""
        import torch

        ps, cs = check_score_inputs(prompts, continuations)
        pairs = [score_ids(self._tokenizer, p, c) for p, c in zip(ps, cs)]
        for i, (p, c) in enumerate(pairs):
            fit_max_tokens(len(p) + len(c), 1, self.max_context, index=i)
        result: list[list[float]] = [[] for _ in ps]
        todo = [i for i, (_, c) in enumerate(pairs) if c]
        pad = int(self.hf_tokenizer.pad_token_id)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            seqs = [pairs[i][0] + pairs[i][1] for i in chunk]
            width = max(len(s) for s in seqs)
            input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(chunk):
                p_len, c_ids = len(pairs[i][0]), pairs[i][1]
                pos = torch.arange(p_len - 1, p_len - 1 + len(c_ids), device=self.device)
                tgt = torch.tensor(c_ids, device=self.device)
                result[i] = logp[row, pos, tgt].tolist()
        return result

    def close(self) -> None:
        """Drop the model (memory is freed when nothing else holds it)."""
        self.model = None
