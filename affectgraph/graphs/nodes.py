"""The analysis graph's nodes: plain functions of the state returning partial updates.

Models reach the nodes through ``runtime.context`` (:class:`~affectgraph.graphs.context.
AnalysisContext`); the state carries only serialisable records.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Send

from affectgraph import media
from affectgraph.errors import AffectGraphError, ConfigError, InputError
from affectgraph.graphs.context import SPECIALISTS, AnalysisContext
from affectgraph.graphs.state import AnalysisState

if TYPE_CHECKING:
    from affectgraph.evidence import Evidence

log = logging.getLogger(__name__)


class Node(Protocol):
    """A node of the analysis graph: ``(state, runtime) -> partial state update``.

    A protocol rather than ``Callable[[AnalysisState, Runtime[...]], ...]``: a ``Callable``'s
    parameters are positional-only, but LangGraph passes ``runtime`` by keyword, so its
    ``StateGraph.add_node`` only accepts nodes whose parameter is named ``runtime``.
    """

    def __call__(self, state: AnalysisState, runtime: Runtime[AnalysisContext]
                 ) -> dict[str, Any]: ...


def ingest(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    """Probe the clip and decide which specialists can run on it."""
    started = time.perf_counter()
    info = media.probe(state["path"])
    chosen = runtime.context.options.specialists
    skipped = {name: "switched off" for name in SPECIALISTS if name not in chosen}
    if not info.has_video:
        skipped.setdefault("face", "the file has no video stream")
    if not info.has_audio:
        skipped.setdefault("voice", "the file has no audio stream")
        if not state.get("transcript_file"):
            skipped.setdefault("transcript",
                               "the file has no audio stream and no transcript was given")
    return {"media": info, "skipped": skipped, "evidence": [], "failures": {},
            "seconds": {"ingest": time.perf_counter() - started}}


def route_after_ingest(state: AnalysisState) -> list[Send]:
    """Face runs beside speech-turn detection; voice and transcript wait for the turns."""
    skipped = state.get("skipped", {})
    sends = [Send("face", state)] if "face" not in skipped else []
    if "voice" not in skipped or "transcript" not in skipped:
        sends.append(Send("speech", state))
    return sends or [Send("collect", state)]


def route_after_speech(state: AnalysisState) -> list[Send]:
    skipped = state.get("skipped", {})
    sends = [Send(name, state) for name in ("voice", "transcript") if name not in skipped]
    return sends or [Send("collect", state)]


def guarded(name: str) -> Callable[[Node], Node]:
    """Time a node; record a failure instead of sinking the run (unless options are strict).

    A wrong option or input file (:class:`ConfigError`, :class:`InputError`) is the user's to
    fix and is always raised; a model or media failure of one specialist is recorded so the
    others still deliver.
    """

    def wrap(node: Node) -> Node:
        @functools.wraps(node)
        def run(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                update = node(state, runtime)
            except (ConfigError, InputError):
                raise
            except Exception as exc:  # a specialist's failure must not sink the others
                if runtime.context.options.strict:
                    raise
                if not isinstance(exc, AffectGraphError):
                    log.exception("specialist %s failed", name)
                update = {"failures": {name: f"{type(exc).__name__}: {exc}"}}
            seconds = {name: time.perf_counter() - started}
            return {**update, "seconds": {**update.get("seconds", {}), **seconds}}

        return run

    return wrap


@guarded("speech")
def speech(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    """Voice activity detection: the speech turns voice and transcript analyse."""
    from affectgraph.segments import VadModel, find_turns

    ctx = runtime.context
    if not state["media"].has_audio:
        return {"turns": []}
    vad = ctx.toolbox.get(("vad",), lambda: VadModel.load(threads=ctx.toolbox.threads))
    turns = find_turns(state["path"], options=ctx.options.turns, vad=vad,
                       progress=lambda s: ctx.progress("speech", s))
    return {"turns": turns}


@guarded("face")
def face(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    from affectgraph.tools.face import FaceModel, analyze_face

    ctx = runtime.context
    options = ctx.options.face
    model = ctx.toolbox.get(
        ("face", options.backend, options.head),
        lambda: FaceModel.load(ctx.toolbox.registry, backend=options.backend,
                               threads=ctx.toolbox.threads, head=options.head),
    )
    evidence = analyze_face(state["path"], options=options, model=model,
                            progress=lambda s: ctx.progress("face", s))
    return {"evidence": evidence}


@guarded("voice")
def voice(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    from affectgraph.heads.voice import load_voice_head, speaker_normalised
    from affectgraph.tools.voice import VoiceModel, analyze_voice

    ctx = runtime.context
    options = ctx.options.voice
    model = ctx.toolbox.get(("voice",), VoiceModel.load)
    if options.encoder is not None:
        encoder = options.encoder
        model = dataclasses.replace(model, encoding=ctx.toolbox.get(
            ("speech-encoding", encoder), lambda: _speech_encoding(ctx, encoder)))
    head = (ctx.toolbox.get(("voice-head", options.encoder),
                            lambda: load_voice_head(encoder=options.encoder))
            if options.head else None)
    if head is not None:
        model = dataclasses.replace(model, classifier=head.classifier,
                                    classifier_name=head.ref.name,
                                    classifier_features=head.feature_names)
    evidence = analyze_voice(state["path"], state.get("turns", []), options=options,
                             model=model, progress=lambda s: ctx.progress("voice", s))
    if head is not None and options.speaker_normalise:
        evidence = speaker_normalised(evidence, head)
    return {"evidence": evidence}


def _speech_encoding(ctx: AnalysisContext, encoder: str) -> Any:
    """The Whisper encoder of the voice heads: the transcript specialist's own model when it is
    the same one (one copy in memory, loaded once), else a copy of its own."""
    from affectgraph.speech_encoding import SpeechEncoding

    asr_options = ctx.options.transcript
    if asr_options.backend == "faster-whisper" and asr_options.model == encoder:
        asr = _asr_model(ctx)
        return SpeechEncoding.from_whisper(asr.engine.model, asr.ref)
    return SpeechEncoding.load(encoder, ctx.toolbox.registry)


def _asr_model(ctx: AnalysisContext) -> Any:
    """The transcript specialist's speech recogniser, from the toolbox."""
    from affectgraph.tools.transcript import TranscriptModel

    options = ctx.options.transcript
    threads = max(ctx.toolbox.threads, options.threads)
    return ctx.toolbox.get(
        ("asr", options.model, options.backend, threads),
        lambda: TranscriptModel.load(options.model, ctx.toolbox.registry, backend=options.backend,
                                     threads=threads),
    )


@guarded("transcript")
def transcript(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    from affectgraph.tools.text_emotion import load_text_emotion
    from affectgraph.tools.transcript import analyze_transcript, transcript_from_file

    ctx = runtime.context
    options = ctx.options.transcript
    text_model = ctx.toolbox.get(("text-emotion", options.text_emotion),
                                 lambda: load_text_emotion(options.text_emotion))
    if given := state.get("transcript_file"):
        evidence = transcript_from_file(given, duration=state["media"].duration,
                                        options=options, text_emotion=text_model)
        return {"evidence": evidence}
    evidence = analyze_transcript(state["path"], state.get("turns", []), options=options,
                                  model=_asr_model(ctx), text_emotion=text_model,
                                  progress=lambda s: ctx.progress("transcript", s))
    return {"evidence": evidence}


def collect(state: AnalysisState) -> dict[str, Any]:
    """Join point of the specialists (deferred; see :func:`route_after_collect`)."""
    return {}


def route_after_collect(state: AnalysisState) -> str:
    """On to retrieval once every specialist that was to run has finished (or failed).

    ``collect`` is deferred, yet LangGraph may run it as soon as one branch arrives when the
    other's tasks were sent (``Send``) in the same step; that early arrival goes no further.
    """
    return _after_collect(state, SPECIALISTS)


def route_after_collect_for(names: Sequence[str]) -> Callable[[AnalysisState], str]:
    """:func:`route_after_collect` for a graph running the specialists ``names`` (a composed
    graph, :mod:`affectgraph.graphs.compose`): it waits for those and only those."""
    chosen = tuple(names)

    def route_after_collect(state: AnalysisState) -> str:
        return _after_collect(state, chosen)

    return route_after_collect


def _after_collect(state: AnalysisState, names: Sequence[str]) -> str:
    skipped = state.get("skipped", {})
    finished = set(state.get("seconds", {})) | set(state.get("failures", {}))
    waiting = [name for name in names if name not in skipped and name not in finished]
    return END if waiting else "retrieve"


@guarded("retrieve")
def retrieve(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    """The labelled exemplars nearest the evidence, per modality with a library.

    First hands back to the OS what the specialists freed: the libraries load on top of it, and
    the end of a long analysis (libraries, exemplars, verdict) is where its memory peaks.
    """
    from affectgraph.memory import release_free_memory
    from affectgraph.retrieval.evidence import exemplars_for

    release_free_memory()
    ctx = runtime.context
    options = ctx.options.retrieval
    present = {e.modality for e in state.get("evidence", [])}
    chosen = [m for m in options.modalities if m in present]
    libraries: dict[str, Any] = {
        m: ctx.toolbox.get(("library", m), functools.partial(load_library, m, ctx))
        for m in chosen}
    vectorisers: dict[str, Any] = {
        m: ctx.toolbox.get(("evidence-vectoriser", m),
                           functools.partial(evidence_vectoriser, m, ctx)) for m in chosen}
    return {"exemplars": exemplars_for(state.get("evidence", []), libraries, vectorisers, options)}


def load_library(modality: str, ctx: AnalysisContext) -> Any:
    """The shipped exemplar library of ``modality`` (shared through the toolbox)."""
    from affectgraph.retrieval.defaults import default_library

    return default_library(modality, threads=ctx.toolbox.threads)


def evidence_vectoriser(modality: str, ctx: AnalysisContext) -> Any:
    """Reads the vectors of ``modality``'s library off evidence records, with loaded models."""
    from affectgraph.retrieval.evidence import EvidenceVectoriser

    if modality == "voice":
        from affectgraph.tools.voice import VoiceModel

        voice = ctx.toolbox.get(("voice",), VoiceModel.load)
        return EvidenceVectoriser("voice", "egemaps-v02", voice.revision, len(voice.feature_names),
                                  names=tuple(voice.feature_names))
    if modality == "text":
        from affectgraph.features import TextVectoriser
        from affectgraph.tools.text_emotion import load_text_emotion

        name = ctx.options.transcript.text_emotion
        model = ctx.toolbox.get(("text-emotion", name), lambda: load_text_emotion(name))
        embed = getattr(model, "vectoriser", None)
        if not isinstance(embed, TextVectoriser):
            embed = ctx.toolbox.get(("text-vectoriser",),
                                    lambda: TextVectoriser(ctx.toolbox.registry))
        return EvidenceVectoriser("text", embed.name, embed.revision, embed.dim, embed=embed)
    revision = ctx.toolbox.registry.get("fer-mini-xception").revision
    return EvidenceVectoriser("face", "fer-mini-xception", revision, 128)


def aggregate(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    """Fuse the evidence and the exemplars' votes into a verdict with its rationale.

    With an LLM, when the modalities disagree the investigator looks closer first; the verdict
    is then decided again from what it found (:meth:`Investigation.closer_look`) before the LLM
    answers from all the evidence, and the investigator's steps join the rationale.
    """
    ctx = runtime.context
    seconds: dict[str, float] = {}
    clock = _Clock(seconds)
    evidence, exemplars = state.get("evidence", []), state.get("exemplars", [])
    verdict = _decide(state, ctx, evidence, exemplars, clock)
    if ctx.options.llm == "none":
        return {"verdict": verdict, "seconds": seconds}
    found, note = (_investigate_conflict(state, ctx, verdict) if ctx.options.investigate
                   else (None, None))
    clock.lap("investigate")
    update: dict[str, Any] = {}
    if found is not None:
        evidence, exemplars = [*evidence, *found.evidence], [*exemplars, *found.exemplars]
        update = {"evidence": found.evidence, "exemplars": exemplars}  # evidence accumulates
        if found.evidence:
            before = verdict.label
            verdict = _decide(state, ctx, found.closer_look(state.get("evidence", [])),
                              exemplars, clock)
            note = _joined(note, f"decided again with its {len(found.evidence)} new records"
                           + (f" ({before or 'abstained'} -> {verdict.label or 'abstained'})"
                              if verdict.label != before else " (same label)"))
    verdict = _llm_verdict({**state, "evidence": evidence, "exemplars": exemplars}, ctx, verdict)
    clock.lap("llm")
    if found is not None:
        verdict = verdict.model_copy(update={"rationale": [*verdict.rationale, *found.steps]})
    if note is not None:
        verdict = verdict.model_copy(update={"note": _joined(verdict.note, note)})
    return {"verdict": verdict, **update, "seconds": seconds}


class _Clock:
    """Seconds per stage of the aggregate node: each :meth:`lap` adds the time since the last."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.last = seconds, time.perf_counter()

    def restart(self) -> None:
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


def _decide(state: AnalysisState, ctx: AnalysisContext, evidence: Sequence[Evidence],
            exemplars: Sequence[Any], clock: _Clock) -> Any:
    """The fusion verdict over ``evidence``, then the fine-tuned MLLM's if one is configured."""
    from affectgraph.agents.aggregate import aggregate as fuse
    from affectgraph.agents.fusion import FusionModel

    options = ctx.options.aggregate
    model = ctx.toolbox.get(("fusion", options.fusion_model),
                            lambda: FusionModel.load(options.fusion_model))
    clock.restart()  # loading the model is not aggregating
    missing = {**state.get("skipped", {}), **state.get("failures", {})}
    verdict = fuse(evidence, exemplars, state.get("turns", []), state["media"].duration, model,
                   options=options, missing=missing)
    clock.lap("aggregate")
    if ctx.options.mllm is not None:
        verdict = _mllm_verdict(evidence, exemplars, ctx, verdict, ctx.options.mllm)
        clock.lap("mllm")
    return verdict


def _mllm_verdict(evidence: Sequence[Evidence], exemplars: Sequence[Any], ctx: AnalysisContext,
                  fusion: Any, folder: str) -> Any:
    """The verdict of the fine-tuned multimodal LLM in ``folder``, or the fusion one with the
    reason."""
    from affectgraph.agents.mllm.aggregator import load_mllm
    from affectgraph.agents.mllm.infer import mllm_verdict

    model, manifest = ctx.toolbox.get(("mllm", folder), lambda: load_mllm(folder))
    embed = None
    if manifest.data.get("text_embeddings"):
        embed = evidence_vectoriser("text", ctx).embed.embed  # the MiniLM the text head uses
    return mllm_verdict(model, list(evidence), list(exemplars), fusion,
                        text_embed=embed, name=f"mllm {folder}")


def _investigate_conflict(state: AnalysisState, ctx: AnalysisContext, verdict: Any
                          ) -> tuple[Any, str | None]:
    """When the modalities disagree, let the investigator look closer (the LLM calls the
    specialists on chosen stretches): its :class:`Investigation` (``None`` when they agree or
    it could not run) and the note saying what happened."""
    from affectgraph.agents.investigator import InvestigatorOptions, conflict_question, investigate
    from affectgraph.api import to_analysis

    question = conflict_question(state.get("evidence", []))
    if question is None:
        return None, None
    chat = ctx.toolbox.get(("llm", ctx.options.llm, ctx.options.llm_options),
                           lambda: _load_llm(ctx))
    try:
        found = investigate(to_analysis({**state, "verdict": verdict}), question, chat,
                            ctx.toolbox, options=InvestigatorOptions(analyze=ctx.options))
    except AffectGraphError as exc:  # e.g. a model without tool calling: keep the verdict
        return None, f"the modalities disagree; no investigation ({exc})"
    return found, (f"the modalities disagree; the investigator made {len(found.calls)} tool "
                   "calls" + (f" and stopped: {found.stopped}" if found.stopped else ""))


def _load_llm(ctx: AnalysisContext) -> Any:
    from affectgraph.agents.llm import load_chat_model

    return load_chat_model(ctx.options.llm, options=ctx.options.llm_options)


def _joined(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _llm_verdict(state: AnalysisState, ctx: AnalysisContext, fusion: Any) -> Any:
    """The LLM's verdict from the evidence, or the fusion one with the reason it was kept."""
    from affectgraph.agents.llm_aggregator import llm_verdict

    o = ctx.options
    chat = ctx.toolbox.get(("llm", o.llm, o.llm_options), lambda: _load_llm(ctx))
    return llm_verdict(chat, state.get("evidence", []), state.get("exemplars", []), fusion,
                       options=o.llm_aggregate, duration=state["media"].duration)


def verify(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    """Check every rationale step against the evidence it cites; keep only grounded ones."""
    from affectgraph.agents.verifier import verify_verdict

    started = time.perf_counter()
    verdict = verify_verdict(state["verdict"], state.get("evidence", []),
                             state.get("exemplars", []))
    return {"verdict": verdict, "seconds": {"verify": time.perf_counter() - started}}
