"""What the terminal shows: the verdict and its verified reasoning first, then the evidence of
each modality over time; and, with ``--stream``, one short line per record or step as it arrives.

:func:`render` prints a finished :class:`~affectgraph.analysis.Analysis`. :func:`stream_lines` is
a pure function from one LangGraph ``stream_mode="updates"`` chunk (``{node: partial_update}``)
to lines of text, so it is easy to test; :func:`follow` prints a whole stream with it.
Claims are printed as plain text, never as rich markup: ``[face:4-9]`` in a claim is a citation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from affectgraph.analysis import Analysis
from affectgraph.evidence import Evidence, FaceEvidence, TranscriptEvidence, VoiceEvidence
from affectgraph.labels import LABELS
from affectgraph.media import MediaInfo
from affectgraph.tracks import face_runs
from affectgraph.verdict import Exemplar, RationaleStep, Verdict

_EVIDENCE: TypeAdapter[Evidence] = TypeAdapter(Evidence)


def render(analysis: Analysis, console: Console) -> None:
    """Print the media line, the verdict with its reasoning, one table per modality, then what
    was skipped or failed."""
    console.print(Text(media_line(analysis.media), style="bold"))
    if analysis.verdict is not None:
        console.print(verdict_block(analysis.verdict))
    faces = [r for r in analysis.evidence if isinstance(r, FaceEvidence)]
    voices = [r for r in analysis.evidence if isinstance(r, VoiceEvidence)]
    texts = [r for r in analysis.evidence if isinstance(r, TranscriptEvidence)]
    for part in (_face_table(faces), _voice_table(voices), _text_table(texts)):
        if part is not None:
            console.print(part)
    for name, why in analysis.skipped.items():
        console.print(Text(f"{name}: skipped ({why})", style="dim"))
    for name, why in analysis.failures.items():
        console.print(Text(f"{name}: failed: {why}", style="red"))


def media_line(info: MediaInfo) -> str:
    size = f"{info.width}x{info.height}" if info.has_video else "no video"
    audio = f"audio {info.audio_channels} ch" if info.has_audio else "no audio"
    return f"{info.path}  {info.kind}, {info.duration:.2f} s, {size}, {audio}"


# -- the verdict -------------------------------------------------------------------------------

def split_steps(verdict: Verdict) -> tuple[list[RationaleStep], list[RationaleStep]]:
    """(verified, not verified): only steps the verifier marked grounded count as verified;
    anything else, unchecked steps included, is never presented as fact."""
    verified = [s for s in verdict.rationale if s.grounded is True]
    unverified = [s for s in verdict.rationale if s.grounded is not True] + list(verdict.rejected)
    return verified, unverified


def pole(value: float, low: str, high: str) -> str:
    """A word for a value in [-1, 1]: ``neutral`` near 0, ``mildly`` below 0.5."""
    if abs(value) < 0.15:
        return "neutral"
    return ("mildly " if abs(value) < 0.5 else "") + (high if value > 0 else low)


def valence_arousal(verdict: Verdict) -> str:
    return describe_valence_arousal(verdict.valence, verdict.arousal)


def describe_valence_arousal(valence: float, arousal: float) -> str:
    """E.g. ``valence +0.45 (mildly pleasant), arousal +0.30 (mildly activated)``."""
    valence, arousal = round(valence, 2) + 0.0, round(arousal, 2) + 0.0  # no "-0.00"
    return (f"valence {valence:+.2f} ({pole(valence, 'unpleasant', 'pleasant')}), "
            f"arousal {arousal:+.2f} ({pole(arousal, 'calm', 'activated')})")


def top_labels(distribution: Mapping[str, float], n: int = 3) -> str:
    """The ``n`` most probable labels, e.g. ``happy 0.62, neutral 0.10``."""
    best = sorted(((k, distribution.get(k, 0.0)) for k in LABELS), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{label} {p:.2f}" for label, p in best)


def verdict_headline(verdict: Verdict) -> str:
    if verdict.abstained:
        return f"Verdict: no single emotion (abstained): {verdict.abstention or 'no reason given'}"
    return f"Verdict: {verdict.label} (confidence {verdict.confidence:.2f})"


def verdict_lines(verdict: Verdict) -> list[tuple[str, str]]:
    """The verdict as (text, rich style) lines: headline, distribution, valence/arousal,
    weights, grounding, then the verified steps and, dimmed, the unverified ones."""
    lines = [(verdict_headline(verdict), "bold yellow" if verdict.abstained else "bold"),
             (f"  distribution: {top_labels(verdict.distribution)}", ""),
             (f"  {valence_arousal(verdict)}", "")]
    if verdict.modality_weights:
        weights = sorted(verdict.modality_weights.items(), key=lambda kv: -kv[1])
        lines.append(("  weights: " + ", ".join(f"{m} {w:.2f}" for m, w in weights), ""))
    if verdict.note:
        lines.append((f"  note: {verdict.note}", "yellow"))
    verified, unverified = split_steps(verdict)
    total = len(verified) + len(unverified)
    if total:
        score = f" (grounding {verdict.grounding:.2f})" if verdict.grounding is not None else ""
        lines.append((f"  {len(verified)} of {total} reasoning steps verified{score}", ""))
    if verified:
        lines.append(("Why:", "bold"))
        lines += [(f"  {i}. {step_line(s)}", "") for i, s in enumerate(verified, 1)]
    if unverified:
        lines.append(("Not verified (not facts):", "dim"))
        lines += [(f"  ✗ {step_line(s)} -- {unverified_reason(s)}", "dim") for s in unverified]
    return lines


def step_line(step: RationaleStep, most: int = 3) -> str:
    """A step's claim, followed by the cites it does not name itself (the first ``most`` of
    them: ten exemplar ids would bury the claim)."""
    missing = [c for c in step.cites if c not in step.claim]
    if len(missing) > most:
        missing = [*missing[:most - 1], f"+{len(missing) - most + 1} more"]
    return step.claim + (f" [{', '.join(missing)}]" if missing else "")


def unverified_reason(step: RationaleStep) -> str:
    if step.check:
        return step.check
    return "not checked by the verifier" if step.grounded is None else "no reason given"


def verdict_block(verdict: Verdict) -> Group:
    return Group(*(Text(text, style=style) for text, style in verdict_lines(verdict)))


# -- streaming ---------------------------------------------------------------------------------

def stream_lines(update: Mapping[str, Any]) -> list[str]:
    """Short lines for one ``stream_mode="updates"`` chunk ``{node: partial_state_update}``:
    the media, skipped and failed modalities, each evidence record (face records per track and
    second), the exemplars retrieved, and the verdict with every rationale step.

    Records may be models or their JSON dicts. A verdict whose steps are not checked yet is
    announced without its claims: claims are printed only once the verifier has marked them.
    """
    lines: list[str] = []
    for partial in update.values():
        if isinstance(partial, Mapping):  # not None (no change) nor LangGraph's own keys
            lines += _update_lines(partial)
    return lines


def _update_lines(partial: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if partial.get("media") is not None:
        lines.append(f"media       {media_line(MediaInfo.model_validate(partial['media']))}")
    lines += [f"{name:<11} skipped: {why}" for name, why in (partial.get("skipped") or {}).items()]
    if partial.get("turns"):
        turns = partial["turns"]
        lines.append(f"speech      {len(turns)} speech turn{'s' if len(turns) != 1 else ''}")
    lines += evidence_lines([_EVIDENCE.validate_python(r) for r in partial.get("evidence") or []])
    lines += [f"{name:<11} FAILED: {why}" for name, why in (partial.get("failures") or {}).items()]
    if partial.get("exemplars"):
        lines.append(exemplar_line([Exemplar.model_validate(e) for e in partial["exemplars"]]))
    if partial.get("verdict") is not None:
        lines += _streamed_verdict(Verdict.model_validate(partial["verdict"]))
    return lines


def evidence_lines(records: Sequence[Evidence]) -> list[str]:
    """One line per voice or text record, per face track and second, and per undecided record."""
    lines: list[str] = []
    faces = [r for r in records if isinstance(r, FaceEvidence)]
    for run in face_runs(faces):
        lines.append(f"{run.ids_text:<11} {_when(run.start, run.end)}  face track {run.track}: "
                     f"{run.label} ({run.votes}/{len(run.records)} frames, p={run.mean_p:.2f})")
    for r in records:
        when = f"{r.id:<11} {_when(r.span.start, r.span.end)}"
        if not r.decided and not isinstance(r, TranscriptEvidence):
            lines.append(f"{when}  {r.modality}: {r.reason}")
        elif isinstance(r, VoiceEvidence):
            emotion = top_labels(r.distribution, 2) if r.distribution else ""
            lines.append(f"{when}  voice: {_prosody(r)}  {emotion}".rstrip())
        elif isinstance(r, TranscriptEvidence):
            emotion = top_labels(r.distribution, 2) if r.distribution else (r.reason or "")
            lines.append(f'{when}  text: "{r.text}"  {emotion}'.rstrip())
    return lines


def _when(start: float, end: float) -> str:
    return f"{f'{start:.2f}-{end:.2f} s':>15}"


def _prosody(r: VoiceEvidence) -> str:
    p = r.prosody
    if p is None:
        return "no prosody"
    pitch = f"pitch {p.pitch_mean_hz:.0f} Hz" if p.pitch_mean_hz else "unvoiced"
    span = f", range {p.pitch_range_st:.1f} st" if p.pitch_range_st is not None else ""
    return f"{pitch}{span}, rate {p.speaking_rate:.1f}/s, pauses {p.pause_ratio:.0%}"


def exemplar_line(exemplars: Sequence[Exemplar]) -> str:
    best = max(exemplars, key=lambda e: e.similarity)
    records = len({e.evidence_id for e in exemplars})
    return (f"exemplars   {len(exemplars)} retrieved for {records} record"
            f"{'s' if records != 1 else ''}; nearest {best.citation} ({best.label}, "
            f"similarity {best.similarity:.2f}) for {best.evidence_id}")


def _streamed_verdict(verdict: Verdict) -> list[str]:
    """The headline, then each checked step: verified ones, then the others marked as such."""
    headline = verdict_headline(verdict).removeprefix("Verdict: ")
    steps = [*verdict.rationale, *verdict.rejected]
    if steps and all(s.grounded is None for s in steps) and verdict.grounding is None:
        return [f"verdict     {headline} (unverified; checking {len(steps)} reasoning steps)"]
    verified, unverified = split_steps(verdict)
    score = f", grounding {verdict.grounding:.2f}" if verdict.grounding is not None else ""
    lines = [f"verdict     {headline}{score}"]
    lines += [f"step        ✓ {step_line(s)}" for s in verified]
    lines += [f"step        ✗ not verified: {step_line(s)} -- {unverified_reason(s)}"
              for s in unverified]
    return lines


def follow(chunks: Iterable[Any], console: Console) -> dict[str, Any] | None:
    """Print the lines of every update of a LangGraph stream and return its last full state.

    ``chunks`` comes from ``graph.stream(..., stream_mode="updates")`` (then ``None`` is
    returned) or ``stream_mode=["updates", "values"]`` (``(mode, chunk)`` pairs; the last
    ``values`` chunk, the final state, is returned for :func:`affectgraph.api.to_analysis`).
    """
    state = None
    for chunk in chunks:
        mode, data = chunk if isinstance(chunk, tuple) else ("updates", chunk)
        if mode == "values":
            state = data
        elif mode == "updates":
            for line in stream_lines(data):
                dim = "✗" in line or "(unverified;" in line
                console.print(Text(line, style="dim" if dim else ""))
    return state


# -- the evidence tables -----------------------------------------------------------------------

def _dist(distribution: dict[str, float] | None, n: int = 2) -> str:
    return top_labels(distribution, n) if distribution else ""


def _face_table(records: Sequence[FaceEvidence]) -> Group | None:
    if not records:
        return None
    table = Table(title="Face (per track and second)", title_justify="left")
    for column in ("time (s)", "track", "frames", "expression", "ids"):
        table.add_column(column)
    for run in face_runs(records):
        second = int(run.start)
        table.add_row(f"{second}-{second + 1}", str(run.track),
                      str(len(run.records)),
                      f"{run.label} ({run.votes}/{len(run.records)}, p={run.mean_p:.2f})",
                      escape(run.ids_text))
    notes = [Text(f"{r.span}: {r.reason} [{r.id}]", style="dim") for r in records if r.reason]
    return Group(table, *notes) if table.row_count else Group(*notes)


def _voice_table(records: Sequence[VoiceEvidence]) -> Group | None:
    if not records:
        return None
    table = Table(title="Voice (per speech turn)", title_justify="left")
    for column in ("id", "time (s)", "pitch", "range", "loudness", "rate", "pauses", "emotion"):
        table.add_column(column)
    notes = []
    for r in records:
        if r.reason or r.prosody is None:
            notes.append(Text(f"{r.span}: {r.reason} [{r.id}]", style="dim"))
            continue
        p = r.prosody
        pitch = f"{p.pitch_mean_hz:.0f} Hz" if p.pitch_mean_hz else "-"
        span_st = f"{p.pitch_range_st:.1f} st" if p.pitch_range_st is not None else "-"
        table.add_row(r.id, f"{r.span.start:.2f}-{r.span.end:.2f}", pitch, span_st,
                      f"{p.loudness:.2f}", f"{p.speaking_rate:.1f}/s", f"{p.pause_ratio:.0%}",
                      _dist(r.distribution) or "-")
    return Group(table, *notes)


def _text_table(records: Sequence[TranscriptEvidence]) -> Group | None:
    if not records:
        return None
    table = Table(title="Words (per transcript segment)", title_justify="left")
    for column in ("id", "time (s)", "text", "emotion", "asr conf."):
        table.add_column(column)
    notes = []
    for r in records:
        if r.reason and not r.text:
            notes.append(Text(f"{r.span}: {r.reason} [{r.id}]", style="dim"))
            continue
        conf = f"{r.asr_confidence:.2f}" if r.asr_confidence is not None else r.source
        table.add_row(r.id, f"{r.span.start:.2f}-{r.span.end:.2f}", escape(r.text),
                      _dist(r.distribution) or (r.reason or ""), conf)
    return Group(table, *notes)
