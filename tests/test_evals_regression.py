"""Regression against stored reference results of two small real tasks.

References in ``tests/reference/`` were made with the commands recorded in their
``metrics.json``: fer alone (no head, no retrieval) on a seeded sample of 100 FER2013 crops, and
nade alone (no retrieval) on a seeded sample of 200 MELD dev utterances. A model, preprocessing or
harness change that moves these numbers fails here; regenerate the references deliberately.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affectgraph.cli import app
from affectgraph.evals.predictors import PredictorOptions
from affectgraph.evals.runner import RunOptions, run_eval
from affectgraph.evals.task import get_task

REFERENCE = Path(__file__).parent / "reference"
HEADLINE = ("war", "uar", "macro_f1", "weighted_f1")


def predictions(folder: Path) -> dict[str, str]:
    with (folder / "predictions.csv").open() as fh:
        return {row["id"]: row["prediction"] for row in csv.DictReader(fh)}


def check(out: Path, reference: Path, tolerance: float) -> None:
    got = json.loads((out / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert (got["n"], got["labels"], got["split"]) == (want["n"], want["labels"], want["split"])
    for key in HEADLINE:
        assert got[key] == pytest.approx(want[key], abs=tolerance), key
    ours, theirs = predictions(out), predictions(reference)
    assert list(ours) == list(theirs)  # the same seeded sample of items
    agree = sum(ours[i] == theirs[i] for i in ours) / len(ours)
    assert agree >= 0.98


def test_fer_on_100_fer2013_crops(tmp_path: Path) -> None:
    out = tmp_path / "fer"
    result = CliRunner().invoke(app, [
        "eval", "faces_fer2013", "--limit", "100", "--no-head", "--no-retrieval", "--out", str(out),
        "--cache", str(tmp_path / "cache"), "-q"])
    assert result.exit_code == 0, result.output
    check(out, REFERENCE / "faces_fer2013_fer_100", tolerance=0.011)  # one item of 100


def test_nade_on_200_meld_dev_utterances(tmp_path: Path) -> None:
    out = tmp_path / "nade"
    run_eval(get_task("meld"), out,
             options=RunOptions(limit=200, cache=tmp_path / "cache", progress=False),
             predictor_options=PredictorOptions(retrieval=False, text_model="nade"))
    check(out, REFERENCE / "meld_nade_200", tolerance=0.006)  # one item of 200
