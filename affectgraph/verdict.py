"""The verdict: the answer a user reads, and the cited chain of reasoning behind it.

A :class:`Verdict` holds a label over the canonical set with its full distribution, confidence,
valence and arousal, the modality weights actually used, a per-turn (or per-window) timeline,
and rationale steps. Each :class:`RationaleStep` is one claim in plain language plus the ids of
the evidence it rests on (``face:4``, ``voice:2``, ``exemplar:ravdess/03-01-05-02-01-01-07``;
a run of records may be cited as ``face:4-9``). The verifier
(:mod:`affectgraph.agents.verifier`) marks every step grounded or not; only grounded steps are
kept in ``rationale``, the others move to ``rejected`` with the reason, and ``grounding`` is the
share of grounded steps. When the evidence is too weak or too contradictory, ``label`` is
``None`` and ``abstention`` says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.evidence import SCHEMA_VERSION, Distribution, TimeSpan

_RANGE = re.compile(r"^([a-z]+):(\d+)-(\d+)$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Exemplar(_Frozen):
    """A labelled exemplar retrieved for one evidence record (cited as ``exemplar:<id>``)."""

    id: str
    label: str
    similarity: float
    evidence_id: str
    library: str = ""
    speaker: str | None = None
    text: str | None = None

    @property
    def citation(self) -> str:
        return f"exemplar:{self.id}"


class RationaleStep(_Frozen):
    """One claim and the evidence ids it cites; ``check`` says why the verifier accepted or
    rejected it."""

    claim: str
    cites: list[str] = Field(default_factory=list)
    grounded: bool | None = None
    check: str | None = None


class TimelineEntry(_Frozen):
    """The emotion over one speech turn or fixed window, and the evidence behind it."""

    span: TimeSpan
    label: str | None
    distribution: Distribution | None = None
    evidence: list[str] = Field(default_factory=list)


class Verdict(_Frozen):
    """The aggregated answer for one clip (``label`` is ``None`` when it abstains)."""

    schema_version: str = SCHEMA_VERSION
    label: str | None
    distribution: Distribution
    confidence: float = Field(ge=0, le=1)
    valence: float = Field(ge=-1, le=1)
    arousal: float = Field(ge=-1, le=1)
    modality_weights: dict[str, float] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    rationale: list[RationaleStep] = Field(default_factory=list)
    rejected: list[RationaleStep] = Field(default_factory=list)
    grounding: float | None = Field(default=None, ge=0, le=1)
    abstention: str | None = None
    aggregator: str = "fusion"
    note: str | None = Field(default=None, description="e.g. why a fallback answer was given")

    @property
    def abstained(self) -> bool:
        return self.label is None


def expand_ids(cites: Iterable[str]) -> list[str]:
    """Expand ranges: ``["face:4-6", "text:0"]`` -> ``["face:4", "face:5", "face:6", "text:0"]``."""
    out: list[str] = []
    for cite in cites:
        match = _RANGE.match(cite)
        if match and int(match[2]) <= int(match[3]):
            out += [f"{match[1]}:{n}" for n in range(int(match[2]), int(match[3]) + 1)]
        else:
            out.append(cite)
    return out


def compact_ids(ids: Iterable[str]) -> list[str]:
    """The inverse of :func:`expand_ids`: runs of consecutive ids of a modality as ``face:4-9``."""
    groups: dict[str, list[int]] = {}
    others: list[str] = []
    for evidence_id in ids:
        modality, _, number = evidence_id.partition(":")
        if number.isdigit():
            groups.setdefault(modality, []).append(int(number))
        else:
            others.append(evidence_id)
    out: list[str] = []
    for modality, numbers in groups.items():
        numbers = sorted(set(numbers))
        start = prev = numbers[0]
        for n in [*numbers[1:], None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            out.append(f"{modality}:{start}" if start == prev else f"{modality}:{start}-{prev}")
            if n is not None:
                start = prev = n
    return out + others
