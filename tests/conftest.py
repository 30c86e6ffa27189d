"""Shared fixtures: the real labelled data in ../shared/data and small synthetic media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REFERENCE_ANALYSIS = REPO / "tests" / "reference" / "verifier_ravdess_clip.json"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: {DATA}")
    return DATA


@pytest.fixture(scope="session")
def ravdess_clip(data_dir: Path) -> Path:
    """A real RAVDESS audio-visual clip: actor 05, happy, "Kids are talking by the door"."""
    return data_dir / "ravdess_av" / "mp4" / "01-01-03-01-01-02-05.mp4"


@pytest.fixture(scope="session")
def reference_analysis(ravdess_clip: Path):
    """The stored real analysis of ``ravdess_clip``, pointed at this checkout's copy of the clip.

    ``tests/reference/verifier_ravdess_clip.json`` was written on one machine; the clip's absolute
    path differs on another (CI clones elsewhere), so only its file name must match.
    """
    from affectgraph.analysis import Analysis

    stored = Analysis.model_validate_json(REFERENCE_ANALYSIS.read_text(encoding="utf-8"))
    assert Path(stored.media.path).name == ravdess_clip.name
    media = stored.media.model_copy(update={"path": str(ravdess_clip)})
    return stored.model_copy(update={"media": media})


@pytest.fixture(scope="session")
def speech_wav(data_dir: Path) -> Path:
    """A real RAVDESS speech wav: actor 01, angry (strong), "Kids are talking by the door"."""
    return data_dir / "ravdess_speech" / "wav" / "Actor_01" / "03-01-05-02-01-01-01.wav"


@pytest.fixture(scope="session")
def face_photo(data_dir: Path) -> Path:
    return data_dir / "faces_web" / "images" / "anger" / "Al_Gore_0002.jpg"


def write_video(
    path: Path,
    *,
    seconds: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    tone_hz: float | None = 440.0,
    sample_rate: int = 16_000,
) -> Path:
    """Write a black video (optionally with a sine tone, or silence when ``tone_hz`` is 0)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=sample_rate) if tone_hz is not None else None
        black = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        for _ in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(black, format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32) if tone_hz else (
                np.zeros_like(t, dtype=np.float32))
            frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 16_000) -> Path:
    """Write float samples (n,) or (channels, n) in [-1, 1] as 16-bit PCM wav."""
    import wave

    data = np.atleast_2d(samples)
    pcm = (np.clip(data, -1, 1) * 32767).astype("<i2").T.copy()
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(data.shape[0])
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(pcm.tobytes())
    return path


# -- exemplar retrieval: loaded vectorisers shared by the retrieval tests ----------------------

@pytest.fixture(scope="session")
def exemplar_text_vec():  # -> features.TextVectoriser (imported lazily)
    from affectgraph.features import vectoriser

    return vectoriser("text")


@pytest.fixture(scope="session")
def exemplar_voice_vec():  # -> features.VoiceVectoriser (imported lazily)
    from affectgraph.features import vectoriser

    return vectoriser("voice")
