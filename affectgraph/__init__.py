"""affectgraph: recognise emotions in real clips, offline, and explain why with cited evidence.

>>> import affectgraph
>>> sorted(affectgraph.__all__)[:3]
['AffectGraphError', 'Analysis', 'AnalyzeOptions']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from affectgraph.errors import (
    AffectGraphError,
    ConfigError,
    InputError,
    MediaError,
    ModelUnavailable,
)
from affectgraph.evidence import (
    SCHEMA_VERSION,
    Box,
    FaceEvidence,
    Prosody,
    TimeSpan,
    TranscriptEvidence,
    Turn,
    VoiceEvidence,
    Word,
)
from affectgraph.labels import LABELS, Emotion

if TYPE_CHECKING:
    from affectgraph.analysis import Analysis
    from affectgraph.api import Analyzer, analyze
    from affectgraph.graphs.analyze import build_analysis_graph, compile_analysis_graph
    from affectgraph.graphs.context import AnalyzeOptions
    from affectgraph.verdict import RationaleStep, Verdict

__version__ = "0.1.0"

# Heavier parts (langgraph, the graph) load on first use, so `import affectgraph` stays cheap.
_LAZY = {
    "Analysis": "affectgraph.analysis",
    "Analyzer": "affectgraph.api",
    "analyze": "affectgraph.api",
    "AnalyzeOptions": "affectgraph.graphs.context",
    "build_analysis_graph": "affectgraph.graphs.analyze",
    "compile_analysis_graph": "affectgraph.graphs.analyze",
    "Verdict": "affectgraph.verdict",
    "RationaleStep": "affectgraph.verdict",
}

__all__ = [
    "LABELS",
    "SCHEMA_VERSION",
    "AffectGraphError",
    "Analysis",
    "AnalyzeOptions",
    "Analyzer",
    "Box",
    "ConfigError",
    "Emotion",
    "FaceEvidence",
    "InputError",
    "MediaError",
    "ModelUnavailable",
    "Prosody",
    "RationaleStep",
    "TimeSpan",
    "TranscriptEvidence",
    "Turn",
    "Verdict",
    "VoiceEvidence",
    "Word",
    "analyze",
    "build_analysis_graph",
    "compile_analysis_graph",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'affectgraph' has no attribute {name!r}")
