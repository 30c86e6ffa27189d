"""End to end: the analysis graph on real clips and on synthetic edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import pytest

from affectgraph import AnalyzeOptions, Analyzer
from affectgraph.errors import MediaError
from affectgraph.graphs.analyze import compile_analysis_graph

from .conftest import write_video, write_wav

SENTENCE = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(AnalyzeOptions(strict=True))


@pytest.fixture(scope="module")
def clip_analysis(analyzer: Analyzer, ravdess_clip: Path):
    return analyzer.analyze(ravdess_clip)


def test_real_clip_gives_all_three_modalities(clip_analysis) -> None:
    a = clip_analysis
    assert a.failures == {} and a.skipped == {}
    faces = [e for e in a.of("face") if e.decided]
    assert len(faces) >= 0.8 * 16  # a face in most of the ~16 sampled frames
    assert len({e.track_id for e in faces}) == 1  # one person, one track
    voice = a.of("voice")
    assert voice and voice[0].prosody is not None and len(voice[0].features) == 88
    assert voice[0].distribution and voice[0].model.name == "egemaps-v02+voice-head"
    text = " ".join(e.text for e in a.of("text"))
    assert jiwer.wer(SENTENCE["01"], _norm(text)) <= 0.15
    assert all(e.distribution for e in a.of("text") if e.text)


def test_speech_turn_covers_the_utterance(clip_analysis) -> None:
    turns = clip_analysis.turns
    words = [w for e in clip_analysis.of("text") for w in e.words]
    assert turns and words
    assert turns[0].span.start <= words[0].start + 0.1
    assert turns[-1].span.end >= words[-1].end - 0.1


def test_ids_are_unique_and_time_ordered(clip_analysis) -> None:
    ids = [e.id for e in clip_analysis.evidence]
    assert len(ids) == len(set(ids))
    for modality in ("face", "voice", "text"):
        starts = [e.span.start for e in clip_analysis.of(modality)]
        assert starts == sorted(starts)
        assert [int(e.id.split(":")[1]) for e in clip_analysis.of(modality)] == list(
            range(len(starts)))


def test_analysis_json_round_trip(clip_analysis) -> None:
    from affectgraph.analysis import Analysis

    text = clip_analysis.model_dump_json()
    assert Analysis.model_validate_json(text) == clip_analysis
    assert json.loads(text)["schema_version"] == "1.0"


def test_speech_wav_is_audio_only(analyzer: Analyzer, speech_wav: Path) -> None:
    a = analyzer.analyze(speech_wav)
    assert a.skipped == {"face": "the file has no video stream"}
    assert jiwer.wer(SENTENCE["01"], _norm(" ".join(e.text for e in a.of("text")))) <= 0.15
    assert a.of("voice")[0].prosody.pitch_mean_hz is not None


def test_photo_gives_face_only(analyzer: Analyzer, face_photo: Path) -> None:
    a = analyzer.analyze(face_photo)
    assert set(a.skipped) == {"voice", "transcript"}
    (face,) = a.of("face")
    assert face.decided and face.box is not None and face.span.start == 0


def test_silent_black_video_abstains_with_reasons(analyzer: Analyzer, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "black.mp4", seconds=2.0, tone_hz=0.0)
    a = analyzer.analyze(clip)
    assert a.failures == {}
    (face,) = a.of("face")
    assert "no face" in face.reason and face.distribution is None
    (voice,) = a.of("voice")
    assert "no speech" in voice.reason
    assert a.of("text") == [] and a.turns == []


def test_very_short_clip(analyzer: Analyzer, tmp_path: Path) -> None:
    sr = 16_000
    t = np.arange(int(0.2 * sr)) / sr
    wav = write_wav(tmp_path / "short.wav", 0.3 * np.sin(2 * np.pi * 180 * t), sr)
    a = analyzer.analyze(wav)
    assert a.failures == {}
    assert all(e.reason for e in a.of("voice"))


@pytest.mark.parametrize("content", [b"not a video at all\n" * 50, bytes(range(256)) * 40])
def test_unreadable_files_raise_media_error(analyzer: Analyzer, tmp_path: Path,
                                            content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=r"clip\.mp4"):
        analyzer.analyze(path)


def test_a_failing_specialist_does_not_sink_the_run(ravdess_clip: Path, tmp_path: Path) -> None:
    """With the face model missing, voice and transcript still deliver and the failure is named."""
    from affectgraph.models import ModelRegistry

    registry = ModelRegistry(dict(ModelRegistry.default().specs), home=tmp_path)  # empty cache
    analyzer = Analyzer(AnalyzeOptions(), registry=registry)
    a = analyzer.analyze(ravdess_clip)
    assert "face" in a.failures and "models pull" in a.failures["face"]
    assert a.of("voice") and a.of("face") == []
    # the verdict comes from the other modalities and names what failed
    assert a.verdict is not None and "face" not in a.verdict.modality_weights
    assert "without face: ModelUnavailable" in a.verdict.note  # (whisper is missing too)
    assert a.verdict.note.endswith("the verdict rests on voice")


def test_given_transcript_replaces_asr(analyzer: Analyzer, ravdess_clip: Path,
                                       tmp_path: Path) -> None:
    vtt = tmp_path / "clip.vtt"
    vtt.write_text("WEBVTT\n\n00:00:00.800 --> 00:00:02.500\nI am so happy today!\n")
    a = analyzer.analyze(ravdess_clip, transcript=vtt)
    (text,) = a.of("text")
    assert text.source == "given" and text.text == "I am so happy today!"
    assert text.span.start == pytest.approx(0.8)


def test_given_plain_text_transcript_spans_the_clip(analyzer: Analyzer, ravdess_clip: Path,
                                                     tmp_path: Path) -> None:
    txt = tmp_path / "clip.txt"
    txt.write_text("Kids are talking by the door.\n")
    (text,) = analyzer.analyze(ravdess_clip, transcript=txt).of("text")
    assert text.source == "given" and text.span.end == pytest.approx(3.24, abs=0.05)


def test_state_is_serialisable_and_graph_shape_is_stable(analyzer: Analyzer,
                                                         speech_wav: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = compile_analysis_graph(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    graph.invoke(analyzer.inputs(speech_wav), config, context=analyzer.context())
    snapshot = graph.get_state(config)
    assert snapshot.values["media"].kind == "audio"
    drawing = graph.get_graph().draw_mermaid()
    for edge in ("ingest", "speech", "face", "voice", "transcript", "collect"):
        assert edge in drawing


def test_the_verdict_is_verified_and_cites_this_clips_evidence(clip_analysis) -> None:
    v = clip_analysis.verdict
    assert v is not None and v.aggregator.startswith("fusion")
    assert v.grounding == 1.0 and v.rationale and not v.rejected
    known = {e.id for e in clip_analysis.evidence} | {
        e.citation for e in clip_analysis.exemplars}
    from affectgraph.verdict import expand_ids

    for step in v.rationale:
        assert step.grounded and set(expand_ids(step.cites)) <= known
    assert v.timeline and v.timeline[0].span.start >= 0
    assert set(v.modality_weights) == {"face", "voice", "text"}
    assert abs(sum(v.modality_weights.values()) - 1) < 0.01
    assert clip_analysis.seconds["aggregate"] + clip_analysis.seconds["verify"] < 0.5


def test_photo_and_speech_get_verdicts_from_what_they_have(analyzer: Analyzer,
                                                           face_photo: Path,
                                                           speech_wav: Path) -> None:
    photo = analyzer.analyze(face_photo).verdict
    assert photo is not None and set(photo.modality_weights) == {"face"}
    speech = analyzer.analyze(speech_wav).verdict
    assert speech is not None and set(speech.modality_weights) <= {"voice", "text"}
    assert "voice" in speech.modality_weights and speech.grounding == 1.0


def test_streaming_retrieves_aggregates_and_verifies_once(analyzer: Analyzer,
                                                          ravdess_clip: Path) -> None:
    from affectgraph.api import to_analysis

    nodes, state = [], None
    for mode, chunk in analyzer.stream(ravdess_clip):
        if mode == "updates":
            nodes += list(chunk)
        else:
            state = chunk
    assert [n for n in nodes if n in ("retrieve", "aggregate", "verify")] == [
        "retrieve", "aggregate", "verify"]
    assert nodes.index("retrieve") > max(nodes.index(n) for n in ("face", "voice", "transcript"))
    assert to_analysis(state).verdict.grounding == 1.0


def test_silence_abstains_with_its_reason(analyzer: Analyzer, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "black.mp4", seconds=2.0, tone_hz=0.0)
    v = analyzer.analyze(clip).verdict
    assert v is not None and v.label is None and "no specialist" in v.abstention


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())
