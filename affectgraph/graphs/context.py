"""What the analysis graph's nodes get at run time: options, loaded models, progress.

Loaded models live in a :class:`Toolbox` that belongs to the run's context (LangGraph
``context_schema``), never in module globals or in the graph state. A toolbox loads each model on
first use, once, and can be reused across clips so that only the first clip pays for loading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from affectgraph.agents.aggregate import AggregateOptions
from affectgraph.agents.llm import LLMOptions, parse_llm_spec
from affectgraph.agents.llm_aggregator import LLMAggregateOptions
from affectgraph.models import ModelRegistry
from affectgraph.retrieval.evidence import RetrievalOptions
from affectgraph.segments import TurnOptions
from affectgraph.tools.face import FaceOptions
from affectgraph.tools.transcript import TranscriptOptions
from affectgraph.tools.voice import VoiceOptions

Specialist = Literal["face", "voice", "transcript"]
SPECIALISTS: tuple[Specialist, ...] = ("face", "voice", "transcript")


class AnalyzeOptions(BaseModel):
    """Options of one analysis; unknown keys are rejected.

    ``specialists`` lists the specialists to run; each has its own options block;
    ``retrieval`` and ``aggregate`` configure the exemplar search and the fusion aggregator;
    ``llm`` (``none``, ``openai:MODEL``, ``local:PATH``) lets an LLM write the verdict from the
    evidence (``llm_options``: how to reach it; ``llm_aggregate``: retries and the grounding it
    must reach), falling back to the fusion verdict with the reason; with an LLM, ``investigate``
    lets the investigator agent look closer when the modalities disagree. ``mllm``: a folder
    saved by ``affectgraph finetune``; the project's own multimodal LLM then writes the verdict
    (falling back to fusion with the reason).
    ``strict`` re-raises a specialist's failure instead of recording it and going on.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    specialists: tuple[Specialist, ...] = SPECIALISTS
    face: FaceOptions = Field(default_factory=FaceOptions)
    turns: TurnOptions = Field(default_factory=TurnOptions)
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    transcript: TranscriptOptions = Field(default_factory=TranscriptOptions)
    retrieval: RetrievalOptions = Field(default_factory=RetrievalOptions)
    aggregate: AggregateOptions = Field(default_factory=AggregateOptions)
    llm: str = "none"
    llm_options: LLMOptions = Field(default_factory=LLMOptions)
    llm_aggregate: LLMAggregateOptions = Field(default_factory=LLMAggregateOptions)
    investigate: bool = True
    mllm: str | None = None
    strict: bool = False


    @field_validator("llm")
    @classmethod
    def _known_llm(cls, spec: str) -> str:
        parse_llm_spec(spec)  # ConfigError naming the valid forms
        return spec


class Progress(Protocol):
    """Receives how far a specialist has got, in seconds of media."""

    def __call__(self, specialist: str, seconds: float) -> None: ...


def no_progress(specialist: str, seconds: float) -> None:
    """A :class:`Progress` that shows nothing."""


@dataclass
class Toolbox:
    """Loads each model once, on first use, thread-safely (specialists run in parallel)."""

    registry: ModelRegistry = field(default_factory=ModelRegistry.default)
    threads: int = 1
    _loaded: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def get(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        """The model stored under ``key``, loading it with ``load()`` the first time."""
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load()
            return self._loaded[key]

    def provide(self, key: tuple[Any, ...], model: Any) -> None:
        """Use ``model`` for ``key`` instead of loading one (e.g. a head trained without the
        speaker under test)."""
        with self._lock:
            self._loaded[key] = model


@dataclass
class AnalysisContext:
    """The run-time context of the analysis graph (LangGraph ``context_schema``)."""

    options: AnalyzeOptions = field(default_factory=AnalyzeOptions)
    toolbox: Toolbox = field(default_factory=Toolbox)
    progress: Progress = no_progress
