from __future__ import annotations

import os
import resource
from pathlib import Path

import numpy as np
import pytest

from affectgraph import media
from affectgraph.errors import MediaError

from .conftest import write_video, write_wav


def test_probe_real_clip(ravdess_clip: Path) -> None:
    info = media.probe(ravdess_clip)
    assert info.kind == "video" and info.has_video and info.has_audio
    assert (info.width, info.height) == (1280, 720)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert 3.1 < info.duration < 3.4
    assert info.fps == pytest.approx(29.97, abs=0.01)


def test_probe_wav_and_image(speech_wav: Path, face_photo: Path) -> None:
    wav = media.probe(speech_wav)
    assert wav.kind == "audio" and wav.audio_sample_rate == 48_000 and wav.audio_channels == 1
    image = media.probe(face_photo)
    assert image.kind == "image" and image.duration == 0
    assert (image.width, image.height) == (350, 350)


def test_frames_sampled_at_rate(ravdess_clip: Path) -> None:
    frames = list(media.iter_frames(ravdess_clip, fps=5.0, max_side=640))
    times = np.array([f.time for f in frames])
    assert 15 <= len(frames) <= 17
    assert np.allclose(np.diff(times), 0.2, atol=0.035)
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    assert [f.index for f in frames] == list(range(len(frames)))


def test_frames_from_a_time_range(ravdess_clip: Path) -> None:
    frames = list(media.iter_frames(ravdess_clip, fps=10.0, start=1.0, end=2.0, max_side=320))
    assert frames and frames[0].time >= 1.0 - 1e-6 and frames[-1].time <= 2.0
    assert 9 <= len(frames) <= 11


def test_audio_chunks_are_16k_float_per_channel(ravdess_clip: Path) -> None:
    chunks = list(media.iter_audio(ravdess_clip, chunk_seconds=1.0))
    assert [c.start for c in chunks[:3]] == [0.0, 1.0, 2.0]
    assert all(c.samples.shape[0] == 2 and c.samples.dtype == np.float32 for c in chunks)
    total = sum(c.samples.shape[1] for c in chunks) / media.SAMPLE_RATE
    assert total == pytest.approx(media.probe(ravdess_clip).duration, abs=0.05)
    assert 0.01 < max(float(np.abs(c.samples).max()) for c in chunks) <= 1.0


def test_read_audio_span_matches_chunks(speech_wav: Path) -> None:
    whole = media.read_audio(speech_wav, mono=True)
    part = media.read_audio(speech_wav, mono=True, start=1.0, end=2.0)
    assert part.shape == (1, 16_000)
    assert np.corrcoef(whole[0, 16_000:32_000], part[0])[0, 1] > 0.99


def test_iter_spans_cuts_each_span_once(tmp_path: Path) -> None:
    sr = 16_000
    ramp = np.linspace(-1, 1, 10 * sr, dtype=np.float32)
    wav = write_wav(tmp_path / "ramp.wav", ramp, sr)
    spans = [(6.0, 7.5), (0.5, 1.0), (2.9, 3.1)]
    got = dict(media.iter_spans(wav, spans, mono=True, chunk_seconds=1.0))
    assert sorted(got) == [0, 1, 2]
    for i, (s, e) in enumerate(spans):
        assert got[i].shape[1] == pytest.approx((e - s) * sr, abs=2)
        assert got[i][0, 0] == pytest.approx(ramp[int(s * sr)], abs=1e-3)


def test_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    """Decoding 10 minutes chunk by chunk keeps RSS within a few MB."""
    sr = 16_000
    minute = (0.1 * np.sin(np.arange(60 * sr) / 5)).astype(np.float32)
    path = tmp_path / "long.wav"
    write_wav(path, np.tile(minute, 10), sr)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = sum(c.duration for c in media.iter_audio(path, chunk_seconds=10.0))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert seconds == pytest.approx(600, abs=0.1)
    assert grown_mb < 40  # the whole file as float32 would be 38 MB, plus decoder buffers


def test_still_image_has_one_frame(face_photo: Path) -> None:
    frames = list(media.iter_frames(face_photo))
    assert len(frames) == 1 and frames[0].time == 0 and frames[0].image.shape == (350, 350, 3)


def test_black_video_with_tone(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "black.mp4", seconds=1.0)
    info = media.probe(clip)
    assert info.has_video and info.has_audio and 0.9 < info.duration < 1.2
    frame = next(media.iter_frames(clip))
    assert frame.image.max() < 20


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), "empty"),
        (lambda d: _write(d / "notes.mp4", b"these are my meeting notes\n" * 20), "text file"),
        (lambda d: _write(d / "noise.mkv", os.urandom(4096)), "not a readable media file"),
    ],
)
def test_bad_files_raise_media_error(tmp_path: Path, make, problem: str) -> None:
    path = make(tmp_path)
    with pytest.raises(MediaError) as caught:
        media.probe(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_truncated_clip_is_corrupt(tmp_path: Path, ravdess_clip: Path) -> None:
    broken = _write(tmp_path / "cut.mp4", ravdess_clip.read_bytes()[: 200_000])
    media.probe(broken)  # the header is intact; the damage shows when decoding
    with pytest.raises(MediaError, match=r"cut.mp4: truncated or corrupt: decoding stopped"):
        list(media.iter_frames(broken))
    with pytest.raises(MediaError, match=r"cut.mp4: truncated or corrupt"):
        list(media.iter_audio(broken))


def test_zero_duration_and_no_streams(tmp_path: Path) -> None:
    empty_wav = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(MediaError, match="zero duration"):
        media.probe(empty_wav)


def test_audio_only_file_has_no_video(speech_wav: Path) -> None:
    with pytest.raises(MediaError, match="no video stream"):
        next(media.iter_frames(speech_wav))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "suffix, video, audio",
    [
        (".mkv", "libx264", "aac"),
        (".webm", "libvpx", "libopus"),
        (".mov", "mpeg4", "aac"),
        (".avi", "mpeg4", "mp3"),
        (".mp3", None, "mp3"),
        (".flac", None, "flac"),
        (".ogg", None, "libopus"),
        (".m4a", None, "aac"),
        (".png", "png", None),
    ],
)
def test_common_containers_probe_and_decode(tmp_path: Path, suffix: str, video: str | None,
                                            audio: str | None) -> None:
    """Each container is written here with PyAV (a tone, grey frames), then read back."""
    path = _encode(tmp_path / f"clip{suffix}", video, audio)
    info = media.probe(path)
    assert info.has_video == bool(video) and info.has_audio == bool(audio)
    if audio:
        assert 1.8 < info.duration < 2.3
        samples = media.read_audio(path, mono=True)[0]
        assert abs(samples.size / media.SAMPLE_RATE - 2.0) < 0.15
        assert 0.1 < np.abs(samples).max() <= 1.0
    if video:
        frames = list(media.iter_frames(path, fps=5.0))
        assert frames and frames[0].image.shape == (96, 128, 3)
        assert info.kind == ("image" if suffix == ".png" else "video")


def _encode(path: Path, video: str | None, audio: str | None, seconds: float = 2.0) -> Path:
    import av

    if video == "png":
        import PIL.Image

        PIL.Image.new("RGB", (128, 96), (90, 90, 90)).save(path)
        return path
    with av.open(str(path), "w") as out:
        v = out.add_stream(video, rate=10) if video else None
        if v is not None:
            v.width, v.height, v.pix_fmt = 128, 96, "yuv420p"
        a = out.add_stream(audio, rate=48_000) if audio else None
        if v is not None:
            grey = np.full((96, 128, 3), 90, dtype=np.uint8)
            for _ in range(int(seconds * 10)):
                out.mux(v.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
            out.mux(v.encode(None))
        if a is not None:
            fmt = a.codec_context.codec.audio_formats[0].name
            t = np.arange(int(seconds * 48_000)) / 48_000
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
            frame.sample_rate = 48_000
            resampler = av.AudioResampler(format=fmt, layout="mono", rate=48_000)
            for chunk in resampler.resample(frame):
                out.mux(a.encode(chunk))
            out.mux(a.encode(None))
    return path
