"""Evaluation tasks: declarative, versioned YAML files validated before anything runs.

A task names its data (a bundled set, or a manifest CSV for data the project does not ship), the
modality to evaluate, the label scheme its labels come from, the canonical labels scored, and a
**speaker-independent split**: no speaker (or other group, :attr:`~affectgraph.datasets.Item.group`)
is ever on both sides. Predictors are fixed models, so a split decides which items are scored and
which groups each scored item's predictor must not retrieve from (the groups of its test part)::

    task: ravdess_speech
    version: 1
    description: RAVDESS speech, leave one actor out
    dataset: ravdess_speech
    modality: voice
    label_scheme: ravdess
    split: {kind: leave_one_group_out}

Split kinds (:mod:`affectgraph.evals.splits` resolves them into folds):

- ``speaker_folds`` (``folds: K``): K folds of whole groups, sizes balanced; every item is
  scored once, with its fold's groups held out;
- ``leave_one_group_out``: one fold per group (leave-one-actor-out);
- ``leave_groups_out`` (``test: [names]``): the listed speakers or groups are the test part;
- ``given`` (``test: dev``): the data set's own split named ``test`` is the test part; items of
  other splits by a test speaker are dropped from the training side.

Task files live in ``affectgraph/evals/tasks/`` (shipped) and ``$AFFECTGRAPH_HOME/tasks/`` (the
user's); the file's stem is the task's name, so the registry lists names without parsing files and
loads one task when it is asked for. Errors name the file, the line and the field
(:class:`TaskError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from affectgraph.errors import ConfigError, unknown_name
from affectgraph.labels import SCHEMES, Emotion
from affectgraph.models import cache_home

EvalModality = Literal["face", "voice", "text", "av"]
EVAL_MODALITIES: tuple[str, ...] = ("face", "voice", "text", "av")
RESERVED = frozenset({"list", "validate", "compare", "run"})  # the eval command's subcommands


class TaskError(ConfigError):
    """A task file that cannot be used; ``problems`` are ``file:line: field: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpeakerFolds(_Strict):
    kind: Literal["speaker_folds"]
    folds: int = Field(ge=2, le=100)


class LeaveOneGroupOut(_Strict):
    kind: Literal["leave_one_group_out"]


class LeaveGroupsOut(_Strict):
    kind: Literal["leave_groups_out"]
    test: list[str] = Field(min_length=1, description="speakers or groups (dataset/speaker)")


class Given(_Strict):
    kind: Literal["given"]
    test: str = Field(description="the data set's split scored, e.g. dev or test")


Split = Annotated[SpeakerFolds | LeaveOneGroupOut | LeaveGroupsOut | Given,
                  Field(discriminator="kind")]


class Task(_Strict):
    """One evaluation task (the schema of a task file; unknown keys are rejected)."""

    task: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    description: str
    dataset: str | None = None
    manifest: str | None = Field(default=None, description="CSV path, relative to the task file")
    modality: EvalModality
    label_scheme: str | None = None
    labels: tuple[Emotion, ...] | None = None
    split: Split
    face_cropped: bool = False
    development: bool = Field(default=True, description="measured in the README's results table")

    @field_validator("task")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED:
            raise ValueError(f"{value!r} is an eval subcommand; choose another task name")
        return value

    @field_validator("dataset")
    @classmethod
    def _bundled(cls, value: str | None) -> str | None:
        from affectgraph.datasets import DATASETS

        if value is not None and value not in DATASETS:
            raise ValueError(str(unknown_name("data set", value, DATASETS)))
        return value

    @field_validator("label_scheme")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and value not in SCHEMES:
            raise ValueError(str(unknown_name("label scheme", value, SCHEMES)))
        return value

    @field_validator("labels")
    @classmethod
    def _reachable(cls, value: tuple[Emotion, ...] | None, info: Any) -> tuple[Emotion, ...] | None:
        scheme = info.data.get("label_scheme")
        if value is None or scheme is None:
            return value
        reachable = {e for e in SCHEMES[scheme].values() if e is not None}
        missing = [e.value for e in value if e not in reachable]
        if missing:
            raise ValueError(f"label scheme {scheme!r} maps nothing to {', '.join(missing)}")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        from affectgraph.labels import parse_label_set

        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            try:
                return parse_label_set(",".join(value))
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Task:
        if (self.dataset is None) == (self.manifest is None):
            raise ValueError("give exactly one of 'dataset' (a bundled set) or 'manifest' (a CSV)")
        return self

    @property
    def label_map(self) -> dict[str, str | None]:
        """The scheme's table: source label -> canonical label (``None``: left out)."""
        if self.label_scheme is None:
            return {}
        return {k: (v.value if v else None) for k, v in SCHEMES[self.label_scheme].items()}

    @property
    def source(self) -> str:
        return f"dataset {self.dataset}" if self.dataset else f"manifest {self.manifest}"


class LoadedTask(BaseModel):
    """A task and the file it came from (``None`` for a task made on the fly)."""

    model_config = ConfigDict(frozen=True)

    task: Task
    file: Path | None = None

    @property
    def name(self) -> str:
        return self.task.task

    def manifest_path(self) -> Path | None:
        """The manifest CSV, resolved against the task file's folder (``~``, ``$VARS`` expanded)."""
        if self.task.manifest is None:
            return None
        path = Path(os.path.expandvars(os.path.expanduser(self.task.manifest)))
        if not path.is_absolute() and self.file is not None:
            path = self.file.parent / path
        return path


def manifest_task(csv_path: Path, modality: str, *, face_cropped: bool = False) -> LoadedTask:
    """The task of evaluating a user's manifest: every row scored, its own speaker held out."""
    name = "".join(c if c.isalnum() else "_" for c in csv_path.stem.lower()).strip("_")
    if not name[:1].isalpha() or name in RESERVED:
        name = f"m_{name}"
    task = Task.model_validate({
        "task": name, "version": 1, "description": f"the labelled manifest {csv_path}",
        "manifest": str(csv_path.resolve()), "modality": modality,
        "split": {"kind": "leave_one_group_out"}, "face_cropped": face_cropped,
        "development": False})
    return LoadedTask(task=task)


# -- files and the registry --------------------------------------------------------------------

def shipped_folder() -> Path:
    """The task files shipped inside the package."""
    return Path(str(resources.files("affectgraph"))) / "evals" / "tasks"


def user_folder() -> Path:
    """The user's task files: ``$AFFECTGRAPH_HOME/tasks``."""
    return cache_home() / "tasks"


def task_files() -> dict[str, Path]:
    """Every task by name (the file stem): shipped tasks, then the user's (which may override)."""
    found: dict[str, Path] = {}
    for folder in (shipped_folder(), user_folder()):
        if folder.is_dir():
            found.update({f.stem: f for f in sorted(folder.glob("*.yaml"))})
    return found


def get_task(ref: str | Path) -> LoadedTask:
    """A task by name (``ravdess_speech``) or by the path of its YAML file."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: no such task file")
        return load_task_file(path)
    files = task_files()
    if str(ref) not in files:
        raise unknown_name("evaluation task", str(ref), files)
    return load_task_file(files[str(ref)])


def iter_tasks() -> Iterator[LoadedTask | TaskError]:
    """Every registered task, loaded (a broken file gives its :class:`TaskError` instead)."""
    for path in task_files().values():
        try:
            yield load_task_file(path)
        except TaskError as exc:
            yield exc


def load_task_file(path: Path) -> LoadedTask:
    """Parse and validate one task file; :class:`TaskError` lists each problem with its line."""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise TaskError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from None
    if not isinstance(data, dict) or root is None:
        raise TaskError([f"{path}:1: a task file is a mapping of fields (task, version, ...)"])
    try:
        task = Task.model_validate(data)
    except ValidationError as exc:
        raise TaskError([_problem(path, root, e) for e in exc.errors()]) from None
    if task.task != path.stem:
        line = _line_of(root, ("task",))[0]
        raise TaskError([f"{path}:{line}: task: the name {task.task!r} must be the file's stem "
                         f"{path.stem!r}"])
    return LoadedTask(task=task, file=path.resolve())


def _problem(path: Path, root: Any, error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"].startswith("union_tag_"):  # a bad or missing split kind
        loc = (*loc, "kind")
    line, field = _line_of(root, loc)
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    quiet = error["type"] in ("missing", "extra_forbidden", "value_error")
    shown = "" if quiet or isinstance(value, dict | list) else f" (got {value!r})"
    return f"{path}:{line}: {field or '(top level)'}: {message}{shown}"


def _line_of(node: Any, loc: tuple[Any, ...]) -> tuple[int, str]:
    """The 1-based line of the YAML node at ``loc`` (the deepest one found) and the field path.

    Parts of ``loc`` that name no key (pydantic's union tags such as ``speaker_folds``) are
    skipped; a missing field points at its parent mapping.
    """
    import yaml

    line, names = node.start_mark.line + 1, []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pairs = {k.value: (k, v) for k, v in node.value}
            if part not in pairs:
                if isinstance(part, str) and not _is_tag(part):
                    names.append(part)  # a missing or unknown field: the parent's line
                continue
            key, node = pairs[part]
            line, names = key.start_mark.line + 1, [*names, str(part)]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(
                node.value):
            node = node.value[part]
            line, names = node.start_mark.line + 1, [*names, str(part)]
    return line, ".".join(names)


def _is_tag(part: str) -> bool:
    return part in ("speaker_folds", "leave_one_group_out", "leave_groups_out", "given")
