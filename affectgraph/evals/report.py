"""The outputs of a run: metrics.json, predictions.csv, confusion.png and report.md.

``metrics.json`` holds the headline metrics (``n``, ``war``, ``uar``, ``macro_f1``,
``weighted_f1``), ``per_class`` precision/recall/F1/support, ``confusion`` (true labels as rows,
predicted labels as columns, plus an ``abstained`` column when the predictor abstained),
``seconds_per_item`` (compute per item, model loading excluded), ``coverage`` (share answered),
``reasoning`` (:mod:`affectgraph.evals.reasoning`, or ``null``) and how it was measured: task,
split, predictor revision, labels, seed, limit, command and date.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from affectgraph.evals.answers import answer_scores
from affectgraph.evals.metrics import score
from affectgraph.evals.predictors import Prediction, PredictorInfo
from affectgraph.evals.reasoning import JUDGE_NOTE, reasoning_scores
from affectgraph.evals.splits import Plan, describe

ABSTAINED = "abstained"
HEADLINE = ("war", "uar", "macro_f1", "weighted_f1")
NAMES = {"war": "WAR", "uar": "UAR", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}


def build_metrics(plan: Plan, predictions: Sequence[Prediction], info: PredictorInfo, *,
                  command: str | None = None) -> dict[str, Any]:
    """Everything metrics.json holds, as a JSON-able dict."""
    import affectgraph

    truth = [e.item.label.value for e in plan.items]
    answered = [p.label or ABSTAINED for p in predictions]
    scores = score(truth, answered, labels=list(plan.labels))
    reasoning = reasoning_scores(truth, predictions)
    abstained = sum(1 for p in predictions if p.abstained)
    task = plan.task.task
    return {
        "n": scores.n,
        **{k: round(getattr(scores, k), 6) for k in HEADLINE},
        "per_class": {c: {k: round(v, 6) if isinstance(v, float) else v
                          for k, v in s.model_dump().items()}
                      for c, s in scores.per_class.items()},
        "confusion": confusion(truth, answered, plan.labels),
        "seconds_per_item": round(sum(p.seconds for p in predictions) / len(predictions), 6),
        "coverage": round(1 - abstained / len(predictions), 6),
        "abstained": abstained,
        "abstention_reasons": dict(Counter(_short(p.reason) for p in predictions
                                           if p.abstained).most_common(5)),
        "reasoning": reasoning.model_dump() if reasoning else None,
        "answers": answer_scores(truth, predictions, plan.labels),
        "task": {"name": task.task, "version": task.version, "description": task.description,
                 "source": task.source, "label_scheme": task.label_scheme,
                 "file": str(plan.task.file) if plan.task.file else None},
        "modality": plan.modality,
        "labels": list(plan.labels),
        "split": describe(plan),
        "predictor": info.model_dump(),
        "seed": plan.seed,
        "limit": plan.limit,
        "command": command,
        "date": datetime.now(UTC).date().isoformat(),
        "affectgraph_version": affectgraph.__version__,
        "notes": notes(plan, info),
    }


def confusion(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
              ) -> dict[str, Any]:
    """Counts with true labels as rows and predictions (and abstentions) as columns."""
    columns = list(labels) + ([ABSTAINED] if ABSTAINED in predicted else [])
    where = {c: n for n, c in enumerate(columns)}
    matrix = [[0] * len(columns) for _ in labels]
    for row, label in enumerate(labels):
        for t, p in zip(truth, predicted, strict=True):
            if t == label and p in where:
                matrix[row][where[p]] += 1
    return {"labels": list(labels), "predicted": columns, "matrix": matrix}


def notes(plan: Plan, info: PredictorInfo) -> list[str]:
    """Warnings a reader needs: a trained part learned from this task's data set."""
    dataset = plan.task.task.dataset
    return [f"The {part} ({info.components.get(part, part)}) learned from {dataset}, which this "
            "task draws from: unless its training held this task's test items out, these scores "
            "are optimistic. (Retrieval always leaves each item's test groups out.)"
            for part, sets in info.trained_on.items() if dataset and dataset in sets]


def _short(reason: str | None) -> str:
    text = reason or "no reason given"
    return text if len(text) <= 80 else text[:77] + "..."


# -- files ---------------------------------------------------------------------------------------

def write_outputs(folder: Path, plan: Plan, predictions: Sequence[Prediction],
                  info: PredictorInfo, *, command: str | None = None) -> dict[str, Any]:
    """Write the four outputs into ``folder`` (created) and return the metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = build_metrics(plan, predictions, info, command=command)
    write_predictions(folder / "predictions.csv", plan, predictions)
    plot_confusion(folder / "confusion.png", metrics)
    (folder / "report.md").write_text(report_markdown(metrics), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def write_predictions(path: Path, plan: Plan, predictions: Sequence[Prediction]) -> None:
    """One row per item: id, label, prediction, confidence, abstained, reason, fold, seconds,
    the probability of each label, and the grounded/total rationale steps."""
    columns = ["id", "label", "prediction", "confidence", "abstained", "reason", "fold",
               "seconds", *(f"p_{c}" for c in plan.labels), "steps", "grounded_steps"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for entry, p in zip(plan.items, predictions, strict=True):
            writer.writerow([
                entry.id, entry.item.label.value, p.label or "", f"{p.confidence:.6f}",
                int(p.abstained), p.reason or "", entry.fold, f"{p.seconds:.6f}",
                *(f"{p.distribution.get(c, 0.0):.6f}" for c in plan.labels),
                len(p.steps), sum(1 for s in p.steps if s.grounded)])


def plot_confusion(path: Path, metrics: Mapping[str, Any]) -> None:
    """The confusion matrix as a PNG: row-normalised colours (recall), counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    conf = metrics["confusion"]
    counts = np.array(conf["matrix"], dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = (1.1 * len(conf["predicted"]) + 2, 0.9 * len(conf["labels"]) + 2)
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{int(n)}", ha="center", va="center",
                color="white" if rates[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(conf["predicted"])), conf["predicted"], rotation=40, ha="right")
    ax.set_yticks(range(len(conf["labels"])), conf["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{metrics['task']['name']} / {metrics['modality']} "
                 f"(WAR {metrics['war']:.3f}, UAR {metrics['uar']:.3f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_markdown(m: Mapping[str, Any]) -> str:
    """report.md: how it was measured, the headline and per-class tables, the confusion matrix,
    reasoning metrics when present and the notes."""
    task, split, pred = m["task"], m["split"], m["predictor"]
    lines = [f"# {task['name']} (v{task['version']}): {m['modality']}", "",
             f"Measured {m['date']} with affectgraph {m['affectgraph_version']}"
             + (f": `{m['command']}`" if m["command"] else "."), "",
             f"- task: {task['description']} ({task['source']})",
             f"- split: {split['kind']}{_definition(split)}: {split['folds']} fold(s), "
             f"{split['scored_items']} of {split['test_items']} test items scored"
             + (f" (seeded sample, seed {m['seed']})" if m["limit"] else ""),
             f"- labels: {', '.join(m['labels'])}",
             f"- predictor: {pred['name']} (revision {pred['revision']})"]
    lines += [f"  - {k}: {v}" for k, v in pred["components"].items()]
    lines += ["", "## Results", "",
              "| n | WAR | UAR | macro-F1 | weighted-F1 | coverage | s/item |",
              "|---|---|---|---|---|---|---|",
              f"| {m['n']} | {m['war']:.3f} | {m['uar']:.3f} | {m['macro_f1']:.3f} | "
              f"{m['weighted_f1']:.3f} | {m['coverage']:.3f} | {m['seconds_per_item']:.4f} |",
              "", "## Per class", "", "| label | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    lines += [f"| {c} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
              f"{s['support']} |" for c, s in m["per_class"].items()]
    lines += ["", "## Confusion", "", "![confusion matrix](confusion.png)", "",
              _confusion_table(m["confusion"])]
    if m["abstained"]:
        lines += ["", f"{m['abstained']} item(s) abstained: " + "; ".join(
            f"{reason} ({n})" for reason, n in m["abstention_reasons"].items())]
    if m["reasoning"]:
        lines += _reasoning_section(m["reasoning"])
    if m.get("answers"):
        lines += _answers_section(m["answers"])
    if m["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in m["notes"]]]
    return "\n".join(lines) + "\n"


def _definition(split: Mapping[str, Any]) -> str:
    extra = {k: v for k, v in split["definition"].items() if k != "kind"}
    return f" ({', '.join(f'{k}: {v}' for k, v in extra.items())})" if extra else ""


def _confusion_table(conf: Mapping[str, Any]) -> str:
    head = "| true \\ predicted | " + " | ".join(conf["predicted"]) + " |"
    rule = "|---" * (len(conf["predicted"]) + 1) + "|"
    rows = [f"| {label} | " + " | ".join(str(n) for n in row) + " |"
            for label, row in zip(conf["labels"], conf["matrix"], strict=True)]
    return "\n".join([head, rule, *rows])


def _reasoning_section(r: Mapping[str, Any]) -> list[str]:
    return ["", "## Reasoning", "",
            "| items with steps | steps | grounding | hallucination rate | Rec-S | Rea-S | CoT-S |",
            "|---|---|---|---|---|---|---|",
            f"| {r['items_with_steps']} of {r['items']} | {r['steps']} | {r['grounding']:.3f} | "
            f"{r['hallucination_rate']:.3f} | {r['rec_s']:.3f} | {r['rea_s']:.3f} | "
            f"{r['cot_s']:.3f} |", "",
            f"CoT-S = {r['alpha']:g} x Rec-S + {1 - r['alpha']:g} x Rea-S, as MME-Emotion. "
            + JUDGE_NOTE]


def _answers_section(a: Mapping[str, Any]) -> list[str]:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return ["", "## The aggregator model's own answers", "",
            "Before the fusion fallback: an answer that is not the answer JSON counts as wrong; "
            "grounding is over every step it wrote, as the verifier judged them.", "",
            "| answers | JSON valid | used | WAR | UAR | steps | grounding | hallucination rate "
            "| Rea-S | s/answer |", "|---|---|---|---|---|---|---|---|---|---|",
            f"| {a['n']} | {a['json_valid']:.3f} | {a['used']:.3f} | {a['war']:.3f} | "
            f"{a['uar']:.3f} | {a['steps']} | {num(a['grounding'])} | "
            f"{num(a['hallucination_rate'])} | {a['rea_s']:.3f} | {a['seconds_per_answer']:.2f} |"]


def write_ablation(folder: Path, runs: Mapping[str, Mapping[str, Any]]) -> None:
    """ablation.json and ablation.md: the headline metrics of each modality side by side."""
    rows = {m: {k: r[k] for k in ("n", *HEADLINE, "coverage", "seconds_per_item")}
            for m, r in runs.items()}
    (folder / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    first = next(iter(runs.values()))
    lines = [f"# Ablation: {first['task']['name']}", "", f"Measured {first['date']}"
             + (f" with `{first['command']}`" if first["command"] else "") + ".", "",
             "| modality | n | WAR | UAR | macro-F1 | weighted-F1 | coverage | s/item |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| [{m}]({m}/report.md) | {r['n']} | {r['war']:.3f} | {r['uar']:.3f} | "
              f"{r['macro_f1']:.3f} | {r['weighted_f1']:.3f} | {r['coverage']:.3f} | "
              f"{r['seconds_per_item']:.4f} |" for m, r in rows.items()]
    (folder / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
