"""The fusion aggregator end to end: evidence + exemplars -> an (unverified) :class:`Verdict`.

:func:`aggregate` pools each modality's evidence (:mod:`affectgraph.agents.signals`), fuses the
pools (:class:`~affectgraph.agents.fusion.FusionModel`) for the whole clip and for each timeline
entry (a speech turn, or a fixed window when the clip has no speech), and writes the rationale
(:mod:`affectgraph.agents.rationale`). The verifier runs after it, in the graph's ``verify``
node: the aggregator's steps get no free pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.agents.fusion import Fused, FusionModel, valence_arousal
from affectgraph.agents.rationale import NOUN, build_rationale
from affectgraph.agents.signals import Pooled, Pooler, pool, votes_of
from affectgraph.evidence import TimeSpan, Turn
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, TimelineEntry, Verdict, compact_ids

UNIFORM = {c: 1.0 / len(LABELS) for c in LABELS}
CONTRADICTION = 0.5  # two modalities each this sure of different labels make a contradiction


class AggregateOptions(BaseModel):
    """Options of the aggregation step.

    ``fusion_model``: a trained fusion model file (default: the shipped one);
    ``abstain_below``: override the model's abstention threshold (0 never abstains);
    ``window``: seconds per timeline entry when the clip has no speech turns.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fusion_model: str | None = None
    abstain_below: float | None = Field(default=None, ge=0, le=1)
    window: float = Field(default=5.0, gt=0)


def aggregate(evidence: Sequence[object], exemplars: Sequence[Exemplar], turns: Sequence[Turn],
              duration: float, model: FusionModel, *,
              options: AggregateOptions = AggregateOptions(),
              missing: Mapping[str, str] | None = None) -> Verdict:
    """The verdict for one clip. ``missing`` maps modalities without evidence to why (skipped or
    failed), so the verdict can say what it does not rest on."""
    votes = votes_of(exemplars)
    pooled = pool(evidence, votes)
    fused = model.fuse({m: p.signals for m, p in pooled.items()})
    note = _note(pooled, missing or {})
    if fused is None:
        return Verdict(label=None, distribution=UNIFORM, confidence=0.0, valence=0.0, arousal=0.0,
                       abstention="no specialist delivered usable evidence"
                                  + (f" ({note})" if note else ""), note=note)
    threshold = model.abstain_below if options.abstain_below is None else options.abstain_below
    records = {r.id: r for r in evidence}  # type: ignore[attr-defined]
    valence, arousal = valence_arousal(fused.distribution)
    abstain = fused.confidence < threshold
    return Verdict(
        label=None if abstain else fused.label,
        distribution=fused.distribution,
        confidence=fused.confidence,
        valence=valence,
        arousal=arousal,
        modality_weights=fused.weights,
        timeline=timeline(evidence, votes, turns, duration, model, options.window, threshold),
        rationale=build_rationale(records, pooled, fused, exemplars),
        abstention=_why(fused, pooled, threshold) if abstain else None,
        aggregator=f"fusion {model.revision}",
        note=note,
    )


def timeline(evidence: Sequence[object], votes: Mapping[str, dict[str, float]],
             turns: Sequence[Turn], duration: float, model: FusionModel, window: float,
             threshold: float) -> list[TimelineEntry]:
    """One entry per speech turn (in time order), or per ``window`` seconds without turns."""
    spans = sorted({t.span for t in turns}, key=lambda s: (s.start, s.end)) or [
        TimeSpan(start=t, end=min(duration, t + window))
        for t in _steps(0.0, duration, window)]
    pooler = Pooler(evidence, votes)
    out = []
    for span in spans:
        pooled = pooler.pool(span)
        fused = model.fuse({m: p.signals for m, p in pooled.items()})
        if fused is None:
            continue
        ids = [i for p in pooled.values() for i in p.records]
        out.append(TimelineEntry(span=span,
                                 label=None if fused.confidence < threshold else fused.label,
                                 distribution=fused.distribution, evidence=compact_ids(ids)))
    return out


def _steps(start: float, end: float, step: float) -> list[float]:
    n = max(1, int((end - start) // step + (1 if (end - start) % step > 1e-6 else 0)))
    return [start + i * step for i in range(n)]


def _why(fused: Fused, pooled: Mapping[str, Pooled], threshold: float) -> str:
    """Why the aggregator abstains: contradicting modalities, or evidence too weak."""
    sure = {m: max(p.signals.model.items(), key=lambda kv: kv[1])
            for m, p in pooled.items() if p.signals.model}
    sure = {m: (label, prob) for m, (label, prob) in sure.items() if prob >= CONTRADICTION}
    labels = {label for label, _ in sure.values()}
    best = f"the best label, {fused.label}, has p={fused.confidence:.2f} < {threshold:.2f}"
    if len(labels) > 1:
        said = ", ".join(f"the {m} says {NOUN[label]} (p={prob:.2f})"
                         for m, (label, prob) in sure.items())
        return f"the evidence contradicts itself: {said}; {best}"
    return f"the evidence is too weak: {best}"


def _note(pooled: Mapping[str, Pooled], missing: Mapping[str, str]) -> str | None:
    absent = {m: why for m, why in missing.items() if m not in pooled and m != "transcript"}
    if "transcript" in missing and "text" not in pooled:
        absent["text"] = missing["transcript"]
    if not absent:
        return None
    rests = ", ".join(sorted(pooled)) or "nothing"
    parts = "; ".join(f"{m}: {_short(why)}" for m, why in absent.items())
    return f"without {parts}; the verdict rests on {rests}"


def _short(why: str, most: int = 100) -> str:
    """A failure's message cut to its start (the full one is in ``Analysis.failures``)."""
    return why if len(why) <= most else why[:most].rstrip() + "..."
