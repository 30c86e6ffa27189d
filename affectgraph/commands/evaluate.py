"""``affectgraph eval``: measure affectgraph on a labelled manifest or a declared task.

::

    affectgraph eval MANIFEST.csv --modality {face,voice,text,av} --out DIR
    affectgraph eval TASK [--out DIR]          # a task name or a task .yaml file
    affectgraph eval list | validate [FILE...] | compare DIR1 DIR2

``eval MANIFEST`` and ``eval TASK`` are the ``run`` subcommand: a first argument that is not a
subcommand's name is run (``affectgraph eval run TARGET`` works too).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from affectgraph.agents.mllm.aggregator import AGGREGATOR_HELP
from affectgraph.commands import user_errors
from affectgraph.errors import ConfigError


class _RunByDefault(TyperGroup):
    """A group whose first argument, when it names no subcommand, is the target of ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's click Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help="Measure affectgraph on labelled data: a manifest CSV or a declared task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
# Tables go to stdout; wide enough not to clip columns when stdout is a pipe or a file.
out_console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)


@app.command("run")
@user_errors
def run(
    target: Annotated[str, typer.Argument(
        help="A manifest CSV (label + path or text; optional speaker, transcript, start, end), "
             "a task name (affectgraph eval list) or a task .yaml file.")],
    modality: Annotated[str | None, typer.Option(
        help="face, voice, text (one specialist) or av (the whole graph); required for a "
             "manifest, default: the task's.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: eval-results/TASK-MODALITY).")] = None,
    labels: Annotated[str | None, typer.Option(
        help="Restrict the label set, e.g. angry,happy,neutral,sad (predictions are made over "
             "it).")] = None,
    face_cropped: Annotated[bool, typer.Option(
        "--face-cropped", help="Images are already-cropped faces: no detection.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes, each loading its models.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of --limit's sample and the dummy.")] = 0,
    limit: Annotated[int | None, typer.Option(
        help="Score a seeded random sample of this many test items.")] = None,
    ablation: Annotated[bool, typer.Option(
        "--ablation", help="Run face, voice and text alone and the whole graph (av) on the "
                           "same items, side by side.")] = False,
    predictor: Annotated[str | None, typer.Option(
        help="Predictor to evaluate instead of the modality's (e.g. dummy).")] = None,
    head: Annotated[bool | None, typer.Option(
        "--head/--no-head", help="Use the modality's trained head (default: as the specialist "
                                 "does: face without, voice and text with).")] = None,
    refit_head: Annotated[bool, typer.Option(
        "--refit-head", help="Voice: the shipped head learned from every RAVDESS and TESS "
                             "speaker; score instead a head trained by its recipe without each "
                             "fold's test speakers (a minute or two per fold).")] = False,
    retrieval: Annotated[bool, typer.Option(
        "--retrieval/--no-retrieval", help="Mix in the vote of the nearest exemplars.")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads per model.")] = 1,
    aggregator: Annotated[str, typer.Option(
        help="Who writes the av verdict: " + AGGREGATOR_HELP + " The MLLM's own answers "
             "(JSON validity, labels, grounding) are scored too.")] = "fusion",
    data: Annotated[Path | None, typer.Option(
        help="The data folder of bundled sets (default: $AFFECTGRAPH_DATA or ../shared/data).")
    ] = None,
    cache: Annotated[Path | None, typer.Option(
        help="Per-item result cache folder (default: $AFFECTGRAPH_HOME/evals).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--restart", help="Reuse cached per-item results (default), or recompute.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate a manifest or a task: metrics.json, predictions.csv, confusion.png, report.md.

    An interrupted run (Ctrl-C) exits with status 130; the same command resumes it."""
    from affectgraph.evals.predictors import PredictorOptions
    from affectgraph.evals.runner import (
        EvalInterrupted,
        RunOptions,
        limit_threads,
        run_ablation,
        run_eval,
    )
    from affectgraph.labels import parse_label_set

    task = _target(target, modality, face_cropped)
    chosen = "av" if ablation else (modality or task.task.modality)
    aggregator = _aggregator(aggregator, chosen, predictor)
    folder = out or Path("eval-results") / f"{task.name}-{'ablation' if ablation else chosen}"
    command = _command(target, {
        "modality": modality, "out": out, "labels": labels, "face_cropped": face_cropped,
        "workers": workers, "seed": seed, "limit": limit, "ablation": ablation,
        "predictor": predictor, "head": head, "refit_head": refit_head, "retrieval": retrieval,
        "threads": threads,
        "aggregator": aggregator, "data": data})
    options = RunOptions.model_validate({
        "modality": modality, "labels": parse_label_set(labels) if labels else None,
        "limit": limit, "seed": seed, "workers": workers, "resume": resume, "cache": cache,
        "data": data, "predictor": predictor, "progress": not quiet, "command": command})
    if refit_head and chosen != "voice":
        raise ConfigError(f"--refit-head refits the voice head; this run scores {chosen}: "
                          "drop --refit-head or evaluate a voice task")
    predictor_options = PredictorOptions(head=head, refit_head=refit_head, retrieval=retrieval,
                                         face_cropped=face_cropped, threads=threads,
                                         aggregator=aggregator)
    if predictor != "dummy" and chosen in ("text", "av") and workers == 1:
        limit_threads(threads)
    try:
        if ablation:
            results = run_ablation(task, folder, options=options,
                                   predictor_options=predictor_options, console=err)
            _print_table([r.metrics for r in results.values()])
        else:
            result = run_eval(task, folder, options=options,
                              predictor_options=predictor_options, console=err)
            _print_table([result.metrics])
    except EvalInterrupted as exc:
        err.print(str(exc))
        raise typer.Exit(130) from None
    err.print(f"outputs in {folder}")


def _target(target: str, modality: str | None, face_cropped: bool) -> Any:
    from affectgraph.evals.task import EVAL_MODALITIES, get_task, manifest_task

    if modality is not None and modality not in EVAL_MODALITIES:
        raise ConfigError(f"--modality {modality!r}: choose one of {', '.join(EVAL_MODALITIES)}")
    path = Path(target)
    if path.suffix.lower() == ".csv":
        if modality is None:
            raise ConfigError(f"{target}: a manifest needs --modality (face, voice, text or av)")
        return manifest_task(path, modality, face_cropped=face_cropped)
    return get_task(target)


def _aggregator(spelling: str, modality: str, predictor: str | None) -> str:
    """The aggregator's canonical spelling; a clear error for a bad one, or for one given to a
    run whose verdict no aggregator writes (a single specialist, another predictor)."""
    from affectgraph.agents.mllm.aggregator import parse_aggregator

    choice = parse_aggregator(spelling)  # ConfigError naming the valid spellings
    if choice.kind != "fusion" and (modality != "av" or predictor not in (None, "av")):
        what = f"--predictor {predictor}" if predictor not in (None, "av") else (
            f"--modality {modality}")
        raise ConfigError(f"--aggregator {spelling} writes the whole graph's verdict: it applies "
                          f"to the av modality (or --ablation), not to {what}")
    return choice.spelling


def _command(target: str, values: dict[str, Any]) -> str:
    defaults = {"workers": 1, "seed": 0, "retrieval": True, "threads": 1,
                "face_cropped": False, "ablation": False, "aggregator": "fusion",
                "refit_head": False}
    words = ["affectgraph", "eval", target]
    for name, value in values.items():
        if value is None or defaults.get(name) == value:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{name}")
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _print_table(runs: list[dict[str, Any]]) -> None:
    table = Table()
    for column in ("task", "modality", "n", "WAR", "UAR", "macro-F1", "weighted-F1", "coverage",
                   "s/item"):
        table.add_column(column, justify="left" if column in ("task", "modality") else "right")
    for m in runs:
        table.add_row(m["task"]["name"], m["modality"], str(m["n"]), f"{m['war']:.3f}",
                      f"{m['uar']:.3f}", f"{m['macro_f1']:.3f}", f"{m['weighted_f1']:.3f}",
                      f"{m['coverage']:.3f}", f"{m['seconds_per_item']:.4f}")
    out_console.print(table)
    for m in runs:
        if m.get("answers"):
            a = m["answers"]
            grounding = "-" if a["grounding"] is None else f"{a['grounding']:.3f}"
            out_console.print(
                f"{m['modality']} aggregator's own answers ({a['n']}): JSON valid "
                f"{a['json_valid']:.3f}, used {a['used']:.3f}, WAR {a['war']:.3f}, UAR "
                f"{a['uar']:.3f}, grounding {grounding}, {a['seconds_per_answer']:.2f} s/answer")
        if m["reasoning"]:
            r = m["reasoning"]
            out_console.print(f"{m['modality']} reasoning: grounding {r['grounding']:.3f}, "
                              f"hallucination rate {r['hallucination_rate']:.3f}, Rec-S "
                              f"{r['rec_s']:.3f}, Rea-S {r['rea_s']:.3f}, CoT-S {r['cot_s']:.3f}")


@app.command("list")
@user_errors
def list_tasks() -> None:
    """The declared tasks: name, version, modality, data, split."""
    from affectgraph.evals.task import TaskError, iter_tasks

    table = Table()
    for column in ("task", "v", "modality", "data", "split", "description"):
        table.add_column(column)
    broken = []
    for loaded in iter_tasks():
        if isinstance(loaded, TaskError):
            broken.append(str(loaded))
            continue
        t = loaded.task
        manifest = loaded.manifest_path()
        data = t.dataset or f"{t.manifest}" + (" (missing)" if manifest and not manifest.is_file()
                                               else "")
        split = t.split.kind + "".join(f" {k}={v}" for k, v in t.split.model_dump().items()
                                       if k != "kind")
        table.add_row(t.task, str(t.version), t.modality, data, split, t.description)
    out_console.print(table)
    for problem in broken:
        err.print(f"error: {problem}")


@app.command("validate")
def validate(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Task files to check (default: every declared task).")] = None,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Also load each task's data and resolve its split.")] = False,
    data: Annotated[Path | None, typer.Option(help="The data folder of bundled sets.")] = None,
) -> None:
    """Check task files: schema, names, label maps (and with --deep, data and splits).

    Each problem is printed as FILE:LINE: FIELD: MESSAGE; the exit status is 2 if any."""
    from affectgraph.errors import AffectGraphError
    from affectgraph.evals.task import TaskError, load_task_file, task_files

    paths = files or list(task_files().values())
    problems = 0
    for path in paths:
        try:
            loaded = load_task_file(path) if path.is_file() else None
            if loaded is None:
                raise TaskError([f"{path}: no such task file"])
            detail = _deep(loaded, data) if deep else ""
        except TaskError as exc:
            problems += len(exc.problems)
            for problem in exc.problems:
                print(f"error: {problem}")
            continue
        except AffectGraphError as exc:
            problems += 1
            print(f"error: {path}: {exc}")
            continue
        print(f"ok: {loaded.name} v{loaded.task.version} ({path}){detail}")
    if problems:
        raise typer.Exit(2)


def _deep(loaded: Any, data: Path | None) -> str:
    from affectgraph.evals.splits import make_plan

    manifest = loaded.manifest_path()
    if manifest is not None and not manifest.is_file():
        return f": manifest {manifest} not found (not checked)"
    plan = make_plan(loaded, root=data)
    groups = sum(len(f.held_out) for f in plan.folds)
    return (f": {len(plan.folds)} fold(s), {len(plan.items)} test items, {groups} test groups, "
            f"labels {', '.join(plan.labels)}")


@app.command("compare")
@user_errors
def compare_runs(
    first: Annotated[Path, typer.Argument(help="An evaluation's output folder.")],
    second: Annotated[Path, typer.Argument(help="Another one.")],
) -> None:
    """Print how two evaluations differ: settings, metrics, per-class F1, items."""
    from affectgraph.evals.compare import compare

    c = compare(first, second)
    if c.settings:
        table = Table(title="settings that differ")
        for column in ("setting", str(first), str(second)):
            table.add_column(column)
        for name, a, b in c.settings:
            table.add_row(name, str(a), str(b))
        out_console.print(table)
    table = Table(title="metrics")
    for column in ("metric", "A", "B", "B - A"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, a, b in c.metrics:
        table.add_row(name, f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}")
    for label, a, b in c.per_class:
        delta = f"{b - a:+.4f}" if a is not None and b is not None else "-"
        table.add_row(f"F1 {label}", _num(a), _num(b), delta)
    out_console.print(table)
    out_console.print(
        f"items in both: {c.common}; both right {c.both_right}; only A right {c.only_a}; "
        f"only B right {c.only_b}; exact McNemar p = {c.p_value:.4g}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
