"""From a task to the items a run scores: labelled items, speaker-independent folds, a plan.

A :class:`Fold` has a test part and a training part that share no group (speaker, person or, for
sets without speakers, the item itself). Predictors here are fixed models, so the training part
is not trained on: it is what the predictor may retrieve exemplars from, and each scored item
carries its fold's test groups as ``held_out``, which retrieval must exclude.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from affectgraph.datasets import Item, load_dataset, read_manifest, speaker_folds
from affectgraph.errors import ConfigError, InputError, unknown_name
from affectgraph.evals.task import (
    Given,
    LeaveGroupsOut,
    LeaveOneGroupOut,
    LoadedTask,
    SpeakerFolds,
    Split,
)
from affectgraph.labels import LABELS, SCHEMES, Emotion


@dataclass(frozen=True)
class Fold:
    """One test part, the groups it holds (``held_out``) and the size of its training part: every
    other item whose group is not held out."""

    name: str
    test: tuple[Item, ...]
    held_out: frozenset[str]
    train_size: int


@dataclass(frozen=True)
class EvalItem:
    """An item to predict, the fold it is scored in, and the groups retrieval must leave out."""

    item: Item
    fold: str
    held_out: frozenset[str]

    @property
    def id(self) -> str:
        return self.item.id


@dataclass(frozen=True)
class Plan:
    """What one run scores: the task, modality, label set (the classes predicted, in order),
    the folds and the items (all test items, or a seeded sample of ``limit`` of them)."""

    task: LoadedTask
    modality: str
    labels: tuple[str, ...]
    folds: tuple[Fold, ...]
    items: tuple[EvalItem, ...]
    limit: int | None
    seed: int

    @property
    def media(self) -> bool:
        return any(e.item.path is not None for e in self.items)


def make_plan(
    task: LoadedTask,
    *,
    modality: str | None = None,
    labels: Sequence[Emotion] | None = None,
    limit: int | None = None,
    seed: int = 0,
    root: Path | None = None,
) -> Plan:
    """Load the task's items (validating a manifest up front), split them and pick the items to
    score. ``modality`` overrides the task's; ``labels`` restricts its label set (predictions are
    made over the restricted set); ``limit`` scores a seeded random sample of the test items."""
    modality = modality or task.task.modality
    allowed = _label_set(task, labels)
    items = load_items(task, modality=modality, labels=allowed, root=root)
    if not items:
        raise InputError(f"task {task.name}: no items with the labels {', '.join(allowed or ())}")
    _check_kind(task, items, modality)
    folds = resolve(items, task.task.split)
    scored = [EvalItem(i, f.name, f.held_out) for f in folds for i in f.test]
    if limit is not None and limit < len(scored):
        keep = sorted(random.Random(seed).sample(range(len(scored)), limit))
        scored = [scored[n] for n in keep]
    return Plan(task=task, modality=modality, labels=_classes(task, allowed), folds=tuple(folds),
                items=tuple(scored), limit=limit, seed=seed)


def _classes(task: LoadedTask, allowed: Sequence[Emotion] | None) -> tuple[str, ...]:
    """The classes predicted: the restricted set, else every canonical label the task's
    scheme reaches, else all canonical labels (never just those present: that would leak)."""
    if allowed:
        return tuple(e.value for e in allowed)
    scheme = task.task.label_scheme
    reached = {e.value for e in SCHEMES[scheme].values() if e} if scheme else set(LABELS)
    return tuple(c for c in LABELS if c in reached)


def _label_set(task: LoadedTask, labels: Sequence[Emotion] | None) -> tuple[Emotion, ...] | None:
    declared = task.task.labels
    if labels is None:
        return declared
    if declared is not None:
        outside = [e.value for e in labels if e not in declared]
        if outside:
            raise ConfigError(f"--labels {', '.join(outside)}: not among task {task.name}'s "
                              f"labels ({', '.join(e.value for e in declared)})")
    return tuple(labels)


def load_items(task: LoadedTask, *, modality: str, labels: Sequence[Emotion] | None = None,
               root: Path | None = None) -> list[Item]:
    """The task's labelled items with labels in ``labels`` (all when ``None``)."""
    manifest = task.manifest_path()
    if manifest is not None:
        if not manifest.is_file():
            raise InputError(f"task {task.name} reads the manifest {manifest}, which does not "
                             "exist; write it (label,path|text[,speaker]) or edit the task file")
        return read_manifest(manifest, modality=modality, labels=labels,
                             scheme=task.task.label_scheme)
    assert task.task.dataset is not None
    items = load_dataset(task.task.dataset, root=root)
    return [i for i in items if labels is None or i.label in labels]


def _check_kind(task: LoadedTask, items: list[Item], modality: str) -> None:
    if modality != "text" and any(i.path is None for i in items):
        raise ConfigError(f"task {task.name} holds texts: only --modality text applies "
                          f"(got {modality})")


# -- splits --------------------------------------------------------------------------------

def resolve(items: Sequence[Item], split: Split) -> list[Fold]:
    """The folds of ``split`` over ``items``. A fold's training part is every item outside its
    test groups, so no group is ever on both sides."""
    sizes = Counter(i.group for i in items)
    if isinstance(split, SpeakerFolds):
        if len(sizes) < split.folds:
            raise ConfigError(f"speaker_folds: {split.folds} folds but only {len(sizes)} groups")
        parts = speaker_folds(items, split.folds)
        return [_fold(f"fold{n + 1}", part, sizes) for n, part in enumerate(parts)]
    if isinstance(split, LeaveOneGroupOut):
        by_group: dict[str, list[Item]] = {}
        for item in items:
            by_group.setdefault(item.group, []).append(item)
        return [_fold(group, part, sizes) for group, part in sorted(by_group.items())]
    if isinstance(split, LeaveGroupsOut):
        return [_fold("test", _named_groups(items, split.test), sizes)]
    if isinstance(split, Given):
        test = [i for i in items if i.split == split.test]
        if not test:
            splits = sorted({i.split for i in items if i.split})
            raise unknown_name("split of this data set", split.test, splits)
        return [_fold(split.test, test, sizes)]
    raise ConfigError(f"unknown split kind {split!r}")


def _fold(name: str, test: Sequence[Item], sizes: Counter[str]) -> Fold:
    held_out = frozenset(i.group for i in test)
    outside = sum(sizes.values()) - sum(sizes[g] for g in held_out)
    return Fold(name=name, test=tuple(test), held_out=held_out, train_size=outside)


def _named_groups(items: Sequence[Item], names: Sequence[str]) -> list[Item]:
    known = {i.group for i in items} | {i.speaker for i in items if i.speaker}
    for name in names:
        if name not in known:
            raise unknown_name("speaker or group", name, sorted(known))
    wanted = set(names)
    return [i for i in items if i.group in wanted or i.speaker in wanted]


def describe(plan: Plan) -> dict[str, object]:
    """The split as metrics.json records it."""
    split = plan.task.task.split
    sizes = [len(f.test) for f in plan.folds]
    return {
        "kind": split.kind,
        "definition": split.model_dump(),
        "folds": len(plan.folds),
        "test_items": sum(sizes),
        "scored_items": len(plan.items),
        "train_items": {"min": min(f.train_size for f in plan.folds),
                        "max": max(f.train_size for f in plan.folds)},
        "test_groups": sum(len(f.held_out) for f in plan.folds),
        "fold_sizes": {"min": min(sizes), "max": max(sizes)},
    }
