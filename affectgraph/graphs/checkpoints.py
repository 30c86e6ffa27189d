"""Checkpointing the analysis state: which affectgraph types a checkpoint may rebuild.

A checkpointer stores the state between steps (a paused review, a chat thread, the LangGraph
server's runs). LangGraph's serializer writes each pydantic record of the state with its class
name and, on reading, rebuilds only the classes it was told about; it warns about the others
today and will refuse them in a future version. :data:`STATE_TYPES` are the records the analysis
state holds at its top level (nested records travel inside them); :func:`serializer` allows
exactly those plus a custom specialist's own record types, and ``langgraph.json`` lists the same
for the LangGraph server (a test keeps the two equal).

>>> from langgraph.checkpoint.memory import InMemorySaver
>>> saver = InMemorySaver(serde=serializer())
"""

from __future__ import annotations

from collections.abc import Iterable

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from affectgraph.evidence import FaceEvidence, TranscriptEvidence, Turn, VoiceEvidence
from affectgraph.graphs.review import Review
from affectgraph.media import MediaInfo
from affectgraph.verdict import Exemplar, Verdict

STATE_TYPES: tuple[type, ...] = (MediaInfo, Turn, FaceEvidence, VoiceEvidence,
                                 TranscriptEvidence, Exemplar, Verdict, Review)


def allowlist(extra: Iterable[type] = ()) -> list[tuple[str, str]]:
    """``(module, class)`` of every state type and of ``extra``, as LangGraph's serializer
    and ``langgraph.json`` name them."""
    return [(t.__module__, t.__name__) for t in (*STATE_TYPES, *extra)]


def serializer(extra: Iterable[type] = ()) -> JsonPlusSerializer:
    """A checkpoint serializer that rebuilds the analysis state's records (and ``extra``, e.g.
    a custom specialist's evidence class) and refuses any other class."""
    return JsonPlusSerializer(allowed_msgpack_modules=allowlist(extra))
