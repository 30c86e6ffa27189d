"""``affectgraph train text``: train the text head and score it on MELD, EmoryNLP and GoEmotions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from affectgraph.evals.metrics import Scores
from affectgraph.heads.text import shipped_head_path
from affectgraph.heads.text_training import RETRIEVAL_K, TextHeadReport, train_text_head
from affectgraph.heads.text_training import Progress as ProgressCallback

NAMES = {"calibration_holdout": "calibration rows (train)", "meld_dev": "MELD dev (7 classes)",
         "emorynlp_dev": "EmoryNLP dev (5 classes)", "goemotions_test": "GoEmotions test (Ekman)"}
CAPTION = ("head: the MiniLM text head; nade: the previous default text emotion model. "
           "EmoryNLP has no disgust or surprise: predictions are restricted to its five classes.")


def train_text(data: Path | None = None, out: Path | None = None, evaluate: bool = False,
               *, console: Console | None = None) -> TextHeadReport:
    """Train the text head on GoEmotions, MELD and EmoryNLP train from ``data`` (default:
    ``$AFFECTGRAPH_DATA`` or ``../shared/data``), write it to ``out`` (default: the head shipped
    in the package) and print its scores on MELD dev, EmoryNLP dev and GoEmotions test; with
    ``evaluate``, also nade's scores and the head's per-class F1. Returns the report.

    The first run embeds about 70k texts with MiniLM (about 15 minutes on one core, cached under
    ``$AFFECTGRAPH_HOME/features``); fine-tuning MiniLM's top two layers then takes 10-25
    minutes and re-embedding with them about 5 (cached per tuned revision), the head 1-2.
    """
    import torch

    torch.set_num_threads(1)
    console = console or Console()
    folder = out or shipped_head_path()
    with _bars(console) as progress:
        head, report = train_text_head(data, out=folder, progress=progress)
    rows = {"head": {"calibration_holdout": report.holdout} | report.evaluation}
    if evaluate:
        with console.status("scoring nade on the same texts"):
            rows["nade"] = _nade_scores(data)
    console.print(_table(rows))
    if evaluate:
        console.print(_f1_per_class(report.evaluation))
        console.print(_comparison(report))
    console.print(f"text head written to {folder} (temperature {head.temperature:.2f}, "
                  f"{sum(report.counts.values())} training texts: "
                  + ", ".join(f"{k} {v}" for k, v in report.counts.items()) + ")")
    return report


@contextlib.contextmanager
def _bars(console: Console) -> Iterator[ProgressCallback]:
    columns = (TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks or bars.tasks[tasks[stage]].total != total:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done)

        yield report


def _nade_scores(data: Path | None) -> dict[str, Scores]:
    from affectgraph.datasets import load_dataset
    from affectgraph.evals.metrics import score
    from affectgraph.heads.text_training import EVAL_SETS, SCHEME_OF
    from affectgraph.labels import SCHEMES
    from affectgraph.tools.text_emotion import NadeTextEmotion

    model = NadeTextEmotion.load()
    out = {}
    for key, (name, split) in EVAL_SETS.items():
        items = load_dataset(name, root=data, split=split)
        allowed = {e.value for e in SCHEMES[SCHEME_OF[name]].values() if e is not None}
        predicted = [max(allowed, key=lambda k: d[k]) if d else "neutral"
                     for d in model.predict([i.text or "" for i in items])]
        out[key] = score([i.label.value for i in items], predicted)
    return out


def _table(rows: dict[str, dict[str, Scores]]) -> Table:
    table = Table(title="Text emotion on texts the head never trained on",
                  caption=CAPTION if len(rows) > 1 else None)
    for column in ("data set", "model", "n", "WAR", "UAR", "macro-F1", "weighted-F1"):
        table.add_column(column, justify="left" if column in ("data set", "model") else "right")
    for key, name in NAMES.items():
        for model, scores in rows.items():
            if key in scores:
                s = scores[key]
                table.add_row(name, model, str(s.n), f"{s.war:.3f}", f"{s.uar:.3f}",
                              f"{s.macro_f1:.3f}", f"{s.weighted_f1:.3f}")
    return table


def _comparison(report: TextHeadReport) -> Table:
    weight = report.retrieval_weight
    table = Table(title="Head, kNN vote and their mixture (dev sets never trained on)",
                  caption=f"kNN vote: the {RETRIEVAL_K} nearest exemplars of the default text "
                          f"library; combination: (1 - w) x head + w x vote, w = {weight:g} "
                          "chosen on the calibration rows of the training data")
    for column in ("data set", "method", "n", "WAR", "UAR", "macro-F1", "weighted-F1"):
        table.add_column(column, justify="left" if column in ("data set", "method") else "right")
    for key, comparison in report.comparison.items():
        for method, s in comparison.rows().items():
            table.add_row(NAMES[key], method, str(s.n), f"{s.war:.3f}", f"{s.uar:.3f}",
                          f"{s.macro_f1:.3f}", f"{s.weighted_f1:.3f}")
    return table


def _f1_per_class(evaluation: dict[str, Scores]) -> Table:
    table = Table(title="Head F1 per class")
    table.add_column("class")
    for key in evaluation:
        table.add_column(NAMES[key].split(" (")[0], justify="right")
    labels = next(iter(evaluation.values())).labels
    for label in labels:
        table.add_row(label, *(f"{s.per_class[label].f1:.2f}" if label in s.per_class and
                               s.per_class[label].support else "-" for s in evaluation.values()))
    return table
