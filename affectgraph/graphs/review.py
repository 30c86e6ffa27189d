"""A human-review step: the graph pauses on the verdict, a reviewer accepts or corrects it.

The ``review`` node calls LangGraph's ``interrupt`` with a :class:`ReviewRequest` (the verdict,
its rationale steps numbered, the valid labels; plain JSON, so it crosses the LangGraph server
too). The run stops there, its state kept by the checkpointer, until it is resumed with
``Command(resume=decision)``, where ``decision`` is a :class:`ReviewDecision` or its dict:

- ``{}`` accepts the verdict as it is;
- ``{"label": "sad"}`` replaces the label (a canonical one; a typo fails with "did you mean");
- ``{"drop": [1, 2]}`` drops rationale steps by their number in the request;
- ``reviewer`` and ``comment`` are kept with the decision.

An answer that cannot be applied pauses the run again with the same request and its
``problem`` (e.g. "unknown label 'saad'; did you mean 'sad'?"), so the reviewer can answer again.

The reviewed verdict says so in its ``note``, and the state's ``review`` holds the whole
:class:`Review` (label before and after, the dropped steps, who and why). Placed before
``verify``, the verifier then checks what the reviewer kept; placed after it, the reviewer sees
which steps were grounded, and ``grounding`` stays the verifier's measure of the aggregator.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from affectgraph.errors import ConfigError, InputError, unknown_name
from affectgraph.evidence import Distribution
from affectgraph.graphs.context import AnalysisContext
from affectgraph.graphs.state import AnalysisState
from affectgraph.labels import LABELS
from affectgraph.verdict import RationaleStep, Verdict

ReviewPlacement = Literal["before_verify", "after_verify"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumberedStep(_Frozen):
    """A rationale step as the reviewer sees it; ``number`` is what ``drop`` refers to."""

    number: int
    claim: str
    cites: list[str]
    grounded: bool | None = None


class ReviewRequest(_Frozen):
    """What the graph shows the reviewer when it pauses (the ``interrupt`` value)."""

    label: str | None
    confidence: float
    distribution: Distribution
    abstention: str | None = None
    grounding: float | None = None
    verified: bool = Field(description="whether the verifier has checked the steps yet")
    rationale: list[NumberedStep]
    labels: list[str] = Field(default_factory=lambda: list(LABELS))
    problem: str | None = Field(default=None, description="why the last answer was refused")
    how: str = ("resume with Command(resume={}) to accept, {'label': 'sad'} to change the label, "
                "{'drop': [1]} to drop steps by number; add 'reviewer' and 'comment'")


class ReviewDecision(_Frozen):
    """The reviewer's answer: every field optional, ``ReviewDecision()`` accepts."""

    label: str | None = None
    drop: list[int] = Field(default_factory=list)
    reviewer: str | None = None
    comment: str | None = None


class Review(_Frozen):
    """What the review did, kept in the state under ``review``."""

    placement: ReviewPlacement
    accepted: bool = Field(description="true when the reviewer changed nothing")
    label_before: str | None
    label_after: str | None
    dropped: list[RationaleStep] = Field(default_factory=list)
    reviewer: str | None = None
    comment: str | None = None


class ReviewedState(AnalysisState, total=False):
    """:class:`~affectgraph.graphs.state.AnalysisState` plus the review of its verdict."""

    review: Review


def review_request(verdict: Verdict, *, verified: bool) -> ReviewRequest:
    """The request shown for ``verdict``: its answer and its steps numbered from 0."""
    steps = [NumberedStep(number=n, claim=s.claim, cites=s.cites, grounded=s.grounded)
             for n, s in enumerate(verdict.rationale)]
    return ReviewRequest(label=verdict.label, confidence=verdict.confidence,
                         distribution=verdict.distribution, abstention=verdict.abstention,
                         grounding=verdict.grounding, verified=verified, rationale=steps)


def read_decision(answer: Any, verdict: Verdict) -> ReviewDecision:
    """The reviewer's ``answer`` checked against ``verdict``.

    Raises :class:`~affectgraph.errors.InputError` for an answer of the wrong shape or a step
    number the verdict lacks, :class:`~affectgraph.errors.ConfigError` for an unknown label.
    """
    if answer is None:
        answer = {}
    try:
        decision = ReviewDecision.model_validate(answer)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}"
                             for e in exc.errors())
        raise InputError(f"a review decision is a dict with label, drop, reviewer, comment "
                         f"(all optional); got {answer!r} ({problems})") from None
    if decision.label is not None and decision.label not in LABELS:
        raise unknown_name("label", decision.label, LABELS)
    steps = len(verdict.rationale)
    bad = [n for n in decision.drop if not 0 <= n < steps]
    if bad:
        valid = f"0-{steps - 1}" if steps else "none: the verdict has no steps"
        raise InputError(f"cannot drop step(s) {bad}: the rationale's steps are numbered {valid}")
    return decision


def apply_review(verdict: Verdict, decision: ReviewDecision,
                 placement: ReviewPlacement) -> tuple[Verdict, Review]:
    """The reviewed verdict and the record of what the review changed."""
    drop = set(decision.drop)
    dropped = [s for n, s in enumerate(verdict.rationale) if n in drop]
    label = decision.label if decision.label is not None else verdict.label
    record = Review(placement=placement, accepted=label == verdict.label and not dropped,
                    label_before=verdict.label, label_after=label, dropped=dropped,
                    reviewer=decision.reviewer, comment=decision.comment)
    update: dict[str, Any] = {
        "rationale": [s for n, s in enumerate(verdict.rationale) if n not in drop],
        "note": "; ".join(filter(None, [verdict.note, _summary(record)])),
    }
    if label != verdict.label:
        update.update(label=label, abstention=None)
    return verdict.model_copy(update=update), record


def _summary(review: Review) -> str:
    who = f" by {review.reviewer}" if review.reviewer else ""
    changes = []
    if review.label_after != review.label_before:
        changes.append(f"label changed from {review.label_before or 'no label'} to "
                       f"{review.label_after}")
    if review.dropped:
        changes.append(f"{len(review.dropped)} rationale step(s) dropped")
    return f"reviewed{who}: " + (", ".join(changes) if changes else "accepted as it is")


def review_node(placement: ReviewPlacement):  # -> a node of ReviewedState
    """The review node for a graph that places it ``placement`` (before or after ``verify``)."""

    def review(state: ReviewedState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
        """Pause for a reviewer's decision on the verdict, then apply it.

        A decision that cannot be applied (an unknown label, a step that does not exist) pauses
        the run again with the same request and the ``problem``: raising instead would fail the
        run with the bad answer stored as the resume value, so the thread could never resume.
        """
        verdict = state["verdict"]
        request = review_request(verdict, verified=placement == "after_verify")
        while True:
            answer = interrupt(request.model_dump(mode="json"))
            try:
                decision = read_decision(answer, verdict)
            except (ConfigError, InputError) as exc:
                request = request.model_copy(update={"problem": str(exc)})
                continue
            reviewed, record = apply_review(verdict, decision, placement)
            return {"verdict": reviewed, "review": record}

    return review
