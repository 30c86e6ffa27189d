"""Evidence as tracks over time: what the terminal summary, the stream and the HTML report draw.

A 30-minute video has ten thousand face records; nobody reads them one by one. This module
groups them into runs (one per face track and window of seconds) with the majority expression,
and turns each modality into a :class:`Track` of :class:`Stretch` es a plot can draw with a
bounded number of shapes, whatever the length of the recording.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from affectgraph.analysis import Analysis
from affectgraph.evidence import Evidence, FaceEvidence, top
from affectgraph.labels import LABELS
from affectgraph.verdict import compact_ids

MAX_STRETCHES = 600
"""The most stretches a plotted track holds; longer tracks are merged into wider windows."""

_WINDOWS = (1, 2, 5, 10, 15, 30, 60, 120, 300)


@dataclass(frozen=True)
class FaceRun:
    """The decided face records of one track within one window of seconds.

    ``label`` is the majority expression, ``votes`` how many records voted for it, ``mean_p`` its
    mean probability over all the run's records.
    """

    start: float
    end: float
    track: int
    records: tuple[FaceEvidence, ...]
    label: str
    votes: int
    mean_p: float

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.records)

    @property
    def ids_text(self) -> str:
        """The ids as runs (``face:4-9``), abbreviated when the tracks interleave."""
        return short_ids(self.ids)


def short_ids(ids: Sequence[str], most: int = 3) -> str:
    """Ids as compact runs, e.g. ``face:4-9, face:12``; long lists end with ``(+N more)``."""
    runs = compact_ids(ids)
    if len(runs) <= most:
        return ", ".join(runs)
    return f"{', '.join(runs[:most])} (+{len(runs) - most} more)"


def window_for(duration: float, most: int) -> int:
    """The smallest window (s) from 1 s up that cuts ``duration`` into at most ``most`` windows."""
    for window in _WINDOWS:
        if duration / window <= most:
            return window
    return _WINDOWS[-1]


def face_runs(records: Iterable[FaceEvidence], window: float = 1.0) -> list[FaceRun]:
    """Decided face records grouped per track and window, in time order (undecided ones are
    left out: they carry a ``reason`` instead of an expression)."""
    bins: dict[tuple[int, int], list[FaceEvidence]] = defaultdict(list)
    for record in records:
        if record.decided and record.distribution:
            index = math.floor(record.span.start / window + 1e-9)  # 3.2 / 0.2 is 15.999...
            bins[(index, record.track_id or 0)].append(record)
    runs = []
    for (_, track), group in sorted(bins.items()):
        label, votes = Counter(r.label or "" for r in group).most_common(1)[0]
        mean_p = sum((r.distribution or {}).get(label, 0.0) for r in group) / len(group)
        start, end = min(r.span.start for r in group), max(r.span.end for r in group)
        runs.append(FaceRun(start, end, track, tuple(group), label, votes, mean_p))
    return runs


@dataclass(frozen=True)
class Stretch:
    """One drawable stretch of a track: its span, distribution and the ids behind it.

    ``note`` says why there is no distribution (no face, silence, an abstaining verdict).
    """

    start: float
    end: float
    distribution: Mapping[str, float] | None
    ids: tuple[str, ...] = ()
    note: str | None = None

    @property
    def label(self) -> str | None:
        return top(self.distribution)[0] if self.distribution else None

    @property
    def probability(self) -> float:
        return top(self.distribution)[1] if self.distribution else 0.0


@dataclass(frozen=True)
class Track:
    """One row of the timeline: a modality (or one face track, one speaker) over time."""

    name: str
    modality: str
    stretches: tuple[Stretch, ...]


def mean_distribution(distributions: Iterable[Mapping[str, float]]) -> dict[str, float] | None:
    """The label-wise mean of distributions, or ``None`` when there are none."""
    rows = [[d.get(label, 0.0) for label in LABELS] for d in distributions]
    if not rows:
        return None
    return dict(zip(LABELS, np.mean(rows, axis=0).tolist(), strict=True))


def tracks(analysis: Analysis, most: int = MAX_STRETCHES) -> list[Track]:
    """The timeline rows of an analysis: face (one row per face track, at most three), voice and
    text (one row per channel or speaker), then the verdict's timeline when there is one."""
    out = _face_tracks(analysis.of("face"), analysis.media.duration, most)
    out += _span_tracks(analysis.of("voice"), "voice", _voice_row(analysis), most)
    out += _span_tracks(analysis.of("text"), "text", _text_row, most)
    verdict = analysis.verdict
    if verdict is not None and verdict.timeline:
        stretches = [Stretch(e.span.start, e.span.end, e.distribution if e.label else None,
                             tuple(e.evidence), None if e.label else "abstained")
                     for e in verdict.timeline]
        out.append(Track("verdict", "verdict", tuple(_bounded(stretches, most))))
    return out


def _face_tracks(records: list[Evidence], duration: float, most: int) -> list[Track]:
    faces = [r for r in records if isinstance(r, FaceEvidence)]
    if not faces:
        return []
    window = max(_median_step(faces), duration / most if duration > 0 else 0.0)
    runs = face_runs(faces, window=window) if window > 0 else face_runs(faces)
    by_track: dict[int, list[FaceRun]] = defaultdict(list)
    for run in runs:
        by_track[run.track].append(run)
    busiest = sorted(by_track, key=lambda t: -len(by_track[t]))[:3]
    gaps = [Stretch(r.span.start, r.span.end, None, (r.id,), r.reason)
            for r in faces if not r.decided]
    rows = []
    for track in sorted(busiest):
        name = "face" if len(by_track) == 1 else f"face #{track}"
        stretches = [Stretch(r.start, r.end, mean_distribution(x.distribution for x in r.records
                                                                if x.distribution), tuple(r.ids))
                     for r in by_track[track]]
        rows.append(Track(name, "face", tuple(_bounded(stretches + gaps, most))))
    return rows or [Track("face", "face", tuple(gaps))]


def _median_step(faces: list[FaceEvidence]) -> float:
    """The typical time between sampled frames (the width a single face record is drawn)."""
    widths = [r.span.duration for r in faces if r.decided and r.span.duration > 0]
    return float(np.median(widths)) if widths else 0.0


def _voice_row(analysis: Analysis):
    roles = {t.channel: t.role for t in analysis.turns if t.role}

    def row(record: Evidence) -> str:
        channel = getattr(record, "channel", None)
        if channel is None:
            return "voice"
        return f"voice ({roles[channel]})" if channel in roles else f"voice ch{channel}"

    return row


def _text_row(record: Evidence) -> str:
    speaker = getattr(record, "speaker", None)
    channel = getattr(record, "channel", None)
    if speaker:
        return f"text ({speaker})"
    return "text" if channel is None else f"text ch{channel}"


def _span_tracks(records: list[Evidence], modality: str, row_of, most: int) -> list[Track]:
    rows: dict[str, list[Stretch]] = defaultdict(list)
    for r in records:
        note = None if r.distribution else (r.reason or "no emotion estimate")
        rows[row_of(r)].append(Stretch(r.span.start, r.span.end, r.distribution, (r.id,), note))
    names = sorted(rows, key=lambda n: (n != modality, n))[:4]
    return [Track(n, modality, tuple(_bounded(rows[n], most))) for n in names]


def _bounded(stretches: list[Stretch], most: int) -> list[Stretch]:
    """Merge neighbouring stretches into windows when there are more than ``most`` of them."""
    stretches = sorted(stretches, key=lambda s: s.start)
    if len(stretches) <= most:
        return stretches
    end = max(s.end for s in stretches)
    window = window_for(end, most)
    groups: dict[int, list[Stretch]] = defaultdict(list)
    for s in stretches:
        groups[math.floor(s.start / window + 1e-9)].append(s)
    out = []
    for group in groups.values():
        decided = [s for s in group if s.distribution]
        dist = mean_distribution(s.distribution for s in decided)  # type: ignore[misc]
        ids = tuple(i for s in group for i in s.ids)
        out.append(Stretch(group[0].start, max(s.end for s in group), dist, ids,
                           None if dist else group[0].note))
    return out


def grid(stretches: Iterable[Stretch], edges: np.ndarray) -> np.ndarray:
    """Each bin's overlap-weighted mean distribution, shape ``(len(edges) - 1, 7)`` over
    :data:`~affectgraph.labels.LABELS`; bins no stretch with a distribution covers are 0."""
    n = len(edges) - 1
    total = np.zeros((n, len(LABELS)))
    weight = np.zeros(n)
    for s in stretches:
        if not s.distribution:
            continue
        vector = np.array([s.distribution.get(label, 0.0) for label in LABELS])
        lo = max(0, int(np.searchsorted(edges, s.start, side="right")) - 1)
        hi = min(n, int(np.searchsorted(edges, s.end, side="left")))
        for i in range(lo, max(hi, lo + 1)):
            share = min(s.end, edges[i + 1]) - max(s.start, edges[i])
            if share <= 0 and s.end > s.start:
                continue
            w = share if s.end > s.start else 1.0
            total[i] += w * vector
            weight[i] += w
    covered = weight > 0
    total[covered] /= weight[covered, None]
    return total


def grid_edges(duration: float, most: int = 300, finest: float = 0.1) -> np.ndarray:
    """Bin edges over ``[0, duration]``: bins of ``finest`` s, or wider to stay under ``most``."""
    width = max(finest, duration / most) if duration > 0 else finest
    n = max(1, math.ceil(duration / width - 1e-9))
    return np.linspace(0.0, n * width, n + 1)
