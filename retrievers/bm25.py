"""Sparse retrieval with bm25s (English stopwords, Snowball stemmer from PyStemmer)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import IndexIncompatibleError, InputError
from pipeline.types import Passage
from retrievers.candidates import RowLookup

if TYPE_CHECKING:
    import bm25s

log = logging.getLogger(__name__)

_SETTINGS_FILE = "citerag_bm25.json"


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties broken by lower index."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        # Keep every candidate tied with the k-th score, then sort stably.
        kth = np.partition(-scores, k - 1)[k - 1]
        cand = np.flatnonzero(-scores <= kth)
    else:
        cand = np.arange(len(scores))
    order = np.lexsort((cand, -scores[cand]))
    return cand[order][:k]


class BM25Retriever:
    """BM25 over passages. Build with :meth:`build`; persist with :meth:`save`/:meth:`load`.

    ``save`` writes only the bm25s index (plus tokenizer settings); the passages are stored
    by the caller (the index folder keeps them in ``passages.jsonl``) and given back to
    ``load`` in the same order.

    ``retrieve`` returns ``min(k, len(passages))`` passages, including passages that share
    no term with the query (score 0, in corpus order) unless ``matched_only`` is set; the
    index's hybrid retriever sets it, so unmatched passages do not get RRF credit.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        model: bm25s.BM25,
        *,
        language: str = "english",
        stopwords: str = "en",
        matched_only: bool = False,
    ) -> None:
        n = int(model.scores["num_docs"])
        if n != len(passages):
            raise IndexIncompatibleError(
                f"the BM25 index holds {n} passages but {len(passages)} were given: "
                "rebuild the index with `citerag index`"
            )
        self.passages = list(passages)
        self.model = model
        self.language = language
        self.stopwords = stopwords
        self.matched_only = matched_only
        self._stemmer: Any = None
        self._lookup = RowLookup(self.passages)
        self._sorted_postings: bool | None = None

    #: ``retrieve(q, k)`` is always the head of ``retrieve(q, k + m)``: ties go by corpus order.
    prefix_stable = True

    def view(self, *, matched_only: bool) -> BM25Retriever:
        """The same index with another ``matched_only`` setting (shares the model)."""
        out = BM25Retriever(
            self.passages, self.model, language=self.language, stopwords=self.stopwords, matched_only=matched_only
        )
        out._stemmer = self._stemmer
        out._lookup, out._sorted_postings = self._lookup, self._sorted_postings
        return out

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        *,
        language: str = "english",
        stopwords: str = "en",
        k1: float = 1.5,
        b: float = 0.75,
        progress: bool = False,
    ) -> BM25Retriever:
        """Index ``passages`` (their ``title`` is indexed with the text)."""
        import bm25s

        if not passages:
            raise InputError("cannot build a BM25 index over zero passages: add documents to the corpus")
        stemmer = _stemmer(language)
        texts = [_indexed_text(p) for p in passages]
        tokens = bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer, show_progress=progress)
        model = bm25s.BM25(k1=k1, b=b)
        model.index(tokens, show_progress=progress)
        out = cls(passages, model, language=language, stopwords=stopwords)
        out._stemmer = stemmer
        return out

    def save(self, path: str | Path) -> None:
        """Write the bm25s index and tokenizer settings into folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(str(path), show_progress=False)
        (path / _SETTINGS_FILE).write_text(
            json.dumps({"language": self.language, "stopwords": self.stopwords}), encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | Path, passages: Sequence[Passage]) -> BM25Retriever:
        """Load what :meth:`save` wrote; ``passages`` must be the ones it was built from."""
        import bm25s

        path = Path(path)
        settings_file = path / _SETTINGS_FILE
        if not settings_file.is_file():
            raise IndexIncompatibleError(f"no BM25 index in {path}: rebuild the index with `citerag index`")
        try:
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
            language, stopwords = settings["language"], settings["stopwords"]
            if not isinstance(language, str) or not isinstance(stopwords, str):
                raise TypeError("language and stopwords must be strings")
            model = bm25s.BM25.load(str(path), show_progress=False)
            num_docs = int(model.scores["num_docs"])
        except Exception as e:  # noqa: BLE001 - bm25s raises whatever numpy/json/scipy raise on damaged files
            raise IndexIncompatibleError(
                f"the BM25 index in {path} is damaged ({type(e).__name__}: {str(e)[:160]}): "
                "rebuild the index with `citerag index`"
            ) from e
        if num_docs != len(passages):
            raise IndexIncompatibleError(
                f"the BM25 index in {path} holds {num_docs} passages but {len(passages)} were given: "
                "rebuild the index with `citerag index`"
            )
        return cls(passages, model, language=language, stopwords=stopwords)

    def _tokenize_queries(self, queries: Sequence[str]) -> list[list[str]]:
        import bm25s

        if self._stemmer is None:
            self._stemmer = _stemmer(self.language)
        out = bm25s.tokenize(
            list(queries),
            stopwords=self.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [[t for t in toks if t] for toks in out]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for one query."""
        return self._scores(self._tokenize_queries([query])[0])

    def _scores(self, tokens: list[str]) -> np.ndarray:
        vocab = self.model.vocab_dict
        ids = [vocab[t] for t in tokens if t in vocab]
        if not ids:
            return np.zeros(len(self.passages), dtype=np.float32)
        return np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float32)

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query by BM25 score, best first."""
        if not queries:
            return []
        results: list[list[Passage]] = []
        for tokens in self._tokenize_queries(queries):
            scores = self._scores(tokens)
            best = top_k(scores, k)
            if self.matched_only:
                best = best[scores[best] > 0]
            results.append([self.passages[i].with_score(scores[i]) for i in best])
        return results

    def retrieve_from(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Passage]], k: int
    ) -> list[list[Passage]]:
        """``retrieve`` restricted to each query's candidates: the same scores and tie order, read
        from the posting lists of the query's terms for those rows only (speculative retrieval)."""
        results: list[list[Passage]] = []
        for tokens, cands in zip(self._tokenize_queries(queries), candidates):
            rows = self._lookup.rows(cands)
            scores = self._candidate_scores(tokens, rows)
            best = top_k(scores, k)  # rows are sorted, so ties go by corpus order as in retrieve
            if self.matched_only:
                best = best[scores[best] > 0]
            results.append([self.passages[rows[i]].with_score(scores[i]) for i in best])
        return results

    def _candidate_scores(self, tokens: list[str], rows: np.ndarray) -> np.ndarray:
        """BM25 scores of ``rows``, equal to ``_scores(tokens)[rows]`` (float32, same order of sums)."""
        vocab = self.model.vocab_dict
        ids = [vocab[t] for t in tokens if t in vocab]
        out = np.zeros(len(rows), dtype=np.float32)
        if not ids or not len(rows):
            return out
        if getattr(self.model, "nonoccurrence_array", None) is not None or not self._postings_sorted():
            return self._scores(tokens)[rows]
        data, indices, indptr = (self.model.scores[n] for n in ("data", "indices", "indptr"))
        for t in ids:
            lo, hi = int(indptr[t]), int(indptr[t + 1])
            if lo == hi:
                continue
            pos = np.searchsorted(indices[lo:hi], rows)
            hit = pos < hi - lo
            hit[hit] = indices[lo + pos[hit]] == rows[hit]
            out[hit] += data[lo + pos[hit]]
        return out

    def _postings_sorted(self) -> bool:
        """Whether every term's posting list is in row order (checked once; searchsorted needs it)."""
        if self._sorted_postings is None:
            indices, indptr = np.asarray(self.model.scores["indices"]), np.asarray(self.model.scores["indptr"])
            drops = np.flatnonzero(np.diff(indices.astype(np.int64)) <= 0) + 1  # positions that start a new run
            self._sorted_postings = bool(np.isin(drops, indptr).all())
        return self._sorted_postings


def _indexed_text(p: Passage) -> str:
    return f"{p.title}\n{p.text}" if p.title else p.text


def _stemmer(language: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(language)
