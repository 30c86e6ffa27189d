"""Mixing a head's probabilities with the kNN vote, and choosing the vote's weight."""

from __future__ import annotations

import numpy as np
import pytest

from affectgraph.heads.combination import WEIGHTS, choose_weight, compare, mix, predicted
from affectgraph.labels import LABELS


def one_hot(labels: list[str], strength: float = 1.0) -> np.ndarray:
    """(n, 7) distributions putting ``strength`` on each label and the rest evenly elsewhere."""
    out = np.full((len(labels), len(LABELS)), (1 - strength) / (len(LABELS) - 1))
    out[np.arange(len(labels)), [LABELS.index(label) for label in labels]] = strength
    return out


def test_mix_is_linear_and_falls_back_on_a_missing_side() -> None:
    head, vote = one_hot(["happy", "sad", "angry"]), one_hot(["sad", "sad", "sad"])
    vote[1] = np.nan
    head[2] = np.nan
    out = mix(head, vote, 0.25)
    np.testing.assert_allclose(out[0], 0.75 * head[0] + 0.25 * vote[0])
    np.testing.assert_allclose(out[1], head[1])
    np.testing.assert_allclose(out[2], vote[2])
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_predicted_respects_allowed_classes_and_missing_rows() -> None:
    d = one_hot(["surprised", "happy"], strength=0.5)
    allowed = np.isin(LABELS, ["neutral", "happy", "sad", "angry", "fearful"])
    d[0, LABELS.index("neutral")] = 0.2
    assert predicted(d, allowed) == ["neutral", "happy"]
    d[1] = np.nan
    assert predicted(d) == ["surprised", "none"]


def test_choose_weight_finds_the_vote_when_the_head_is_uninformed() -> None:
    truth = ["happy", "sad", "angry", "neutral"] * 5
    head = one_hot(["neutral"] * len(truth), strength=0.4)  # always neutral
    vote = one_hot(truth, strength=0.6)                     # always right
    weight = choose_weight(truth, head, vote, metric="uar")
    assert weight > 0
    assert compare(truth, head, vote, mix(head, vote, weight), [weight]).combined.uar == 1.0


def test_choose_weight_keeps_the_head_when_the_vote_only_hurts() -> None:
    truth = ["happy", "sad"] * 10
    head = one_hot(truth, strength=0.6)
    vote = one_hot(["angry"] * len(truth), strength=1.0)
    assert choose_weight(truth, head, vote) == WEIGHTS[0] == 0.0
    with pytest.raises(ValueError, match="unknown metric"):
        choose_weight(truth, head, vote, metric="accuracy")


def test_compare_scores_three_ways_on_the_same_items() -> None:
    truth = ["happy", "sad", "angry", "happy"]
    head, vote = one_hot(["happy", "sad", "sad", "sad"]), one_hot(["happy", "happy", "angry",
                                                                   "happy"])
    result = compare(truth, head, vote, mix(head, vote, 0.5), [0.4, 0.6])
    assert result.head.war == 0.5 and result.knn.war == 0.75
    assert set(result.rows()) == {"head", "kNN vote", "combination"}
    assert result.weight_text == "0.4-0.6"
