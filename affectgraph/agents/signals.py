"""From evidence records to what fusion reads: per-modality :class:`Signals` over a span.

For the whole clip or one stretch of it (a timeline entry), each modality's records that overlap
the stretch are pooled:

- **face**: the mean distribution of the sampled frames with a face; reliability = the share of
  sampled frames (over the stretch) in which a face was found;
- **voice**: the mean of the turns' distributions weighted by their seconds in the stretch;
  reliability = those seconds;
- **text**: the mean of the segments' distributions weighted by their words; reliability = the
  number of words.

The retrieval vote of a modality is the mean of the votes of the exemplar groups retrieved for
those records, weighted the same way. Records without a distribution (no face, too short,
empty text) add nothing but lower the face reliability.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from affectgraph.agents.fusion import Signals
from affectgraph.evidence import (
    Distribution,
    FaceEvidence,
    TimeSpan,
    TranscriptEvidence,
    VoiceEvidence,
)
from affectgraph.labels import LABELS
from affectgraph.retrieval.search import TEMPERATURE, vote
from affectgraph.verdict import Exemplar, expand_ids


@dataclass(frozen=True)
class Pooled:
    """A modality over a stretch: its :class:`Signals` and the records and votes behind them."""

    signals: Signals
    records: tuple[str, ...]
    voted: tuple[str, ...]


def votes_of(exemplars: Iterable[Exemplar], temperature: float = TEMPERATURE
             ) -> dict[str, Distribution]:
    """The label vote of each retrieval, keyed by the evidence ids it was made for (``voice:3``,
    ``face:0-9, face:12``)."""
    groups: dict[str, list[Exemplar]] = defaultdict(list)
    for e in exemplars:
        groups[e.evidence_id].append(e)
    out = {}
    for key, found in groups.items():
        sims = np.array([[e.similarity for e in found]])
        codes = np.array([[LABELS.index(e.label) for e in found]])
        out[key] = dict(zip(LABELS, map(float, vote(sims, codes, temperature)[0]), strict=True))
    return out


def pool(records: Sequence[object], votes: Mapping[str, Distribution],
         span: TimeSpan | None = None) -> dict[str, Pooled]:
    """Per-modality pooled signals of the records overlapping ``span`` (all when ``None``)."""
    return Pooler(records, votes).pool(span)


class Pooler:
    """:func:`pool` over many stretches of one clip's records, each in time ~ its records.

    Built once: the vote of each record, and the records sorted by start, so a stretch looks
    only at those that can overlap it (a 30-minute video has ~10,000 records and ~500 turns).
    """

    def __init__(self, records: Sequence[object], votes: Mapping[str, Distribution]) -> None:
        self.records = list(records)
        self.votes = votes
        self.covered = {i: key for key in votes for i in expand_ids(key.split(", "))}
        spans: list[TimeSpan] = [r.span for r in self.records]  # type: ignore[attr-defined]
        self.order = sorted(range(len(spans)), key=lambda i: spans[i].start)
        self.starts = [spans[i].start for i in self.order]
        self.longest = max((s.duration for s in spans), default=0.0)

    def pool(self, span: TimeSpan | None = None) -> dict[str, Pooled]:
        """Per-modality pooled signals of the records overlapping ``span`` (all when ``None``)."""
        by_modality: dict[str, list[object]] = defaultdict(list)
        for r in self._near(span):
            if span is None or _weight(r, span) > 0:
                by_modality[r.modality].append(r)  # type: ignore[attr-defined]
        out = {}
        for modality, found in by_modality.items():
            pooled = _pool(modality, found, self.votes, self.covered, span)
            if pooled is not None:
                out[modality] = pooled
        return out

    def _near(self, span: TimeSpan | None) -> list[object]:
        """The records that may overlap ``span``, in their given order."""
        if span is None:
            return self.records
        low = bisect.bisect_left(self.starts, span.start - self.longest)
        high = bisect.bisect_right(self.starts, span.end)
        return [self.records[i] for i in sorted(self.order[low:high])]


def _pool(modality: str, records: list[object], votes: Mapping[str, Distribution],
          covered: Mapping[str, str], span: TimeSpan | None) -> Pooled | None:
    rated = [(r, _weight(r, span)) for r in records if r.distribution]  # type: ignore[attr-defined]
    rated = [(r, w) for r, w in rated if w > 0]
    model = _mean([(r.distribution, w) for r, w in rated])  # type: ignore[attr-defined]
    voted = [(votes[covered[r.id]], w, covered[r.id]) for r, w in rated  # type: ignore[attr-defined]
             if r.id in covered]  # type: ignore[attr-defined]
    vote_dist = _mean([(v, w) for v, w, _ in voted])
    if modality == "face":
        frames = sum(_frames(r, span) for r in records)
        seen = sum(_frames(r, span) for r, _ in rated)
        reliability = seen / frames if frames else 0.0
    else:
        reliability = float(sum(w for _, w in rated))
    if model is None and vote_dist is None:
        return None
    return Pooled(Signals(model, vote_dist, reliability),
                  tuple(r.id for r, _ in rated),  # type: ignore[attr-defined]
                  tuple(dict.fromkeys(key for _, _, key in voted)))


def _weight(record: object, span: TimeSpan | None) -> float:
    """How much a record counts in a stretch: frames (face), seconds (voice), words (text)."""
    own: TimeSpan = record.span  # type: ignore[attr-defined]
    share = 1.0 if span is None else _share(own, span)
    if isinstance(record, FaceEvidence):
        return share * record.frames
    if isinstance(record, VoiceEvidence):
        return share * own.duration if own.duration > 0 else share
    if isinstance(record, TranscriptEvidence):
        return share * max(1, len(record.text.split())) if record.text.strip() else 0.0
    return share


def _share(own: TimeSpan, span: TimeSpan) -> float:
    if own.duration <= 0:
        return 1.0 if span.contains(own.start) else 0.0
    return own.overlap(span) / own.duration


def _frames(record: object, span: TimeSpan | None) -> float:
    frames = getattr(record, "frames", 1)
    return frames if span is None else frames * _share(record.span, span)  # type: ignore[attr-defined]


def _mean(weighted: Sequence[tuple[Distribution, float]]) -> Distribution | None:
    total = sum(w for _, w in weighted)
    if not weighted or total <= 0:
        return None
    return {c: sum(d.get(c, 0.0) * w for d, w in weighted) / total for c in LABELS}
