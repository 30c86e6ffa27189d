"""``affectgraph eval MANIFEST.csv``: bad manifests are rejected up front, every offending row
listed, and the output folder is left as it was; ``--labels`` restricts what is predicted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affectgraph.cli import app


def invoke(*args: str):  # -> click.testing.Result
    """``affectgraph eval ARGS...`` as a user runs it."""
    return CliRunner().invoke(app, ["eval", *args])


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def wavs(data_dir: Path) -> list[Path]:
    """Six real RAVDESS speech files (actor 01), one per emotion 03-08."""
    folder = data_dir / "ravdess_speech" / "wav" / "Actor_01"
    return [folder / f"03-01-0{e}-02-01-01-01.wav" for e in range(3, 9)]


@pytest.fixture()
def previous(tmp_path: Path, wavs: list[Path]) -> Path:
    """An output folder holding a finished evaluation (of a good manifest, by the dummy)."""
    good = write_csv(tmp_path / "good.csv", ["label", "path", "speaker"],
                     [["angry", str(wavs[2]), "a1"], ["sad", str(wavs[1]), "a1"]])
    out = tmp_path / "out"
    result = invoke(str(good), "--modality", "voice", "--predictor", "dummy", "--out", str(out),
                    "--cache", str(tmp_path / "cache"), "-q")
    assert result.exit_code == 0, result.output
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


BAD = {
    "missing files": (["label", "path"], lambda w: [
        ["angry", str(w[2])], ["sad", "nowhere/gone.wav"], ["happy", "also-gone.wav"]],
        ["line 3: missing file nowhere/gone.wav", "line 4: missing file also-gone.wav"]),
    "unknown labels": (["label", "path"], lambda w: [
        ["angry", str(w[2])], ["furious", str(w[1])], ["sad", str(w[0])], ["blue", str(w[3])]],
        ["line 3: unknown label 'furious'", "line 5: unknown label 'blue'"]),
    "empty labels": (["label", "path"], lambda w: [
        ["", str(w[2])], ["sad", str(w[1])], ["", str(w[0])]],
        ["line 2: empty label", "line 4: empty label"]),
    "duplicate ids": (["id", "label", "path"], lambda w: [
        ["x1", "angry", str(w[2])], ["x2", "sad", str(w[1])], ["x1", "happy", str(w[0])]],
        ["line 4: duplicate id 'x1' (first on line 2)"]),
    "mixed rows": (["label", "path", "text"], lambda w: [
        ["angry", str(w[2]), ""], ["sad", "", "I lost it all"], ["happy", str(w[0]), ""],
        ["fearful", str(w[3]), ""]],
        ["line 3: gives a text where 3 other rows give a path"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_manifest_is_rejected_with_rows_and_out_untouched(
        case: str, tmp_path: Path, wavs: list[Path], previous: Path) -> None:
    header, rows, expected = BAD[case]
    bad = write_csv(tmp_path / "bad.csv", header, rows(wavs))
    before = snapshot(previous)
    result = invoke(str(bad), "--modality", "voice", "--predictor", "dummy", "--out",
                    str(previous), "--cache", str(tmp_path / "cache"), "-q")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {bad}: {len(expected)} bad row(s):")
    for line in expected:
        assert line in result.output
    assert snapshot(previous) == before
    assert sorted(p.name for p in previous.parent.iterdir() if p.name.startswith(".")) == []


def test_bad_manifest_creates_no_folder(tmp_path: Path, wavs: list[Path]) -> None:
    bad = write_csv(tmp_path / "bad.csv", ["label", "path"], [["angry", "gone.wav"]])
    out = tmp_path / "new"
    result = invoke(str(bad), "--modality", "face", "--predictor", "dummy", "--out", str(out))
    assert result.exit_code == 2 and "line 2: missing file gone.wav" in result.output
    assert not out.exists()


def test_a_manifest_needs_a_modality_and_a_known_one(tmp_path: Path, wavs: list[Path]) -> None:
    good = write_csv(tmp_path / "m.csv", ["label", "path"], [["angry", str(wavs[2])]])
    result = invoke(str(good), "--predictor", "dummy")
    assert result.exit_code == 2 and "needs --modality" in result.output
    result = invoke(str(good), "--modality", "vision", "--predictor", "dummy")
    assert result.exit_code == 2 and "choose one of face, voice, text, av" in result.output


def test_an_output_folder_of_other_files_is_refused(tmp_path: Path, wavs: list[Path]) -> None:
    good = write_csv(tmp_path / "m.csv", ["label", "path"], [["angry", str(wavs[2])]])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = invoke(str(good), "--modality", "voice", "--predictor", "dummy", "--out",
                    str(tmp_path / "mine"))
    assert result.exit_code == 2 and "not an evaluation's" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_labels_restrict_items_and_predictions(tmp_path: Path) -> None:
    rows = [["joy", "what a great day", "s1"], ["anger", "get out of here", "s2"],
            ["sadness", "I miss her", "s3"], ["fear", "what was that noise", "s4"],
            ["neutral", "the bus comes at nine", "s5"], ["surprise", "no way, really?", "s6"]]
    manifest = write_csv(tmp_path / "texts.csv", ["label", "text", "speaker"], rows)
    out = tmp_path / "out"
    result = invoke(str(manifest), "--modality", "text", "--predictor", "dummy", "--labels",
                    "angry,happy,neutral,sad", "--out", str(out), "--cache",
                    str(tmp_path / "cache"), "-q")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["angry", "happy", "neutral", "sad"]
    assert metrics["n"] == 4  # fear and surprise rows are dropped
    with (out / "predictions.csv").open() as fh:
        predictions = list(csv.DictReader(fh))
    assert {p["label"] for p in predictions} == {"angry", "happy", "neutral", "sad"}
    assert {p["prediction"] for p in predictions} <= {"angry", "happy", "neutral", "sad", ""}
    assert "p_fearful" not in predictions[0]
    for p in predictions:
        if p["prediction"]:
            total = sum(float(p[f"p_{c}"]) for c in metrics["labels"])
            assert total == pytest.approx(1.0, abs=1e-5)
    result = invoke("meld", "--predictor", "dummy", "--labels", "angry,contempt")
    assert result.exit_code == 2 and "contempt" in result.output
