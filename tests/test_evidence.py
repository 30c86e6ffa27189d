from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from affectgraph.errors import ConfigError
from affectgraph.evidence import (
    Box,
    Evidence,
    FaceEvidence,
    ModelRef,
    Prosody,
    TimeSpan,
    TranscriptEvidence,
    VoiceEvidence,
    Word,
    normalise,
    renumber,
)
from affectgraph.labels import LABELS, Emotion, canonical, parse_label_set

DIST = normalise({"happy": 3.0, "neutral": 1.0, "surprised": 0.1234567})


def _records() -> list[Evidence]:
    ref = ModelRef(name="m", revision="abc")
    return [
        FaceEvidence(id="face:0", span=TimeSpan(start=0.2, end=0.4), specialist="face", model=ref,
                     distribution=DIST, confidence=0.7317, frame_index=1,
                     box=Box(x=10.5, y=20.25, width=100.0, height=120.0), detection_score=0.93,
                     track_id=0, embedding=[0.1, -0.2, 1 / 3]),
        FaceEvidence(id="face:1", span=TimeSpan(start=0.4, end=3.2), specialist="face", model=ref,
                     frames=14, reason="no face detected in 14 sampled frames"),
        VoiceEvidence(id="voice:0", span=TimeSpan(start=0.6, end=2.9), specialist="voice",
                      model=ref, features={"F0semitoneFrom27.5Hz_sma3nz_amean": 31.123456789},
                      prosody=Prosody(pitch_mean_hz=151.2, pitch_mean_st=29.4, pitch_range_st=4.1,
                                      loudness=0.83, speaking_rate=3.2, pause_ratio=0.21)),
        TranscriptEvidence(id="text:0", span=TimeSpan(start=0.7, end=2.8), specialist="transcript",
                           model=ref, text="Kids are talking by the door.", language="en",
                           words=[Word(text="Kids", start=0.7, end=0.95, probability=0.98)],
                           distribution=DIST, asr_confidence=0.91),
    ]


def test_json_round_trip_is_exact() -> None:
    adapter = TypeAdapter(list[Evidence])
    records = _records()
    text = adapter.dump_json(records)
    back = adapter.validate_json(text)
    assert back == records
    assert adapter.dump_json(back) == text
    assert [type(r).__name__ for r in back] == [
        "FaceEvidence", "FaceEvidence", "VoiceEvidence", "TranscriptEvidence"]


def test_records_are_frozen_and_reject_unknown_fields() -> None:
    record = _records()[0]
    with pytest.raises(ValidationError):
        record.confidence = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        FaceEvidence.model_validate({**record.model_dump(), "colour": "red"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"id": "face-3"}, "pattern"),
        ({"distribution": {"happy": 0.5, "joyful": 0.5}}, "not canonical"),
        ({"distribution": {"happy": 0.5, "sad": 0.2}}, "sum to"),
        ({"confidence": 1.5}, "less than or equal"),
        ({"span": {"start": 2.0, "end": 1.0}}, "ends"),
    ],
)
def test_invalid_records_are_rejected(change: dict, message: str) -> None:
    data = {**_records()[0].model_dump(), **change}
    with pytest.raises(ValidationError, match=message):
        FaceEvidence.model_validate(data)


def test_normalise_and_label() -> None:
    assert set(DIST) == set(LABELS) and sum(DIST.values()) == pytest.approx(1.0)
    assert _records()[0].label == "happy" and _records()[1].label is None
    assert not _records()[1].decided
    assert normalise({}) == {label: 1 / 7 for label in LABELS}


def test_renumber_orders_by_time_per_modality() -> None:
    records = list(reversed(_records()))
    ids = [r.id for r in renumber(records)]
    assert ids == ["face:0", "face:1", "text:0", "voice:0"]


def test_timespan_geometry() -> None:
    a, b = TimeSpan(start=1, end=3), TimeSpan(start=2, end=5)
    assert a.overlap(b) == 1 and a.duration == 2 and a.contains(3.05, tolerance=0.1)
    overlap = Box(x=0, y=0, width=2, height=2).iou(Box(x=1, y=0, width=2, height=2))
    assert overlap == pytest.approx(1 / 3)


def test_label_maps() -> None:
    assert canonical("calm", "ravdess") is Emotion.NEUTRAL
    assert canonical("ps", "tess") is Emotion.SURPRISED
    assert canonical("Joy") is Emotion.HAPPY
    assert canonical("contempt", "faces_web") is None
    assert canonical("Mad", "emorynlp") is Emotion.ANGRY
    with pytest.raises(ConfigError, match="did you mean 'angry'"):
        canonical("angyr")
    assert parse_label_set("angry, happy,neutral,sad") == (
        Emotion.ANGRY, Emotion.HAPPY, Emotion.NEUTRAL, Emotion.SAD)
    with pytest.raises(ConfigError):
        parse_label_set("happy,shame")


def test_schema_is_json_serialisable() -> None:
    schema = TypeAdapter(list[Evidence]).json_schema()
    assert "FaceEvidence" in json.dumps(schema)
