"""A readable terminal summary of an :class:`~affectgraph.analysis.Analysis`, per modality over time."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from affectgraph.analysis import Analysis
from affectgraph.evidence import FaceEvidence, TranscriptEvidence, VoiceEvidence


def render(analysis: Analysis, console: Console) -> None:
    """Print the media line, then one table per modality, then what was skipped or failed."""
    info = analysis.media
    size = f"{info.width}x{info.height}" if info.has_video else "no video"
    console.print(
        f"[bold]{info.path}[/]  {info.kind}, {info.duration:.2f} s, {size}, "
        f"{'audio ' + str(info.audio_channels) + ' ch' if info.has_audio else 'no audio'}"
    )
    for part in (_face_table(analysis.of("face")), _voice_table(analysis.of("voice")),
                 _text_table(analysis.of("text"))):
        if part is not None:
            console.print(part)
    for name, why in analysis.skipped.items():
        console.print(f"[dim]{name}: skipped ({why})[/]")
    for name, why in analysis.failures.items():
        console.print(f"[red]{name}: failed: {why}[/]")


def _dist(distribution: dict[str, float] | None, n: int = 2) -> str:
    if not distribution:
        return ""
    best = sorted(distribution.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{label} {p:.2f}" for label, p in best)


def _face_table(records: Sequence[FaceEvidence]) -> Group | None:
    if not records:
        return None
    table = Table(title="Face (per track and second)", title_justify="left")
    for column in ("time (s)", "track", "frames", "expression", "ids"):
        table.add_column(column)
    bins: dict[tuple[int, int], list[FaceEvidence]] = defaultdict(list)
    notes = []
    for record in records:
        if record.reason:
            notes.append(Text(f"{record.span}: {record.reason} [{record.id}]", style="dim"))
            continue
        bins[(int(record.span.start), record.track_id or 0)].append(record)
    for (second, track), group in sorted(bins.items()):
        votes = Counter(r.label for r in group)
        label, count = votes.most_common(1)[0]
        mean_p = sum(r.distribution[label] for r in group if r.distribution) / len(group)
        ids = group[0].id if len(group) == 1 else f"{group[0].id}..{group[-1].id.split(':')[1]}"
        table.add_row(f"{second}-{second + 1}", str(track), str(len(group)),
                      f"{label} ({count}/{len(group)}, p={mean_p:.2f})", ids)
    return Group(table, *notes) if bins else Group(*notes)


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
        table.add_row(r.id, f"{r.span.start:.2f}-{r.span.end:.2f}", r.text,
                      _dist(r.distribution) or (r.reason or ""), conf)
    return Group(table, *notes)
