"""A head's probabilities and the kNN label vote mixed into one distribution.

Both are (n, 7) distributions over :data:`~affectgraph.labels.LABELS`; the combination is their
linear mixture ``(1 - weight) * head + weight * vote`` (the mixture the evaluation harness and
the aggregator apply), so a weight of 0 is the head alone and 1 the vote alone. The weight is
always chosen on training data -- held-out predictions of training folds or of a calibration
split -- never on the split being scored: :func:`choose_weight` picks it, :func:`compare`
scores the three side by side.

>>> p = np.array([[0.6, 0.4, 0, 0, 0, 0, 0]])
>>> v = np.array([[0.0, 1.0, 0, 0, 0, 0, 0]])
>>> mix(p, v, 0.25)[0, :2].round(2).tolist()
[0.45, 0.55]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from affectgraph.evals.metrics import Scores, score
from affectgraph.labels import LABELS

WEIGHTS: tuple[float, ...] = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
"""The vote weights :func:`choose_weight` tries."""
METRICS = ("war", "uar", "macro_f1", "weighted_f1")


def mix(probabilities: np.ndarray, votes: np.ndarray, weight: float) -> np.ndarray:
    """(n, 7) ``(1 - weight) * probabilities + weight * votes``; a row that is NaN in one of
    the two (no head output, no neighbours) is the other's row."""
    p, v = np.asarray(probabilities, np.float64), np.asarray(votes, np.float64)
    out = (1.0 - weight) * p + weight * v
    no_vote, no_head = np.isnan(v).any(axis=1), np.isnan(p).any(axis=1)
    out[no_vote] = p[no_vote]
    out[no_head] = v[no_head]
    return out


def predicted(distributions: np.ndarray, allowed: np.ndarray | None = None) -> list[str]:
    """The best label of each row of (n, 7) ``distributions`` among ``allowed`` ((7,) or
    (n, 7) bool; ``None``: all); ``"none"`` for a row that is all NaN (nothing to decide on,
    scored as wrong)."""
    d = np.asarray(distributions, np.float64)
    if allowed is not None:
        d = np.where(allowed, d, -1.0)
    missing = np.all(np.isnan(d), axis=1)
    best = np.nan_to_num(d, nan=-2.0).argmax(axis=1)
    return ["none" if gone else LABELS[k] for k, gone in zip(best, missing, strict=True)]


def choose_weight(truth: Sequence[str], probabilities: np.ndarray, votes: np.ndarray, *,
                  metric: str = "war", weights: Sequence[float] = WEIGHTS,
                  allowed: np.ndarray | None = None) -> float:
    """The weight of ``weights`` whose mixture scores best on ``metric`` (one of
    :data:`METRICS`) against ``truth``; ties go to the smaller weight (less change from the
    head). The inputs must be held-out predictions of *training* items."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    best, best_value = float(weights[0]), -np.inf
    for w in weights:
        value = getattr(score(list(truth), predicted(mix(probabilities, votes, w), allowed)),
                        metric)
        if value > best_value + 1e-12:
            best, best_value = float(w), value
    return best


@dataclass(frozen=True)
class Comparison:
    """Scores of the head, the kNN vote and their mixture on the same items, and the vote
    weight(s) the mixture used (one per fold when each fold chose its own)."""

    head: Scores
    knn: Scores
    combined: Scores
    weights: tuple[float, ...]

    def rows(self) -> dict[str, Scores]:
        return {"head": self.head, "kNN vote": self.knn, "combination": self.combined}

    @property
    def weight_text(self) -> str:
        """The weight, or the range of the weights the folds chose (``0.1-0.3``)."""
        unique = sorted(set(self.weights))
        return f"{unique[0]:g}" if len(unique) == 1 else f"{unique[0]:g}-{unique[-1]:g}"


def compare(truth: Sequence[str], probabilities: np.ndarray, votes: np.ndarray,
            combined: np.ndarray, weights: Sequence[float],
            allowed: np.ndarray | None = None) -> Comparison:
    """Score the head's ``probabilities``, the ``votes`` and the ``combined`` mixture (each
    (n, 7)) against ``truth``; rows without an output count as wrong."""
    truth = list(truth)

    def scored(d: np.ndarray) -> Scores:
        return score(truth, predicted(d, allowed))

    return Comparison(head=scored(probabilities), knn=scored(votes), combined=scored(combined),
                      weights=tuple(float(w) for w in weights))
