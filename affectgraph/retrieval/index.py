"""FAISS inner-product indexes over unit vectors, their kind chosen by size.

Vectors are L2-normalised, so the inner product is the cosine similarity. Three kinds, each
wrapped in ``IndexIDMap2`` so that ids are the caller's (an exemplar library uses row numbers)
and :meth:`VectorIndex.add` works incrementally:

=========  ==========================  ==================================================
kind       when (``kind="auto"``)      what
=========  ==========================  ==================================================
``flat``   n <= 100,000                exact ``IndexFlatIP``: one 384-d query against
                                       68k real text embeddings took 12 ms (p50) on one
                                       core, against 100k about 30 ms
``ivf``    100,000 < n <= 2,000,000    ``IndexIVFFlat``, ``nlist = 4 sqrt(n)`` lists,
                                       ``nprobe = nlist / 8`` searched: on those 68k
                                       embeddings recall@10 0.94 in 1 ms (nlist / 16:
                                       0.90 in 0.5 ms)
``ivfpq``  n > 2,000,000               ``IndexIVFPQ``: ``d / 8`` bytes per vector instead
                                       of ``4 d``, for libraries that would not fit in
                                       memory; recall@10 only ~0.6 there, similarities
                                       are estimates from the codes
=========  ==========================  ==================================================

(``benchmarks/retrieval_speed.py`` measures build time, latency and recall of each kind;
random vectors, which have no clusters, are IVF's worst case.) IVF kinds are trained on the
vectors given to :meth:`VectorIndex.build`; vectors added later go into the existing lists
without retraining. ``nlist`` is capped so that every list gets at least 39 training vectors
(faiss's minimum for a stable k-means), so ``ivf`` can be forced on a small set.

Excluding ids (an exemplar group such as the query's own speaker) uses faiss's
``IDSelectorNot(IDSelectorBatch(...))`` search parameters, which ``IndexIDMap2`` translates
for every kind above (checked with faiss-cpu 1.15): excluded vectors are never scored, so a
search returns the k best of the others. An approximate search may find fewer than k; the
missing slots have id ``-1``.

FAISS runs OpenMP threads process-wide; each build and search sets them to ``threads``
(default 1: on this 2-core machine, with the other core busy, 2 threads were slower than 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import ConfigError, InputError

IndexKind = Literal["flat", "ivf", "ivfpq"]
FLAT_MAX = 100_000
IVF_MAX = 2_000_000
MIN_PER_LIST = 39  # faiss warns below 39 training points per centroid


class IndexOptions(BaseModel):
    """How to index: ``kind`` (``auto`` chooses by size, see the module doc), IVF ``nlist``
    and ``nprobe`` (``None``: ``4 sqrt(n)`` and ``nlist / 8``), PQ ``pq_bytes`` per vector
    (``None``: the largest divisor of the dimension not above ``dim / 8``), OpenMP
    ``threads``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["auto", "flat", "ivf", "ivfpq"] = "auto"
    nlist: int | None = Field(default=None, ge=1)
    nprobe: int | None = Field(default=None, ge=1)
    pq_bytes: int | None = Field(default=None, ge=1)
    threads: int = Field(default=1, ge=1)


def choose_kind(n: int) -> IndexKind:
    """The index kind ``auto`` picks for ``n`` vectors."""
    return "flat" if n <= FLAT_MAX else "ivf" if n <= IVF_MAX else "ivfpq"


class VectorIndex:
    """A FAISS index of unit vectors with int64 ids; build with :meth:`build` or :meth:`load`."""

    def __init__(self, index: Any, kind: IndexKind, *, nprobe: int | None, threads: int) -> None:
        self.index = index
        self.kind = kind
        self.nprobe = nprobe
        self.threads = threads

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int | None:
        inner = _inner(self.index)
        return int(inner.nlist) if self.kind != "flat" else None

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: np.ndarray | None = None,
        options: IndexOptions | None = None,
    ) -> VectorIndex:
        """Index ``vectors`` (n, d) float32 unit rows under ``ids`` (n,) int64 (default
        ``0..n-1``), training IVF kinds on them."""
        import faiss

        options = options or IndexOptions()
        x = _matrix(vectors)
        n, d = x.shape
        kind = choose_kind(n) if options.kind == "auto" else options.kind
        faiss.omp_set_num_threads(options.threads)
        nlist = _nlist(n, options.nlist) if kind != "flat" else 0
        base = _empty(kind, n, d, nlist, options.pq_bytes)
        if kind != "flat":
            if n < MIN_PER_LIST:
                raise InputError(f"an {kind} index needs at least {MIN_PER_LIST} vectors to "
                                 f"train on, not {n}; use kind='flat'")
            base.train(x)
        nprobe = (options.nprobe or _nprobe(nlist)) if nlist else None
        index = cls(faiss.IndexIDMap2(base), kind, nprobe=nprobe, threads=options.threads)
        index.add(x, np.arange(n, dtype=np.int64) if ids is None else ids)
        return index

    def add(self, vectors: np.ndarray, ids: np.ndarray | Sequence[int]) -> None:
        """Add (n, d) unit vectors under new int64 ``ids`` (IVF lists are not retrained)."""
        import faiss

        x = _matrix(vectors)
        keys = np.ascontiguousarray(ids, dtype=np.int64)
        if x.shape[1] != self.dim:
            raise InputError(f"vectors have {x.shape[1]} dimensions; this index holds {self.dim}")
        if keys.shape != (len(x),):
            raise InputError(f"{len(x)} vectors but {keys.size} ids")
        faiss.omp_set_num_threads(self.threads)
        self.index.add_with_ids(x, keys)

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | Sequence[int] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar vectors to each of (q, d) unit ``queries``, never one whose
        id is in ``exclude``. Returns similarities (q, k) float32, best first, and ids (q, k)
        int64, ``-1`` where fewer than ``k`` were found."""
        import faiss

        q = _matrix(queries)
        if q.shape[1] != self.dim:
            raise InputError(f"queries have {q.shape[1]} dimensions; this index holds {self.dim}")
        faiss.omp_set_num_threads(self.threads)
        k = max(1, min(k, len(self)))
        params, selectors = self._params(np.asarray(exclude, dtype=np.int64))
        sims, ids = self.index.search(q, k, params=params)
        del selectors  # kept alive until the search is done: params only point to them
        return sims, ids

    def save(self, path: str | Path) -> Path:
        """Write the index to one file (``faiss.write_index``)."""
        import faiss

        faiss.write_index(self.index, str(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, nprobe: int | None = None, threads: int = 1) -> VectorIndex:
        """Read an index written by :meth:`save`; ``nprobe`` defaults to ``nlist / 8``."""
        import faiss

        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            raise InputError(f"{path}: not an affectgraph index (no IndexIDMap2 around it)")
        inner = _inner(index)
        kind: IndexKind = ("ivfpq" if isinstance(inner, faiss.IndexIVFPQ) else
                           "ivf" if isinstance(inner, faiss.IndexIVFFlat) else "flat")
        if kind != "flat" and nprobe is None:
            nprobe = _nprobe(int(inner.nlist))
        return cls(index, kind, nprobe=nprobe if kind != "flat" else None, threads=threads)

    def _params(self, exclude: np.ndarray) -> tuple[Any, tuple[Any, ...]]:
        import faiss

        selectors: tuple[Any, ...] = ()
        if exclude.size:
            batch = faiss.IDSelectorBatch(exclude)
            selectors = (batch, faiss.IDSelectorNot(batch))
        params: Any = faiss.SearchParameters() if self.kind == "flat" else (
            faiss.SearchParametersIVF())
        if self.kind != "flat":
            params.nprobe = self.nprobe
        if selectors:
            params.sel = selectors[1]
        return params, selectors


def _matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError("vectors must be a finite 2-d array (n, dim)")
    return x


def _nlist(n: int, requested: int | None) -> int:
    wanted = requested or round(4 * math.sqrt(n))
    return max(1, min(wanted, n // MIN_PER_LIST))


def _nprobe(nlist: int) -> int:
    return max(1, nlist // 8)


def _pq_bytes(d: int, requested: int | None) -> int:
    if requested is not None:
        if d % requested:
            raise ConfigError(f"pq_bytes {requested} must divide the dimension {d}")
        return requested
    return max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)


def _pq_bits(n: int) -> int:
    """Bits per PQ code: 8 (256 centroids per sub-quantiser) when there are enough vectors to
    train them, fewer on small sets."""
    return max(4, min(8, int(math.log2(max(2, n // MIN_PER_LIST)))))


def _empty(kind: IndexKind, n: int, d: int, nlist: int, pq_bytes: int | None) -> Any:
    """An empty index; faiss's Python wrapper keeps each quantiser alive with its index."""
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(d)
    quantiser = faiss.IndexFlatIP(d)
    if kind == "ivf":
        return faiss.IndexIVFFlat(quantiser, d, nlist, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIVFPQ(quantiser, d, nlist, _pq_bytes(d, pq_bytes), _pq_bits(n),
                            faiss.METRIC_INNER_PRODUCT)


def _inner(index: Any) -> Any:
    import faiss

    return faiss.downcast_index(index.index)
