"""The investigator's tools: the specialists on a chosen stretch, retrieval, evidence look-up.

A :class:`Casebook` holds the evidence of one investigation: the analysis's records and
exemplars, plus those the tools add. Added records get fresh ids that continue each modality's
numbering (an analysis with ``face:0-16`` gets ``face:17``, ``face:18``, ...), so every id the
agent reads stays citable and means one record. :meth:`Toolkit.tools` builds the LangChain tools
bound to one casebook:

- ``face(start, end, fps)``, ``voice(start, end)``, ``transcript(start, end)``: the built-in
  specialist's graph node (:data:`affectgraph.graphs.specialists.BUILTINS`, with the models of
  the run's :class:`~affectgraph.graphs.context.Toolbox`) on ``start``-``end`` seconds of the
  clip; voice and transcript take the stretch as one speech turn;
- ``retrieve_exemplars(evidence_id, k)``: the labelled exemplars nearest a record
  (:func:`affectgraph.tools.retrieve.make_retrieve_tool`), which become citable;
- ``lookup(ids)`` and ``list_evidence(modality, start, end)``: records, compactly.

Each returns a small JSON-able dict. Bad arguments (a time beyond the clip, ``start >= end``, a
rate out of range, an unknown id) and a specialist's :class:`~affectgraph.errors.AffectGraphError`
come back to the model as a tool error message naming the problem and the valid range
(``ToolException`` with ``handle_tool_error``); programming errors are raised.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from affectgraph.analysis import Analysis
from affectgraph.errors import AffectGraphError
from affectgraph.evidence import (
    Evidence,
    FaceEvidence,
    TimeSpan,
    TranscriptEvidence,
    Turn,
    VoiceEvidence,
    evidence_id,
)
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, compact_ids, expand_ids

MAX_LISTED = 12  # records listed in one tool result; more are summarised as runs
MAX_LOOKUP = 24  # records one lookup may ask for
SLACK = 0.05  # seconds a range may reach past the clip's end (rounding); it is cut there
MIN_SHOWN = 0.05  # probabilities below this are left out of a record's summary


def _tool_exception(message: str) -> Exception:
    from langchain_core.tools import ToolException

    return ToolException(message)


# -- the evidence of one investigation ------------------------------------------------------------

class Casebook:
    """The analysis's evidence and exemplars plus those added so far (``added``, ``found``)."""

    def __init__(self, analysis: Analysis, evidence: Iterable[Evidence] = (),
                 exemplars: Iterable[Exemplar] = ()) -> None:
        self.analysis = analysis
        self.records: dict[str, Evidence] = {r.id: r for r in [*analysis.evidence, *evidence]}
        self.exemplars: list[Exemplar] = [*analysis.exemplars, *exemplars]
        self.added: list[Evidence] = []
        self.found: list[Exemplar] = []

    @property
    def duration(self) -> float:
        return self.analysis.media.duration

    def next_index(self, modality: str) -> int:
        """One past the highest number of the modality's ids (0 when it has none)."""
        numbers = [int(i.partition(":")[2]) for i in self.records
                   if i.startswith(f"{modality}:") and i.partition(":")[2].isdigit()]
        return max(numbers, default=-1) + 1

    def add(self, records: Sequence[Evidence]) -> list[Evidence]:
        """``records`` (in time order, as a specialist returns them) with fresh ids, kept."""
        out: list[Evidence] = []
        for record in records:
            fresh = record.model_copy(
                update={"id": evidence_id(record.modality, self.next_index(record.modality))})
            self.records[fresh.id] = fresh
            out.append(fresh)
        self.added += out
        return out

    def note(self, exemplars: Sequence[Exemplar]) -> None:
        """Exemplars retrieved during the investigation: citable from now on."""
        known = {(e.id, e.evidence_id) for e in self.exemplars}
        new = [e for e in exemplars if (e.id, e.evidence_id) not in known]
        self.exemplars += new
        self.found += new

    def resolve(self, ids: Sequence[str]) -> list[Evidence | Exemplar]:
        """The records (runs such as ``face:4-9`` expanded) and exemplars ``ids`` name;
        ``ToolException`` names the unknown ones and the known ranges."""
        exemplars = {e.citation: e for e in self.exemplars}
        wanted = expand_ids(i.strip() for i in ids if i.strip())
        unknown = [i for i in wanted if i not in self.records and i not in exemplars]
        if unknown:
            raise _tool_exception(f"unknown id(s) {', '.join(compact_ids(unknown))}; "
                                  f"{self.known()}")
        if len(wanted) > MAX_LOOKUP:
            raise _tool_exception(f"{len(wanted)} records asked for, at most {MAX_LOOKUP} per "
                                  "lookup; use list_evidence for an overview of a stretch")
        return [self.records[i] if i in self.records else exemplars[i] for i in wanted]

    def within(self, modality: str | None, span: TimeSpan) -> list[Evidence]:
        """Records (of one modality, or all) overlapping ``span``: by modality, in id order (each
        call's records in time order after the analysis's own)."""
        found = [r for r in self.records.values() if (modality is None or r.modality == modality)
                 and (r.span.overlap(span) > 1e-6 or span.contains(r.span.start, -1e-6))]
        order = {"face": 0, "voice": 1, "text": 2}
        return sorted(found, key=lambda r: (order.get(r.modality, 3), r.modality, _number(r.id)))

    def known(self) -> str:
        ids = ", ".join(compact_ids(sorted(self.records, key=lambda i: (i.partition(":")[0],
                                                                          _number(i)))))
        return f"known ids: {ids or 'none'}" + (
            f" and {len(self.exemplars)} exemplars (exemplar:...)" if self.exemplars else "")


def _number(evidence_id: str) -> int:
    tail = evidence_id.partition(":")[2]
    return int(tail) if tail.isdigit() else -1


# -- compact views ---------------------------------------------------------------------------------

def brief(item: Evidence | Exemplar) -> dict[str, Any]:
    """A record or exemplar as the model reads it: id, span (s), top probabilities, and what
    the specialist measured (prosody with units, text, face track)."""
    if isinstance(item, Exemplar):
        out: dict[str, Any] = {"id": item.citation, "label": item.label,
                               "similarity": round(item.similarity, 3),
                               "retrieved_for": item.evidence_id}
        return out | ({"text": item.text} if item.text else {})
    out = {"id": item.id, "span": [round(item.span.start, 2), round(item.span.end, 2)]}
    if item.distribution:
        out["label"] = item.label
        out["p"] = _probabilities(item.distribution)
    if item.reason:
        out["reason"] = item.reason
    if isinstance(item, FaceEvidence):
        if item.track_id is not None:
            out["track"] = item.track_id
        if item.frames > 1:
            out["frames"] = item.frames
    elif isinstance(item, VoiceEvidence) and item.prosody:
        p = item.prosody
        out["prosody"] = {k: round(v, 2) for k, v in {
            "pitch_mean_hz": p.pitch_mean_hz, "pitch_range_semitones": p.pitch_range_st,
            "loudness_sones": p.loudness, "syllables_per_s": p.speaking_rate,
            "pause_ratio": p.pause_ratio}.items() if v is not None}
    elif isinstance(item, TranscriptEvidence):
        out["text"] = item.text
        if item.asr_confidence is not None:
            out["asr_confidence"] = round(item.asr_confidence, 2)
    return out


def _probabilities(distribution: dict[str, float]) -> dict[str, float]:
    ranked = sorted(distribution.items(), key=lambda kv: -kv[1])
    shown = [(c, p) for c, p in ranked if p >= MIN_SHOWN][:3] or ranked[:1]
    return {c: round(p, 2) for c, p in shown}


def listing(records: Sequence[Evidence]) -> dict[str, Any]:
    """Records for a tool result: each one when there are few, else runs of records with
    consecutive ids and the same top label (or the same reason), with counts and mean p."""
    if len(records) <= MAX_LISTED:
        return {"records": [brief(r) for r in records]}
    runs: list[list[Evidence]] = []
    for r in records:
        last = runs[-1][-1] if runs else None
        if last is not None and _follows(r, last) and \
                (last.label or last.reason) == (r.label or r.reason):
            runs[-1].append(r)
        else:
            runs.append([r])
    shown = [_run(run) for run in runs[:MAX_LISTED]]
    out: dict[str, Any] = {"runs": shown}
    if len(runs) > MAX_LISTED:
        rest = [r for run in runs[MAX_LISTED:] for r in run]
        out["more"] = (f"{len(runs) - MAX_LISTED} more runs ({len(rest)} records from "
                       f"{rest[0].span.start:.2f} s); narrow the range or use lookup")
    return out


def _follows(record: Evidence, last: Evidence) -> bool:
    """Whether ``record`` is the next record after ``last`` of the same specialist run."""
    return (record.modality == last.modality and _number(record.id) == _number(last.id) + 1
            and record.span.start >= last.span.start)


def _run(run: Sequence[Evidence]) -> dict[str, Any]:
    out: dict[str, Any] = {"ids": ", ".join(compact_ids(r.id for r in run)),
                           "span": [round(run[0].span.start, 2), round(run[-1].span.end, 2)],
                           "records": len(run)}
    rated = [r.distribution for r in run if r.distribution]
    if rated:
        out["label"] = run[0].label
        out["mean_p"] = _probabilities({c: sum(d[c] for d in rated) / len(rated)
                                        for c in LABELS})
    else:
        out["reason"] = run[0].reason
    return out


def summary(records: Sequence[Evidence]) -> dict[str, Any]:
    """What a specialist call added: ids, top-label counts, mean probabilities, the records."""
    out: dict[str, Any] = {"added": compact_ids(r.id for r in records)}
    rated = [r.distribution for r in records if r.distribution]
    if len(records) > 1 and rated:
        labels = [r.label for r in records if r.distribution]
        out["top_labels"] = {c: labels.count(c) for c in LABELS if labels.count(c)}
        out["mean_p"] = _probabilities({c: sum(d[c] for d in rated) / len(rated)
                                        for c in LABELS})
    undecided = [r for r in records if not r.distribution]
    if undecided and isinstance(undecided[0], FaceEvidence):
        out["frames_without_face"] = sum(getattr(r, "frames", 1) for r in undecided)
    return out | listing(records)


# -- argument checks -------------------------------------------------------------------------------

def checked_span(start: float, end: float, duration: float) -> TimeSpan:
    """``start``-``end`` s as a span of the clip, or a ``ToolException`` naming the problem and
    the valid range (an end up to :data:`SLACK` past the clip's end is cut there)."""
    valid = f"choose 0 <= start < end <= {duration:.2f} (the clip is {duration:.2f} s long)"
    if not (math.isfinite(start) and math.isfinite(end)):
        raise _tool_exception(f"start and end must be numbers of seconds; {valid}")
    if start < 0:
        raise _tool_exception(f"start {start:g} s is before the clip begins; {valid}")
    if start >= duration:
        raise _tool_exception(f"start {start:g} s is at or beyond the clip's end; {valid}")
    if end > duration + SLACK:
        raise _tool_exception(f"end {end:g} s is beyond the clip's end; {valid}")
    if end <= start:
        raise _tool_exception(f"end {end:g} s must come after start {start:g} s; {valid}")
    return TimeSpan(start=start, end=min(end, duration))


def validation_message(error: Exception) -> str:
    """A tool's invalid arguments in one line the model can act on."""
    if isinstance(error, ValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in error.errors()[:3]]
        return "invalid arguments: " + "; ".join(problems)
    return f"invalid arguments: {error}"


# -- argument schemas ------------------------------------------------------------------------------

class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeArgs(_Args):
    start: float = Field(description="start of the stretch, seconds from the start of the clip")
    end: float = Field(description="end of the stretch, seconds from the start of the clip")


class FaceArgs(RangeArgs):
    fps: float | None = Field(default=None, description="frames per second to sample "
                                                        "(default: the analysis's rate)")


class LookupArgs(_Args):
    ids: list[str] = Field(description="evidence ids, runs such as face:4-9, or exemplar ids",
                           min_length=1)


class ListArgs(_Args):
    modality: Literal["face", "voice", "text"] | None = Field(
        default=None, description="face, voice or text; all when omitted")
    start: float | None = Field(default=None, description="seconds; the clip's start if omitted")
    end: float | None = Field(default=None, description="seconds; the clip's end if omitted")


# -- the tools -------------------------------------------------------------------------------------

@dataclass
class Toolkit:
    """Runs the specialists and retrieval for one clip with the run's models.

    ``options`` is the analysis's :class:`~affectgraph.graphs.context.AnalyzeOptions` (new
    evidence is made the way the analysis made its own); ``max_fps`` and ``max_frames`` bound a
    face call. Specialists run one at a time (``lock``): their models are not thread-safe.
    """

    path: str
    toolbox: Any  # affectgraph.graphs.context.Toolbox
    options: Any  # affectgraph.graphs.context.AnalyzeOptions
    max_fps: float = 15.0
    max_frames: int = 300
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tools(self, book: Casebook) -> list[Any]:
        """The tools bound to ``book``: specialists, retrieval, lookup and listing."""
        from langchain_core.tools import StructuredTool

        def make(func: Any, name: str, schema: type[BaseModel], description: str) -> Any:
            return StructuredTool.from_function(
                func, name=name, args_schema=schema, description=description,
                handle_tool_error=True, handle_validation_error=validation_message)

        media = book.analysis.media
        face_fps = self.options.face.fps
        return [
            make(lambda start, end, fps=None: self.face(book, start, end, fps), "face", FaceArgs,
                 f"Run the face specialist on start..end seconds of the clip ({media.duration:.2f}"
                 f" s long) at fps frames per second (up to {self.max_fps:g}; default "
                 f"{face_fps:g}; at most {self.max_frames} frames per call). Adds one record per "
                 "sampled frame and face (expression probabilities; track numbers a face "
                 "within this call) with new ids."),
            make(lambda start, end: self.speech(book, "voice", start, end), "voice", RangeArgs,
                 "Run the voice specialist on start..end seconds as one speech turn: prosody "
                 "(pitch in Hz, pitch range in semitones, loudness in sones, syllables/s, "
                 "pauses) and voice emotion probabilities. Adds one record with a new id."),
            make(lambda start, end: self.speech(book, "transcript", start, end), "transcript",
                 RangeArgs,
                 "Recognise the words said in start..end seconds and the emotion in them. Adds "
                 "one record per recognised segment with new ids."),
            self.retrieve_tool(book),
            make(lambda ids: {"records": [brief(r) for r in book.resolve(ids)]}, "lookup",
                 LookupArgs, f"Look up evidence records or exemplars by id (runs such as "
                             f"face:4-9 allowed; at most {MAX_LOOKUP} records)."),
            make(lambda modality=None, start=None, end=None: self.listed(book, modality, start,
                                                                         end),
                 "list_evidence", ListArgs,
                 "List the evidence records (of one modality, or all) overlapping start..end "
                 "seconds, with ids, spans and top probabilities."),
        ]

    # -- specialists --------------------------------------------------------------------------

    def face(self, book: Casebook, start: float, end: float, fps: float | None) -> dict[str, Any]:
        if not book.analysis.media.has_video:
            raise _tool_exception("the clip has no video stream: there are no faces to look at; "
                                  "use voice or transcript")
        span = checked_span(start, end, book.duration)
        rate = self.options.face.fps if fps is None else fps
        if not (math.isfinite(rate) and 0 < rate <= self.max_fps):
            raise _tool_exception(f"fps {rate:g} is out of range; choose 0 < fps <= "
                                  f"{self.max_fps:g}")
        frames = math.ceil(span.duration * rate - 1e-9)
        if frames > self.max_frames:
            raise _tool_exception(
                f"{span} at {rate:g} fps is {frames} frames, more than {self.max_frames} per "
                f"call; lower fps to at most {self.max_frames / span.duration:.2f} or look at a "
                "shorter stretch")
        face = self.options.face.model_validate(
            {**self.options.face.model_dump(), "start": span.start, "end": span.end,
             "fps": rate})
        records = self._run("face", span, self.options.model_copy(update={"face": face}), book)
        return {"fps": rate} | summary(records)

    def speech(self, book: Casebook, name: str, start: float, end: float) -> dict[str, Any]:
        if not book.analysis.media.has_audio:
            raise _tool_exception(f"the clip has no audio stream: {name} cannot run; use face")
        span = checked_span(start, end, book.duration)
        return summary(self._run(name, span, self.options, book))

    def _run(self, name: str, span: TimeSpan, options: Any, book: Casebook) -> list[Evidence]:
        """The built-in specialist's graph node on ``span`` (one speech turn), ids made fresh."""
        from langgraph.runtime import Runtime

        from affectgraph.graphs.context import AnalysisContext
        from affectgraph.graphs.specialists import BUILTINS

        state = {"path": self.path, "media": book.analysis.media,
                 "turns": [Turn(span=span)], "transcript_file": None}
        runtime = Runtime(context=AnalysisContext(options=options, toolbox=self.toolbox))
        try:
            with self.lock:
                records = BUILTINS[name].node(state, runtime)["evidence"]  # type: ignore[arg-type]
        except AffectGraphError as exc:
            raise _tool_exception(f"the {name} specialist failed on {span}: {exc}") from exc
        return book.add(records)

    # -- retrieval and listing ----------------------------------------------------------------

    def retrieve_tool(self, book: Casebook) -> Any:
        """The retrieve tool for ``book``: :func:`~affectgraph.tools.retrieve.make_retrieve_tool`
        with the record's library loaded on first use; its neighbours become citable."""
        from langchain_core.tools import StructuredTool

        from affectgraph.tools.retrieve import RetrieveArgs

        def run(evidence_id: str, k: int = 5, exclude_groups: list[str] | None = None) -> dict:
            found = self._retrieve(book, evidence_id, k, exclude_groups or [])
            book.note([_exemplar(n, found) for n in found.get("neighbours", [])])
            return found

        return StructuredTool.from_function(
            run, name="retrieve_exemplars", args_schema=RetrieveArgs, handle_tool_error=True,
            handle_validation_error=validation_message,
            description="Find the labelled exemplars (acted or annotated emotional speech, text "
                        "or faces) most similar to one evidence record, and their label vote. "
                        "Cite them by their id (exemplar:...).")

    def _retrieve(self, book: Casebook, evidence_id: str, k: int,
                  exclude: list[str]) -> dict[str, Any]:
        from affectgraph.tools.retrieve import make_retrieve_tool

        record = book.records.get(evidence_id)
        if record is None:
            raise _tool_exception(f"unknown evidence id {evidence_id!r}; {book.known()}")
        modality = record.modality
        retrieval = self.options.retrieval
        if modality not in retrieval.modalities:
            raise _tool_exception(f"retrieval is switched off for {modality} evidence; it runs "
                                  f"for: {', '.join(retrieval.modalities) or 'none'}")
        try:
            library, vectoriser = self._library(modality)
        except AffectGraphError as exc:
            raise _tool_exception(f"no {modality} exemplar library: {exc}") from exc
        tool = make_retrieve_tool(book.records, {modality: library}, {modality: vectoriser},
                                  temperature=retrieval.temperature)
        found = tool.invoke({"evidence_id": evidence_id, "k": k,
                             "exclude_groups": [*retrieval.exclude_groups, *exclude]})
        if isinstance(found, str):  # the tool's own error message
            raise _tool_exception(found)
        return found

    def _library(self, modality: str) -> tuple[Any, Any]:
        """The library and evidence vectoriser the analysis graph's retrieval uses (same
        toolbox keys, so they are loaded once)."""
        from affectgraph.graphs import nodes
        from affectgraph.graphs.context import AnalysisContext

        ctx = AnalysisContext(options=self.options, toolbox=self.toolbox)
        library = self.toolbox.get(("library", modality),
                                   lambda: nodes.load_library(modality, ctx))
        vectoriser = self.toolbox.get(("evidence-vectoriser", modality),
                                      lambda: nodes.evidence_vectoriser(modality, ctx))
        return library, _RecordVectoriser(vectoriser)

    def listed(self, book: Casebook, modality: str | None, start: float | None,
               end: float | None) -> dict[str, Any]:
        span = checked_span(0.0 if start is None else start,
                            book.duration if end is None else end, book.duration)
        found = book.within(modality, span)
        return {"span": [round(span.start, 2), round(span.end, 2)], "count": len(found)} | \
            listing(found)


@dataclass(frozen=True)
class _RecordVectoriser:
    """The analysis graph's evidence vectoriser as the retrieve tool takes it: one record at a
    time (the vectors the analysis's own retrieval searched with; no model is loaded again)."""

    inner: Any  # affectgraph.retrieval.evidence.EvidenceVectoriser

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def revision(self) -> str:
        return self.inner.revision

    @property
    def dim(self) -> int:
        return self.inner.dim

    def from_evidence(self, record: object) -> Any:
        kept, rows = self.inner.vectors([record])
        return rows[0] if kept else None


def _exemplar(neighbour: dict[str, Any], found: dict[str, Any]) -> Exemplar:
    """An exemplar of a retrieve tool result (text cut for display is restored to its cut)."""
    text = neighbour.get("text")
    if isinstance(text, str) and text.endswith("..."):
        text = text[:-3]
    return Exemplar(id=neighbour["id"].removeprefix("exemplar:"), label=neighbour["label"],
                    similarity=neighbour["similarity"], evidence_id=found["evidence_id"],
                    library=found.get("library", ""), speaker=neighbour.get("speaker"),
                    text=text)
