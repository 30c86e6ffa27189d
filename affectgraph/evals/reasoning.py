"""Reasoning metrics of predictions that carry rationale steps judged by the verifier.

- **grounding**: the share of all rationale steps the verifier accepted (cited evidence exists
  and its times, emotions and numbers match); **hallucination rate**: the share it rejected.
- MME-Emotion's scores (Zhang et al., 2025, "MME-Emotion: A Holistic Evaluation Benchmark for
  Emotional Intelligence in Multimodal Large Language Models"), computed as its released
  ``cal_metrics.py`` does, with our verifier as the step judge: per item, **Rec-S** is 1 when
  the answer is the true label (0 for a wrong answer or an abstention) and **Rea-S** is the
  share of its reasoning steps judged correct (0 when it gave none); both are averaged over
  items, and **CoT-S** = ``alpha * Rec-S + (1 - alpha) * Rea-S`` with ``alpha = 0.5``.

How the judge differs (:data:`JUDGE_NOTE`, printed in every report that has these scores).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from affectgraph.evals.predictors import Prediction

ALPHA = 0.5

JUDGE_NOTE = (
    "MME-Emotion has GPT-4o judge each answer step 0/1 from up to ten video frames, an "
    "extracted audio clue and the true label, marking a reasoning step wrong only when it "
    "clearly contradicts those cues, and the last step right when it names the true label. "
    "Here Rec-S compares the verdict's label with the true label directly, and the step judge "
    "is affectgraph's deterministic verifier: a step counts as correct only if it cites evidence "
    "records (or retrieved exemplars) that exist and every time, emotion and measured number it "
    "states matches them. The verifier never sees the raw media or the true label; it trusts "
    "the specialists' evidence, so it checks faithfulness to the evidence, not whether that "
    "evidence is right, and it is stricter than a lenient LLM judge on form (a step citing "
    "nothing fails) and blind to reasoning it cannot parse (claims without times, emotions or "
    "numbers pass once their citations exist). Scores are therefore comparable in form, not in "
    "value, to MME-Emotion's."
)


class ReasoningScores(BaseModel):
    """Reasoning metrics over the scored items (values in [0, 1])."""

    model_config = ConfigDict(frozen=True)

    items: int
    items_with_steps: int
    steps: int
    grounding: float
    hallucination_rate: float
    rec_s: float
    rea_s: float
    cot_s: float
    alpha: float = ALPHA
    mean_steps: float


def reasoning_scores(truth: Sequence[str], predictions: Sequence[Prediction],
                     alpha: float = ALPHA) -> ReasoningScores | None:
    """The metrics above, or ``None`` when no prediction carries rationale steps."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} labels but {len(predictions)} predictions")
    if not any(p.steps for p in predictions):
        return None
    steps = [s for p in predictions for s in p.steps]
    grounded = sum(1 for s in steps if s.grounded)
    rec = [1.0 if p.label == t else 0.0 for t, p in zip(truth, predictions, strict=True)]
    rea = [sum(1 for s in p.steps if s.grounded) / len(p.steps) if p.steps else 0.0
           for p in predictions]
    rec_s, rea_s = sum(rec) / len(rec), sum(rea) / len(rea)
    return ReasoningScores(
        items=len(predictions),
        items_with_steps=sum(1 for p in predictions if p.steps),
        steps=len(steps),
        grounding=grounded / len(steps),
        hallucination_rate=1.0 - grounded / len(steps),
        rec_s=rec_s,
        rea_s=rea_s,
        cot_s=alpha * rec_s + (1 - alpha) * rea_s,
        alpha=alpha,
        mean_steps=len(steps) / len(predictions),
    )
