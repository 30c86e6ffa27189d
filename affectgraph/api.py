"""The Python API: :func:`analyze` one clip for its verdict, or an :class:`Analyzer` that keeps
models loaded and returns the whole :class:`~affectgraph.analysis.Analysis` (evidence, exemplars
and the verdict that cites them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from affectgraph.analysis import Analysis
from affectgraph.evidence import MODALITIES
from affectgraph.graphs.analyze import compile_analysis_graph
from affectgraph.graphs.context import (
    AnalysisContext,
    AnalyzeOptions,
    Progress,
    Toolbox,
    no_progress,
)
from affectgraph.models import ModelRegistry
from affectgraph.verdict import Verdict


class Analyzer:
    """Runs the analysis graph on clips, loading each model once for all of them.

    >>> analyzer = Analyzer(AnalyzeOptions(specialists=("voice",)))  # doctest: +SKIP
    >>> analyzer.analyze("call.wav").of("voice")[0].prosody           # doctest: +SKIP
    """

    def __init__(
        self,
        options: AnalyzeOptions | None = None,
        *,
        registry: ModelRegistry | None = None,
        threads: int = 1,
    ) -> None:
        self.options = options or AnalyzeOptions()
        self.toolbox = Toolbox(registry or ModelRegistry.default(), threads=threads)
        self.graph = compile_analysis_graph()

    def context(self, progress: Progress = no_progress,
                options: AnalyzeOptions | None = None) -> AnalysisContext:
        return AnalysisContext(options=options or self.options, toolbox=self.toolbox,
                               progress=progress)

    def inputs(self, path: str | Path, transcript: str | Path | None = None) -> dict[str, Any]:
        return {"path": str(path), "transcript_file": str(transcript) if transcript else None}

    def analyze(
        self,
        path: str | Path,
        *,
        transcript: str | Path | None = None,
        progress: Progress = no_progress,
        options: AnalyzeOptions | None = None,
    ) -> Analysis:
        """Analyse one clip; ``transcript`` (.vtt/.srt/.json/.txt) replaces speech recognition;
        ``options`` replace the analyzer's for this clip only (loaded models are shared)."""
        state = self.graph.invoke(self.inputs(path, transcript),
                                  context=self.context(progress, options))
        return to_analysis(state)

    def stream(
        self,
        path: str | Path,
        *,
        transcript: str | Path | None = None,
        progress: Progress = no_progress,
        options: AnalyzeOptions | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """The graph's chunks as it runs: ``("updates", {node: partial state})`` when a node
        finishes and ``("values", state)`` snapshots; :func:`to_analysis` of the last state is
        the :class:`Analysis` (:func:`affectgraph.summary.follow` prints and returns it)."""
        yield from self.graph.stream(self.inputs(path, transcript),
                                     context=self.context(progress, options),
                                     stream_mode=["updates", "values"])


def to_analysis(state: dict[str, Any]) -> Analysis:
    """The :class:`Analysis` held in a finished graph state."""
    order = {m: i for i, m in enumerate(MODALITIES)}
    evidence = sorted(state.get("evidence", []),
                      key=lambda e: (order[e.modality], int(e.id.split(":")[1])))
    return Analysis(
        media=state["media"],
        turns=state.get("turns", []),
        evidence=evidence,
        skipped=state.get("skipped", {}),
        failures=state.get("failures", {}),
        seconds=state.get("seconds", {}),
        exemplars=state.get("exemplars", []),
        verdict=state.get("verdict"),
    )


def analyze(
    path: str | Path,
    *,
    options: AnalyzeOptions | None = None,
    transcript: str | Path | None = None,
    threads: int = 1,
) -> Verdict:
    """The verified verdict on one clip, with fresh models.

    For the evidence its rationale cites, or for many clips, use :class:`Analyzer`:
    ``Analyzer().analyze(path)`` returns the whole :class:`Analysis`.
    """
    verdict = Analyzer(options, threads=threads).analyze(path, transcript=transcript).verdict
    assert verdict is not None  # the graph always ends with a verified verdict
    return verdict
