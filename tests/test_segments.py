"""Voice activity -> speech turns, on real RAVDESS speech and synthetic edge cases."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pydantic
import pytest

from affectgraph import media
from affectgraph.errors import ConfigError, MediaError
from affectgraph.evidence import TimeSpan
from affectgraph.segments import (
    FRAME,
    FRAME_SECONDS,
    Segmenter,
    TurnOptions,
    VadModel,
    find_turns,
    voicing,
)

from .conftest import write_video, write_wav

SR = media.SAMPLE_RATE


@pytest.fixture(scope="module")
def vad() -> VadModel:
    return VadModel.load(threads=1)


def ravdess(data_dir: Path, actor: int, emotion: int = 1) -> Path:
    intensity = 1 if emotion == 1 else 2
    name = f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}.wav"
    return data_dir / "ravdess_speech" / "wav" / f"Actor_{actor:02d}" / name


def energy_span(samples: np.ndarray, floor_db: float = 30.0) -> TimeSpan:
    """First to last 20 ms frame within ``floor_db`` of the loudest frame."""
    frames = samples[: samples.size // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = np.flatnonzero(level > level.max() - floor_db)
    return TimeSpan(start=active[0] * 0.02, end=(active[-1] + 1) * 0.02)


def concatenation(
    data_dir: Path, seconds: float, seed: int = 0
) -> tuple[np.ndarray, list[TimeSpan]]:
    """RAVDESS utterances (leading/trailing silence trimmed) separated by 1-2.5 s of silence,
    and where each utterance lies."""
    rng = np.random.default_rng(seed)
    wavs = sorted((data_dir / "ravdess_speech" / "wav").glob("Actor_0[1-4]/*.wav"))
    parts, truth, t = [np.zeros(int(0.7 * SR), np.float32)], [], 0.7
    for wav in rng.permutation(wavs):
        if t > seconds:
            break
        audio = media.read_audio(wav, mono=True)[0]
        span = energy_span(audio)
        speech = audio[int(span.start * SR) : int(span.end * SR)]
        gap = rng.uniform(1.0, 2.5)
        parts += [speech, np.zeros(int(gap * SR), np.float32)]
        truth.append(TimeSpan(start=t, end=t + speech.size / SR))
        t += speech.size / SR + int(gap * SR) / SR
    return np.concatenate(parts), truth


@pytest.mark.parametrize("actor", [1, 2])
def test_one_turn_covers_a_ravdess_utterance(data_dir: Path, vad: VadModel, actor: int) -> None:
    wav = ravdess(data_dir, actor)
    turns = find_turns(wav, vad=vad)
    assert len(turns) == 1
    turn, speech = turns[0], energy_span(media.read_audio(wav, mono=True)[0])
    assert turn.channel is None and turn.role is None
    assert turn.span.overlap(speech) / speech.duration > 0.85
    pad = TurnOptions().pad
    assert abs(turn.span.start + pad - speech.start) < 0.3
    assert turn.span.duration < speech.duration + 2 * pad + 0.5


def test_a_shouted_first_word_stays_in_the_turn(speech_wav: Path, vad: VadModel) -> None:
    # Actor 01, angry: Silero scores the shouted "Kids" (1.02-1.28 s) below 0.5 and the rest
    # ("are talking by the door") from 1.44 s; the default threshold and pad keep the word.
    [turn] = find_turns(speech_wav, vad=vad)
    assert turn.span.start < 1.0 and turn.span.end > 3.0


def test_speech_turn_of_an_audiovisual_clip(ravdess_clip: Path, vad: VadModel) -> None:
    turns = find_turns(ravdess_clip, vad=vad)
    speech = energy_span(media.read_audio(ravdess_clip, mono=True)[0])
    assert len(turns) == 1
    assert turns[0].span.overlap(speech) / speech.duration > 0.85
    assert 1.0 < turns[0].span.duration < media.probe(ravdess_clip).duration - 1.0


def test_silence_gives_no_turns(tmp_path: Path, vad: VadModel) -> None:
    quiet = np.random.default_rng(0).normal(0, 1e-4, 3 * SR).astype(np.float32)
    assert find_turns(write_wav(tmp_path / "quiet.wav", quiet), vad=vad) == []


def test_file_without_audio_is_a_media_error(tmp_path: Path, vad: VadModel) -> None:
    clip = write_video(tmp_path / "mute.mp4", tone_hz=None)
    with pytest.raises(MediaError, match="no audio stream"):
        find_turns(clip, vad=vad)


def test_split_channels_give_turns_per_speaker(
    data_dir: Path, tmp_path: Path, vad: VadModel
) -> None:
    left = media.read_audio(ravdess(data_dir, 1), mono=True)[0]
    right = media.read_audio(ravdess(data_dir, 2), mono=True)[0]
    stereo = np.zeros((2, 8 * SR), np.float32)
    stereo[0, : left.size] = left  # speaks at ~1-2.5 s
    stereo[1, 4 * SR : 4 * SR + right.size] = right  # speaks at ~5-6.5 s
    call = write_wav(tmp_path / "call.wav", stereo)

    options = TurnOptions(channels="split", roles=("agent", "customer"))
    turns = find_turns(call, options=options, vad=vad)
    assert [(t.channel, t.role) for t in turns] == [(0, "agent"), (1, "customer")]
    assert turns[0].span.end < 4.0 < turns[1].span.start

    mixed = find_turns(call, vad=vad)
    assert [t.channel for t in mixed] == [None, None]
    for a, b in zip(mixed, turns, strict=True):
        assert a.span.overlap(b.span) > 0.8 * b.span.duration

    with pytest.raises(ConfigError, match="give 2 role"):
        find_turns(call, options=TurnOptions(channels="split", roles=("agent",)), vad=vad)


def test_chunked_detection_equals_one_pass(data_dir: Path, tmp_path: Path, vad: VadModel) -> None:
    audio, truth = concatenation(data_dir, seconds=75)
    long = write_wav(tmp_path / "long.wav", audio)
    seen: list[float] = []
    options = TurnOptions(chunk_seconds=7.3)
    chunked = find_turns(long, options=options, vad=vad, progress=seen.append)
    whole = find_turns(long, options=TurnOptions(chunk_seconds=200), vad=vad)

    assert chunked == whole
    boundaries = np.arange(7.3, audio.size / SR, 7.3)
    assert any(t.span.contains(b) for t in chunked for b in boundaries)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(audio.size / SR, abs=1e-3)
    # Nearly every utterance is found as its own turn (a few strong RAVDESS ones defeat Silero).
    found = [u for u in truth if any(t.span.overlap(u) > 0.7 * u.duration for t in chunked)]
    assert len(found) >= 0.9 * len(truth)
    assert len(chunked) <= len(truth)


def test_vad_stream_does_not_depend_on_piece_sizes(data_dir: Path, vad: VadModel) -> None:
    audio = media.read_audio(ravdess(data_dir, 3), mono=True)[0]
    one = vad.stream()
    whole = np.concatenate([one.push(audio)[0], one.finish()[0]])
    pieces, stream = [], vad.stream()
    cuts = [0, 100, 700, 1300, 20_000, audio.size]
    for a, b in itertools.pairwise(cuts):
        pieces.append(stream.push(audio[a:b])[0])
    pieces.append(stream.finish()[0])
    assert np.array_equal(np.concatenate(pieces), whole)
    assert whole.size == -(-audio.size // 512) and whole.max() > 0.9


def test_long_monologue_is_cut_at_its_quietest_point() -> None:
    options = TurnOptions(max_turn=4.0, min_silence=0.3, pad=0.0, merge_gap=0.0)
    frames = int(10 / FRAME_SECONDS)
    energy = np.ones(frames, np.float32)
    dip = int(3.0 / FRAME_SECONDS)  # a breath 3 s in: inside the searched second half
    energy[dip] = 1e-4
    segmenter = Segmenter(options)
    segmenter.feed(np.ones(frames, np.float32), energy)
    segments = segmenter.finish()
    assert segments[0] == (0, dip)
    assert all((e - s) * FRAME_SECONDS <= options.max_turn for s, e in segments)
    assert segments[-1][1] == frames and all(a[1] == b[0] for a, b in itertools.pairwise(segments))


def test_real_speech_respects_max_turn(data_dir: Path, tmp_path: Path, vad: VadModel) -> None:
    audio, _ = concatenation(data_dir, seconds=20, seed=1)
    # Squeeze the pauses to ~0.15 s: with min_silence 0.6 s it is one 11 s stretch of speech.
    level = np.convolve(np.abs(audio), np.ones(400) / 400, mode="same")
    keep = np.convolve(level > 1e-3, np.ones(int(0.15 * SR)), mode="same") > 0
    speech = write_wav(tmp_path / "monologue.wav", audio[keep])
    [whole] = find_turns(speech, options=TurnOptions(min_silence=0.6, max_turn=60), vad=vad)
    assert whole.span.duration > 10

    options = TurnOptions(min_silence=0.6, max_turn=5.0)
    turns = find_turns(speech, options=options, vad=vad)
    assert len(turns) >= 3
    assert all(2.0 < t.span.duration <= options.max_turn for t in turns[:-1])
    assert all(a.span.end == b.span.start for a, b in itertools.pairwise(turns))
    assert turns[0].span.start == whole.span.start and turns[-1].span.end == whole.span.end


def test_options_are_checked() -> None:
    with pytest.raises(pydantic.ValidationError):
        TurnOptions(treshold=0.4)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        TurnOptions(channels="left")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        TurnOptions(roles=("agent", " "))
    with pytest.raises(pydantic.ValidationError, match="twice pad"):
        TurnOptions(max_turn=2.0, pad=0.6)


@pytest.mark.parametrize("name", ["03-01-03-02-01-01-06.wav", "03-01-05-02-01-01-06.wav",
                                  "03-01-06-02-01-01-06.wav"])
def test_shouted_speech_keeps_its_turn_where_silero_doubts_it(data_dir: Path, vad: VadModel,
                                                              name: str) -> None:
    # Silero passes 0.4 for a few frames, then drops while the actress shouts the sentence.
    clip = data_dir / "ravdess_speech" / "wav" / "Actor_06" / name
    assert find_turns(clip, options=TurnOptions(loud_db=None), vad=vad) == []
    [turn] = find_turns(clip, vad=vad)
    assert turn.span.start < 0.8 and turn.span.duration > 1.2


def test_loud_noise_after_speech_does_not_hold_the_turn_open(data_dir: Path, tmp_path: Path,
                                                             vad: VadModel) -> None:
    speech = media.read_audio(
        data_dir / "ravdess_speech/wav/Actor_01/03-01-05-02-01-01-01.wav", mono=True)[0][: 3 * SR]
    level = float(np.sqrt(np.mean(speech[np.abs(speech) > 0.02] ** 2)))
    noise = np.random.default_rng(0).normal(0, level, 5 * SR).astype(np.float32)
    path = write_wav(tmp_path / "then-noise.wav", np.concatenate([speech, noise]))
    alone = find_turns(path, options=TurnOptions(loud_db=None), vad=vad)
    assert find_turns(path, vad=vad) == alone
    assert alone and alone[-1].span.end < 4.0


def test_voicing_tells_a_pitched_frame_from_noise() -> None:
    t = np.arange(FRAME) / SR
    frames = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 800 * t),
                       np.random.default_rng(0).normal(size=FRAME), np.zeros(FRAME)])
    pitched_low, pitched_high, noise, silence = voicing(frames.astype(np.float32))
    assert pitched_low > 0.8 and pitched_high > 0.8
    assert noise < 0.2 and silence == 0.0
