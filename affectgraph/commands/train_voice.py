"""``affectgraph train voice``: train the voice heads and score them with actors held out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from affectgraph.evals.metrics import Scores
from affectgraph.heads.combination import Comparison
from affectgraph.heads.voice_training import (
    VOTE_K,
    VoiceHeadOptions,
    VoiceTrainingReport,
    train_voice_head,
)

SETTINGS = {"single": "single clip", "speaker": "speaker-normalised"}
CAPTION = ("single clip: each clip alone; speaker-normalised: each clip's functionals "
           "standardised with its actor's other 7 clips (never itself, no labels).")


def train_voice(data: Path | None = None, out: Path | None = None, evaluate: bool = False,
                *, encoder: str | None = None, console: Console | None = None
                ) -> VoiceTrainingReport:
    """Train the single-clip and speaker-adaptive voice heads on RAVDESS speech + TESS from
    ``data`` (default: ``$AFFECTGRAPH_DATA`` or ``../shared/data``), write them to ``out`` (a
    heads folder; default: the package's) and print their leave-one-actor-out RAVDESS scores;
    with ``evaluate``, also the recall per class and the recipe each fold chose. Returns the
    report. ``encoder`` (``whisper-base``): train the heads that also read the Whisper
    encoder's embedding of each clip (:mod:`affectgraph.speech_encoding`).

    The first run computes eGeMAPS functionals of 844 clips and of two speed-perturbed copies
    (about 5 minutes on one core, cached under ``$AFFECTGRAPH_HOME/features``); the nested
    evaluation then takes about 2 minutes.
    """
    import sklearn.linear_model  # noqa: F401  (loads its OpenMP runtime, so the limit covers it)
    from threadpoolctl import threadpool_limits

    console = console or Console()
    with threadpool_limits(1), console.status("voice heads") as status:
        def progress(stage: str, done: int, total: int) -> None:
            status.update(f"voice heads: {stage} {done}/{total}")

        options = VoiceHeadOptions(encoder=encoder) if encoder else None
        _, report = train_voice_head(data, out=out, options=options, progress=progress)
    assert report.evaluation is not None
    evaluation = {"single": report.evaluation.single, "speaker": report.evaluation.speaker}
    console.print(_table(evaluation, report))
    if evaluate:
        console.print(_comparison(report.evaluation.comparison))
        console.print(_recalls(evaluation))
        console.print(_recipes(report))
    console.print(f"voice heads written to {report.folder} (temperatures "
                  f"{report.temperatures['single']:.2f} / {report.temperatures['speaker']:.2f}; "
                  f"chosen: {report.recipe}; clips: "
                  + ", ".join(f"{k} {v}" for k, v in report.counts.items()) + ")")
    return report


def _table(scores: dict[str, Scores], report: VoiceTrainingReport) -> Table:
    folds = report.evaluation.folds if report.evaluation else 0
    table = Table(title=f"Voice emotion, RAVDESS speech, {folds} held-out actor folds, 7 classes",
                  caption=CAPTION)
    for column in ("setting", "n", "WAR", "UAR", "macro-F1", "weighted-F1"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    for setting, s in scores.items():
        table.add_row(SETTINGS[setting], str(s.n), f"{s.war:.3f}", f"{s.uar:.3f}",
                      f"{s.macro_f1:.3f}", f"{s.weighted_f1:.3f}")
    return table


def _comparison(comparison: dict[str, Comparison]) -> Table:
    table = Table(title="Head, kNN vote and their mixture (same held-out actor folds)",
                  caption=f"kNN vote: the {VOTE_K} nearest original clips of the training actors "
                          "and TESS (standardised functionals; speaker-normalised: speaker-z "
                          "functionals); combination: (1 - w) x head + w x vote, w (range over "
                          "folds) chosen per fold by inner cross-validation on the training "
                          "actors")
    for column in ("setting", "method", "n", "WAR", "UAR", "macro-F1", "weighted-F1", "w"):
        table.add_column(column, justify="left" if column in ("setting", "method") else "right")
    for setting, c in comparison.items():
        for method, s in c.rows().items():
            table.add_row(SETTINGS[setting], method, str(s.n), f"{s.war:.3f}", f"{s.uar:.3f}",
                          f"{s.macro_f1:.3f}", f"{s.weighted_f1:.3f}",
                          c.weight_text if method == "combination" else "")
    return table


def _recalls(scores: dict[str, Scores]) -> Table:
    table = Table(title="Recall per class (held out)")
    table.add_column("class")
    for setting in scores:
        table.add_column(SETTINGS[setting], justify="right")
    for label in next(iter(scores.values())).labels:
        table.add_row(label, *(f"{s.per_class[label].recall:.2f}" for s in scores.values()))
    return table


def _recipes(report: VoiceTrainingReport) -> Table:
    table = Table(title="Recipe chosen by the inner cross-validation of each held-out fold")
    for column in ("fold", "single (C, TESS weight)", "speaker-z (C, TESS weight)", "alpha"):
        table.add_column(column, justify="right")
    recipes = report.evaluation.recipes if report.evaluation else []
    for k, r in enumerate(recipes, start=1):
        table.add_row(str(k), f"{r.single[0]:g}, {r.single[1]:g}",
                      f"{r.speaker[0]:g}, {r.speaker[1]:g}", f"{r.alpha:g}")
    return table
