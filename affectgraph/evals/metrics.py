"""Recognition metrics over canonical labels: WAR, UAR, macro/weighted F1, per class, confusion.

WAR (weighted average recall) is plain accuracy; UAR (unweighted average recall) is the mean of the
per-class recalls, the usual headline for imbalanced emotion data.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict


class ClassScores(BaseModel):
    model_config = ConfigDict(frozen=True)

    precision: float
    recall: float
    f1: float
    support: int


class Scores(BaseModel):
    """Metrics of one set of predictions."""

    model_config = ConfigDict(frozen=True)

    n: int
    war: float
    uar: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, ClassScores]
    labels: list[str]
    confusion: list[list[int]]

    def headline(self) -> str:
        return (f"n={self.n} WAR {self.war:.3f} UAR {self.uar:.3f} "
                f"macro-F1 {self.macro_f1:.3f} weighted-F1 {self.weighted_f1:.3f}")


def score(truth: Sequence[str], predicted: Sequence[str],
          labels: Sequence[str] | None = None) -> Scores:
    """Metrics of ``predicted`` against ``truth``; ``labels`` fixes the classes and their order
    (default: those present in ``truth``, in canonical order). UAR and macro-F1 average over the
    classes present in ``truth``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from affectgraph.labels import LABELS

    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    if not truth:
        raise ValueError("no items to score")
    present = set(truth)
    classes = list(labels) if labels else [c for c in LABELS if c in present] + sorted(
        present - set(LABELS))
    scored = [c for c in classes if c in present]
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=classes,
                                                 zero_division=0)
    per_class = {c: ClassScores(precision=float(p[i]), recall=float(r[i]), f1=float(f[i]),
                                support=int(s[i])) for i, c in enumerate(classes)}
    total = sum(per_class[c].support for c in scored)
    return Scores(
        n=len(truth),
        war=sum(t == q for t, q in zip(truth, predicted, strict=True)) / len(truth),
        uar=sum(per_class[c].recall for c in scored) / len(scored),
        macro_f1=sum(per_class[c].f1 for c in scored) / len(scored),
        weighted_f1=sum(per_class[c].f1 * per_class[c].support for c in scored) / total,
        per_class=per_class,
        labels=classes,
        confusion=confusion_matrix(truth, predicted, labels=classes).tolist(),
    )
