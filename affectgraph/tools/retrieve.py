"""The retrieve tool: an agent asks for the labelled exemplars nearest an evidence record.

``make_retrieve_tool(lookup, libraries, vectorisers)`` builds a LangChain tool bound to one
analysis (``lookup`` finds its evidence records by id) and the loaded libraries and
vectorisers (one per modality). Given an evidence id it returns a compact JSON-able dict: the
library, the vote (a distribution over canonical labels), its top label, and the neighbours,
each citable as ``exemplar:<id>``::

    {"evidence_id": "voice:3", "library": "voice", "label": "angry",
     "vote": {"angry": 0.71, "disgusted": 0.29},
     "neighbours": [{"id": "exemplar:ravdess_speech/03-01-05-02-01-01-07", "label": "angry",
                     "similarity": 0.83, "speaker": "actor07"}, ...]}

An unknown evidence id, a modality without a library or invalid arguments come back to the
agent as an error message it can act on (``ToolException``), not as a crash. A record without
a vector gives a result with a ``reason`` and no neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.retrieval.library import ExemplarLibrary
from affectgraph.retrieval.search import Retrieval, retrieve

Lookup = Mapping[str, Any] | Callable[[str], Any]
TEXT_CHARS = 160  # exemplar texts are cut to this many characters in tool results
MAX_LISTED = 12


class RetrieveArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evidence_id: str = Field(description="id of an evidence record, e.g. voice:3, text:5, face:12")
    k: int = Field(default=5, ge=1, le=20, description="how many nearest exemplars to return")
    exclude_groups: list[str] = Field(
        default_factory=list,
        description="exemplar groups (e.g. ravdess_speech/actor07) or data sets (e.g. tess) to "
                    "leave out")


def make_retrieve_tool(
    lookup: Lookup,
    libraries: Mapping[str, ExemplarLibrary],
    vectorisers: Mapping[str, Any],
    *,
    temperature: float | None = None,
    name: str = "retrieve_exemplars",
) -> Any:
    """A ``StructuredTool`` retrieving exemplars for evidence ids of one analysis.

    ``lookup`` maps an evidence id to its record (a mapping, or a function returning ``None``
    for unknown ids); ``libraries`` and ``vectorisers`` are keyed by modality. Each library is
    checked against its vectoriser here (:class:`~affectgraph.errors.ConfigError` if they do
    not match). ``temperature`` overrides the vote's default.
    """
    from langchain_core.tools import StructuredTool, ToolException

    for modality, library in libraries.items():
        if modality not in vectorisers:
            raise ValueError(f"no vectoriser given for the {modality} library {library.name!r}")
        library.check_vectoriser(vectorisers[modality])
    extra = {} if temperature is None else {"temperature": temperature}

    def run(evidence_id: str, k: int = 5, exclude_groups: list[str] | None = None) -> dict:
        record = _find(lookup, evidence_id)
        if record is None:
            raise ToolException(f"unknown evidence id {evidence_id!r}{_known(lookup)}")
        modality = str(getattr(record, "modality", None))
        if modality not in libraries:
            raise ToolException(f"no exemplar library for {modality} evidence ({evidence_id}); "
                                f"libraries: {', '.join(sorted(libraries)) or 'none'}")
        found = retrieve(record, libraries[modality], vectorisers[modality], k=k,
                         exclude_groups=tuple(exclude_groups or ()), **extra)
        return compact(found)

    return StructuredTool.from_function(
        run, name=name, args_schema=RetrieveArgs, handle_tool_error=True,
        handle_validation_error=_validation_message,
        description="Find the labelled exemplars (acted or annotated emotional speech, text or "
                    "faces) most similar to one evidence record, and their similarity-weighted "
                    "label vote. Cite exemplars by their id (exemplar:...).")


def compact(found: Retrieval) -> dict[str, Any]:
    """A :class:`Retrieval` as a small JSON-able dict (vote rounded, zero labels left out)."""
    out: dict[str, Any] = {"evidence_id": found.evidence_id, "library": found.library}
    if found.reason:
        return out | {"reason": found.reason, "neighbours": []}
    vote = {k: round(v, 3) for k, v in sorted((found.distribution or {}).items(),
                                              key=lambda kv: -kv[1]) if v >= 0.0005}
    neighbours = []
    for n in found.neighbours:
        entry = {"id": n.citation, "label": n.label, "similarity": round(n.similarity, 3)}
        if n.speaker:
            entry["speaker"] = n.speaker
        if n.text:
            entry["text"] = n.text if len(n.text) <= TEXT_CHARS else n.text[:TEXT_CHARS] + "..."
        neighbours.append(entry)
    return out | {"label": found.label, "vote": vote, "neighbours": neighbours}


def _find(lookup: Lookup, evidence_id: str) -> Any:
    return lookup.get(evidence_id) if isinstance(lookup, Mapping) else lookup(evidence_id)


def _known(lookup: Lookup) -> str:
    if not isinstance(lookup, Mapping):
        return ""
    ids = list(lookup)[:MAX_LISTED]
    more = ", ..." if len(lookup) > MAX_LISTED else ""
    return f"; known ids: {', '.join(ids)}{more}" if ids else "; this analysis has no evidence"


def _validation_message(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"invalid argument {where}: {first['msg']}"
    return f"invalid arguments: {error}"
