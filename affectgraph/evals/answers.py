"""A language-model aggregator's own answers in an evaluation, before the fusion fallback.

With ``--aggregator mllm...`` the graph's verdict is the model's answer when the verifier
grounds it and the fusion verdict otherwise, so the verdict's label and steps mix the two. To
measure the model itself, :class:`RecordingModel` keeps the raw text it answered for each clip;
:func:`judge_answer` reads it as the answer JSON and has the verifier judge *all* its steps
against the clip's evidence (:class:`~affectgraph.evals.predictors.ModelAnswer`);
:func:`answer_scores` sums these up for metrics.json (``answers``): JSON validity rate, share
used, the answers' own label scores (an answer that is not the JSON, or has no label, counts as
an abstention: wrong), and their grounding and hallucination rate over every step they wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from affectgraph.evals.predictors import ModelAnswer, Prediction
from affectgraph.verdict import RationaleStep

__all__ = ["RecordingModel", "answer_scores", "judge_answer"]


class RecordingModel:
    """Wraps an MLLM (anything with ``generate(examples, **kw) -> list[str]``) and keeps the
    texts it answered since the last :meth:`take`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._answers: list[str] = []

    def generate(self, examples: Sequence[Any], **options: Any) -> list[str]:
        texts = self.model.generate(examples, **options)
        self._answers.extend(texts)
        return texts

    def take(self) -> list[str]:
        """The texts answered since the last call (oldest first), forgetting them."""
        answers, self._answers = self._answers, []
        return answers

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def judge_answer(raw: str, evidence: Sequence[Any], exemplars: Sequence[Any] = (), *,
                 used: bool = False, reason: str = "", seconds: float = 0.0) -> ModelAnswer:
    """The answer text ``raw`` read as the answer JSON, every step judged by the verifier."""
    from affectgraph.agents.llm_prompt import Answer, parse_json
    from affectgraph.agents.verifier import Verifier

    try:
        answer = Answer.model_validate(parse_json(raw))
    except (ValidationError, ValueError) as exc:
        why = reason or f"not the answer JSON ({str(exc).splitlines()[0][:120]})"
        return ModelAnswer(valid_json=False, used=False, reason=why, seconds=seconds)
    steps = [RationaleStep(claim=s.claim.strip(), cites=list(s.cites)) for s in answer.steps]
    judged = Verifier(evidence, exemplars).verify(steps) if steps else []
    return ModelAnswer(valid_json=True, label=answer.label, steps=tuple(judged), used=used,
                       reason=reason, seconds=seconds)


def answer_scores(truth: Sequence[str], predictions: Sequence[Prediction],
                  labels: Sequence[str]) -> dict[str, Any] | None:
    """The model's own scores over the items it answered (``None`` when it answered none)."""
    from affectgraph.evals.metrics import score

    pairs = [(t, p.answer) for t, p in zip(truth, predictions, strict=True)
             if p.answer is not None]
    if not pairs:
        return None
    answers = [a for _, a in pairs]
    said = [a.label if a.label is not None and a.label in labels else "abstained"
            for a in answers]
    scores = score([t for t, _ in pairs], said, labels=list(labels))
    steps = [s for a in answers for s in a.steps]
    grounded = sum(1 for s in steps if s.grounded)
    n = len(answers)
    return {
        "n": n,
        "json_valid": round(sum(a.valid_json for a in answers) / n, 6),
        "used": round(sum(a.used for a in answers) / n, 6),
        "war": round(scores.war, 6), "uar": round(scores.uar, 6),
        "steps": len(steps),
        "grounding": round(grounded / len(steps), 6) if steps else None,
        "hallucination_rate": round(1 - grounded / len(steps), 6) if steps else None,
        "rea_s": round(sum(_share(a.steps) for a in answers) / n, 6),
        "seconds_per_answer": round(sum(a.seconds for a in answers) / n, 6),
    }


def _share(steps: Sequence[RationaleStep]) -> float:
    return sum(1 for s in steps if s.grounded) / len(steps) if steps else 0.0
