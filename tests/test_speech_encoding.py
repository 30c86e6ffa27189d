"""Whisper-encoder embeddings of speech: shape, what is pooled, long turns, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectgraph import media
from affectgraph.errors import InputError
from affectgraph.evidence import ModelRef
from affectgraph.segments import mix_down
from affectgraph.speech_encoding import (
    FRAME_SAMPLES,
    SpeechEncoding,
    encoder_names,
    feature_names,
)


@pytest.fixture(scope="module")
def encoding() -> SpeechEncoding:
    return SpeechEncoding.load("whisper-base")


@pytest.fixture(scope="module")
def clips(data_dir: Path) -> dict[str, np.ndarray]:
    """Actor 01's neutral and angry RAVDESS clips and actor 02's angry one, 16 kHz mono."""
    folder = data_dir / "ravdess_speech/wav"
    names = {"neutral01": "Actor_01/03-01-01-01-01-01-01.wav",
             "angry01": "Actor_01/03-01-05-02-01-01-01.wav",
             "angry02": "Actor_02/03-01-05-02-01-01-02.wav"}
    return {k: mix_down(media.read_audio(folder / v)) for k, v in names.items()}


def test_embedding_is_the_mean_of_the_frames_covering_the_audio(
        encoding: SpeechEncoding, clips: dict[str, np.ndarray]) -> None:
    signal = clips["angry01"]
    vector = encoding.embed(signal)
    assert vector.shape == (512,) == (encoding.dim,) and vector.dtype == np.float32
    assert np.all(np.isfinite(vector))
    np.testing.assert_array_equal(vector, encoding.embed(signal))  # deterministic
    frames = encoding._encode(signal)
    assert len(frames) == int(np.ceil(signal.size / FRAME_SAMPLES))  # not the 1500 of the window
    np.testing.assert_allclose(vector, frames.mean(axis=0), rtol=1e-6)


def test_embeddings_group_emotion_across_speakers(encoding: SpeechEncoding,
                                                  clips: dict[str, np.ndarray]) -> None:
    """Two actors' angry clips are nearer each other than one actor's angry and neutral ones
    (the property the voice head relies on; eGeMAPS standardised fails it for many pairs)."""
    v = {k: encoding.embed(s) for k, s in clips.items()}
    cos = {k: float(v[k] @ v["angry01"] / np.linalg.norm(v[k]) / np.linalg.norm(v["angry01"]))
           for k in ("neutral01", "angry02")}
    assert cos["angry02"] > cos["neutral01"]


def test_a_turn_longer_than_the_window_is_encoded_in_pieces(
        encoding: SpeechEncoding, clips: dict[str, np.ndarray]) -> None:
    long = np.tile(clips["neutral01"], 10)  # ~37 s: two windows
    assert long.size > 30 * media.SAMPLE_RATE
    vector = encoding.embed(long)
    assert vector.shape == (512,) and np.all(np.isfinite(vector))


def test_features_are_named_values_of_the_embedding(encoding: SpeechEncoding,
                                                    clips: dict[str, np.ndarray]) -> None:
    values = encoding.features(clips["neutral01"])
    assert list(values) == feature_names("whisper-base", 512) == encoding.names
    assert next(iter(values)) == "whisper-base_mean_000"
    np.testing.assert_allclose(list(values.values()), encoding.embed(clips["neutral01"]))


def test_encoder_names_read_a_heads_features_string() -> None:
    assert encoder_names("egemaps-v02+whisper-base-mean512") == ("whisper-base", 512)
    assert encoder_names("egemaps-v02+whisper-tiny.en-mean384") == ("whisper-tiny.en", 384)
    assert encoder_names("egemaps-v02") is None
    assert encoder_names("egemaps-v02-speaker-z+egemaps-v02") is None


def test_too_little_audio_or_not_a_whisper_model_is_refused(encoding: SpeechEncoding) -> None:
    with pytest.raises(InputError, match="320 samples"):
        encoding.embed(np.zeros(100, dtype=np.float32))
    with pytest.raises(InputError, match="shape"):
        encoding.embed(np.zeros((2, 16_000), dtype=np.float32))
    with pytest.raises(InputError, match=r"not a faster_whisper\.WhisperModel"):
        SpeechEncoding.from_whisper(object(), ModelRef(name="x"))
    shared = SpeechEncoding.from_whisper(encoding.whisper, encoding.ref)
    assert shared.whisper is encoding.whisper
