"""A human-review step: the analysis pauses on its verdict until a reviewer decides.

The composed graph runs the specialists, the fusion aggregator and the verifier, then stops at
``review`` (LangGraph ``interrupt``): the run's state waits in the checkpointer while the
reviewer reads the verdict and its numbered rationale steps. Resuming the same thread with
``Command(resume=decision)`` applies the decision: accept it as it is, change the label, or drop
steps. The reviewed verdict's ``note`` says what the reviewer did, and the state's ``review``
keeps the whole record (label before and after, the dropped steps, who, why).

    python examples/review_step.py CLIP [--label sad] [--drop 1 2] [--reviewer NAME] [--ask]

Without ``--label`` or ``--drop`` the reviewer accepts; ``--ask`` asks on the terminal instead
(and asks again when an answer is refused, e.g. a label that does not exist).
``--before-verify`` places the review before the verifier, which then checks what was kept.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from affectgraph.graphs.checkpoints import serializer
from affectgraph.graphs.compose import compose_analysis_graph
from affectgraph.graphs.context import AnalysisContext
from affectgraph.graphs.review import ReviewDecision, ReviewPlacement, ReviewRequest


def show(request: ReviewRequest) -> None:
    """Print what the reviewer is asked to decide on."""
    answer = request.label or f"abstains ({request.abstention})"
    checked = f", grounding {request.grounding}" if request.verified else ", not yet verified"
    if request.problem:
        print(f"refused: {request.problem}")
    print(f"verdict to review: {answer}, confidence {request.confidence:.2f}{checked}")
    for step in request.rationale:
        mark = {True: "grounded", False: "REJECTED", None: "unchecked"}[step.grounded]
        print(f"  [{step.number}] ({mark}) {step.claim}")


def ask(request: ReviewRequest) -> ReviewDecision:
    """The reviewer's decision, asked on the terminal."""
    label = input(f"label ({', '.join(request.labels)}; Enter keeps {request.label}): ").strip()
    drop = input("steps to drop (numbers separated by spaces; Enter drops none): ").split()
    return ReviewDecision(label=label or None, drop=[int(n) for n in drop],
                          reviewer=input("your name: ").strip() or None)


def main(argv: Sequence[str] | None = None) -> tuple[ReviewRequest, dict[str, Any]]:
    """Analyse a clip, pause for review, resume with the decision; return the request shown and
    the final state (its ``verdict`` reviewed, its ``review`` the record)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("clip")
    parser.add_argument("--specialists", nargs="+", default=["face", "voice", "transcript"])
    parser.add_argument("--label", help="replace the verdict's label")
    parser.add_argument("--drop", nargs="*", type=int, default=[], help="step numbers to drop")
    parser.add_argument("--reviewer")
    parser.add_argument("--comment")
    parser.add_argument("--ask", action="store_true", help="ask for the decision on the terminal")
    parser.add_argument("--before-verify", action="store_true")
    args = parser.parse_args(argv)

    placement: ReviewPlacement = "before_verify" if args.before_verify else "after_verify"
    graph = compose_analysis_graph(args.specialists, review=placement).compile(
        checkpointer=InMemorySaver(serde=serializer()))  # the paused run waits here
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    context = AnalysisContext()  # pass the same context when resuming: it holds the models

    state = graph.invoke({"path": args.clip}, config, context=context)
    while "__interrupt__" in state:  # paused: a request waits for the reviewer's decision
        (pending,) = state["__interrupt__"]
        request = ReviewRequest.model_validate(pending.value)
        show(request)
        if request.problem and not args.ask:
            raise SystemExit(f"the review decision was refused: {request.problem}")
        decision = ask(request) if args.ask else ReviewDecision(
            label=args.label, drop=args.drop, reviewer=args.reviewer, comment=args.comment)
        state = graph.invoke(Command(resume=decision.model_dump()), config, context=context)
    verdict, review = state["verdict"], state["review"]
    print(f"reviewed verdict: {verdict.label or 'abstains'} ({verdict.note})")
    for step in review.dropped:
        print(f"  dropped: {step.claim}")
    return request, state


if __name__ == "__main__":
    main()
