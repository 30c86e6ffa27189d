"""Compare two evaluation runs: settings that differ, metric deltas, and item-level changes.

Item-level: on the items both runs scored (same id), how many each got right alone, and the
exact McNemar test of those discordant pairs (two-sided binomial, p = 0.5): a small p-value
says the difference in accuracy is unlikely to be chance on these items.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectgraph.errors import InputError
from affectgraph.evals.report import HEADLINE

SETTINGS = ("task.name", "task.version", "modality", "labels", "split.kind", "predictor.name",
            "predictor.revision", "seed", "limit", "n")


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side. ``settings``: (name, a, b) for settings that differ;
    ``metrics``: (name, a, b) headline metrics; ``per_class``: (label, F1 a, F1 b);
    ``common``: items in both; ``only_a`` / ``only_b``: items only that run got right;
    ``p_value``: exact McNemar test of those."""

    a: Path
    b: Path
    settings: list[tuple[str, Any, Any]]
    metrics: list[tuple[str, float, float]]
    per_class: list[tuple[str, float | None, float | None]]
    common: int
    both_right: int
    only_a: int
    only_b: int
    p_value: float


def compare(a: Path, b: Path) -> Comparison:
    """Compare the evaluation output folders ``a`` and ``b``."""
    ma, mb = _metrics(a), _metrics(b)
    settings = [(k, _get(ma, k), _get(mb, k)) for k in SETTINGS if _get(ma, k) != _get(mb, k)]
    metrics = [(k, ma[k], mb[k]) for k in (*HEADLINE, "coverage", "seconds_per_item")]
    labels = list(dict.fromkeys([*ma["per_class"], *mb["per_class"]]))
    per_class = [(c, _f1(ma, c), _f1(mb, c)) for c in labels]
    right_a, right_b = _right(a), _right(b)
    common = sorted(set(right_a) & set(right_b))
    only_a = sum(1 for i in common if right_a[i] and not right_b[i])
    only_b = sum(1 for i in common if right_b[i] and not right_a[i])
    both = sum(1 for i in common if right_a[i] and right_b[i])
    return Comparison(a=a, b=b, settings=settings, metrics=metrics, per_class=per_class,
                      common=len(common), both_right=both, only_a=only_a, only_b=only_b,
                      p_value=mcnemar(only_a, only_b))


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value of the discordant counts (1.0 when there are none)."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def _metrics(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    if not path.is_file():
        raise InputError(f"{folder}: no metrics.json; give the --out folder of an evaluation")
    return json.loads(path.read_text(encoding="utf-8"))


def _right(folder: Path) -> dict[str, bool]:
    path = folder / "predictions.csv"
    if not path.is_file():
        raise InputError(f"{folder}: no predictions.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["id"]: row["prediction"] == row["label"] for row in csv.DictReader(fh)}


def _get(metrics: dict[str, Any], dotted: str) -> Any:
    value: Any = metrics
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _f1(metrics: dict[str, Any], label: str) -> float | None:
    scores = metrics["per_class"].get(label)
    return scores["f1"] if scores else None
