"""``affectgraph train fusion``: train the fusion aggregator on held-out predictions, and
measure it against each single modality with the speaker held out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from affectgraph.agents.fusion import shipped_path
from affectgraph.agents.fusion_eval import AvReport, TableReport, av_report, train_final
from affectgraph.evals.metrics import Scores

NOTES = ("Log-linear pool of each modality's model distribution and retrieval vote, weights "
         "softplus(a + b * reliability); trained on cross-fitted held-out predictions "
         "(affectgraph.agents.fusion_data) made into real, pseudo-multimodal and single-modality "
         "samples (affectgraph.agents.fusion_training).")


def train_fusion(data: Path | None = None, out: Path | None = None, evaluate: bool = False,
                 *, table: Path | None = None, console: Console | None = None) -> TableReport:
    """Build (or read, with ``table``) the held-out table, train the fusion model, write it to
    ``out`` (default: the package's) and print its cross-fitted scores; with ``evaluate``, also
    run the 7 RAVDESS audio-visual clips through the graph with their actor held out.

    Building the table retrains the voice head once per held-out speaker (about an hour on one
    core); pass a table written earlier to skip that.
    """
    from affectgraph.agents.fusion_data import (
        held_out_predictions,
        load_table,
        provenance,
        read_header,
        save_table,
    )

    console = console or Console()
    if table is not None and table.is_file():
        rows, header = load_table(table), read_header(table)
    else:
        with console.status("fusion table") as status:
            rows = held_out_predictions(
                data, progress=lambda stage, done, total: status.update(
                    f"fusion table: {stage} {done}/{total}"))
        header = provenance()
        if table is not None:
            save_table(rows, table, header=header)
            console.print(f"held-out table written to {table}")
    with console.status("training fusion (5-fold cross-fit, then all)"):
        model, report = train_final(rows, trained_on=header.get("sources", {}), notes=NOTES)
    target = model.save(out or shipped_path())
    console.print(table_view(report))
    console.print(f"fusion model written to {target} (abstains below p={report.threshold:.2f}: "
                  f"{report.coverage:.0%} of held-out samples kept, WAR {report.selective_war:.3f}"
                  f" on them; expected calibration error {report.ece:.3f})")
    if evaluate:
        with console.status("audio-visual clips") as status:
            av = av_report(rows, data, progress=lambda s: status.update(s))
        console.print(av_view(av))
    return report


def _scores_table(title: str, scores: Mapping[str, Scores], caption: str = "") -> Table:
    table = Table(title=title, caption=caption or None, title_justify="left")
    for column in ("source", "n", "WAR", "UAR", "macro-F1"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, s in scores.items():
        table.add_row(source, str(s.n), f"{s.war:.3f}", f"{s.uar:.3f}", f"{s.macro_f1:.3f}")
    return table


def table_view(report: TableReport) -> Table:
    """One table: per sample set, fusion against each single source."""
    table = Table(title="Fusion vs single sources, cross-fitted (speakers / people held out)",
                  title_justify="left")
    for column in ("samples", "source", "n", "WAR", "UAR", "macro-F1"):
        table.add_column(column, justify="right" if column in ("n", "WAR", "UAR", "macro-F1")
                         else "left")
    for comparison in report.comparisons:
        for n, (source, s) in enumerate(comparison.scores.items()):
            table.add_row(comparison.name if n == 0 else "", source, str(s.n), f"{s.war:.3f}",
                          f"{s.uar:.3f}", f"{s.macro_f1:.3f}", end_section=n == len(
                              comparison.scores) - 1)
    return table


def av_view(report: AvReport) -> Table:
    clips = report.clips
    grounded = [c.grounding for c in clips if c.grounding is not None]
    seconds = [c.seconds * 1000 for c in clips]
    caption = (f"grounding score mean {sum(grounded) / max(1, len(grounded)):.3f} "
               f"(min {min(grounded, default=0):.3f}) over {sum(c.steps for c in clips)} steps, "
               f"{sum(c.rejected for c in clips)} rejected; aggregation + verification "
               f"{sum(seconds) / max(1, len(seconds)):.1f} ms per clip (max {max(seconds, default=0):.1f})")
    return _scores_table("RAVDESS audio-visual clips (actor 05 held out of heads, fusion and "
                         "libraries), whole graph", report.scores(), caption)
