"""The transcript specialist on real RAVDESS speech: Whisper ASR, windows, given transcripts."""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from affectgraph import media
from affectgraph.errors import ConfigError, InputError, ModelUnavailable
from affectgraph.evidence import TimeSpan, TranscriptEvidence, Turn, normalise
from affectgraph.tools.asr import TranscriptModel
from affectgraph.tools.text_emotion import NadeTextEmotion
from affectgraph.tools.transcript import (
    EMOTION_BATCH,
    TranscriptOptions,
    analyze_transcript,
    plan_windows,
    transcript_from_file,
)
from tests.conftest import write_wav

SENTENCES = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}


@pytest.fixture(scope="module")
def base() -> TranscriptModel:
    return TranscriptModel.load("whisper-base")


@pytest.fixture(scope="module")
def tiny() -> TranscriptModel:
    return TranscriptModel.load("whisper-tiny.en")


@pytest.fixture(scope="module")
def nade() -> NadeTextEmotion:
    return NadeTextEmotion.load()


def _sentence(clip: Path) -> str:
    """The known sentence of a RAVDESS clip (statement, field 5 of the file name)."""
    return SENTENCES[clip.stem.split("-")[4]]


def _wer(records: Sequence[TranscriptEvidence], truth: str) -> float:
    return _wer_text(" ".join(r.text for r in records), truth)


def _wer_text(said: str, truth: str) -> float:
    import jiwer

    said = said.lower()
    said = " ".join(said.translate(str.maketrans("", "", string.punctuation)).split())
    return jiwer.wer(truth, said)


def _whole(clip: Path, channel: int | None = None, role: str | None = None) -> Turn:
    return Turn(span=TimeSpan(start=0.0, end=media.probe(clip).duration), channel=channel,
                role=role)


def _check(records: Sequence[TranscriptEvidence], clip_end: float) -> None:
    """Ids in time order, spans and word times inside the clip and never going back."""
    assert [r.id for r in records] == [f"text:{i}" for i in range(len(records))]
    assert [r.span.start for r in records] == sorted(r.span.start for r in records)
    for record in records:
        assert 0 <= record.span.start <= record.span.end <= clip_end
        assert record.asr_confidence is None or 0 <= record.asr_confidence <= 1
        times = [t for w in record.words for t in (w.start, w.end)]
        assert times == sorted(times)
        assert all(record.span.start <= t <= record.span.end for t in times)


@pytest.mark.parametrize(
    "clip",
    [
        "ravdess_av/mp4/01-01-03-01-01-02-05.mp4",
        "ravdess_av/mp4/01-01-01-01-02-01-05.mp4",
        "ravdess_speech/wav/Actor_02/03-01-04-02-01-01-02.wav",
        "ravdess_speech/wav/Actor_17/03-01-08-02-01-01-17.wav",
    ],
)
def test_ravdess_speech_is_recognised(data_dir: Path, clip: str, base: TranscriptModel,
                                      nade: NadeTextEmotion) -> None:
    path = data_dir / clip
    turn = _whole(path)
    records = analyze_transcript(path, [turn], model=base, text_emotion=nade)
    assert records and all(r.decided and r.source == "asr" for r in records)
    assert _wer(records, _sentence(path)) <= 0.15
    assert {r.language for r in records} == {"en"}
    assert all(r.model.name == "whisper-base" and r.words for r in records)
    assert all(r.asr_confidence is not None and r.asr_confidence > 0.5 for r in records)
    assert all(r.distribution is not None and r.confidence == max(r.distribution.values())
               for r in records)
    _check(records, turn.span.end)


def test_language_detection_and_decoding_share_one_encoder_pass(
        data_dir: Path, base: TranscriptModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from faster_whisper import WhisperModel

    passes: list[int] = []
    encode = WhisperModel.encode
    monkeypatch.setattr(WhisperModel, "encode",
                        lambda self, features: passes.append(1) or encode(self, features))
    clip = data_dir / "ravdess_av/mp4/01-01-03-01-01-02-05.mp4"
    audio = media.read_audio(clip, mono=True)[0]
    detected = base.transcribe(audio)
    assert (detected.language, len(passes)) == ("en", 1)
    given = base.transcribe(audio, language="en")
    assert len(passes) == 2
    assert [s.text for s in detected.segments] == [s.text for s in given.segments]
    assert _wer_text(" ".join(s.text for s in detected.segments), _sentence(clip)) <= 0.15
    # Beyond 30 s, the second stretch is encoded on its own; the first still only once.
    long = np.concatenate([audio, np.zeros(28 * media.SAMPLE_RATE, np.float32), audio])
    passes.clear()
    twice = base.transcribe(long)
    assert len(passes) == 2 and len(twice.segments) == 2


def test_tiny_en_loaded_from_options(speech_wav: Path) -> None:
    options = TranscriptOptions(model="whisper-tiny.en", language="en", beam_size=2)
    records = analyze_transcript(speech_wav, [_whole(speech_wav)], options=options)
    assert _wer(records, _sentence(speech_wav)) <= 0.15
    assert {r.model.name for r in records} == {"whisper-tiny.en"}
    assert {r.language for r in records} == {"en"}


def _concatenate(tmp_path: Path, clips: Sequence[Path], gap: float) -> tuple[Path, list[Turn]]:
    """One 16 kHz wav of the clips with ``gap`` s of silence before each, and their turns."""
    parts, turns, t = [], [], 0.0
    silence = np.zeros(int(gap * media.SAMPLE_RATE), dtype=np.float32)
    for clip in clips:
        audio = media.read_audio(clip, mono=True)[0]
        parts += [silence, audio]
        t += gap
        turns.append(Turn(span=TimeSpan(start=t, end=t + audio.size / media.SAMPLE_RATE)))
        t = turns[-1].span.end
    return write_wav(tmp_path / "long.wav", np.concatenate(parts)), turns


def test_a_longer_recording_in_windows(data_dir: Path, tmp_path: Path, tiny: TranscriptModel,
                                       nade: NadeTextEmotion) -> None:
    clips = [data_dir / "ravdess_av/mp4/01-01-01-01-02-01-05.mp4",
             data_dir / "ravdess_speech/wav/Actor_03/03-01-03-02-01-01-03.wav",
             data_dir / "ravdess_av/mp4/01-01-08-01-02-01-05.mp4",
             data_dir / "ravdess_speech/wav/Actor_10/03-01-05-02-01-01-10.wav"]
    path, turns = _concatenate(tmp_path, clips, gap=1.5)
    assert len(plan_windows(turns, 10.0)) == 2
    seen: list[float] = []
    records = analyze_transcript(path, turns, options=TranscriptOptions(max_window=10.0),
                                 model=tiny, text_emotion=nade, progress=seen.append)
    _check(records, turns[-1].span.end)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(turns[-1].span.end)
    for clip, turn in zip(clips, turns, strict=True):
        inside = [r for r in records if turn.span.overlap(r.span) > 0.5 * r.span.duration]
        assert _wer(inside, _sentence(clip)) <= 0.15, [r.text for r in records]
        assert all(turn.span.contains(w.start, 0.3) for r in inside for w in r.words)


def test_turns_on_two_channels_keep_their_speaker(data_dir: Path, tmp_path: Path,
                                                  tiny: TranscriptModel,
                                                  nade: NadeTextEmotion) -> None:
    kids = media.read_audio(data_dir / "ravdess_speech/wav/Actor_01/03-01-01-01-01-01-01.wav",
                            mono=True)[0]
    dogs = media.read_audio(data_dir / "ravdess_av/mp4/01-01-01-01-02-01-05.mp4", mono=True)[0]
    stereo = np.zeros((2, kids.size + dogs.size), dtype=np.float32)
    stereo[0, : kids.size] = kids
    stereo[1, kids.size :] = dogs
    path = write_wav(tmp_path / "call.wav", stereo)
    middle = kids.size / media.SAMPLE_RATE
    turns = [Turn(span=TimeSpan(start=0, end=middle), channel=0, role="agent"),
             Turn(span=TimeSpan(start=middle, end=stereo.shape[1] / media.SAMPLE_RATE),
                  channel=1, role="customer")]
    records = analyze_transcript(path, turns, model=tiny, text_emotion=nade)
    by_role = {role: [r for r in records if r.speaker == role] for role in ("agent", "customer")}
    assert _wer(by_role["agent"], SENTENCES["01"]) <= 0.15
    assert _wer(by_role["customer"], SENTENCES["02"]) <= 0.15
    assert {r.channel for r in by_role["customer"]} == {1}
    with pytest.raises(InputError, match=r"on channel 2 but .* has 2 audio channel"):
        analyze_transcript(path, [turns[0], Turn(span=turns[1].span, channel=2)], model=tiny,
                           text_emotion=nade)


def test_no_turns_short_turns_and_silence(tmp_path: Path, tiny: TranscriptModel,
                                          nade: NadeTextEmotion) -> None:
    silence = write_wav(tmp_path / "silence.wav", np.zeros(4 * media.SAMPLE_RATE))
    assert analyze_transcript(silence, [], model=tiny, text_emotion=nade) == []
    turns = [Turn(span=TimeSpan(start=0.2, end=0.4)), Turn(span=TimeSpan(start=1.0, end=3.5))]
    records = analyze_transcript(silence, turns, options=TranscriptOptions(max_window=1.0),
                                 model=tiny, text_emotion=nade)
    assert [(r.id, r.span.start, r.text, r.distribution) for r in records] == [
        ("text:0", 0.2, "", None), ("text:1", 1.0, "", None)]
    assert records[0].reason == "speech too short for recognition (0.20 s < 0.30 s)"
    assert records[1].reason == "no words recognised in 1 speech turn(s)"


def test_language_and_option_checks(base: TranscriptModel, tiny: TranscriptModel,
                                    speech_wav: Path) -> None:
    turns = [_whole(speech_wav)]
    with pytest.raises(ConfigError, match="knows only English, not language 'de'"):
        analyze_transcript(speech_wav, turns, options=TranscriptOptions(language="de"), model=tiny)
    with pytest.raises(ConfigError, match="unknown language code 'xx'"):
        analyze_transcript(speech_wav, turns, options=TranscriptOptions(language="xx"), model=base)
    assert TranscriptOptions(language=" EN ").language == "en"
    with pytest.raises(ValidationError, match="ISO 639-1"):
        TranscriptOptions(language="english")
    with pytest.raises(ValidationError, match="extra"):
        TranscriptOptions(modle="whisper-base")  # type: ignore[call-arg]


def test_model_names_paths_and_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'whisper-base'\?.*or the path of"):
        TranscriptModel.load("whisper-bsae")
    with pytest.raises(ModelUnavailable, match=r"holds no model\.bin"):
        TranscriptModel.load(tmp_path)
    with pytest.raises(ModelUnavailable, match="no such model folder"):
        TranscriptModel.load(tmp_path / "nowhere")
    with pytest.raises(ModelUnavailable, match=r"local \.pt checkpoint file.*never downloads"):
        TranscriptModel.load("base", backend="openai-whisper")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ModelUnavailable, match=r"pip install 'affectgraph\[openai-whisper\]'"):
        TranscriptModel.load(tmp_path / "model.pt", backend="openai-whisper")


@pytest.mark.slow
def test_openai_whisper_runs_a_local_checkpoint(tmp_path: Path, ravdess_clip: Path,
                                                nade: NadeTextEmotion) -> None:
    """A tiny random-weight checkpoint: the text is garbage, the path and the records are real."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1,
                           n_audio_layer=1, n_vocab=51865, n_text_ctx=64, n_text_state=64,
                           n_text_head=1, n_text_layer=1)
    model = Whisper(dims)
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)  # torch.empty otherwise
    checkpoint = tmp_path / "tiny-random.pt"
    torch.save({"dims": vars(dims), "model_state_dict": model.state_dict()}, checkpoint)
    options = TranscriptOptions(model=str(checkpoint), backend="openai-whisper", language="en")
    turn = _whole(ravdess_clip)
    records = analyze_transcript(ravdess_clip, [turn], options=options, text_emotion=nade)
    assert records and {r.model.name for r in records} == {"openai-whisper:tiny-random.pt"}
    assert all(r.language == "en" and len(r.model.revision) == 12 for r in records)
    _check(records, turn.span.end)


def test_given_transcripts_replace_recognition(tmp_path: Path, nade: NadeTextEmotion) -> None:
    vtt = tmp_path / "clip.vtt"
    vtt.write_text("WEBVTT\n\n00:00.800 --> 00:02.500\n<v Ann>I am so happy today!\n\n"
                   "00:02.600 --> 00:04.000\n...\n")
    happy, dots = transcript_from_file(vtt, duration=3.3, text_emotion=nade)
    assert (happy.id, happy.source, happy.speaker) == ("text:0", "given", "Ann")
    assert happy.label == "happy"
    assert happy.model.name == "given:clip.vtt" and happy.asr_confidence is None
    assert (dots.span.start, dots.span.end, dots.reason, dots.distribution) == (
        2.6, 3.3, "no words", None)
    with pytest.raises(InputError, match=r"clip.vtt line 3: cue starts at 0.800 s, after the clip"):
        transcript_from_file(vtt, duration=0.5, text_emotion=nade)

    words = [{"word": w, "start": 0.8 + 0.3 * i, "end": 1.0 + 0.3 * i, "probability": 0.9}
             for i, w in enumerate(["Kids", "are", "talking"])]
    whisper_json = tmp_path / "clip.json"
    whisper_json.write_text(json.dumps({"language": "en", "segments": [
        {"start": 0.8, "end": 1.6, "text": " Kids are talking", "words": words}]}))
    (record,) = transcript_from_file(whisper_json, text_emotion=nade)
    assert record.language == "en" and [w.text for w in record.words] == ["Kids", "are", "talking"]
    assert record.distribution is not None

    txt = tmp_path / "clip.txt"
    txt.write_text("I hate you, get out!")
    (record,) = transcript_from_file(txt, duration=3.3, text_emotion=nade,
                                     options=TranscriptOptions(language="en"))
    assert (record.span.start, record.span.end, record.label, record.language) == (
        0.0, 3.3, "angry", "en")


class _CountingEmotion:
    """A text emotion model whose "happy" score is the number ending each text; records calls."""

    name, revision = "counting", "0"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, texts: Sequence[str]) -> list[dict[str, float] | None]:
        self.calls.append(len(texts))
        return [normalise({"happy": float(t.split()[-1]), "sad": 1.0}) for t in texts]


def test_text_emotion_runs_in_bounded_batches(tmp_path: Path) -> None:
    # A long recording's segments reach the text emotion model EMOTION_BATCH at a time (its
    # memory grows with the batch), and each record still gets the distribution of its own text.
    cues = "".join(f"00:{i // 60:02d}:{i % 60:02d}.000 --> 00:{i // 60:02d}:{i % 60:02d}.900\n"
                   f"line {i}\n\n" for i in range(2 * EMOTION_BATCH + 6))
    vtt = tmp_path / "long.vtt"
    vtt.write_text("WEBVTT\n\n" + cues)
    emotion = _CountingEmotion()
    records = transcript_from_file(vtt, duration=100.0, text_emotion=emotion)
    assert emotion.calls == [EMOTION_BATCH, EMOTION_BATCH, 6]
    assert [r.id for r in records] == [f"text:{i}" for i in range(len(records))]
    assert [r.distribution["happy"] for r in records] == pytest.approx(
        [i / (i + 1) for i in range(len(records))])


def test_plan_windows_groups_consecutive_turns_per_channel() -> None:
    def turn(start: float, end: float, channel: int = 0) -> Turn:
        return Turn(span=TimeSpan(start=start, end=end), channel=channel)

    turns = [turn(0, 5), turn(6, 20), turn(21, 29), turn(29.5, 31), turn(2, 4, channel=1),
             turn(40, 80), turn(81, 82)]
    windows = plan_windows(turns, 30.0)
    assert [(w.start, w.end, w.channel, len(w.turns)) for w in windows] == [
        (0, 29, 0, 3), (2, 4, 1, 1), (29.5, 31, 0, 1), (40, 80, 0, 1), (81, 82, 0, 1)]
    assert windows[0].speech == pytest.approx(5 + 14 + 8)
    # With context, a window holds at most max_window - 2 * context of turns, and its audio
    # reaches into the gaps but never past the middle of one.
    padded = plan_windows(turns, 30.0, context=1.0)
    assert [(w.start, w.end, w.channel, len(w.turns)) for w in padded] == [
        (0, 20.5, 0, 2), (1, 5, 1, 1), (20.5, 32, 0, 2), (39, 80.5, 0, 1), (80.5, 83, 0, 1)]
    assert padded[0].speech_span == TimeSpan(start=0, end=20)
