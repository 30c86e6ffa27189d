"""Reasoning metrics: grounding, hallucination rate and MME-Emotion's Rec-S / Rea-S / CoT-S with
the verifier as the step judge."""

from __future__ import annotations

import pytest

from affectgraph.agents.verifier import Verifier
from affectgraph.evals.predictors import Prediction, abstain
from affectgraph.evals.reasoning import reasoning_scores
from affectgraph.evidence import ModelRef, TimeSpan, TranscriptEvidence
from affectgraph.verdict import RationaleStep


def judged(*claims: tuple[str, list[str]]) -> tuple[RationaleStep, ...]:
    """Steps judged by the real verifier against one angry transcript record (0-2 s)."""
    record = TranscriptEvidence(
        id="text:0", span=TimeSpan(start=0, end=2), specialist="transcript",
        model=ModelRef(name="test"), text="get out", confidence=0.8,
        distribution={"neutral": 0.1, "happy": 0.0, "sad": 0.05, "angry": 0.8, "fearful": 0.05,
                      "disgusted": 0.0, "surprised": 0.0})
    steps = [RationaleStep(claim=c, cites=ids) for c, ids in claims]
    return tuple(Verifier([record]).verify(steps))


def answer(label: str, steps: tuple[RationaleStep, ...] = ()) -> Prediction:
    return Prediction(id=label, label=label, distribution={label: 1.0}, confidence=1.0,
                      steps=steps)


def test_scores_follow_mme_emotion_with_the_verifier_as_judge() -> None:
    good = ("The words are angry [text:0].", ["text:0"])
    timed = ("At 1.5 s the words turn angry [text:0].", ["text:0"])
    wrong_time = ("At 9 s the words turn angry [text:0].", ["text:0"])
    wrong_emotion = ("The words sound happy [text:0].", ["text:0"])
    unknown = ("The face frowns [face:3].", ["face:3"])
    predictions = [
        answer("angry", judged(good, timed, wrong_time)),        # right; 2 of 3 steps grounded
        answer("happy", judged(wrong_emotion, unknown)),          # wrong; 0 of 2
        answer("angry"),                                          # right; no steps -> Rea 0
        abstain("x", "the evidence disagrees"),                   # abstained -> Rec 0, Rea 0
    ]
    assert [s.grounded for s in predictions[0].steps] == [True, True, False]
    scores = reasoning_scores(["angry", "angry", "angry", "sad"], predictions)
    assert scores is not None
    assert scores.steps == 5 and scores.items_with_steps == 2
    assert scores.grounding == pytest.approx(2 / 5)
    assert scores.hallucination_rate == pytest.approx(3 / 5)
    assert scores.rec_s == pytest.approx(2 / 4)
    assert scores.rea_s == pytest.approx((2 / 3 + 0 + 0 + 0) / 4)
    assert scores.cot_s == pytest.approx(0.5 * 2 / 4 + 0.5 * (2 / 3) / 4)
    assert scores.mean_steps == pytest.approx(5 / 4)


def test_no_rationale_gives_no_reasoning_scores() -> None:
    assert reasoning_scores(["angry"], [answer("angry")]) is None
    with pytest.raises(ValueError, match="1 labels but 2 predictions"):
        reasoning_scores(["angry"], [answer("angry"), answer("sad")])
