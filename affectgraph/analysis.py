"""The result of analysing one clip: its media, speech turns, evidence, the exemplars retrieved
for it, the verdict, and what failed."""

from __future__ import annotations

from typing import TextIO

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

    def write_json(self, out: TextIO, *, indent: int = 2) -> None:
        """Write ``model_dump_json(indent=indent)`` to ``out`` record by record.

        The same text, never whole in memory: a 30-minute video's analysis is ~50 MB of JSON,
        and building it as one string raised the process's peak RSS by ~190 MB.
        """
        if indent < 1:
            raise ValueError(f"indent must be at least 1 (got {indent}); for compact JSON use "
                             "model_dump_json()")
        pad = " " * indent
        lists = ("evidence", "exemplars")
        rest = self.model_copy(update={n: [] for n in lists}).model_dump_json(indent=indent)
        for name in lists:
            key = f'\n{pad}"{name}": ['  # at the top level: one pad exactly
            before, rest = rest.split(key + "]", 1)
            out.write(before + key)
            records = getattr(self, name)
            for n, record in enumerate(records):
                text = record.model_dump_json(indent=indent).replace("\n", "\n" + 2 * pad)
                out.write(("," if n else "") + f"\n{2 * pad}{text}")
            out.write(f"\n{pad}]" if records else "]")
        out.write(rest)

    def get(self, evidence_id: str) -> Evidence:
        """The record with id ``evidence_id``; ``KeyError`` names the valid range."""
        for record in self.evidence:
            if record.id == evidence_id:
                return record
        raise KeyError(f"no evidence {evidence_id!r} in this analysis")
