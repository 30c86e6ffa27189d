"""FAISS index kinds: exact and approximate search, exclusion, incremental add, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectgraph.errors import InputError
from affectgraph.retrieval.index import IndexOptions, VectorIndex, choose_kind

KINDS = ("flat", "ivf", "ivfpq")


def options(kind: str, **more: int) -> IndexOptions:
    # 16 bytes per 32-d vector: the default d/8 = 4 bytes is too coarse on such short vectors
    return IndexOptions(kind=kind, **({"pq_bytes": 16} if kind == "ivfpq" else {}), **more)


def clustered(n: int = 2000, dim: int = 32, centres: int = 20, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``centres`` random directions (real embeddings cluster too)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim))
    x = middle[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered()


def exact(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :k]


def test_choose_kind_by_size() -> None:
    assert [choose_kind(n) for n in (10, 100_000, 100_001, 2_000_000, 2_000_001)] == [
        "flat", "flat", "ivf", "ivf", "ivfpq"]


def test_flat_is_exact(vectors: np.ndarray) -> None:
    index = VectorIndex.build(vectors)
    assert index.kind == "flat" and len(index) == 2000 and index.dim == 32
    sims, ids = index.search(vectors[:20], 10)
    assert (ids == exact(vectors, vectors[:20], 10)).mean() > 0.99
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5) and (ids[:, 0] == np.arange(20)).all()
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_forced_approximate_kinds_on_a_small_set(vectors: np.ndarray, kind: str) -> None:
    index = VectorIndex.build(vectors, options=options(kind))
    assert index.kind == kind
    assert index.nlist == 2000 // 39  # capped: at least 39 training vectors per list
    assert index.nprobe == max(1, index.nlist // 8)
    _, ids = index.search(vectors[:50], 10)
    truth = exact(vectors, vectors[:50], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall > (0.6 if kind == "ivf" else 0.4)


@pytest.mark.parametrize("kind", KINDS)
def test_excluded_ids_are_never_returned(vectors: np.ndarray, kind: str) -> None:
    index = VectorIndex.build(vectors, options=options(kind, nprobe=8))
    excluded = np.arange(0, 2000, 2)  # every even id
    _, ids = index.search(vectors[:30], 10, exclude=excluded)
    found = ids[ids >= 0]
    assert found.size > 200 and (found % 2 == 1).all()
    _, own = index.search(vectors[:30], 1)
    assert (own[:, 0] == np.arange(30)).mean() > 0.8  # without exclusion a vector finds itself


def test_fewer_than_k_left_are_padded_with_minus_one(vectors: np.ndarray) -> None:
    index = VectorIndex.build(vectors[:5])
    sims, ids = index.search(vectors[:1], 5, exclude=[0, 1, 2])
    assert sorted(ids[0][:2].tolist()) == [3, 4] and (ids[0][2:] == -1).all()
    assert sims.shape == (1, 5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_and_add(vectors: np.ndarray, kind: str, tmp_path: Path) -> None:
    index = VectorIndex.build(vectors[:1500], options=options(kind))
    before = index.search(vectors[1500:1510], 5)
    loaded = VectorIndex.load(index.save(tmp_path / "index.faiss"))
    assert loaded.kind == kind and len(loaded) == 1500 and loaded.nprobe == index.nprobe
    after = loaded.search(vectors[1500:1510], 5)
    assert np.array_equal(before[1], after[1]) and np.allclose(before[0], after[0])
    loaded.add(vectors[1500:], np.arange(5000, 5500))
    assert len(loaded) == 2000
    _, ids = loaded.search(vectors[1500:1510], 1)
    assert (ids[:, 0] == np.arange(5000, 5010)).mean() >= 0.8  # the added vectors find themselves


def test_wrong_dimension_is_rejected(vectors: np.ndarray) -> None:
    index = VectorIndex.build(vectors)
    with pytest.raises(InputError, match="16 dimensions; this index holds 32"):
        index.add(np.ones((2, 16), np.float32), [9000, 9001])
    with pytest.raises(InputError, match="dimensions"):
        index.search(np.ones((1, 8), np.float32), 3)
    with pytest.raises(InputError, match="at least 39 vectors"):
        VectorIndex.build(vectors[:20], options=IndexOptions(kind="ivf"))
