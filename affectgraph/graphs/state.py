"""The analysis graph's state: serialisable records only (no models, no arrays)."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from affectgraph.evidence import Evidence, Turn
from affectgraph.media import MediaInfo
from affectgraph.verdict import Exemplar, Verdict


def merge(left: dict[str, str] | None, right: dict[str, str] | None) -> dict[str, str]:
    """Reducer for per-modality notes written by parallel nodes."""
    return {**(left or {}), **(right or {})}


def merge_seconds(left: dict[str, float] | None,
                  right: dict[str, float] | None) -> dict[str, float]:
    return {**(left or {}), **(right or {})}


class AnalysisState(TypedDict, total=False):
    """What flows between the nodes of the analysis graph.

    ``path`` is the clip; ``evidence`` accumulates from the specialists running in parallel;
    ``skipped`` and ``failures`` map a modality to the reason it has no evidence;
    ``exemplars`` are the labelled exemplars retrieved for the evidence, and ``verdict`` the
    aggregated answer (verified by the last node).
    """

    path: str
    transcript_file: str | None
    media: MediaInfo
    turns: list[Turn]
    evidence: Annotated[list[Evidence], operator.add]
    skipped: Annotated[dict[str, str], merge]
    failures: Annotated[dict[str, str], merge]
    seconds: Annotated[dict[str, float], merge_seconds]
    exemplars: list[Exemplar]
    verdict: Verdict
