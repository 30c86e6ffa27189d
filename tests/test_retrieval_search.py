"""Retrieval as evidence: the vote, retrieve() on evidence records, and the agent's tool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affectgraph.datasets import load_dataset
from affectgraph.errors import ConfigError
from affectgraph.evidence import ModelRef, TimeSpan, TranscriptEvidence, VoiceEvidence
from affectgraph.labels import LABELS
from affectgraph.retrieval.build import BuildOptions, Part, build_library
from affectgraph.retrieval.library import ExemplarLibrary
from affectgraph.retrieval.search import retrieve, vote
from affectgraph.tools.retrieve import make_retrieve_tool

SPAN = TimeSpan(start=0.0, end=2.0)
A, H, S = LABELS.index("angry"), LABELS.index("happy"), LABELS.index("sad")


def test_vote_weighs_neighbours_by_softmax_of_similarity() -> None:
    sims = np.array([[0.9, 0.8, 0.8], [0.5, 0.4, 0.0], [0.3, 0.0, 0.0]])
    labels = np.array([[A, H, H], [S, S, -1], [-1, -1, -1]])
    votes = vote(sims, labels, temperature=0.1)
    e = np.exp(-1.0)  # a neighbour 0.1 less similar weighs e^-1 as much
    assert votes[0, A] == pytest.approx(1 / (1 + 2 * e))
    assert votes[0, H] == pytest.approx(2 * e / (1 + 2 * e))
    assert votes[1, S] == pytest.approx(1.0)  # the empty slot does not count
    assert np.allclose(votes[2], 1 / 7)  # no neighbour at all: uniform
    assert np.allclose(votes.sum(axis=1), 1.0)
    majority = vote(sims[:1], labels[:1], temperature=100.0)
    assert majority[0, H] == pytest.approx(2 / 3, abs=1e-3)


@pytest.fixture(scope="module")
def text_library(data_dir: Path, exemplar_text_vec, tmp_path_factory) -> ExemplarLibrary:
    items = load_dataset("goemotions", root=data_dir, split="train")[:400]
    return build_library([Part(items, exemplar_text_vec)],
                         tmp_path_factory.mktemp("go") / "go400", BuildOptions(name="go400"))


@pytest.fixture(scope="module")
def voice_library(data_dir: Path, exemplar_voice_vec, tmp_path_factory) -> ExemplarLibrary:
    items = [i for i in load_dataset("ravdess_speech", root=data_dir)
             if i.speaker in {"actor01", "actor02", "actor03"}]
    return build_library([Part(items, exemplar_voice_vec)],
                         tmp_path_factory.mktemp("rav") / "rav24", BuildOptions(name="rav24"))


def transcript(index: int, text: str) -> TranscriptEvidence:
    return TranscriptEvidence(id=f"text:{index}", span=SPAN, specialist="transcript",
                              model=ModelRef(name="given"), text=text, source="given")


def voice_record(vec, path: Path) -> VoiceEvidence:
    from affectgraph.datasets import Item
    from affectgraph.labels import Emotion

    raw = vec.vectorise([Item(id="q", label=Emotion.NEUTRAL, dataset="q", path=path)])[0]
    return VoiceEvidence(id="voice:0", span=SPAN, specialist="voice",
                         model=ModelRef(name="egemaps-v02"),
                         features=dict(zip(vec.names, map(float, raw), strict=True)))


def test_retrieve_a_voice_turn_with_its_speaker_excluded(voice_library: ExemplarLibrary,
                                                         exemplar_voice_vec,
                                                         data_dir: Path) -> None:
    wav = data_dir / "ravdess_speech/wav/Actor_01/03-01-05-02-01-01-01.wav"  # angry
    record = voice_record(exemplar_voice_vec, wav)
    same = retrieve(record, voice_library, exemplar_voice_vec, k=5)
    assert same.neighbours[0].id == "ravdess_speech/03-01-05-02-01-01-01"
    assert same.neighbours[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert same.neighbours[0].citation == "exemplar:ravdess_speech/03-01-05-02-01-01-01"
    held_out = retrieve(record, voice_library, exemplar_voice_vec, k=5,
                        exclude_groups=["ravdess_speech/actor01"])
    assert held_out.evidence_id == "voice:0" and held_out.excluded == ("ravdess_speech/actor01",)
    assert len(held_out.neighbours) == 5
    assert all(n.speaker != "actor01" for n in held_out.neighbours)
    assert held_out.label == "angry" and held_out.distribution is not None
    assert sum(held_out.distribution.values()) == pytest.approx(1.0)
    assert list(held_out.distribution) == list(LABELS)


def test_retrieve_without_a_vector_gives_a_reason(text_library: ExemplarLibrary,
                                                  exemplar_text_vec) -> None:
    empty = retrieve(transcript(3, "   "), text_library, exemplar_text_vec)
    assert empty.neighbours == () and empty.distribution is None and empty.label is None
    assert empty.evidence_id == "text:3" and "nothing to search with" in (empty.reason or "")


def test_retrieve_rejects_the_wrong_library(text_library: ExemplarLibrary,
                                            voice_library: ExemplarLibrary,
                                            exemplar_text_vec, exemplar_voice_vec) -> None:
    with pytest.raises(ConfigError, match="text evidence; library 'rav24' holds voice"):
        retrieve(transcript(0, "hello"), voice_library, exemplar_voice_vec)
    with pytest.raises(ConfigError, match="rebuild the library"):
        retrieve(transcript(0, "hello"), text_library, exemplar_voice_vec)


def test_the_tool_returns_neighbours_and_readable_errors(text_library: ExemplarLibrary,
                                                         voice_library: ExemplarLibrary,
                                                         exemplar_text_vec,
                                                         exemplar_voice_vec) -> None:
    records = {"text:0": transcript(0, "Thank you so much, this made my day!"),
               "text:1": transcript(1, "")}
    tool = make_retrieve_tool(records, {"text": text_library}, {"text": exemplar_text_vec})
    assert tool.name == "retrieve_exemplars"
    result = tool.invoke({"evidence_id": "text:0", "k": 3})
    json.dumps(result)  # JSON-able as it is
    assert result["evidence_id"] == "text:0" and result["library"] == "go400"
    assert result["label"] == "happy" and abs(sum(result["vote"].values()) - 1) < 0.01
    assert len(result["neighbours"]) == 3
    first = result["neighbours"][0]
    assert first["id"].startswith("exemplar:goemotions/") and first["text"]
    assert tool.invoke({"evidence_id": "text:1"})["reason"].startswith("nothing to search with")

    unknown = tool.invoke({"evidence_id": "text:9"})
    assert unknown == "unknown evidence id 'text:9'; known ids: text:0, text:1"
    message = tool.invoke({"name": tool.name, "args": {"evidence_id": "voice:2"},
                           "id": "call-1", "type": "tool_call"})
    assert message.status == "error" and "unknown evidence id 'voice:2'" in message.content
    invalid = tool.invoke({"evidence_id": "text:0", "k": 0})
    assert invalid.startswith("invalid argument k:")

    face_free = make_retrieve_tool(lambda i: {"voice:0": records["text:0"]}.get(i),
                                   {"voice": voice_library}, {"voice": exemplar_voice_vec})
    assert "no exemplar library for text evidence" in face_free.invoke({"evidence_id": "voice:0"})
    with pytest.raises(ConfigError):
        make_retrieve_tool(records, {"text": text_library}, {"text": exemplar_voice_vec})
