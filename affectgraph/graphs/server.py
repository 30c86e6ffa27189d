"""The graphs as the LangGraph server serves them (``langgraph dev``; see ``langgraph.json``).

The server builds a graph per run through these factories and passes each run's ``context``
as JSON. :class:`ServedContext` is the analysis graph's context in that form: only ``options``
(validated :class:`~affectgraph.graphs.context.AnalyzeOptions`; unknown keys are rejected),
while the models come from one :class:`~affectgraph.graphs.context.Toolbox` per server process,
created on the first run and loading each model the first time a run needs it. Nothing is
loaded when the server imports this module or builds a graph.

The chat graph (:mod:`affectgraph.graphs.chat`) is served the same way: its context takes the
analysis ``options`` and an ``llm`` spec (``openai:MODEL``, ``local:PATH``, or ``none`` to answer
offline); the server keeps each thread, so a thread's clip is analysed once.

Runs through ``langgraph_sdk``::

    client.runs.wait(None, "analysis", input={"path": "/data/call.wav"},
                     context={"options": {"specialists": ["voice"]}})
    thread = client.threads.create()
    client.runs.wait(thread["thread_id"], "chat", context={"llm": "none"},
                     input={"path": "/data/call.wav", "messages": [
                         {"role": "user", "content": "what emotion is it?"}]})
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from affectgraph.graphs.analyze import build_analysis_graph
from affectgraph.graphs.context import AnalyzeOptions, Progress, Toolbox, no_progress

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from affectgraph.api import Analyzer


@functools.cache
def served_toolbox() -> Toolbox:
    """The server process's toolbox: its models load on first use and serve every run after."""
    return Toolbox()


class ServedContext(BaseModel):
    """The analysis graph's context over the server API: options only, models from the server.

    It offers what the nodes read from an :class:`~affectgraph.graphs.context.AnalysisContext`
    (``options``, ``toolbox``, ``progress``); only ``options`` crosses the API.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    options: AnalyzeOptions = Field(default_factory=AnalyzeOptions)

    @property
    def toolbox(self) -> Toolbox:
        return served_toolbox()

    @property
    def progress(self) -> Progress:
        return no_progress


def analysis_graph() -> CompiledStateGraph:
    """The analysis graph (:func:`~affectgraph.graphs.analyze.build_analysis_graph`) taking a
    :class:`ServedContext`; the server adds its own checkpointer."""
    return build_analysis_graph(context_schema=ServedContext).compile()


@functools.cache
def served_analyzer(options: AnalyzeOptions) -> Analyzer:
    """An analyzer with ``options`` that uses the server's toolbox (models load once for all)."""
    from affectgraph.api import Analyzer

    analyzer = Analyzer(options)
    analyzer.toolbox = served_toolbox()
    return analyzer


@functools.cache
def served_chat_model(spec: str) -> BaseChatModel | None:
    """The chat model an LLM spec names, made on the first run that asks for it."""
    from affectgraph.agents.llm import load_chat_model

    return load_chat_model(spec)


class ServedChatContext(BaseModel):
    """The chat graph's context over the server API: how to analyse the clip and which LLM
    answers (``llm``: a spec; ``none`` answers offline). It offers what the chat nodes read
    (``analyzer``, ``llm``, ``progress``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    options: AnalyzeOptions = Field(default_factory=AnalyzeOptions)
    llm_spec: str = Field(default="none", alias="llm",
                          description="openai:MODEL, local:PATH, or none (answer offline)")

    @field_validator("llm_spec")
    @classmethod
    def _known_spec(cls, spec: str) -> str:
        from affectgraph.agents.llm import parse_llm_spec

        parse_llm_spec(spec)  # a ConfigError (a ValueError) names the valid forms
        return spec

    @property
    def analyzer(self) -> Analyzer:
        return served_analyzer(self.options)

    @property
    def llm(self) -> BaseChatModel | None:
        return served_chat_model(self.llm_spec)

    @property
    def progress(self) -> Progress:
        return no_progress


def chat_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The chat graph (:func:`~affectgraph.graphs.chat.build_chat_graph`) taking a
    :class:`ServedChatContext`; the server keeps its threads."""
    from affectgraph.graphs.chat import build_chat_graph

    graph = build_chat_graph()
    graph.context_schema = ServedChatContext  # type: ignore[assignment]  # duck-typed ChatContext
    return graph.compile()
