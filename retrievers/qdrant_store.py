"""Qdrant as the index store: passages as points with a dense and a sparse (BM25) vector.

Why: the folder index (FAISS + bm25s) holds everything in one process's memory. A Qdrant
server or cluster shards and replicates the same passages, and the same code runs on
qdrant-client's embedded local mode (``QdrantClient(path=...)``), which is how CI tests it.

Each point is one passage, id = its row in ``passages.jsonl``, payload = every
:class:`Passage` field (doc_id, title, start, end, page, page_end, text, pid), so a
retrieved point is the exact passage and citations keep their spans. Two named vectors:

* ``dense``: the index's embedder, normalised, dot product (what ``IndexFlatIP`` computes).
* ``bm25``: a sparse vector of the passage's terms, tokenised and stemmed exactly as
  :class:`retrievers.bm25.BM25Retriever` does, each weighted by BM25's saturated term
  frequency ``tf / (tf + k1 (1 - b + b dl / avgdl))`` (bm25s's default, Lucene's form). The collection's sparse
  vector has ``modifier=IDF``, so the server multiplies in ``ln(1 + (N - n + 0.5) / (n + 0.5))``
  (bm25s's default IDF) from its own statistics: the dot product with a query of term counts
  is bm25s's BM25 score. Unlike :class:`BM25Retriever`, a passage sharing no term with the
  query is never returned. Terms map to sparse indices by a stable hash, so queries need no vocabulary.

Hybrid retrieval is one ``query_points`` call: two prefetches (dense and sparse, each
``depth`` deep) fused by Qdrant's RRF with the constant set so that a passage at rank r
earns ``1 / (rrf_k + r)``, as :func:`retrievers.hybrid.rrf_fuse` gives it.

Re-indexing: a build writes collection ``<name>-<version>``, then points alias ``<name>``
at it in one ``update_collection_aliases`` call and deletes the collection the alias named
before. Readers query the alias, so they see the whole old collection or the whole new one.
In local mode the storage folder lives inside the index version folder (qdrant-client lets
one process at a time open a storage folder), so the folder index's ``CURRENT`` switch and
reader locks apply unchanged; the alias step runs there too.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, IndexIncompatibleError, IndexWriteError
from pipeline.protocols import Embedder
from pipeline.types import Passage
from retrievers import faults

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

log = logging.getLogger(__name__)

STORE_FOLDER = "faiss+bm25s"
STORE_QDRANT = "qdrant"
STORES: tuple[str, ...] = (STORE_FOLDER, STORE_QDRANT)
#: Where local mode keeps its storage, inside the index version folder.
LOCAL_DIR = "qdrant"
DEFAULT_COLLECTION = "citerag"
DENSE = "dense"
SPARSE = "bm25"
_UPSERT_BATCH = 256
#: The fault-injection phase (``CITERAG_FAULT_PAUSE``, see :mod:`retrievers.faults`) between a
#: fully written collection and the alias switch.
ALIAS_PHASE = "qdrant-alias"


def term_index(term: str) -> int:
    """The sparse-vector index of a (stemmed) term: a stable 32-bit hash, the same in every process."""
    return zlib.crc32(term.encode("utf-8"))


def bm25_tokens(texts: Sequence[str], language: str, stopwords: str) -> list[list[str]]:
    """Terms of each text, tokenised and stemmed as :class:`retrievers.bm25.BM25Retriever` does."""
    import bm25s

    from retrievers.bm25 import _stemmer

    out = bm25s.tokenize(
        list(texts), stopwords=stopwords, stemmer=_stemmer(language), return_ids=False, show_progress=False
    )
    return [[t for t in toks if t] for toks in out]


def sparse_weights(
    tokens: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75
) -> list[tuple[list[int], list[float]]]:
    """BM25 term weights (without IDF) of each document: ``(indices, values)`` per document."""
    lengths = [len(t) for t in tokens]
    avgdl = (sum(lengths) / len(lengths)) if lengths and sum(lengths) else 1.0
    out: list[tuple[list[int], list[float]]] = []
    for toks, dl in zip(tokens, lengths):
        norm = k1 * (1 - b + b * dl / avgdl)
        weights: dict[int, float] = {}
        for term, tf in Counter(toks).items():
            idx = term_index(term)
            weights[idx] = weights.get(idx, 0.0) + tf / (tf + norm)
        out.append(_sorted(weights))
    return out


def _sorted(weights: dict[int, float]) -> tuple[list[int], list[float]]:
    """Indices in increasing order (Qdrant sorts them anyway; sorted they need no copy)."""
    keys = sorted(weights)
    return keys, [weights[i] for i in keys]


def query_terms(tokens: Sequence[str]) -> tuple[list[int], list[float]]:
    """A query's sparse vector: each distinct term weighted by how often the query holds it."""
    counts: dict[int, float] = {}
    for term in tokens:
        idx = term_index(term)
        counts[idx] = counts.get(idx, 0.0) + 1.0
    return _sorted(counts)


def connect(url: str | None, local_path: Path | None) -> QdrantClient:
    """A client of the server at ``url``, or of the local-mode storage folder ``local_path``."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError("--store qdrant needs qdrant-client: pip install 'citerag[qdrant]' (or qdrant-client)") from e
    if url:
        return QdrantClient(url=url)
    assert local_path is not None
    try:
        return QdrantClient(path=str(local_path))
    except RuntimeError as e:  # qdrant-client's lock: one process per local storage folder
        raise IndexIncompatibleError(
            f"the local Qdrant storage {local_path} is open in another process ({e}); qdrant-client's local "
            "mode serves one process at a time: stop the other command, or run a Qdrant server and index "
            "with --qdrant-url"
        ) from e


def write_collection(
    client: QdrantClient,
    alias: str,
    version: str,
    passages: Sequence[Passage],
    vectors: np.ndarray,
    *,
    language: str,
    stopwords: str,
    k1: float = 1.5,
    b: float = 0.75,
    payload_index: bool = False,
) -> str:
    """Write ``passages`` into a new collection ``<alias>-<version>``, point ``alias`` at it and
    delete the collection the alias named before. Returns the new collection's name.

    ``payload_index`` adds keyword indexes on ``doc_id`` and ``pid`` (a server uses them for
    filters; local mode has none and warns, so it is off there).

    A failure before the alias switch deletes the new collection and leaves the alias as it was.
    """
    from qdrant_client import models

    name = f"{alias}-{version}"
    previous = alias_target(client, alias)
    if client.collection_exists(alias) and previous is None:
        raise IndexWriteError(
            f"Qdrant already holds a collection named {alias!r} (not an alias citerag made): pass another --collection"
        )
    client.create_collection(
        name,
        vectors_config={DENSE: models.VectorParams(size=int(vectors.shape[1]), distance=models.Distance.DOT)},
        sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    try:
        # Keyword indexes for the two filters citerag sends (a document's passages, a set of
        # candidates): a server answers them from the index instead of scanning every payload.
        for field in ("doc_id", "pid") if payload_index else ():
            client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD, wait=True)
        texts = [f"{p.title}\n{p.text}" if p.title else p.text for p in passages]
        sparse = sparse_weights(bm25_tokens(texts, language, stopwords), k1=k1, b=b)
        for lo in range(0, len(passages), _UPSERT_BATCH):
            points = [
                models.PointStruct(
                    id=i,
                    vector={
                        DENSE: vectors[i].tolist(),
                        SPARSE: models.SparseVector(indices=sparse[i][0], values=sparse[i][1]),
                    },
                    payload=_payload(passages[i]),
                )
                for i in range(lo, min(lo + _UPSERT_BATCH, len(passages)))
            ]
            client.upsert(name, points=points, wait=True)
        count = client.count(name, exact=True).count
        if count != len(passages):
            raise IndexWriteError(f"Qdrant holds {count} of the {len(passages)} passages written to {name!r}")
        faults.pause_at(ALIAS_PHASE)
        ops: list[Any] = []
        if previous is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=name, alias_name=alias)))
        client.update_collection_aliases(change_aliases_operations=ops)
    except BaseException:
        try:
            client.delete_collection(name)
        except Exception as e:  # noqa: BLE001 - keep the first error; the next run may clean up
            log.warning("could not delete the half-written Qdrant collection %s (%s)", name, e)
        raise
    if previous is not None and previous != name:
        try:
            client.delete_collection(previous)
        except Exception as e:  # noqa: BLE001 - the switch is done; an old collection only costs space
            log.warning("could not delete the old Qdrant collection %s (%s); delete it by hand", previous, e)
    return name


def alias_target(client: QdrantClient, alias: str) -> str | None:
    """The collection ``alias`` names, or None."""
    for a in client.get_aliases().aliases:
        if a.alias_name == alias:
            return str(a.collection_name)
    return None


def _payload(p: Passage) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "doc_id": p.doc_id,
        "title": p.title,
        "start": p.start,
        "end": p.end,
        "page": p.page,
        "page_end": p.page_end,
        "text": p.text,
    }


def passage_from_payload(payload: dict[str, Any], score: float) -> Passage:
    """The passage a point's payload holds, scored ``score`` (the same checks as ``passages.jsonl``)."""
    try:
        return Passage.from_record(payload, score)
    except (KeyError, TypeError, ValueError) as e:
        raise IndexIncompatibleError(
            f"a Qdrant point's payload is not a citerag passage ({e}): rebuild the index with `citerag index`"
        ) from e


class QdrantRetriever:
    """Dense, BM25 or hybrid (RRF in Qdrant) retrieval from a collection written by :func:`write_collection`.

    ``kind`` is ``dense``, ``bm25`` or ``hybrid``; ``embedder`` is needed unless ``kind`` is bm25.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        kind: str,
        embedder: Embedder | None,
        *,
        language: str = "english",
        stopwords: str = "en",
        rrf_k: int = 60,
        depth: int | None = None,
    ) -> None:
        if kind not in ("dense", "bm25", "hybrid"):
            raise ConfigError(f"unknown retriever kind {kind!r}: choose one of hybrid, bm25, dense")
        if kind != "bm25" and embedder is None:
            raise ConfigError(f"the {kind} retriever needs an embedder")
        self.client = client
        self.collection = collection
        self.kind = kind
        self.embedder = embedder
        self.language = language
        self.stopwords = stopwords
        self.rrf_k = rrf_k
        self.depth = depth

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query, best first (one batched request for all queries)."""
        return self._query(queries, k, [None] * len(queries))

    def _query(self, queries: Sequence[str], k: int, pids: Sequence[Sequence[str] | None]) -> list[list[Passage]]:
        """Top-``k`` per query among the passages whose pid is in ``pids[i]`` (all when None)."""
        from qdrant_client import models

        from retrievers.dense import normalize

        if not queries or k <= 0:
            return [[] for _ in queries]
        dense = normalize(self.embedder(list(queries))) if self.kind != "bm25" else None  # type: ignore[misc]
        sparse = (
            [query_terms(t) for t in bm25_tokens(queries, self.language, self.stopwords)]
            if self.kind != "dense"
            else None
        )
        depth = max(self.depth or k, k)
        requests = []
        for i in range(len(queries)):
            sv = models.SparseVector(indices=sparse[i][0], values=sparse[i][1]) if sparse is not None else None
            only = pids[i]
            flt = None if only is None else models.Filter(must=[pid_condition(only)])
            if self.kind == "dense":
                req = models.QueryRequest(query=dense[i].tolist(), using=DENSE, limit=k, filter=flt, with_payload=True)  # type: ignore[index]
            elif self.kind == "bm25":
                req = models.QueryRequest(query=sv, using=SPARSE, limit=k, filter=flt, with_payload=True)
            else:
                req = models.QueryRequest(
                    prefetch=[
                        models.Prefetch(query=sv, using=SPARSE, limit=depth, filter=flt),
                        models.Prefetch(query=dense[i].tolist(), using=DENSE, limit=depth, filter=flt),  # type: ignore[index]
                    ],
                    # Qdrant scores rank r (from 1) as 1 / (k + r - 1); rrf_fuse as 1 / (rrf_k + r).
                    query=models.RrfQuery(rrf=models.Rrf(k=self.rrf_k + 1)),
                    limit=k,
                    with_payload=True,
                )
            requests.append(req)
        responses = self.client.query_batch_points(self.collection, requests=requests)
        out = []
        for r in responses:
            points = r.points
            if self.kind != "hybrid":
                # Equal scores go by corpus order (point id = row), as BM25Retriever and FAISS break
                # ties. Hybrid keeps Qdrant's order: fused ties go by first seen, sparse before dense,
                # as rrf_fuse does with [bm25, dense] (a corpus-order tie-break there is another ranking).
                points = sorted(points, key=lambda p: (-p.score, p.id))
            out.append([passage_from_payload(p.payload or {}, p.score) for p in points])
        return out


class QdrantCacheRetriever(QdrantRetriever):
    """A dense or BM25 :class:`QdrantRetriever` that also ranks a set of candidates
    (:class:`~pipeline.protocols.CacheRetriever`, for speculative iterative retrieval).

    The candidates are a pid filter on the same query, so each candidate keeps the score the
    full query gives it (dense: its dot product; BM25: IDF from the whole collection). Hybrid
    is left out, as for the folder index: RRF over ranks among the candidates is not the
    ranking of the whole corpus.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.kind == "hybrid":
            raise ConfigError("ranking candidates needs the dense or bm25 kind (hybrid ranks are corpus-wide)")

    def retrieve_from(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Passage]], k: int
    ) -> list[list[Passage]]:
        """Top-``k`` of ``candidates[i]`` for ``queries[i]``, best first, ties by corpus order."""
        if not queries:
            return []
        pids = [[p.pid for p in cands] for cands in candidates]
        if any(not pid for ps in pids for pid in ps):
            raise ConfigError("candidates must be passages of this index (each with its pid)")
        return self._query(queries, k, pids)


def pid_condition(pids: Sequence[str]) -> Any:
    """The filter condition "pid is one of ``pids``" (a keyword match)."""
    from qdrant_client import models

    return models.FieldCondition(key="pid", match=models.MatchAny(any=list(pids)))


def document_passages(client: QdrantClient, collection: str, doc_id: str) -> list[Passage]:
    """Every passage of document ``doc_id``, in document order (a filtered scroll, page by page)."""
    from qdrant_client import models

    flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
    out: list[Passage] = []
    offset = None
    while True:
        points, offset = client.scroll(collection, scroll_filter=flt, limit=256, offset=offset, with_payload=True)
        out.extend(passage_from_payload(p.payload or {}, 0.0) for p in points)
        if offset is None:
            break
    return sorted(out, key=lambda p: (p.start, p.end))
