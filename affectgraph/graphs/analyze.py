"""The analysis graph: ingest, specialists in parallel, retrieval, aggregation, verification.

::

    START -> ingest -> face ---------------------------\\
                    \\-> speech -> voice, transcript --> collect -> retrieve -> aggregate
                                                                        -> verify -> END

Nodes run through LangGraph ``Send`` so that face analysis overlaps with voice activity
detection, and voice with transcript. ``collect`` is deferred: it runs once, after all of them.
``retrieve`` finds labelled exemplars near the evidence, ``aggregate`` fuses everything into a
verdict with a cited rationale, and ``verify`` checks every step before anything is returned.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from affectgraph.graphs import nodes
from affectgraph.graphs.context import AnalysisContext
from affectgraph.graphs.state import AnalysisState


def build_analysis_graph(context_schema: type[Any] = AnalysisContext) -> StateGraph:
    """The uncompiled analysis graph, for callers that add or replace nodes before compiling.

    ``context_schema`` is the run context's type: an :class:`AnalysisContext`, or a type with
    the same ``options``, ``toolbox`` and ``progress`` (the LangGraph server's, in
    :mod:`affectgraph.graphs.server`). To choose the specialists, swap the aggregator or add a
    review step, see :mod:`affectgraph.graphs.compose`.
    """
    # type[Any], not type: from a bare type the checker infers a graph whose context is None,
    # which no node taking a Runtime[AnalysisContext] fits
    graph = StateGraph(AnalysisState, context_schema=context_schema)
    graph.add_node("ingest", nodes.ingest)
    graph.add_node("speech", nodes.speech)
    graph.add_node("face", nodes.face)
    graph.add_node("voice", nodes.voice)
    graph.add_node("transcript", nodes.transcript)
    graph.add_node("collect", nodes.collect, defer=True)
    graph.add_node("retrieve", nodes.retrieve)
    graph.add_node("aggregate", nodes.aggregate)
    graph.add_node("verify", nodes.verify)
    graph.add_edge(START, "ingest")
    graph.add_conditional_edges("ingest", nodes.route_after_ingest, ["face", "speech", "collect"])
    graph.add_conditional_edges("speech", nodes.route_after_speech,
                                ["voice", "transcript", "collect"])
    for name in ("face", "voice", "transcript"):
        graph.add_edge(name, "collect")
    graph.add_conditional_edges("collect", nodes.route_after_collect, ["retrieve", END])
    graph.add_edge("retrieve", "aggregate")
    graph.add_edge("aggregate", "verify")
    graph.add_edge("verify", END)
    return graph


def compile_analysis_graph(**compile_kwargs):
    """The compiled analysis graph (pass ``checkpointer=...`` to persist runs)."""
    return build_analysis_graph().compile(**compile_kwargs)
