"""The fusion training table on a real subset: every row held out from its model and its vote."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from affectgraph.agents.fusion_data import (
    HeldOut,
    check,
    face_rows,
    held_out_votes,
    load_table,
    read_header,
    save_table,
    spoken_text,
    text_rows,
    voice_rows,
)
from affectgraph.datasets import load_dataset
from affectgraph.errors import InputError
from affectgraph.evals.splits import EvalItem, make_plan
from affectgraph.evals.task import get_task
from affectgraph.heads.voice_training import VoiceHeadOptions
from affectgraph.labels import LABELS
from affectgraph.retrieval.defaults import default_library
from affectgraph.retrieval.search import Neighbour

HELD = ("ravdess_speech/actor01", "ravdess_speech/actor02")
TINY = VoiceHeadOptions(c_grid=(0.1,), tess_weights=(0.3,), alphas=(0.0,), speeds=(),
                        inner_folds=2, max_iter=500)
"""The shipped recipe's search cut to one candidate, so a fold trains in a second."""


def _group(n: Neighbour) -> str:
    return f"{n.dataset}/{n.speaker}" if n.speaker else n.id


def _assert_distribution(dist: dict[str, float] | None) -> None:
    assert dist is not None and set(dist) == set(LABELS)
    assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-5)
    assert all(v >= 0 for v in dist.values())


def _assert_votes_held_out(rows: list[HeldOut], entries: list[EvalItem], library: str,
                           raw: np.ndarray, ok: np.ndarray) -> None:
    """Each row's vote is the one retrieved with its fold's groups (and its own) left out."""
    found = held_out_votes(default_library(library), entries, raw, ok)
    for row, entry, retrieval in zip(rows, entries, found, strict=True):
        assert retrieval is not None and len(retrieval.neighbours) == 10
        groups = {_group(n) for n in retrieval.neighbours}
        assert not groups & (entry.held_out | {row.group}), row.item
        assert row.item not in {n.id for n in retrieval.neighbours}
        assert row.vote == retrieval.distribution


@pytest.fixture(scope="module")
def speech(data_dir: Path) -> tuple[list[EvalItem], list]:
    """One fold holding out RAVDESS actors 01 and 02; actors 03 and 04 and 42 TESS clips (3
    words, both speakers) train its voice head."""
    ravdess = [i for i in load_dataset("ravdess_speech", root=data_dir)
               if i.speaker in ("actor01", "actor02", "actor03", "actor04")]
    tess = [i for i in load_dataset("tess", root=data_dir)
            if i.path is not None and i.path.stem.split("_")[1] in ("bar", "moon", "yes")]
    entries = [EvalItem(i, "fold1", frozenset(HELD)) for i in ravdess if i.group in HELD]
    return entries, [*ravdess, *tess]


@pytest.fixture(scope="module")
def voice(speech, monkeypatch_module) -> tuple[list[HeldOut], list]:
    import affectgraph.heads.voice_training as training

    seen: list[set[str]] = []
    original = training.train_voice_head

    def spy(*args, **kwargs):
        seen.append(set(kwargs["data"].actor))
        return original(*args, **kwargs)

    monkeypatch_module.setattr(training, "train_voice_head", spy)
    entries, training_items = speech
    return voice_rows(entries, training_items, options=TINY), seen


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_voice_rows_come_from_a_head_that_never_heard_the_fold(speech, voice) -> None:
    rows, trained_on = voice
    entries, _ = speech
    assert len(rows) == 16 and {r.modality for r in rows} == {"voice"}
    assert [r.item for r in rows] == [e.item.id for e in entries]
    assert trained_on and all(not actors & set(HELD) for actors in trained_on)
    assert {"ravdess_speech/actor03", "ravdess_speech/actor04", "tess/OAF"} <= trained_on[0]
    for row in rows:
        assert row.label in LABELS and row.group in HELD
        _assert_distribution(row.model)
        _assert_distribution(row.vote)
        assert 1.0 < row.reliability < 4.5  # seconds of speech in a ~3.5 s clip


def test_voice_votes_leave_the_fold_out(speech, voice) -> None:
    from affectgraph.features import VoiceVectoriser, extract

    rows, _ = voice
    entries, _ = speech
    found = extract([e.item for e in entries], VoiceVectoriser())
    _assert_votes_held_out(rows, entries, "voice", found.vectors, found.ok)


def test_spoken_words_and_dialogue_turns_give_text_rows(data_dir: Path, speech, voice) -> None:
    from affectgraph.features import TextVectoriser

    entries, _ = speech
    dialogue = list(make_plan(get_task("meld"), root=data_dir).items)[:20]
    texts = [spoken_text(e.item) for e in entries] + [e.item.text or "" for e in dialogue]
    rows = text_rows([*entries, *dialogue], texts)
    spoken, turns = rows[:len(entries)], rows[len(entries):]
    assert [r.item for r in spoken] == [r.item for r in voice[0]]  # the same real clips
    assert {r.reliability for r in spoken} == {6.0}  # "Kids are talking by the door"
    assert len({tuple((r.model or {}).values()) for r in spoken}) == 1  # the same words
    assert [r.dataset for r in turns] == ["meld"] * 20
    assert [r.reliability for r in turns] == [float(len(t.split())) for t in texts[16:]]
    for row in rows:
        _assert_distribution(row.model)
    raw = TextVectoriser().embed(texts[16:])
    _assert_votes_held_out(turns, dialogue, "text", raw, np.ones(20, dtype=bool))
    # MELD dev speakers (the six friends among them) are held out of the library as a whole
    assert "meld/Ross" in dialogue[0].held_out or not any(
        e.item.speaker == "Ross" for e in dialogue)


def test_spoken_text_reads_the_file_name(data_dir: Path) -> None:
    [tess] = [i for i in load_dataset("tess", root=data_dir) if i.id == "tess/OAF_moon_sad"]
    assert spoken_text(tess) == "Say the word moon"
    with pytest.raises(InputError, match="ravdess_speech and tess"):
        spoken_text(load_dataset("faces_web", root=data_dir)[0])


def test_face_rows_leave_the_photo_and_its_person_out(data_dir: Path) -> None:
    from affectgraph.agents.fusion_data import FaceReadings
    from affectgraph.features import extract
    from affectgraph.tools.face import FaceModel

    web = list(make_plan(get_task("faces_web"), root=data_dir).items)[:6]
    crops = list(make_plan(get_task("faces_fer2013"), root=data_dir).items)[:4]
    rows = face_rows([*web, *crops])
    assert [r.dataset for r in rows] == ["faces_web"] * 6 + ["faces_fer2013"] * 4
    for row in rows:
        assert row.reliability in (0.0, 1.0)
        if row.reliability:
            _assert_distribution(row.model)
        else:
            assert row.model is None and row.vote is None
    model = FaceModel.load()
    for part, cropped, found in ((web, False, rows[:6]), (crops, True, rows[6:])):
        read = extract([e.item for e in part], FaceReadings(model, cropped=cropped))
        assert list(read.ok) == [r.reliability == 1.0 for r in found]
        kept = np.flatnonzero(read.ok)
        _assert_votes_held_out([found[n] for n in kept], [part[n] for n in kept], "face",
                               read.vectors[kept, len(LABELS):], np.ones(len(kept), dtype=bool))


def test_the_table_round_trips_with_its_header(tmp_path: Path, voice) -> None:
    rows = [*voice[0], HeldOut("face", "faces_web", "faces_web/x_0001", "faces_web/x",
                               "happy", None, None, 0.0)]
    path = save_table(rows, tmp_path / "table.jsonl")
    assert load_table(path) == rows
    header = read_header(path)
    assert header["rows"] == len(rows) and header["k"] == 10
    assert set(header["libraries"]) == {"voice", "text", "face"} and header["created"]
    assert "CC BY-NC-SA" in header["sources"]["ravdess_speech"]
    [scores, _] = check(rows)
    assert scores.n == 16 and 0.0 <= scores.model.war <= 1.0


def test_a_file_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"modality": "voice"}\n')
    with pytest.raises(InputError, match="not a fusion table header"):
        load_table(bad)
    with pytest.raises(InputError, match="no such fusion table"):
        load_table(tmp_path / "missing.jsonl")
