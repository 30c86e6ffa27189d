"""Retrieval for a whole analysis: the labelled exemplars nearest each piece of evidence.

:func:`exemplars_for` searches each modality's library with every record that has a vector:
a voice turn (its eGeMAPS functionals), a transcript segment (its MiniLM embedding), and, for
faces, one query per face track and ``face_window`` seconds (the mean of its frames' expression
embeddings: thousands of frames of a long video do not each need their own neighbours). Each
found exemplar is returned as a citable :class:`~affectgraph.verdict.Exemplar` that remembers
which evidence it was retrieved for (``voice:3``, or ``face:0-24`` for a track's window).

The vectors come from the evidence itself (features and embeddings the specialists already
computed); only text needs its embedding model, shared with the text emotion head when it has
one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import ConfigError
from affectgraph.evidence import Evidence, FaceEvidence, TranscriptEvidence, VoiceEvidence
from affectgraph.retrieval.library import ExemplarLibrary
from affectgraph.retrieval.search import TEMPERATURE, Retrieval, search
from affectgraph.verdict import Exemplar, compact_ids

# Texts per embedding call. MiniLM's activations grow with the batch: a 30-minute recording's
# 537 segments in one call (MiniLM batches of 256) raised the analysis's peak by ~150 MB.
EMBED_BATCH = 32


class RetrievalOptions(BaseModel):
    """Options of the retrieval step.

    ``k`` neighbours per query; ``exclude_groups``: exemplar groups (``ravdess_speech/actor05``)
    or whole data sets (``tess``) to leave out, e.g. the speaker being analysed when that speaker
    is in a library; ``face_window``: seconds of one face track pooled into one query;
    ``modalities``: which libraries to search.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    modalities: tuple[str, ...] = ("face", "voice", "text")
    k: int = Field(default=10, ge=1, le=50)
    exclude_groups: tuple[str, ...] = ()
    face_window: float = Field(default=5.0, gt=0)
    temperature: float = Field(default=TEMPERATURE, gt=0)


class TextEmbedder(Protocol):
    """What text retrieval needs of its model (a :class:`~affectgraph.features.TextVectoriser`)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EvidenceVectoriser:
    """Names the vectors a library was built with, and reads them off evidence records."""

    modality: str
    name: str
    revision: str
    dim: int
    names: tuple[str, ...] = ()  # voice: the feature order
    embed: TextEmbedder | None = field(default=None, repr=False)  # text: a TextVectoriser

    def vectors(self, records: Sequence[object]) -> tuple[Sequence[Evidence], np.ndarray]:
        """The records that have a vector, and their vectors (n, dim)."""
        kept: Sequence[Evidence]
        rows: Sequence[npt.ArrayLike]
        if self.modality == "voice":
            voiced = [r for r in records if isinstance(r, VoiceEvidence) and r.features]
            kept, rows = voiced, [[r.features[n] for n in self.names] for r in voiced]
        elif self.modality == "text":
            said = [r for r in records if isinstance(r, TranscriptEvidence) and r.text.strip()]
            kept, rows = said, self._embedded([r.text for r in said])
        else:
            faces = [r for r in records if isinstance(r, FaceEvidence) and r.embedding is not None]
            # views of the float32 embeddings: no Python float per value (10k faces, 37 MB)
            kept, rows = faces, [np.frombuffer(r.embedding, dtype=np.float32) for r in faces
                                 if r.embedding is not None]
        return kept, np.asarray(rows, dtype=np.float32).reshape(len(kept), self.dim)

    def _embedded(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The embedding of each text, EMBED_BATCH texts per call of the model."""
        if self.embed is None:
            raise ConfigError(f"the {self.name} text vectoriser has no embedding model: pass "
                              "embed=TextVectoriser(...) to EvidenceVectoriser")
        return [v for i in range(0, len(texts), EMBED_BATCH)
                for v in self.embed.embed(texts[i : i + EMBED_BATCH])]


def exemplars_for(evidence: Sequence[Evidence], libraries: Mapping[str, ExemplarLibrary],
                  vectorisers: Mapping[str, EvidenceVectoriser],
                  options: RetrievalOptions = RetrievalOptions()) -> list[Exemplar]:
    """The exemplars nearest the evidence, per modality with a library (checked against its
    vectoriser: :class:`~affectgraph.errors.ConfigError` if they differ)."""
    out: list[Exemplar] = []
    for modality, library in libraries.items():
        vec = vectorisers[modality]
        library.check_vectoriser(vec)
        kept, raw = vec.vectors([r for r in evidence if r.modality == modality])
        if not kept:
            continue
        keys = [r.id for r in kept]
        if modality == "face":
            faces = [r for r in kept if isinstance(r, FaceEvidence)]  # all are: for the checker
            keys, raw = _face_queries(faces, raw, options.face_window)
        found = search(library, raw, k=options.k, exclude_groups=options.exclude_groups,
                       temperature=options.temperature)
        for key, retrieval in zip(keys, found, strict=True):
            out += _cited(key, retrieval)
    return out


def check_groups(groups: Sequence[str], libraries: Mapping[str, ExemplarLibrary]) -> None:
    """:class:`~affectgraph.errors.ConfigError` for a group or data set to exclude that no
    library holds (a typo would otherwise exclude nothing), naming the closest one."""
    import difflib

    from affectgraph.errors import ConfigError

    datasets = {e.dataset for lib in libraries.values() for e in lib.exemplars}
    known = datasets | {e.group for lib in libraries.values() for e in lib.exemplars}
    for group in groups:
        if group not in known:
            close = difflib.get_close_matches(group, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"no exemplar library holds the group or data set {group!r}{hint} "
                              f"Give a data set ({', '.join(sorted(datasets))}) or one of its "
                              "groups, e.g. ravdess_speech/actor05")


def _face_queries(records: Sequence[FaceEvidence], raw: np.ndarray, window: float
                  ) -> tuple[list[str], np.ndarray]:
    """One query per track and window: the normalised mean embedding, keyed by its records."""
    groups: dict[tuple[int | None, int], list[int]] = defaultdict(list)
    for n, r in enumerate(records):
        groups[(r.track_id, int(r.span.start // window))].append(n)
    keys, rows = [], []
    for members in groups.values():
        keys.append(", ".join(compact_ids(records[n].id for n in members)))
        mean = raw[members].mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return keys, np.asarray(rows, dtype=np.float32)


def _cited(key: str, found: Retrieval) -> list[Exemplar]:
    return [Exemplar(id=n.id, label=n.label, similarity=n.similarity, evidence_id=key,
                     library=found.library, speaker=n.speaker, text=n.text)
            for n in found.neighbours]
