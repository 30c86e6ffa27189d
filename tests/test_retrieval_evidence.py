"""Query vectors read off evidence records (:mod:`affectgraph.retrieval.evidence`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from affectgraph.evidence import FaceEvidence, ModelRef, TimeSpan, TranscriptEvidence
from affectgraph.retrieval.evidence import EMBED_BATCH, EvidenceVectoriser

REF = ModelRef(name="test")


class _CountingEmbedder:
    """Embeds ``"line i"`` as the 4-d vector (i, 1, 0, 0); records the size of each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.asarray([[float(t.split()[-1]), 1.0, 0.0, 0.0] for t in texts], np.float32)


def test_texts_are_embedded_in_bounded_batches() -> None:
    # A long recording's segments reach the text model EMBED_BATCH at a time (its activations
    # grow with the batch); each vector stays with its record, and empty texts have none.
    n = 2 * EMBED_BATCH + 5
    records = [TranscriptEvidence(id=f"text:{i}", span=TimeSpan(start=i, end=i + 1.0),
                                  specialist="transcript", model=REF,
                                  text="" if i % 10 == 3 else f"line {i}") for i in range(n)]
    embedder = _CountingEmbedder()
    kept, rows = EvidenceVectoriser("text", "counting", "0", 4, embed=embedder).vectors(records)
    assert [r.id for r in kept] == [r.id for r in records if r.text]
    assert rows.shape == (len(kept), 4) and rows.dtype == np.float32
    assert rows[:, 0].tolist() == [float(r.id.split(":")[1]) for r in kept]
    assert max(embedder.calls) == EMBED_BATCH and sum(embedder.calls) == len(kept)
    _, none = EvidenceVectoriser("text", "counting", "0", 4, embed=embedder).vectors([])
    assert none.shape == (0, 4)


def test_face_embeddings_become_one_float32_matrix() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 128)).astype(np.float32)
    records = [FaceEvidence(id=f"face:{i}", span=TimeSpan(start=i, end=i + 0.2),
                            specialist="face", model=REF, embedding=list(map(float, v)))
               for i, v in enumerate(vectors)]
    records.insert(1, FaceEvidence(id="face:9", span=TimeSpan(start=0, end=1), specialist="face",
                                   model=REF, reason="no face detected"))
    kept, rows = EvidenceVectoriser("face", "fer-mini-xception", "0", 128).vectors(records)
    assert [r.id for r in kept] == ["face:0", "face:1", "face:2"]
    np.testing.assert_array_equal(rows, vectors)
