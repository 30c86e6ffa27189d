"""The voice specialist on real RAVDESS speech and synthetic edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectgraph import media
from affectgraph.errors import InputError, MediaError
from affectgraph.evidence import TimeSpan, Turn, VoiceEvidence
from affectgraph.segments import TurnOptions, VadModel, find_turns
from affectgraph.tools.voice import VoiceModel, analyze_voice

from .conftest import write_video, write_wav

SR = media.SAMPLE_RATE


@pytest.fixture(scope="module")
def vad() -> VadModel:
    return VadModel.load()


@pytest.fixture(scope="module")
def model() -> VoiceModel:
    return VoiceModel.load()


def ravdess(data_dir: Path, actor: int, emotion: int = 1) -> Path:
    intensity = 1 if emotion == 1 else 2
    name = f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}.wav"
    return data_dir / "ravdess_speech" / "wav" / f"Actor_{actor:02d}" / name


def voice_of(path: Path, vad: VadModel, model: VoiceModel) -> VoiceEvidence:
    records = analyze_voice(path, find_turns(path, vad=vad), model=model)
    assert len(records) == 1 and records[0].decided
    return records[0]


# Neutral RAVDESS speech: male F0 means 95-162 Hz, female 176-241 Hz over actors 01-18.
@pytest.mark.parametrize(
    "actor, low, high", [(1, 80, 200), (3, 80, 200), (2, 150, 300), (4, 150, 300)]
)
def test_prosody_of_real_speech(
    data_dir: Path, vad: VadModel, model: VoiceModel, actor: int, low: float, high: float
) -> None:
    record = voice_of(ravdess(data_dir, actor), vad, model)
    assert record.id == "voice:0" and record.specialist == "voice" and record.channel is None
    assert record.model.name == "egemaps-v02" and record.model.revision
    assert len(record.features) == 88 and list(record.features) == model.feature_names
    assert all(np.isfinite(v) for v in record.features.values())
    assert record.distribution is None
    p = record.prosody
    assert p is not None and p.pitch_mean_hz is not None and p.pitch_mean_st is not None
    assert low < p.pitch_mean_hz < high
    assert p.pitch_mean_hz == pytest.approx(27.5 * 2 ** (p.pitch_mean_st / 12))
    assert 0.5 < (p.pitch_range_st or 0) < 12
    assert p.loudness > 0.02
    assert 1.5 < p.speaking_rate < 8  # voiced segments (~syllables) per second
    assert 0.1 < p.pause_ratio < 0.9


def test_angry_speech_is_louder_and_higher(
    data_dir: Path, vad: VadModel, model: VoiceModel
) -> None:
    neutral = voice_of(ravdess(data_dir, 1, emotion=1), vad, model).prosody
    angry = voice_of(ravdess(data_dir, 1, emotion=5), vad, model).prosody
    assert neutral is not None and angry is not None
    assert angry.loudness > 2 * neutral.loudness
    assert (angry.pitch_mean_st or 0) > (neutral.pitch_mean_st or 0) + 5


def test_audiovisual_clip(ravdess_clip: Path, vad: VadModel, model: VoiceModel) -> None:
    turns = find_turns(ravdess_clip, vad=vad)
    record = voice_of(ravdess_clip, vad, model)
    assert record.span == turns[0].span
    assert record.prosody is not None and 80 < (record.prosody.pitch_mean_hz or 0) < 300  # male


def test_silence_gives_one_record_with_a_reason(
    tmp_path: Path, vad: VadModel, model: VoiceModel
) -> None:
    wav = write_wav(tmp_path / "silence.wav", np.zeros(2 * SR, np.float32))
    records = analyze_voice(wav, find_turns(wav, vad=vad), model=model)
    assert len(records) == 1
    record = records[0]
    assert (
        record.id == "voice:0"
        and not record.decided
        and "no speech detected" in (record.reason or "")
    )
    assert record.span == TimeSpan(start=0, end=2.0)
    assert record.features == {} and record.prosody is None and record.distribution is None


def test_too_short_clip(data_dir: Path, tmp_path: Path, vad: VadModel, model: VoiceModel) -> None:
    speech = media.read_audio(ravdess(data_dir, 1), mono=True)[0]
    clip = write_wav(tmp_path / "blip.wav", speech[int(1.4 * SR) : int(1.6 * SR)])
    assert find_turns(clip, vad=vad) == []  # shorter than TurnOptions.min_speech
    records = analyze_voice(clip, [Turn(span=TimeSpan(start=0, end=0.2))], model=model)
    assert len(records) == 1 and "too short" in (records[0].reason or "")
    assert records[0].features == {} and records[0].prosody is None


def test_unvoiced_turn(tmp_path: Path, model: VoiceModel) -> None:
    hiss = np.random.default_rng(0).normal(0, 0.1, 2 * SR).astype(np.float32)
    wav = write_wav(tmp_path / "hiss.wav", hiss)
    records = analyze_voice(wav, [Turn(span=TimeSpan(start=0.2, end=1.8))], model=model)
    assert "no voiced frames" in (records[0].reason or "") and records[0].features == {}


def test_split_channels_are_analysed_apart(
    data_dir: Path, tmp_path: Path, vad: VadModel, model: VoiceModel
) -> None:
    male = media.read_audio(ravdess(data_dir, 1), mono=True)[0]
    female = media.read_audio(ravdess(data_dir, 2), mono=True)[0]
    stereo = np.zeros((2, 7 * SR), np.float32)
    stereo[0, : male.size] = male
    stereo[1, 3 * SR : 3 * SR + female.size] = 0.5 * female
    stereo[0, 3 * SR : 3 * SR + female.size] += 0.05 * female  # a little crosstalk
    call = write_wav(tmp_path / "call.wav", stereo)
    turns = find_turns(call, options=TurnOptions(channels="split", roles=("a", "b")), vad=vad)
    assert [t.channel for t in turns] == [0, 1]

    records = analyze_voice(call, turns, model=model)
    assert [(r.id, r.channel) for r in records] == [("voice:0", 0), ("voice:1", 1)]
    pitches = [r.prosody.pitch_mean_hz if r.prosody else 0 for r in records]
    assert 80 < (pitches[0] or 0) < 200 and 150 < (pitches[1] or 0) < 300

    # Only the male speaker's channel is heard in this turn, not the crosstalk of the mix.
    (only_male,) = analyze_voice(call, [turns[0]], model=model)
    assert only_male.channel == 0 and only_male.prosody.pitch_mean_hz == pitches[0]

    with pytest.raises(InputError, match="on channel 2"):
        analyze_voice(call, [Turn(span=turns[0].span, channel=2)], model=model)


def test_records_are_numbered_in_time_order(data_dir: Path, model: VoiceModel) -> None:
    wav = ravdess(data_dir, 1)
    turns = [Turn(span=TimeSpan(start=1.5, end=2.4)), Turn(span=TimeSpan(start=0.9, end=1.5))]
    seen: list[float] = []
    records = analyze_voice(wav, turns, model=model, progress=seen.append)
    assert [(r.id, r.span.start) for r in records] == [("voice:0", 0.9), ("voice:1", 1.5)]
    assert seen == [1.5, 2.4]


def test_an_injected_classifier_gives_a_distribution(data_dir: Path, model: VoiceModel) -> None:
    shapes: list[tuple[int, ...]] = []

    def classifier(features: np.ndarray) -> dict[str, float]:
        shapes.append(features.shape)
        return {"happy": 3.0, "sad": 1.0}

    classified = VoiceModel(model.smile, model.revision, classifier=classifier)
    record = analyze_voice(
        ravdess(data_dir, 1), [Turn(span=TimeSpan(start=0.9, end=2.5))], model=classified
    )[0]
    assert shapes == [(88,)]
    assert record.distribution is not None and record.label == "happy"
    assert record.distribution["happy"] == pytest.approx(0.75)


def test_file_without_audio(tmp_path: Path, model: VoiceModel) -> None:
    clip = write_video(tmp_path / "mute.mp4", tone_hz=None)
    with pytest.raises(MediaError, match="no audio stream"):
        analyze_voice(clip, [], model=model)
    with pytest.raises(MediaError, match="no audio stream"):
        analyze_voice(clip, [Turn(span=TimeSpan(start=0, end=0.8))], model=model)
