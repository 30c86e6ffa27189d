"""The analysis graph's wiring: its mermaid drawing is snapshotted, so rewiring fails here.

After an intended change, refresh the snapshot with
``AFFECTGRAPH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_graph.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from affectgraph.graphs.analyze import compile_analysis_graph

SNAPSHOT = Path(__file__).parent / "reference" / "analysis_graph.mmd"


def test_mermaid_drawing_matches_the_snapshot() -> None:
    drawing = compile_analysis_graph().get_graph().draw_mermaid()
    if os.environ.get("AFFECTGRAPH_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(drawing)
    assert drawing == SNAPSHOT.read_text(), (
        "the analysis graph's wiring changed; if intended, refresh the snapshot: "
        "AFFECTGRAPH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_graph.py")


def test_the_graph_runs_specialists_then_retrieval_aggregation_and_verification() -> None:
    graph = compile_analysis_graph().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    for edge in [("__start__", "ingest"), ("collect", "retrieve"), ("retrieve", "aggregate"),
                 ("aggregate", "verify"), ("verify", "__end__")]:
        assert edge in edges
    for specialist in ("face", "voice", "transcript"):
        assert (specialist, "collect") in edges
