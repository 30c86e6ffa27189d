"""Runs of the harness with the shipped dummy predictor: outputs, resuming, workers, compare,
ablation, and the av modality reading the graph's verdict."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affectgraph.cli import app
from affectgraph.errors import ConfigError
from affectgraph.evals.predictors import DummyPredictor, Prediction, PredictorSpec
from affectgraph.evals.runner import EvalInterrupted, RunOptions, run_eval
from affectgraph.evals.splits import EvalItem
from affectgraph.evals.task import get_task

HEADLINE = ("n", "war", "uar", "macro_f1", "weighted_f1", "per_class", "confusion",
            "seconds_per_item")


def invoke(*args: str):  # -> click.testing.Result
    """``affectgraph eval ARGS...`` as a user runs it."""
    return CliRunner().invoke(app, ["eval", *args])


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def dummy_run(out: Path, cache: Path, *extra: str, task: str = "ravdess_speech") -> dict:
    result = invoke(task, "--predictor", "dummy", "--out", str(out), "--cache", str(cache),
                    "-q", *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_dummy_run_writes_every_output(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "ravdess"
    result = invoke("ravdess_speech", "--predictor", "dummy", "--out", str(out), "--cache",
                    str(cache), "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png", "metrics.json", "predictions.csv", "report.md"]
    m = json.loads((out / "metrics.json").read_text())
    assert set(HEADLINE) <= set(m)
    assert m["n"] == 144 and m["split"]["folds"] == 18
    assert m["split"]["kind"] == "leave_one_group_out"
    assert set(m["per_class"]["angry"]) == {"precision", "recall", "f1", "support"}
    matrix = m["confusion"]["matrix"]
    assert m["confusion"]["predicted"][-1] == "abstained"  # the dummy abstains on a few items
    assert sum(map(sum, matrix)) == 144 and sum(row[-1] for row in matrix) == m["abstained"] > 0
    right = sum(matrix[i][i] for i in range(len(matrix)))
    assert m["war"] == pytest.approx(right / 144)
    assert 0.5 < m["war"] < 0.9  # the dummy is right about 70% of the time
    assert m["command"] == f"affectgraph eval ravdess_speech --out {out} --predictor dummy"
    r = m["reasoning"]
    assert r["steps"] > 2 * r["items_with_steps"] and 0.7 < r["grounding"] < 0.95
    assert r["hallucination_rate"] == pytest.approx(1 - r["grounding"])
    assert r["cot_s"] == pytest.approx(0.5 * r["rec_s"] + 0.5 * r["rea_s"])
    assert r["rec_s"] == pytest.approx(m["war"])
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 144 and len({r["id"] for r in rows}) == 144
    assert list(rows[0])[:5] == ["id", "label", "prediction", "confidence", "abstained"]
    assert sum(int(r["abstained"]) for r in rows) == m["abstained"]
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    for section in ("## Results", "## Per class", "## Confusion", "## Reasoning",
                    "GPT-4o", "verifier"):
        assert section in report
    assert "│ ravdess_speech │ voice    │ 144 │" in result.output  # the headline table


class Failing:
    """The dummy, failing once it has predicted ``after`` items; counts what it predicted."""

    def __init__(self, spec: PredictorSpec, after: int | None = None,
                 error: type[BaseException] = RuntimeError) -> None:
        self.inner = DummyPredictor(spec)
        self.info = self.inner.info
        self.after, self.error, self.done = after, error, 0

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]:
        if self.after is not None and self.done >= self.after:
            raise self.error("stopped on purpose")
        self.done += len(items)
        return self.inner.predict(items)


def spec_of(labels: Sequence[str]) -> PredictorSpec:
    return PredictorSpec(name="dummy", modality="voice", labels=tuple(labels))


def test_interrupted_run_resumes_with_only_the_rest(tmp_path: Path, cache: Path) -> None:
    task = get_task("ravdess_speech")
    options = RunOptions(predictor="dummy", cache=cache, progress=False)
    labels = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
    out = tmp_path / "out"
    first = Failing(spec_of(labels), after=16)
    with pytest.raises(RuntimeError, match="stopped on purpose"):
        run_eval(task, out, options=options, predictor=first)
    assert first.done == 16 and not out.exists()
    assert not list(tmp_path.glob(".*partial"))
    second = Failing(spec_of(labels))
    resumed = run_eval(task, out, options=options, predictor=second)
    assert second.done == 144 - 16
    clean = run_eval(task, tmp_path / "clean",
                     options=options.model_copy(update={"cache": tmp_path / "other"}))
    assert [p.model_copy(update={"seconds": 0}) for p in resumed.predictions] == [
        p.model_copy(update={"seconds": 0}) for p in clean.predictions]
    again = Failing(spec_of(labels))
    run_eval(task, out, options=options.model_copy(update={"resume": False}), predictor=again)
    assert again.done == 144


def test_ctrl_c_says_how_far_it_got(tmp_path: Path, cache: Path) -> None:
    task = get_task("tess")
    options = RunOptions(predictor="dummy", cache=cache, progress=False, limit=40)
    stopping = Failing(spec_of(("neutral", "happy", "sad", "angry", "fearful", "disgusted",
                                "surprised")), after=24, error=KeyboardInterrupt)
    with pytest.raises(EvalInterrupted, match="24 of 40 items are done and cached"):
        run_eval(task, tmp_path / "out", options=options, predictor=stopping)


def test_workers_give_the_same_results(tmp_path: Path, cache: Path) -> None:
    one = dummy_run(tmp_path / "one", cache, "--limit", "60", task="tess")
    two = dummy_run(tmp_path / "two", tmp_path / "cache2", "--limit", "60", "--workers", "2",
                    task="tess")
    assert {k: one[k] for k in HEADLINE if k != "seconds_per_item"} == {
        k: two[k] for k in HEADLINE if k != "seconds_per_item"}


def test_limit_is_a_seeded_sample(tmp_path: Path, cache: Path) -> None:
    a = dummy_run(tmp_path / "a", cache, "--limit", "30", "--seed", "3")
    dummy_run(tmp_path / "b", cache, "--limit", "30", "--seed", "3")
    dummy_run(tmp_path / "c", cache, "--limit", "30", "--seed", "4")

    def ids(folder: Path) -> list[str]:
        with (folder / "predictions.csv").open() as fh:
            return [row["id"] for row in csv.DictReader(fh)]

    assert a["n"] == 30 and ids(tmp_path / "a") == ids(tmp_path / "b") != ids(tmp_path / "c")
    assert len({i.split("-")[-1] for i in ids(tmp_path / "a")}) > 5  # spread over actors


def test_compare_prints_the_differences(tmp_path: Path, cache: Path) -> None:
    dummy_run(tmp_path / "a", cache, "--seed", "1")
    dummy_run(tmp_path / "b", cache, "--seed", "2")
    result = invoke("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert "predictor.revision" in result.output and "dummy-1-seed1" in result.output
    assert "F1 angry" in result.output and "exact McNemar p" in result.output
    assert "items in both: 144" in result.output
    result = invoke("compare", str(tmp_path / "a"), str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "no metrics.json" in result.output


def test_ablation_runs_each_modality_and_the_graph(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "abl"
    result = invoke("ravdess_av", "--ablation", "--predictor", "dummy", "--out", str(out),
                    "--cache", str(cache), "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "ablation.json", "ablation.md", "av", "face", "text", "voice"]
    table = json.loads((out / "ablation.json").read_text())
    assert list(table) == ["face", "voice", "text", "av"] and table["av"]["n"] == 7
    assert (out / "voice" / "metrics.json").is_file() and "[av](av/report.md)" in (
        out / "ablation.md").read_text()
    result = invoke("meld", "--ablation", "--predictor", "dummy", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "holds no video or audio" in result.output


def test_av_reads_the_verdict_and_its_judged_steps(data_dir: Path) -> None:
    from affectgraph.datasets import load_dataset
    from affectgraph.evals.specialists import AvPredictor
    from affectgraph.verdict import RationaleStep, Verdict

    steps = [RationaleStep(claim="The face shows anger [face:0].", cites=["face:0"],
                           grounded=True, check="ok"),
             RationaleStep(claim="The voice is loud [voice:7].", cites=["voice:7"],
                           grounded=False, check="cites unknown evidence voice:7")]
    dist = {"neutral": 0.1, "happy": 0.05, "sad": 0.05, "angry": 0.6, "fearful": 0.1,
            "disgusted": 0.05, "surprised": 0.05}

    from affectgraph.graphs.context import AnalyzeOptions

    excluded = []

    class Graph:
        options = AnalyzeOptions()

        def analyze(self, path: Path, options: AnalyzeOptions) -> object:
            excluded.append(options.retrieval.exclude_groups)
            angry = not path.name.startswith("01-01-03")  # the happy clip abstains
            verdict = Verdict(label="angry" if angry else None, distribution=dist,
                              confidence=0.6, valence=-0.5, arousal=0.7,
                              rationale=steps[:1], rejected=steps[1:], grounding=0.5,
                              abstention=None if angry else "the face and voice disagree")
            return type("Analysis", (), {"verdict": verdict})()

    items = load_dataset("ravdess_av", root=data_dir)[:2]
    spec = PredictorSpec(name="av", modality="av", labels=("neutral", "sad", "angry"))
    out = AvPredictor(spec, analyzer=Graph()).predict(
        [EvalItem(i, "f", frozenset({i.group})) for i in items])
    # actor 05 is held out of retrieval under both RAVDESS data sets' names
    assert excluded == [("ravdess_av/actor05", "ravdess_speech/actor05")] * 2
    assert out[0].label == "angry" and out[0].distribution == pytest.approx(
        {"neutral": 0.1 / 0.75, "sad": 0.05 / 0.75, "angry": 0.6 / 0.75})
    assert [s.grounded for s in out[0].steps] == [True, False]
    assert items[1].path.name.startswith("01-01-03")  # the happy clip: abstained
    assert out[1].abstained and out[1].reason == "the face and voice disagree"


def test_unknown_predictor_and_task_name_the_valid_ones(tmp_path: Path) -> None:
    result = invoke("ravdess_speech", "--predictor", "dumy")
    assert result.exit_code == 2 and "did you mean 'dummy'" in result.output
    result = invoke("ravdes_speech")
    assert result.exit_code == 2 and "did you mean 'ravdess_speech'" in result.output
    with pytest.raises(ConfigError, match="workers=1"):
        run_eval(get_task("tess"), tmp_path / "w",
                 options=RunOptions(workers=2, cache=tmp_path / "c", progress=False),
                 predictor=Failing(spec_of(("neutral", "happy"))))
