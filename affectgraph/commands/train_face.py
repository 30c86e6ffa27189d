"""``affectgraph train face``: train the face head and compare it with fer, people held out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from affectgraph.evals.metrics import Scores
from affectgraph.heads.combination import Comparison
from affectgraph.heads.face import HEAD_DIR
from affectgraph.heads.face_training import VOTE_K, FaceHeadOptions, compare_face, train_face_head

METHODS = {"fer": "fer", "fer-views": "fer x10", "head": "head"}
CAPTION = ("fer: fer on the face crop; fer x10: averaged over 10 shifted and mirrored views; "
           "head: the face head on those, people held out. No face found counts as wrong.")


def train_face(data: Path | None = None, out: Path | None = None, evaluate: bool = False,
               *, console: Console | None = None) -> dict[str, Scores]:
    """Train the face head on FER2013 dev crops and faces_web photos from ``data`` (default:
    ``$AFFECTGRAPH_DATA`` or ``../shared/data``) and write it to ``out`` (default: the head
    shipped in the package). Prints the held-out scores of the head (and, with ``evaluate``, of
    fer with one and with 10 views, plus the head's per-class recall) as a table; returns them.

    Cross-validation always runs: it calibrates the head's temperature and gives the scores its
    manifest records. Features are cached under ``$AFFECTGRAPH_HOME/features``; about a minute
    on one core.
    """
    import torch

    torch.set_num_threads(1)
    console = console or Console()
    options = FaceHeadOptions()
    with console.status("reading faces and cross-validating the face head"):
        head, scores = train_face_head(data, options=options)
    folder = head.save(out or HEAD_DIR)
    methods = list(METHODS) if evaluate else ["head"]
    console.print(_table(scores, methods, options))
    if evaluate:
        console.print(_recalls(scores))
        with console.status("fer, the kNN vote and their mixture"):
            comparison = compare_face(data, options=options)
        console.print(_comparison(comparison))
    console.print(f"face head written to {folder} (temperature {head.temperature:.2f})")
    return scores


def _table(scores: dict[str, Scores], methods: list[str], options: FaceHeadOptions) -> Table:
    table = Table(title=f"Face expression, {options.folds}-fold cross-validation, "
                        "faces_web folds by person", caption=CAPTION if len(methods) > 1 else None)
    for column in ("data set", "method", "n", "WAR", "UAR", "macro-F1", "weighted-F1"):
        table.add_column(column, justify="left" if column in ("data set", "method") else "right")
    for key, s in scores.items():
        dataset, method = key.split("/")
        if method in methods:
            table.add_row(dataset, METHODS[method], str(s.n), f"{s.war:.3f}", f"{s.uar:.3f}",
                          f"{s.macro_f1:.3f}", f"{s.weighted_f1:.3f}")
    return table


def _comparison(comparison: dict[str, Comparison]) -> Table:
    table = Table(title="fer (the default face path), the kNN vote and their mixture",
                  caption=f"kNN vote: the {VOTE_K} nearest exemplars (fer embeddings) of the "
                          "other folds and of the other set; combination: (1 - w) x fer + w x "
                          "vote, w (range over folds) chosen per fold on the same set's other "
                          "folds (crops and detected faces apart); RAVDESS frames: w chosen on "
                          "faces_web, library of everything. No face found counts as wrong.")
    for column in ("data set", "method", "n", "WAR", "UAR", "macro-F1", "weighted-F1", "w"):
        table.add_column(column, justify="left" if column in ("data set", "method") else "right")
    for name, c in comparison.items():
        for method, s in c.rows().items():
            table.add_row(name, "fer" if method == "head" else method, str(s.n), f"{s.war:.3f}",
                          f"{s.uar:.3f}", f"{s.macro_f1:.3f}", f"{s.weighted_f1:.3f}",
                          c.weight_text if method == "combination" else "")
    return table


def _recalls(scores: dict[str, Scores]) -> Table:
    keys = [k for k in scores if k.endswith(("/fer-views", "/head"))]
    table = Table(title="Recall per class (held out)")
    table.add_column("class")
    for key in keys:
        dataset, method = key.split("/")
        table.add_column(f"{dataset.removeprefix('faces_')}\n{METHODS[method]}", justify="right")
    labels = scores[keys[0]].labels
    for label in labels:
        table.add_row(label, *(f"{scores[k].per_class[label].recall:.2f}"
                               if label in scores[k].per_class else "-" for k in keys))
    return table
