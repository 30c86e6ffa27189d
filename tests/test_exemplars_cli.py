"""``affectgraph exemplars``: build, info, list, search and bad input, as a user runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affectgraph.commands.exemplars import app

RUN_APP = "from affectgraph.commands.exemplars import app; app()"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The sub-app in a real process (as ``affectgraph exemplars ...`` once registered)."""
    return subprocess.run([sys.executable, "-c", RUN_APP, *args], capture_output=True, text=True,
                          timeout=300)


def invoke(*args: str):  # -> click.testing.Result
    return CliRunner().invoke(app, list(args))


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def text_manifest(data_dir: Path, tmp_path_factory) -> Path:
    """60 real MELD train utterances as a user's manifest CSV."""
    from affectgraph.datasets import load_dataset

    items = load_dataset("meld", root=data_dir, split="train")[:60]
    rows = [{"label": i.label.value, "text": i.text or "", "speaker": i.speaker or ""}
            for i in items]
    return write_manifest(tmp_path_factory.mktemp("csv") / "friends.csv", rows)


@pytest.fixture(scope="module")
def built(text_manifest: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("libs") / "friends"
    result = run("build", str(text_manifest), "--modality", "text", "--out", str(out),
                 "--licence", "CC0 (test)")
    assert result.returncode == 0, result.stderr
    assert f"friends: 60 exemplars (flat index) in {out}" in result.stderr
    return out


def test_info_shows_licence_counts_vectoriser(built: Path) -> None:
    result = invoke("info", str(built))
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "friends (text)" in flat and "60 exemplars" in flat
    assert "minilm-l6-v2" in flat and "384-d" in flat and "index flat" in flat
    assert "CC0 (test)" in flat and "neutral" in flat
    manifest = json.loads(invoke("info", str(built), "--json").stdout)
    assert manifest["size"] == 60 and manifest["sources"][0]["licence"] == "CC0 (test)"
    assert sum(manifest["counts"].values()) == 60


def test_search_text_prints_neighbours_and_vote(built: Path) -> None:
    result = run("search", str(built), "--text", "Oh my God, no way!", "--k", "4", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found["neighbours"]) == 4 and found["library"] == "friends"
    assert all(n["id"].startswith("row") for n in found["neighbours"])
    sims = [n["similarity"] for n in found["neighbours"]]
    assert sims == sorted(sims, reverse=True) and 0 < sims[0] <= 1
    table = invoke("search", str(built), "--text", "Oh my God, no way!", "--k", "2")
    assert table.exit_code == 0 and "exemplar:row" in table.output and "vote:" in table.output


def test_search_excluding_a_group(built: Path) -> None:
    speaker = json.loads(invoke("search", str(built), "--text", "hi", "--json",
                                "--k", "60").stdout)["neighbours"][0]["speaker"]
    result = invoke("search", str(built), "--text", "hi", "--k", "60", "--json",
                    "--exclude-group", f"friends/{speaker}")
    found = json.loads(result.stdout)["neighbours"]
    assert found and all(n["speaker"] != speaker for n in found)


@pytest.mark.parametrize("args, message", [
    (["search", "{lib}", "--path", "x.wav"], "a text library: query it with --text"),
    (["search", "{lib}"], "give either --text or --path"),
    (["search", "no-such-library", "--text", "x"], "unknown exemplar library"),
    (["build", "{csv}", "--modality", "text", "--out", "{lib}"], "already exists"),
    (["build", "{csv}"], "--modality voice|text|face is needed"),
    (["build", "--dataset", "meld", "--dataset", "tess", "--out", "{tmp}/x"], "several modalities"),
    (["build", "--dataset", "medl", "--out", "{tmp}/x"], "did you mean 'meld'"),
])
def test_user_errors_are_one_line(args: list[str], message: str, built: Path,
                                  text_manifest: Path, tmp_path: Path) -> None:
    filled = [a.format(lib=built, csv=text_manifest, tmp=tmp_path) for a in args]
    result = invoke(*filled)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_manifest_rows_are_listed(tmp_path: Path, data_dir: Path) -> None:
    wav = data_dir / "ravdess_speech/wav/Actor_01/03-01-05-02-01-01-01.wav"
    audio = write_manifest(tmp_path / "calls.csv", [
        {"label": "angry", "path": str(wav)},
        {"label": "bored", "path": str(wav)},
        {"label": "happy", "path": "missing/clip.wav"},
    ])
    result = run("build", str(audio), "--modality", "voice", "--out", str(tmp_path / "lib"))
    assert result.returncode == 2 and "2 bad row(s)" in result.stderr
    assert "line 3: unknown label 'bored'" in result.stderr
    assert "line 4: missing file missing/clip.wav" in result.stderr
    texts = write_manifest(tmp_path / "texts.csv", [{"label": "happy", "text": "yay"},
                                                    {"label": "sad", "text": ""}])
    result = run("build", str(texts), "--modality", "text", "--out", str(tmp_path / "t"))
    assert result.returncode == 2 and "line 3: empty text" in result.stderr
    assert not (tmp_path / "lib").exists() and not (tmp_path / "t").exists()


def test_a_tampered_library_is_refused(built: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with (copy / "items.jsonl").open("a") as fh:
        fh.write('{"id": "x", "label": "happy", "dataset": "x"}\n')
    result = run("info", str(copy))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {copy}: items.jsonl does not match its checksum")


def test_list_shows_the_default_libraries() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    for name in ("voice", "text", "face"):
        assert f"{name} │ {name}" in flat or f"│ {name} " in flat
    assert "Apache-2.0" in flat and "CC BY-NC-SA 4.0" in flat
