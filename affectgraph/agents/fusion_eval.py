"""How well fusion does, measured two ways, always with the speaker held out.

1. **Held-out table** (:func:`table_report`): the cross-fitted fused predictions of
   :func:`~affectgraph.agents.fusion_training.cross_fit` against each single source (a
   modality's model or its retrieval vote) on the same samples: the development speech clips
   (RAVDESS and TESS: voice + words, real pairs), dialogue text, faces, and the
   pseudo-multimodal samples.
2. **Audio-visual clips through the whole graph** (:func:`av_report`): the 7 RAVDESS clips of
   actor 05 analysed end to end with actor 05 held out of everything learned or retrieved: a
   voice head retrained without him, a fusion model trained without his rows, and his speech
   left out of the voice library. Fusion's verdict is compared with each modality's own answer
   from the same run, with the grounding score of the rationales and the seconds spent
   aggregating and verifying.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from affectgraph.agents.fusion import FusionModel
from affectgraph.agents.fusion_data import HeldOut
from affectgraph.agents.fusion_training import (
    CrossFit,
    choose_threshold,
    cross_fit,
    expected_calibration_error,
    fit,
    make_samples,
    scores_by,
)
from affectgraph.evals.metrics import Scores, score
from affectgraph.labels import LABELS

AV_ACTOR = "05"


class _Where(TypedDict, total=False):
    """Which held-out samples a comparison scores (the filters of
    :func:`~affectgraph.agents.fusion_training.scores_by`)."""

    kind: str
    dataset: str
    modalities: frozenset[str]


@dataclass(frozen=True)
class Comparison:
    """Fusion and single sources scored on the same samples."""

    name: str
    scores: dict[str, Scores]


@dataclass(frozen=True)
class TableReport:
    comparisons: list[Comparison]
    threshold: float
    ece: float
    coverage: float
    selective_war: float


def table_report(rows: Sequence[HeldOut], fitted: CrossFit | None = None) -> TableReport:
    """Cross-fitted fusion on the table, against each single source."""
    fitted = fitted or cross_fit(make_samples(rows))
    threshold = choose_threshold(fitted)
    groups: list[tuple[str, _Where]] = [
        ("RAVDESS speech clips (voice + words)", {"kind": "real", "dataset": "ravdess_speech"}),
        ("TESS clips (voice + words)", {"kind": "real", "dataset": "tess"}),
        ("RAVDESS speech clips, voice alone", {"kind": "single", "dataset": "ravdess_speech",
                                               "modalities": frozenset({"voice"})}),
        ("MELD dev (text)", {"kind": "single", "dataset": "meld"}),
        ("EmoryNLP dev (text)", {"kind": "single", "dataset": "emorynlp"}),
        ("faces_web (face)", {"kind": "single", "dataset": "faces_web"}),
        ("FER2013 (face)", {"kind": "single", "dataset": "faces_fer2013"}),
        ("pseudo-multimodal (speech + face)", {"kind": "pseudo", "dataset": "ravdess_speech"}),
    ]
    comparisons = [Comparison(name, found) for name, where in groups
                   if (found := scores_by(fitted, **where))]
    kept = fitted.confidence >= threshold
    return TableReport(comparisons, threshold, expected_calibration_error(fitted),
                       float(kept.mean()), float(fitted.correct[kept].mean()) if kept.any() else 0)


def train_final(rows: Sequence[HeldOut], *, trained_on: dict[str, str] | None = None,
                notes: str = "") -> tuple[FusionModel, TableReport]:
    """The shipped model: fit on every sample, threshold and scores from the cross-fit."""
    samples = make_samples(rows)
    report = table_report(rows, cross_fit(samples))
    params = fit(samples)
    speech = next((c for c in report.comparisons if c.name.startswith("RAVDESS speech clips (")),
                  None)
    metrics: dict[str, float | str] = {"abstain_below": report.threshold,
                                       "ece": round(report.ece, 4)}
    if speech is not None:
        metrics |= {f"ravdess_speech_{k}": round(v, 4) for k, v in (
            ("fusion_war", speech.scores["fusion"].war),
            ("fusion_uar", speech.scores["fusion"].uar),
            ("fusion_macro_f1", speech.scores["fusion"].macro_f1))}
    params = params.model_copy(update={"abstain_below": report.threshold, "metrics": metrics,
                                       "trained_on": trained_on or {}, "notes": notes})
    return FusionModel(params), report


# -- the audio-visual clips through the graph ---------------------------------------------------

@dataclass
class ClipResult:
    clip: str
    truth: str
    fused: str | None
    single: dict[str, str | None]
    grounding: float | None
    steps: int
    rejected: int
    seconds: float


@dataclass
class AvReport:
    clips: list[ClipResult] = field(default_factory=list)

    def scores(self) -> dict[str, Scores]:
        truth = [c.truth for c in self.clips]
        out = {"fusion": score(truth, [c.fused or "abstained" for c in self.clips])}
        for source in sorted({s for c in self.clips for s in c.single}):
            out[source] = score(truth, [c.single.get(source) or "none" for c in self.clips])
        return out


def av_report(rows: Sequence[HeldOut], data: Path | None = None,
              progress: Callable[[str], None] = lambda s: None) -> AvReport:
    """The 7 RAVDESS audio-visual clips through the graph, actor 05 held out of everything."""
    from affectgraph.agents.fusion_data import fold_voice_head
    from affectgraph.agents.signals import pool, votes_of
    from affectgraph.api import Analyzer
    from affectgraph.datasets import load_dataset
    from affectgraph.graphs.context import AnalyzeOptions
    from affectgraph.heads.voice_training import VoiceHeadOptions, voice_data

    held_out = f"ravdess_speech/actor{AV_ACTOR}"
    progress(f"training a voice head without {held_out}")
    speech = [*load_dataset("ravdess_speech", root=data), *load_dataset("tess", root=data)]
    options = VoiceHeadOptions()
    head = fold_voice_head(voice_data(speech, speeds=options.speeds), {held_out}, options)
    progress(f"training fusion without {held_out}")
    model, _ = train_final([r for r in rows if r.group != held_out])
    report = AvReport()
    with tempfile.TemporaryDirectory() as folder:
        fusion_path = model.save(Path(folder) / "fusion.json")
        defaults = AnalyzeOptions()
        analyzer = Analyzer(AnalyzeOptions(
            retrieval=defaults.retrieval.model_copy(update={"exclude_groups": (held_out,)}),
            aggregate=defaults.aggregate.model_copy(update={"fusion_model": str(fusion_path)})))
        analyzer.toolbox.provide(("voice-head", None), head)
        for item in load_dataset("ravdess_av", root=data):
            progress(f"analysing {item.id}")
            assert item.path is not None  # every item of a media data set has its file
            analysis = analyzer.analyze(item.path)
            verdict = analysis.verdict
            assert verdict is not None
            pooled = pool(analysis.evidence, votes_of(analysis.exemplars))
            single = {f"{m} {source}": _top(getattr(p.signals, source))
                      for m, p in pooled.items() for source in ("model", "vote")}
            steps = len(verdict.rationale) + len(verdict.rejected)
            report.clips.append(ClipResult(
                clip=item.id, truth=item.label.value, fused=verdict.label, single=single,
                grounding=verdict.grounding, steps=steps, rejected=len(verdict.rejected),
                seconds=analysis.seconds.get("aggregate", 0) + analysis.seconds.get("verify", 0)))
    return report


def _top(dist: dict[str, float] | None) -> str | None:
    return max(LABELS, key=lambda c: dist.get(c, 0.0)) if dist else None
