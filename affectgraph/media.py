"""Probing and chunked decoding of media files with PyAV (FFmpeg inside the wheel).

Everything streams: :func:`iter_frames` yields sampled video frames and :func:`iter_audio` yields
fixed-length chunks of 16 kHz float audio per channel, so memory does not grow with the length of
the recording. Times are seconds from the start of the file.

Readable containers: anything FFmpeg reads (mp4, mkv, webm, mov, avi, wav, mp3, flac, ogg, m4a,
...) and still images (jpg, png, bmp, webp), which have one frame at time 0 and no duration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from affectgraph.errors import MediaError

SAMPLE_RATE = 16_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
_FIX_CORRUPT = ("re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`, "
                "or check the download")


class MediaInfo(BaseModel):
    """What :func:`probe` found in a file."""

    model_config = ConfigDict(frozen=True)

    path: str
    kind: Literal["video", "audio", "image"]
    container: str
    duration: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_channels: int = 0
    audio_sample_rate: int | None = None
    size_bytes: int = 0


@dataclass(frozen=True)
class Frame:
    """One sampled video frame: ``image`` is (height, width, 3) uint8 RGB."""

    index: int
    time: float
    image: np.ndarray


@dataclass(frozen=True)
class AudioChunk:
    """A stretch of audio: ``samples`` is (channels, n) float32 in [-1, 1] at ``sample_rate``."""

    start: float
    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.start + self.samples.shape[1] / self.sample_rate

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate


def _open(path: str | Path):  # -> av.container.InputContainer
    import av

    file = Path(path)
    if not file.exists():
        raise MediaError(file, "no such file", "check the path")
    if file.is_dir():
        raise MediaError(file, "is a folder, not a media file")
    if file.stat().st_size == 0:
        raise MediaError(file, "the file is empty (0 bytes)")
    try:
        return av.open(str(file), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        kind = _sniff(file)
        raise MediaError(file, f"not a readable media file{kind}: {exc.strerror or exc}",
                         _FIX_CORRUPT) from None


def _sniff(file: Path) -> str:
    head = file.read_bytes()[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return " (unrecognised or corrupt bytes)"
    return " (it looks like a text file)"


def probe(path: str | Path) -> MediaInfo:
    """Read a file's streams and duration without decoding it.

    Raises :class:`~affectgraph.errors.MediaError` for a missing, empty, unreadable or corrupt
    file, one with neither an audio nor a video stream, or a zero duration.
    """
    file = Path(path)
    with _open(file) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        fmt = container.format.name
        is_image = video is not None and audio is None and (
            file.suffix.lower() in IMAGE_SUFFIXES or "image2" in fmt or fmt.endswith("_pipe")
        )
        if video is None and audio is None:
            raise MediaError(file, "has no audio and no video stream")
        duration = 0.0 if is_image else _duration(container, video, audio)
        if not is_image and not duration > 0:
            raise MediaError(file, "has zero duration: no frames or samples to analyse")
        if video is not None and video.codec_context.width == 0:
            raise MediaError(file, "video stream has no picture size (corrupt header)",
                             _FIX_CORRUPT)
        kind: Literal["video", "audio", "image"] = (
            "image" if is_image else "video" if video is not None else "audio"
        )
        return MediaInfo(
            path=str(file),
            kind=kind,
            container=fmt,
            duration=duration,
            has_video=video is not None,
            has_audio=audio is not None,
            width=video.codec_context.width if video else None,
            height=video.codec_context.height if video else None,
            fps=float(video.average_rate) if video and video.average_rate else None,
            video_codec=video.codec_context.name if video else None,
            audio_codec=audio.codec_context.name if audio else None,
            audio_channels=audio.codec_context.channels if audio else 0,
            audio_sample_rate=audio.codec_context.sample_rate if audio else None,
            size_bytes=file.stat().st_size,
        )


def _duration(container, video, audio) -> float:
    import av

    if container.duration:
        return container.duration / av.time_base
    for stream in (audio, video):
        if stream is not None and stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    # No duration in the header (some streamed webm/ogg): find the last packet's end time.
    last = 0.0
    try:
        for packet in container.demux():
            if packet.pts is not None and packet.time_base:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                last = max(last, end)
    except av.error.FFmpegError:
        pass
    return last


def iter_frames(
    path: str | Path,
    fps: float = 5.0,
    *,
    start: float = 0.0,
    end: float | None = None,
    max_side: int | None = None,
) -> Iterator[Frame]:
    """Yield frames sampled at ``fps`` between ``start`` and ``end`` seconds.

    A still image yields one frame at time 0. ``max_side`` scales frames down (keeping the aspect
    ratio) so the longer side is at most that many pixels. Frames are taken at the first decoded
    frame at or after each sampling instant ``start + k / fps``.
    """
    import av

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    file = Path(path)
    with _open(file) as container:
        if not container.streams.video:
            raise MediaError(file, "has no video stream", "analyse it without the face specialist")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        size = _scaled_size(stream.codec_context.width, stream.codec_context.height, max_side)
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        step = 1.0 / fps
        next_time = start
        index = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else next_time
                if end is not None and t > end:
                    break
                if t + 1e-6 < next_time:
                    continue
                image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                yield Frame(index=index, time=t, image=image)
                index += 1
                next_time = max(next_time + step, t + step * 0.5)
        except av.error.FFmpegError as exc:
            raise MediaError(file, f"video decoding failed near {next_time:.1f} s: {exc}",
                             _FIX_CORRUPT) from None
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            _check_complete(file, container, next_time - step, start, end)


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale)) // 2 * 2, max(2, round(height * scale)) // 2 * 2


def iter_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    chunk_seconds: float = 30.0,
    start: float = 0.0,
    end: float | None = None,
    mono: bool = False,
) -> Iterator[AudioChunk]:
    """Yield consecutive chunks of ``chunk_seconds`` of float32 audio, one row per channel.

    Audio is resampled to ``sample_rate`` and kept per channel (a stereo call keeps its two
    speakers apart) unless ``mono`` mixes them down. The last chunk may be shorter.
    """
    import av

    file = Path(path)
    chunk_len = max(1, int(round(chunk_seconds * sample_rate)))
    with _open(file) as container:
        if not container.streams.audio:
            raise MediaError(file, "has no audio stream", "analyse it without voice and transcript")
        stream = container.streams.audio[0]
        channels = 1 if mono else max(1, stream.codec_context.channels)
        layout = "mono" if channels == 1 else ("stereo" if channels == 2 else None)
        resampler = av.AudioResampler(
            format="fltp", layout=layout or stream.codec_context.layout, rate=sample_rate
        )
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        buffer = _ChunkBuffer(channels, chunk_len, sample_rate)
        first_time: float | None = None
        position = start
        try:
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = float(frame.time) if frame.time is not None else 0.0
                    # Whatever the seek landed on, samples start at ``first_time``; drop those
                    # before ``start``.
                    buffer.skip = max(0, int(round((start - first_time) * sample_rate)))
                    buffer.time = max(start, first_time) if start > 0 else 0.0
                for out in resampler.resample(frame):
                    yield from buffer.push(out.to_ndarray())
                if end is not None and buffer.time + buffer.filled / sample_rate >= end:
                    break
            for out in resampler.resample(None):
                yield from buffer.push(out.to_ndarray())
        except av.error.FFmpegError as exc:
            position = buffer.time + buffer.filled / sample_rate
            raise MediaError(file, f"audio decoding failed near {position:.1f} s: {exc}",
                             _FIX_CORRUPT) from None
        reached = buffer.time + buffer.filled / sample_rate
        yield from buffer.flush(end)
        _check_complete(file, container, reached, start, end)


def _check_complete(file: Path, container, reached: float, start: float, end: float | None) -> None:
    """Raise when decoding stopped well before the duration the header promised (truncation)."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    expected = _duration(container, video, audio)
    if end is not None:
        expected = min(expected, end)
    if expected - max(reached, start) > max(1.0, 0.05 * expected):
        raise MediaError(
            file,
            f"truncated or corrupt: decoding stopped at {max(reached, 0.0):.1f} s of "
            f"{expected:.1f} s",
            _FIX_CORRUPT,
        )


class _ChunkBuffer:
    """Collects resampled audio into fixed-length chunks (bounded memory)."""

    def __init__(self, channels: int, length: int, sample_rate: int) -> None:
        self.data = np.zeros((channels, length), dtype=np.float32)
        self.filled = 0
        self.skip = 0
        self.time = 0.0
        self.sample_rate = sample_rate

    def push(self, samples: np.ndarray) -> Iterator[AudioChunk]:
        samples = np.asarray(samples, dtype=np.float32).reshape(self.data.shape[0], -1)
        if self.skip:
            dropped = min(self.skip, samples.shape[1])
            samples = samples[:, dropped:]
            self.skip -= dropped
        while samples.shape[1]:
            take = min(samples.shape[1], self.data.shape[1] - self.filled)
            self.data[:, self.filled : self.filled + take] = samples[:, :take]
            self.filled += take
            samples = samples[:, take:]
            if self.filled == self.data.shape[1]:
                yield AudioChunk(self.time, self.data.copy(), self.sample_rate)
                self.time += self.filled / self.sample_rate
                self.filled = 0

    def flush(self, end: float | None) -> Iterator[AudioChunk]:
        n = self.filled
        if end is not None:
            n = min(n, max(0, int(round((end - self.time) * self.sample_rate))))
        if n:
            yield AudioChunk(self.time, self.data[:, :n].copy(), self.sample_rate)
        self.filled = 0


def read_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    start: float = 0.0,
    end: float | None = None,
    mono: bool = False,
) -> np.ndarray:
    """The audio between ``start`` and ``end`` as one (channels, n) float32 array.

    For short files and spans; use :func:`iter_audio` or :func:`iter_spans` for long ones.
    """
    chunks = [c.samples for c in iter_audio(path, sample_rate=sample_rate, start=start, end=end,
                                            mono=mono, chunk_seconds=60.0)]
    if not chunks:
        channels = 1 if mono else max(1, probe(path).audio_channels)
        return np.zeros((channels, 0), dtype=np.float32)
    audio = np.concatenate(chunks, axis=1)
    if end is not None:
        audio = audio[:, : max(0, int(round((end - start) * sample_rate)))]
    return audio


def iter_spans(
    path: str | Path,
    spans: Sequence[tuple[float, float]],
    *,
    sample_rate: int = SAMPLE_RATE,
    chunk_seconds: float = 30.0,
    mono: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut the audio of each ``(start, end)`` span in one streaming pass over the file.

    Yields ``(span index, samples)`` with samples (channels, n) float32, in order of span start.
    Memory is bounded by the longest span plus one chunk.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    if not order:
        return
    pending: list[tuple[int, list[np.ndarray]]] = []
    cursor = 0
    for chunk in iter_audio(path, sample_rate=sample_rate, chunk_seconds=chunk_seconds,
                            start=max(0.0, spans[order[0]][0]), mono=mono):
        while cursor < len(order) and spans[order[cursor]][0] < chunk.end:
            pending.append((order[cursor], []))
            cursor += 1
        done = []
        for entry in pending:
            i, parts = entry
            s, e = spans[i]
            a = max(0, int(round((s - chunk.start) * sample_rate)))
            b = min(chunk.samples.shape[1], int(round((e - chunk.start) * sample_rate)))
            if b > a:
                parts.append(chunk.samples[:, a:b])
            if e <= chunk.end:
                done.append(entry)
        for entry in done:
            pending.remove(entry)
            yield entry[0], _join(entry[1], chunk.samples.shape[0])
        if cursor == len(order) and not pending:
            return
    for i, parts in pending:
        yield i, _join(parts, 1 if mono else None)


def _join(parts: Iterable[np.ndarray], channels: int | None) -> np.ndarray:
    parts = list(parts)
    if parts:
        return np.concatenate(parts, axis=1)
    return np.zeros((channels or 1, 0), dtype=np.float32)
