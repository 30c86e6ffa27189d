"""Run an evaluation: plan the items, predict those not cached, score, write the outputs.

:func:`run_eval` validates everything up front (the task, the manifest's rows, the output folder,
the predictor's availability) before any model loads or anything is written. Predictions are
made in batches and cached per item (:mod:`affectgraph.evals.cache`), so an interrupted run,
rerun with the same command, computes only the rest. The outputs are written into a hidden
sibling folder and renamed into ``out`` when complete: ``out`` is never half-written.

**Workers.** ``workers > 1`` predicts in that many *processes* (spawned), each building its own
predictor from the picklable :class:`~affectgraph.evals.predictors.PredictorSpec` and loading its
models once (face and voice models in well under a second, MiniLM in about two). Processes rather
than threads because much of each specialist's per-item work (decoding, cropping, voice
activity, openSMILE's wrapper, nade) holds the GIL; each model runs on ``threads`` threads.
The parent alone writes the cache and draws the progress bar.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

import affectgraph
from affectgraph.errors import AffectGraphError, ConfigError, InputError
from affectgraph.evals.cache import ResultCache, default_folder, item_key, run_key
from affectgraph.evals.predictors import (
    Prediction,
    Predictor,
    PredictorInfo,
    PredictorOptions,
    PredictorSpec,
    predictor_entry,
)
from affectgraph.evals.splits import EvalItem, Plan, make_plan
from affectgraph.evals.task import EvalModality, LoadedTask
from affectgraph.labels import Emotion
from affectgraph.media import IMAGE_SUFFIXES

ABLATION = ("face", "voice", "text", "av")


class RunOptions(BaseModel):
    """How a run goes: ``modality`` (default: the task's), ``labels`` (restrict the label set),
    ``limit`` (a seeded sample of that many test items), ``seed``, ``workers`` (processes),
    ``resume`` (reuse cached per-item results; False recomputes them), ``cache`` (folder of the
    per-item cache, default ``$AFFECTGRAPH_HOME/evals``), ``data`` (the bundled data folder),
    ``predictor`` (registry name, default: the modality's), ``progress`` (draw a bar) and
    ``command`` (the command line, recorded in the outputs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modality: EvalModality | None = None
    labels: tuple[Emotion, ...] | None = None
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    workers: int = Field(default=1, ge=1, le=64)
    resume: bool = True
    cache: Path | None = None
    data: Path | None = None
    predictor: str | None = None
    progress: bool = True
    command: str | None = None


class EvalInterrupted(AffectGraphError):
    """A run stopped by the user; what was predicted is cached."""


@dataclass(frozen=True)
class RunResult:
    """A finished run: where its outputs are, its metrics (as in metrics.json) and predictions."""

    out: Path
    metrics: dict[str, Any]
    predictions: tuple[Prediction, ...]


def run_eval(
    task: LoadedTask,
    out: Path,
    *,
    options: RunOptions | None = None,
    predictor_options: PredictorOptions | None = None,
    predictor: Predictor | None = None,
    console: Console | None = None,
) -> RunResult:
    """Evaluate ``task`` and write metrics.json, predictions.csv, confusion.png and report.md
    into ``out``. ``predictor`` overrides the registry (in this process: ``workers`` must be 1).

    Raises :class:`~affectgraph.errors.InputError` for a bad manifest (every bad row listed) or
    output folder, :class:`~affectgraph.errors.ConfigError` for an unusable task or predictor,
    :class:`EvalInterrupted` on Ctrl-C (the items done are cached).
    """
    options = options or RunOptions()
    predictor_options = predictor_options or PredictorOptions()
    plan = make_plan(task, modality=options.modality, labels=options.labels,
                     limit=options.limit, seed=options.seed, root=options.data)
    check_out(out)
    spec = _spec(plan, options, predictor_options)
    revision = predictor.info.revision if predictor else predictor_entry(spec.name).revision(spec)
    partial = _partial(out)
    metrics, predictions = _run_into(partial, plan, spec, revision, options, predictor, console)
    publish(partial, out)
    return RunResult(out=out, metrics=metrics, predictions=tuple(predictions))


def run_ablation(
    task: LoadedTask,
    out: Path,
    *,
    options: RunOptions | None = None,
    predictor_options: PredictorOptions | None = None,
    console: Console | None = None,
) -> dict[str, RunResult]:
    """Evaluate each modality alone and the whole graph (``av``) on the same items, each into
    ``out/<modality>/``, with ``ablation.json`` and ``ablation.md`` side by side in ``out``."""
    from affectgraph.evals.report import write_ablation

    options = options or RunOptions()
    predictor_options = predictor_options or PredictorOptions()
    def plan_for(modality: str) -> Plan:
        return make_plan(task, modality=modality, labels=options.labels, limit=options.limit,
                         seed=options.seed, root=options.data)

    first = plan_for("text")  # any item kind plans for text: check the kind before the others
    if not any(e.item.path and e.item.path.suffix.lower() not in IMAGE_SUFFIXES
               for e in first.items):
        raise ConfigError(f"--ablation compares the modalities of clips; task {task.name} holds "
                          "no video or audio")
    plans = {m: first if m == "text" else plan_for(m) for m in ABLATION}
    check_out(out)
    specs = {m: _spec(p, options.model_copy(update={"modality": m}), predictor_options)
             for m, p in plans.items()}
    revisions = {m: predictor_entry(s.name).revision(s) for m, s in specs.items()}  # fail fast
    partial = _partial(out)
    partial.mkdir(parents=True)
    results = {}
    for m, plan in plans.items():
        metrics, predictions = _run_into(partial / m, plan, specs[m], revisions[m], options,
                                         None, console)
        results[m] = RunResult(out=out / m, metrics=metrics, predictions=tuple(predictions))
    write_ablation(partial, {m: r.metrics for m, r in results.items()})
    publish(partial, out)
    return results


def _spec(plan: Plan, options: RunOptions, predictor_options: PredictorOptions) -> PredictorSpec:
    cropped = predictor_options.face_cropped or plan.task.task.face_cropped
    return PredictorSpec.model_validate({
        "name": options.predictor or plan.modality, "modality": plan.modality,
        "labels": plan.labels,
        "options": predictor_options.model_copy(update={"face_cropped": cropped,
                                                        "seed": options.seed})})


# -- predicting, with the cache -------------------------------------------------------------------

def _run_into(folder: Path, plan: Plan, spec: PredictorSpec, revision: str, options: RunOptions,
              predictor: Predictor | None, console: Console | None
              ) -> tuple[dict[str, Any], list[Prediction]]:
    from affectgraph.evals.report import write_outputs

    task = plan.task
    # affectgraph's version too: a new release recomputes what older code predicted
    key = run_key({"task": task.name, "version": task.task.version, "source": task.task.source,
                   "spec": _key_spec(spec), "revision": revision,
                   "affectgraph": affectgraph.__version__})
    cache = ResultCache.open(options.cache or default_folder(), task.name, key,
                             fresh=not options.resume)
    try:
        keys = [item_key(e) for e in plan.items]
        done = cache.found(keys)
        todo = [e for e, k in zip(plan.items, keys, strict=True) if k not in done]
        if todo:
            cache.save_info(_predict(todo, spec, predictor, options, cache, len(plan.items),
                                     console))
            done = cache.found(keys)
        info = cache.info() or (predictor.info if predictor else None)
    finally:
        cache.close()
    if info is None:
        raise RuntimeError(f"the cache {cache.path} holds results but no predictor record")
    predictions = [done[k] for k in keys]
    metrics = write_outputs(folder, plan, predictions, info, command=options.command)
    return metrics, predictions


def _key_spec(spec: PredictorSpec) -> dict[str, Any]:
    """The spec as it keys the cache: without ``aggregator`` when it is the default (fusion),
    so that results cached before that option existed are still found."""
    dumped = spec.model_dump()
    if dumped["options"].get("aggregator") == "fusion":
        del dumped["options"]["aggregator"]
    return dumped


def _predict(todo: list[EvalItem], spec: PredictorSpec, predictor: Predictor | None,
             options: RunOptions, cache: ResultCache, total: int,
             console: Console | None) -> PredictorInfo:
    if predictor is not None and options.workers > 1:
        raise ConfigError("a predictor object runs in this process: use workers=1, or register "
                          "it and pass its name")
    chunks = list(_chunks(todo, 64 if spec.modality == "text" else 8))
    label = f"{spec.name} ({spec.modality})"
    with _bar(console, options.progress, label, total, total - len(todo)) as advance:
        try:
            if options.workers == 1:
                model = predictor or predictor_entry(spec.name).build(spec)
                for chunk in chunks:
                    _store(cache, chunk, *_timed(model, chunk))
                    advance(len(chunk))
                return model.info
            return _in_processes(chunks, spec, options.workers, cache, advance)
        except KeyboardInterrupt:
            left = len(cache.found([item_key(e) for e in todo]))
            raise EvalInterrupted(f"interrupted: {total - len(todo) + left} of {total} items "
                                  "are done and cached; run the same command to resume") from None


def _timed(model: Predictor, chunk: list[EvalItem]) -> tuple[list[Prediction], float]:
    started = time.perf_counter()
    predictions = model.predict(chunk)
    return predictions, time.perf_counter() - started


def _store(cache: ResultCache, chunk: list[EvalItem], predictions: list[Prediction],
           seconds: float) -> None:
    if [p.id for p in predictions] != [e.id for e in chunk]:
        raise RuntimeError("the predictor returned predictions out of order or missing some")
    each = seconds / len(chunk)
    cache.put((item_key(e), p.model_copy(update={"seconds": each}))
              for e, p in zip(chunk, predictions, strict=True))


def _chunks(items: Sequence[EvalItem], size: int) -> Iterator[list[EvalItem]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _in_processes(chunks: list[list[EvalItem]], spec: PredictorSpec, workers: int,
                  cache: ResultCache, advance: Any) -> PredictorInfo:
    info: PredictorInfo | None = None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(spec.model_dump_json(),)) as pool:
        pending: dict[Future[Any], list[EvalItem]] = {}
        queue = iter(chunks)
        try:
            for chunk in _take(queue, 2 * workers):
                pending[pool.submit(_worker_predict, chunk)] = chunk
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    chunk = pending.pop(future)
                    info, predictions, seconds = future.result()
                    _store(cache, chunk, predictions, seconds)
                    advance(len(chunk))
                    for nxt in _take(queue, 1):
                        pending[pool.submit(_worker_predict, nxt)] = nxt
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    assert info is not None
    return info


def _take(queue: Iterator[list[EvalItem]], n: int) -> list[list[EvalItem]]:
    return [chunk for _, chunk in zip(range(n), queue, strict=False)]


# Each worker process holds the one predictor it built: process-local state, set once by the
# pool's initializer, never shared (the parent process never sets it).
_WORKER: list[Predictor] = []


def _init_worker(spec_json: str) -> None:
    spec = PredictorSpec.model_validate_json(spec_json)
    limit_threads(spec.options.threads)
    _WORKER.append(predictor_entry(spec.name).build(spec))


def _worker_predict(chunk: list[EvalItem]) -> tuple[PredictorInfo, list[Prediction], float]:
    model = _WORKER[0]
    predictions, seconds = _timed(model, chunk)
    return model.info, predictions, seconds


def limit_threads(threads: int) -> None:
    """Run torch on ``threads`` threads (for commands and worker processes, never on import)."""
    import torch

    torch.set_num_threads(threads)


# -- output folders -------------------------------------------------------------------------------

OUTPUT_MARKERS = ("metrics.json", "ablation.json")


def check_out(out: Path) -> None:
    """Refuse an output folder that holds something other than a previous evaluation."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).is_file()
                                                      for m in OUTPUT_MARKERS):
        raise InputError(f"--out {out} holds files that are not an evaluation's; choose an empty "
                         "or new folder")


def _partial(out: Path) -> Path:
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    return partial


def publish(partial: Path, out: Path) -> None:
    """Move the finished outputs into ``out``, replacing a previous evaluation there."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)


@contextlib.contextmanager
def _bar(console: Console | None, enabled: bool, label: str, total: int,
         done: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over items (or nothing); the callback advances it by n items."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console or Console(stderr=True), disable=not enabled) as progress:
        task = progress.add_task(label, total=total, completed=done)
        yield lambda n: progress.advance(task, n)
