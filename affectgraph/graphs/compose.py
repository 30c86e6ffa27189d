"""Build your own analysis graph: chosen specialists, the built-in nodes, your aggregator, a review.

:func:`compose_analysis_graph` wires the same shape as the built-in graph
(:mod:`affectgraph.graphs.analyze`) around the specialists you choose, by registered name or as
:class:`~affectgraph.graphs.specialists.Specialist` objects::

    START -> ingest -> (specialists without turns) ----------------------\\
                    \\-> speech -> (specialists that need speech turns) --> collect
          collect -> retrieve -> aggregate -> [review] -> verify -> [review] -> END

``ingest``, ``speech``, ``collect``, ``retrieve`` and ``verify`` are the built-in nodes
(:mod:`affectgraph.graphs.nodes`); ``aggregate`` is the fusion aggregator unless you pass your
own node; ``review`` (:mod:`affectgraph.graphs.review`) pauses the run with LangGraph's
``interrupt`` for a person to accept or correct the verdict, before or after the verifier.
With the three built-ins and no review, the result is wired exactly like
:func:`~affectgraph.graphs.analyze.build_analysis_graph`.

>>> from affectgraph.graphs.compose import compose_analysis_graph
>>> graph = compose_analysis_graph(["voice"], review="after_verify")  # doctest: +SKIP
>>> from langgraph.checkpoint.memory import InMemorySaver               # doctest: +SKIP
>>> app = graph.compile(checkpointer=InMemorySaver())                 # doctest: +SKIP

Run it like the built-in graph: ``app.invoke({"path": clip}, config,
context=AnalysisContext(...))``; see ``docs/graphs.md`` and ``examples/``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from affectgraph.errors import ConfigError
from affectgraph.evidence import EVIDENCE_TYPES
from affectgraph.graphs import nodes
from affectgraph.graphs.context import SPECIALISTS, AnalysisContext
from affectgraph.graphs.review import ReviewedState, ReviewPlacement, review_node
from affectgraph.graphs.specialists import (
    Specialist,
    SpecialistRegistry,
    load_specialist,
)
from affectgraph.graphs.state import AnalysisState

Graph = StateGraph[Any, Any, Any, Any]

RESERVED = ("ingest", "speech", "collect", "retrieve", "aggregate", "verify", "review")
"""Node names of the graph's own steps, which no specialist may take."""


def compose_analysis_graph(
    specialists: Sequence[str | Specialist] = SPECIALISTS,
    *,
    aggregator: nodes.Node = nodes.aggregate,
    review: ReviewPlacement | None = None,
    registry: SpecialistRegistry | None = None,
    context_schema: type = AnalysisContext,
) -> Graph:
    """An uncompiled analysis graph running ``specialists`` (names or descriptors).

    ``aggregator(state, runtime) -> {"verdict": Verdict}`` replaces the fusion aggregator; its
    verdict still goes through ``verify``. ``review`` adds a human-review step before or after
    ``verify`` (compile with a checkpointer: the run pauses there). ``registry`` replaces the
    entry points when resolving names (tests). Raises :class:`~affectgraph.errors.ConfigError`
    for an unknown name (with a "did you mean"), a duplicate, or a name the graph's own nodes use.
    """
    chosen = resolve(specialists, registry)
    graph: Graph = StateGraph(ReviewedState if review else AnalysisState,
                              context_schema=context_schema)
    _add_nodes(graph, chosen, aggregator, review)
    _wire_specialists(graph, chosen)
    steps = {None: ["aggregate", "verify"], "before_verify": ["aggregate", "review", "verify"],
             "after_verify": ["aggregate", "verify", "review"]}[review]
    for source, target in zip(["retrieve", *steps], [*steps, END], strict=True):
        graph.add_edge(source, target)
    return graph


def _add_nodes(graph: Graph, chosen: Sequence[Specialist], aggregator: nodes.Node,
               review: ReviewPlacement | None) -> None:
    """In the built-in graph's order (its mermaid drawing lists nodes in the order added)."""
    graph.add_node("ingest", ingest_for(chosen))
    if any(s.needs_turns for s in chosen):
        graph.add_node("speech", nodes.speech)
    for spec in chosen:
        graph.add_node(spec.name, specialist_node(spec))
    graph.add_node("collect", nodes.collect, defer=True)
    graph.add_node("retrieve", nodes.retrieve)
    graph.add_node("aggregate", aggregator)
    if review:
        graph.add_node("review", review_node(review))
    graph.add_node("verify", nodes.verify)


def _wire_specialists(graph: Graph, chosen: Sequence[Specialist]) -> None:
    """START -> ingest -> specialists (some after speech) -> collect -> retrieve (or END)."""
    beside = [s.name for s in chosen if not s.needs_turns]
    after_speech = [s.name for s in chosen if s.needs_turns]
    graph.add_edge(START, "ingest")
    graph.add_conditional_edges("ingest", route_after_ingest_for(chosen),
                                [*beside, *(["speech"] if after_speech else []), "collect"])
    if after_speech:
        graph.add_conditional_edges("speech", route_after_speech_for(chosen),
                                    [*after_speech, "collect"])
    for name in (*beside, *after_speech):
        graph.add_edge(name, "collect")
    graph.add_conditional_edges("collect", nodes.route_after_collect_for([s.name for s in chosen]),
                                ["retrieve", END])


def resolve(specialists: Sequence[str | Specialist],
            registry: SpecialistRegistry | None = None) -> list[Specialist]:
    """The descriptors of ``specialists``, checked: at least one, no duplicate, no reserved name."""
    if isinstance(specialists, str):
        specialists = [specialists]  # a lone name, not its letters
    chosen = [s if isinstance(s, Specialist) else load_specialist(s, registry)
              for s in specialists]
    if not chosen:
        raise ConfigError("an analysis graph needs at least one specialist; registered: see "
                          "affectgraph.graphs.specialists.specialist_registry()")
    names = [s.name for s in chosen]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"specialist(s) {', '.join(twice)} given more than once")
    if taken := [n for n in names if n in RESERVED]:
        raise ConfigError(f"specialist name(s) {', '.join(taken)} are the graph's own nodes "
                          f"({', '.join(RESERVED)}); rename the specialist")
    prefixes = [s.id_prefix for s in chosen]
    if shared := sorted({p for p in prefixes if prefixes.count(p) > 1}):
        raise ConfigError(f"specialists share the evidence id prefix(es) {', '.join(shared)}; "
                          "their ids would clash: give each its own id_prefix")
    return chosen


def ingest_for(chosen: Sequence[Specialist]) -> nodes.Node:
    """The built-in :func:`~affectgraph.graphs.nodes.ingest`, skipping only what this graph runs.

    Built-ins keep their own rules (switched off in ``options.specialists``; a transcript file
    stands in for missing audio); any other specialist is skipped when its stream is missing.
    """
    names = {s.name for s in chosen}

    def ingest(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
        update = nodes.ingest(state, runtime)
        skipped = {n: why for n, why in update["skipped"].items() if n in names}
        for spec in chosen:
            if spec.name not in SPECIALISTS and (why := spec.unavailable(update["media"])):
                skipped[spec.name] = why
        return {**update, "skipped": skipped}

    ingest.__doc__ = nodes.ingest.__doc__
    return ingest


def route_after_ingest_for(chosen: Sequence[Specialist]) -> Callable[[AnalysisState], list[Send]]:
    """Specialists without turns start at once, beside speech-turn detection (when any specialist
    needs turns); with nothing to run, straight to ``collect``."""

    def route_after_ingest(state: AnalysisState) -> list[Send]:
        skipped = state.get("skipped", {})
        sends = [Send(s.name, state) for s in chosen
                 if not s.needs_turns and s.name not in skipped]
        if any(s.needs_turns and s.name not in skipped for s in chosen):
            sends.append(Send("speech", state))
        return sends or [Send("collect", state)]

    return route_after_ingest


def route_after_speech_for(chosen: Sequence[Specialist]) -> Callable[[AnalysisState], list[Send]]:
    """The specialists that need speech turns, once the turns are found."""

    def route_after_speech(state: AnalysisState) -> list[Send]:
        skipped = state.get("skipped", {})
        sends = [Send(s.name, state) for s in chosen if s.needs_turns and s.name not in skipped]
        return sends or [Send("collect", state)]

    return route_after_speech


def specialist_node(spec: Specialist) -> nodes.Node:
    """``spec.node`` timed, failure-recorded (:func:`~affectgraph.graphs.nodes.guarded`) and
    checked: it must return evidence of its modality with ids of its prefix."""

    @nodes.guarded(spec.name)
    @functools.wraps(spec.node)
    def run(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
        update = spec.node(state, runtime)
        check_evidence(spec, update.get("evidence", []))
        return update

    return run


def check_evidence(spec: Specialist, records: Sequence[object]) -> None:
    """:class:`~affectgraph.errors.ConfigError` when a specialist returns records the rest of
    the graph cannot use: of another type or modality, or with ids that could clash."""
    kind = EVIDENCE_TYPES[spec.modality]
    for record in records:
        if not isinstance(record, kind):
            raise ConfigError(f"specialist {spec.name!r} returned a {type(record).__name__}; "
                              f"its modality {spec.modality!r} takes {kind.__name__} records "
                              "(or a subclass)")
        if not record.id.startswith(spec.id_prefix + ":"):
            raise ConfigError(f"specialist {spec.name!r} returned the evidence id "
                              f"{record.id!r}; its ids must look like '{spec.id_prefix}:0' so "
                              "they cannot clash with another specialist's")
