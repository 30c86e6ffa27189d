"""Declarative tasks: the shipped files validate, bad files fail with file:line: field, the
registry lists and finds them, and every split keeps speakers on one side."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affectgraph.cli import app
from affectgraph.errors import ConfigError
from affectgraph.evals.splits import make_plan
from affectgraph.evals.task import TaskError, get_task, load_task_file, task_files

SHIPPED = {"ravdess_speech", "ravdess_av", "tess", "faces_fer2013", "faces_web", "meld",
           "emorynlp", "goemotions", "isear", "my_clips"}

GOOD = """\
task: {name}
version: 2
description: a test task
dataset: tess
modality: voice
label_scheme: tess
split:
  kind: speaker_folds
  folds: 2
"""


def invoke(*args: str):  # -> click.testing.Result
    """``affectgraph eval ARGS...`` as a user runs it."""
    return CliRunner().invoke(app, ["eval", *args])


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_every_shipped_task_validates() -> None:
    assert set(task_files()) >= SHIPPED
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == len(task_files())
    assert get_task("ravdess_speech").task.split.kind == "leave_one_group_out"


def test_list_shows_every_task() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for name in SHIPPED:
        assert name in result.output
    assert "(missing)" in result.output  # my_clips points to a manifest not on this machine


@pytest.mark.parametrize(("body", "expected"), [
    (GOOD.replace("  folds: 2", "  folds: 2\n  shuffle: true"),
     ":10: split.shuffle: Extra inputs are not permitted"),
    (GOOD.replace("folds: 2", "folds: 1"),
     ":9: split.folds: Input should be greater than or equal to 2 (got 1)"),
    (GOOD.replace("dataset: tess", "dataset: tes"),
     ":4: dataset: unknown data set 'tes'; did you mean 'tess'?"),
    (GOOD.replace("version: 2\n", ""), ":1: version: Field required"),
    (GOOD.replace("label_scheme: tess", "label_scheme: tess\nlabels: [happy, calmish]"),
     ":7: labels: unknown emotion label 'calmish'"),
    (GOOD.replace("label_scheme: tess", "label_scheme: emorynlp\nlabels: [happy, disgust]"),
     ":7: labels: label scheme 'emorynlp' maps nothing to disgusted"),
    (GOOD.replace("kind: speaker_folds", "kind: random"),
     ":8: split.kind: Input tag 'random' found using 'kind' does not match any of the "
     "expected tags"),
    (GOOD.replace("modality: voice", "modality: smell"),
     ":5: modality: Input should be 'face', 'voice', 'text' or 'av' (got 'smell')"),
    (GOOD.replace("dataset: tess", "dataset: tess\nmanifest: x.csv"),
     ":1: (top level): give exactly one of 'dataset' (a bundled set) or 'manifest' (a CSV)"),
    (GOOD.replace("split:\n", "split: [\n"), ":9: not valid YAML: expected ',' or ']'"),
])
def test_bad_task_file_names_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "mine", body.format(name="mine"))
    with pytest.raises(TaskError) as caught:
        load_task_file(path)
    assert expected in caught.value.problems[0] and caught.value.problems[0].startswith(str(path))
    result = invoke("validate", str(path))
    assert result.exit_code == 2 and f"error: {path}{expected}" in result.output


def test_validate_lists_every_problem_and_the_good_files(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad", GOOD.format(name="bad").replace("folds: 2", "folds: 0")
                .replace("version: 2", "version: 0"))
    good = write(tmp_path, "fine", GOOD.format(name="fine"))
    result = invoke("validate", str(bad), str(good))
    assert result.exit_code == 2
    assert f"error: {bad}:2: version: Input should be greater than or equal to 1" in result.output
    assert f"error: {bad}:9: split.folds:" in result.output
    assert f"ok: fine v2 ({good})" in result.output


def test_task_name_must_be_the_file_stem_and_not_a_subcommand(tmp_path: Path) -> None:
    path = write(tmp_path, "other", GOOD.format(name="mine"))
    with pytest.raises(TaskError, match=r"other.yaml:1: task: the name 'mine' must be"):
        load_task_file(path)
    path = write(tmp_path, "list", GOOD.format(name="list"))
    with pytest.raises(TaskError, match="'list' is an eval subcommand"):
        load_task_file(path)


def test_unknown_task_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="did you mean 'faces_web'"):
        get_task("faces_wb")


def test_a_task_file_runs_by_path_and_its_manifest_is_relative_to_it(
        tmp_path: Path, data_dir: Path) -> None:
    clips = data_dir / "ravdess_speech" / "wav" / "Actor_02"
    (tmp_path / "data").mkdir()
    rows = "label,path,speaker\n" + "".join(
        f"{e},{clips / f'03-01-0{c}-02-01-01-02.wav'},a2\n"
        for e, c in (("happy", 3), ("sad", 4), ("angry", 5)))
    (tmp_path / "data" / "clips.csv").write_text(rows)
    path = write(tmp_path, "clips", "task: clips\nversion: 1\ndescription: mine\n"
                 "manifest: data/clips.csv\nmodality: voice\nsplit: {kind: leave_one_group_out}\n")
    out = tmp_path / "out"
    result = invoke(str(path), "--predictor", "dummy", "--out", str(out), "--cache",
                    str(tmp_path / "c"), "-q")
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file()
    (tmp_path / "data" / "clips.csv").unlink()
    result = invoke(str(path), "--predictor", "dummy", "--out", str(tmp_path / "o2"))
    assert result.exit_code == 2 and "reads the manifest" in result.output


@pytest.mark.parametrize("name", ["ravdess_speech", "tess", "faces_web", "meld", "isear"])
def test_splits_keep_every_speaker_on_one_side(name: str, data_dir: Path) -> None:
    plan = make_plan(get_task(name), root=data_dir)
    items = [i for f in plan.folds for i in f.test]
    for fold in plan.folds:
        assert fold.held_out == {i.group for i in fold.test}
    tested = Counter(i.group for i in items)
    if plan.task.task.split.kind != "given":  # fold splits score every item exactly once
        assert len({i.id for i in items}) == len(items) == len(plan.items)
        owners = Counter(g for f in plan.folds for g in f.held_out)
        assert max(owners.values()) == 1  # no group is tested in two folds
    assert sum(tested.values()) == len(items)
