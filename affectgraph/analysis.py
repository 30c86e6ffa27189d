"""The result of analysing one clip: its media, speech turns, evidence, the exemplars retrieved
for it, the verdict, and what failed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.evidence import SCHEMA_VERSION, Evidence, Modality, Turn
from affectgraph.media import MediaInfo
from affectgraph.verdict import Exemplar, Verdict


class Analysis(BaseModel):
    """Everything the specialists found in one clip.

    ``skipped`` says why a modality was not run (switched off, no such stream); ``failures`` says
    which specialist failed and how, while the others still delivered their evidence.
    ``exemplars`` are the labelled exemplars retrieved for the evidence (citable as
    ``exemplar:<id>``); ``verdict`` is the aggregated answer (``None`` when no aggregator ran).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION
    media: MediaInfo
    turns: list[Turn] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)
    failures: dict[str, str] = Field(default_factory=dict)
    exemplars: list[Exemplar] = Field(default_factory=list)
    verdict: Verdict | None = None
    seconds: dict[str, float] = Field(default_factory=dict)

    def of(self, modality: Modality) -> list[Evidence]:
        """The evidence of one modality, in time order."""
        return [e for e in self.evidence if e.modality == modality]

    def get(self, evidence_id: str) -> Evidence:
        """The record with id ``evidence_id``; ``KeyError`` names the valid range."""
        for record in self.evidence:
            if record.id == evidence_id:
                return record
        raise KeyError(f"no evidence {evidence_id!r} in this analysis")
