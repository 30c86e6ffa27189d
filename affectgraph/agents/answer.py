"""A chat answer: what the user reads, the evidence it cites, and whether its claims hold.

Offline and LLM answerers alike hand their claims to the verifier
(:class:`~affectgraph.agents.verifier.Verifier`) through :func:`checked_answer`: an answer is
**grounded** when it makes at least one claim and every claim cites evidence of this analysis
that supports it (ids exist, times inside, emotions supported, numbers matching). Claims that
fail stay visible but marked ``[not verified: why]``, so they are never read as fact. Lines that
only restate the verdict or say what cannot be answered are context, not claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.agents.verifier import Verifier
from affectgraph.analysis import Analysis
from affectgraph.summary import step_line
from affectgraph.verdict import RationaleStep, compact_ids, expand_ids

Part = str | RationaleStep
"""A line of an answer: context (``str``) or a claim for the verifier."""

UNVERIFIED = "[not verified: {}]"


class Answer(BaseModel):
    """One answer in a chat about a clip.

    ``text`` is what the user reads; ``cites`` the evidence ids its verified claims rest on
    (runs as ``face:4-9``, exemplars as ``exemplar:<id>``); ``steps`` every claim with the
    verifier's judgement; ``grounded`` whether there was at least one claim and all held;
    ``intent`` what the question was taken to ask (``llm`` for a model's answer); ``note`` why
    an answer is not what was asked for (e.g. the model failed and the offline answerer stood
    in).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    text: str
    cites: list[str] = Field(default_factory=list)
    grounded: bool = False
    steps: list[RationaleStep] = Field(default_factory=list)
    intent: str = "unknown"
    answerer: Literal["offline", "llm"] = "offline"
    note: str | None = None

    @property
    def unverified(self) -> list[RationaleStep]:
        """The claims the verifier rejected."""
        return [s for s in self.steps if not s.grounded]


def checked_answer(question: str, parts: Sequence[Part], analysis: Analysis, *, intent: str,
                   answerer: Literal["offline", "llm"] = "offline",
                   note: str | None = None) -> Answer:
    """Verify the claims among ``parts`` against ``analysis`` and render the answer's text
    (context lines as they are, claims as ``- claim`` bullets, rejected ones marked)."""
    claims = [p for p in parts if isinstance(p, RationaleStep)]
    checked = iter(Verifier(analysis.evidence, analysis.exemplars).verify(claims))
    lines, steps = [], []
    for part in parts:
        if isinstance(part, str):
            lines.append(part)
            continue
        result = next(checked)
        steps.append(result)
        mark = "" if result.grounded else UNVERIFIED.format(result.check) + " "
        lines.append(f"- {mark}{step_line(part)}")
    cites = compact_ids(dict.fromkeys(i for s in steps if s.grounded
                                      for i in expand_ids(s.cites)))
    return Answer(question=question, text="\n".join(lines), cites=cites,
                  grounded=bool(steps) and all(s.grounded for s in steps), steps=steps,
                  intent=intent, answerer=answerer, note=note)
