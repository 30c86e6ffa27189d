"""Voice activity detection -> speech turns.

:func:`find_turns` streams a file's audio in chunks through Silero VAD v6 (MIT licence, the
16 kHz "sequence" ONNX export shipped in the ``silero-vad`` wheel: one ONNX Runtime call per chunk
instead of one per 32 ms frame, and no torch import) and turns the per-frame speech
probabilities into :class:`~affectgraph.evidence.Turn` spans:

1. a frame is speech when its probability reaches ``threshold``; a turn ends once the
   probability stays below ``threshold - 0.15`` for ``min_silence`` seconds (hysteresis, as
   Silero's own ``get_speech_timestamps``). Inside a turn, a periodic frame as loud as its
   speech (periodicity >= 0.35, within ``loud_db`` of the turn's loudest frame so far and
   ``loud_db`` above the noise floor, the 10th percentile of the last 10 s) counts as speech
   too: Silero's probability drops on shouted, strained speech, the loudest a customer gets,
   while noise is hardly periodic (white noise 0.10-0.14; shouting mostly 0.4-0.9);
2. a turn that grows past ``max_turn`` seconds is cut at its quietest frame (energy smoothed
   over 96 ms) in the second half of that window, so long monologues become several turns;
3. turns shorter than ``min_speech`` are dropped, the rest padded by ``pad`` seconds each side and
   joined when less than ``merge_gap`` seconds apart (as long as the join stays within
   ``max_turn``).

The recurrent state, the 64-sample context and any partial frame carry over from one chunk to the
next, so chunked detection gives exactly the frame probabilities (and turns) of a single pass
over the whole file while memory stays bounded by one chunk.

>>> options = TurnOptions(channels="split", roles=("agent", "customer"))
>>> turns = find_turns("call.wav", options=options)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from affectgraph import media
from affectgraph.errors import ConfigError, InputError, ModelUnavailable
from affectgraph.evidence import TimeSpan, Turn

ChannelMode = Literal["mix", "split"]

SAMPLE_RATE = media.SAMPLE_RATE
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame
FRAME_SECONDS = FRAME / SAMPLE_RATE
_HYSTERESIS = 0.15  # a turn ends below threshold - 0.15 (Silero's default negative threshold)
_QUIET_KERNEL = np.array([0.25, 0.5, 0.25])  # smooths energy when seeking a turn's quietest point
_BLOCK = 256  # frames (8.2 s) per ONNX call: bounds the runtime's buffers (~10 MB)
_FLOOR_FRAMES = 312  # 10 s of frame energies behind the noise floor
_VOICED = 0.35  # periodicity (normalised autocorrelation peak) of a frame that may be speech
_PITCH_LAGS = slice(32, 267)  # lags of 500 Hz down to 60 Hz pitch at 16 kHz
_MODEL_FILE = "silero_vad_16k_sequence.onnx"


class TurnOptions(BaseModel):
    """How voice activity becomes speech turns. Times are in seconds.

    ``channels="mix"`` runs one VAD over the mono mix (the mean of the channels); ``"split"`` runs
    one VAD per channel, for a stereo call where each channel holds one speaker. ``roles`` names
    the speaker of each VAD stream (one name in mix mode, one per channel in split mode) and sets
    :attr:`Turn.role`. ``threads`` is used when :func:`find_turns` loads the model itself.

    Why these defaults: on the 144 RAVDESS speech clips, Silero's own 0.5 threshold and a
    0.1 s pad left turns from which whisper tiny.en heard the whole sentence in 119 clips;
    0.4 and 0.3 s give 126 (128 from the whole clips), mostly by keeping shouted first words.
    Silero alone finds no speech in 3 strong-emotion clips of one actress (its probability
    passes 0.4 for 2-6 frames, then drops while she shouts); ``loud_db`` 10 dB keeps those turns
    (0.7-2.1, 0.7-2.8 and 0.8-3.0 s) and changes 2 of the other 148 RAVDESS clips' turns, by at
    most 0.26 s; white noise at speech level right after speech does not lengthen the turn.
    ``loud_db=None`` trusts Silero alone.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(default=0.4, gt=0, lt=1)
    min_speech: float = Field(default=0.25, ge=0)
    min_silence: float = Field(default=0.3, ge=0)
    pad: float = Field(default=0.3, ge=0)
    max_turn: float = Field(default=15.0, ge=1)
    merge_gap: float = Field(default=0.3, ge=0)
    channels: ChannelMode = "mix"
    roles: tuple[str, ...] | None = None
    chunk_seconds: float = Field(default=30.0, ge=1)
    threads: int = Field(default=1, ge=1)
    loud_db: float | None = Field(default=10.0, gt=0)

    @field_validator("roles")
    @classmethod
    def _named(cls, roles: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if roles is not None and (not roles or not all(r.strip() for r in roles)):
            raise ValueError(f"roles must be non-empty names, one per channel, got {roles!r}")
        return roles

    @model_validator(mode="after")
    def _room_to_pad(self) -> TurnOptions:
        if self.max_turn - 2 * self.pad < 1:
            raise ValueError(
                f"max_turn ({self.max_turn} s) must exceed twice pad ({self.pad} s) by 1 s or more"
            )
        return self


class VadModel:
    """A loaded Silero VAD ONNX session; :meth:`stream` starts an independent detector state."""

    def __init__(self, session, path: Path) -> None:  # session: onnxruntime.InferenceSession
        self.session = session
        self.path = path

    @classmethod
    def load(cls, path: str | Path | None = None, *, threads: int = 1) -> VadModel:
        """Load the model from ``path`` (default: the file inside the installed ``silero-vad``
        package) with ``threads`` intra-op threads."""
        import onnxruntime

        file = Path(path) if path is not None else _packaged_model()
        if not file.is_file():
            raise ModelUnavailable(f"Silero VAD model file not found: {file}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(session, file)

    def stream(self) -> VadStream:
        return VadStream(self)


def _packaged_model() -> Path:
    # find_spec locates the package without importing it (its __init__ imports torch).
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("voice activity detection needs `pip install silero-vad`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / _MODEL_FILE


class VadStream:
    """Per-frame speech probabilities of one audio stream fed in pieces of any length.

    Carries the LSTM state, the context samples and the samples of an incomplete frame from one
    :meth:`push` to the next, so the result does not depend on how the audio was cut.
    """

    def __init__(self, model: VadModel) -> None:
        self.session = model.session
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)
        self.samples = 0

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed (n,) float32 samples at 16 kHz; returns (probability, energy, voicing) per
        completed frame, each (frames,) float32: energy is the frame's mean square, voicing its
        periodicity (:func:`voicing`)."""
        self.samples += samples.size
        audio = np.concatenate((self.pending, samples.astype(np.float32, copy=False)))
        whole = audio.size // FRAME * FRAME
        self.pending = audio[whole:]
        frames = audio[:whole].reshape(-1, FRAME)
        blocks = [self._run(frames[i : i + _BLOCK]) for i in range(0, len(frames), _BLOCK)]
        if not blocks:
            return _no_frames()
        probs, energy, voiced = (np.concatenate([b[k] for b in blocks]) for k in range(3))
        return probs, energy, voiced

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score the last, zero-padded partial frame (if any)."""
        if not self.pending.size:
            return _no_frames()
        frame = np.zeros((1, FRAME), dtype=np.float32)
        frame[0, : self.pending.size] = self.pending
        self.pending = np.zeros(0, dtype=np.float32)
        return self._run(frame)

    def _run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        contexts = np.empty((len(frames), CONTEXT), dtype=np.float32)
        contexts[0] = self.context
        contexts[1:] = frames[:-1, -CONTEXT:]
        self.context = frames[-1, -CONTEXT:].copy()
        probs, self.h, self.c = self.session.run(
            ["speech_probs", "hn", "cn"],
            {"input": np.concatenate((contexts, frames), axis=1), "h": self.h, "c": self.c},
        )
        return probs.reshape(-1), np.mean(frames * frames, axis=1), voicing(frames)


def voicing(frames: np.ndarray) -> np.ndarray:
    """Periodicity of each (frames, 512) frame: the highest autocorrelation at a pitch lag
    (60-500 Hz; higher voices peak at a multiple of their period) over the frame's energy, 0-1."""
    centred = frames - frames.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, 2 * FRAME, axis=1)) ** 2
    lagged = np.fft.irfft(power, axis=1)
    peak = lagged[:, _PITCH_LAGS].max(axis=1) / np.maximum(lagged[:, 0], 1e-12)
    return np.clip(peak, 0.0, 1.0).astype(np.float32)


def _no_frames() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)


class Segmenter:
    """Turns per-frame probabilities into speech segments ``(first frame, end frame)``.

    Segments are at most ``max_turn - 2 * pad`` seconds long, so padded turns fit ``max_turn``.
    Keeps the energies of the open segment's frames and of the last 10 s.
    """

    def __init__(self, options: TurnOptions) -> None:
        self.threshold = options.threshold
        self.negative = max(options.threshold - _HYSTERESIS, 0.01)
        self.loud = None if options.loud_db is None else 10 ** (-options.loud_db / 10)
        self.recent: deque[float] = deque(maxlen=_FLOOR_FRAMES)
        self.peak = 0.0
        self.min_silence = int(np.ceil(options.min_silence / FRAME_SECONDS))
        self.min_speech = options.min_speech / FRAME_SECONDS
        self.max_frames = int((options.max_turn - 2 * options.pad) / FRAME_SECONDS)
        self.frame = 0
        self.start: int | None = None
        self.silence: int | None = None
        self.energy: list[float] = []
        self.segments: list[tuple[int, int]] = []

    def feed(self, probs: np.ndarray, energies: np.ndarray,
             voiced: np.ndarray | None = None) -> None:
        """Frames' speech probabilities, energies and periodicities (``None``: no frame counts
        as voiced, so Silero alone decides)."""
        periodic = np.zeros(len(probs)) if voiced is None else voiced
        for p, e, v in zip(probs.tolist(), energies.tolist(), periodic.tolist(), strict=True):
            self._step(p, e, v)
            self.frame += 1

    def finish(self) -> list[tuple[int, int]]:
        if self.start is not None:
            self._close(self.silence if self.silence is not None else self.frame)
        return self.segments

    def _step(self, p: float, energy: float, voiced: float) -> None:
        i = self.frame
        self.recent.append(energy)
        if self.start is None:
            if p >= self.threshold:
                self.start, self.silence, self.energy, self.peak = i, None, [energy], energy
            return
        self.energy.append(energy)
        self.peak = max(self.peak, energy)
        if p >= self.threshold or self._as_loud_as_speech(energy, voiced):
            self.silence = None
        elif p < self.negative:
            self.silence = i if self.silence is None else self.silence
            if i + 1 - self.silence >= self.min_silence:
                self._close(self.silence)
                return
        if i + 1 - self.start > self.max_frames:
            self._cut_at_quietest()

    def _as_loud_as_speech(self, energy: float, voiced: float) -> bool:
        """Whether a frame Silero doubts is periodic, as loud as the open turn's speech and well
        above the noise floor (so steady loud sound does not hold a turn open for long)."""
        if self.loud is None or voiced < _VOICED or energy < self.peak * self.loud:
            return False
        floor = float(np.percentile(self.recent, 10))
        return energy * self.loud >= floor

    def _close(self, end: int) -> None:
        assert self.start is not None
        if end - self.start >= self.min_speech:
            self.segments.append((self.start, end))
        self.start, self.silence, self.energy = None, None, []

    def _cut_at_quietest(self) -> None:
        assert self.start is not None
        energy = np.convolve(np.pad(self.energy, 1, mode="edge"), _QUIET_KERNEL, mode="valid")
        half = self.max_frames // 2
        cut = self.start + half + int(np.argmin(energy[half:]))
        end = cut if self.silence is None else min(cut, self.silence)
        self.segments.append((self.start, end))
        self.energy = self.energy[cut - self.start :]
        self.start = cut
        if self.silence is not None and self.silence < cut:
            self.silence = cut


class _ChannelDetector:
    """VAD state and segmenter of one audio stream (the mix, or one channel)."""

    def __init__(self, vad: VadModel, options: TurnOptions) -> None:
        self.stream = vad.stream()
        self.segmenter = Segmenter(options)

    def push(self, samples: np.ndarray) -> None:
        self.segmenter.feed(*self.stream.push(samples))

    def finish(self) -> tuple[list[tuple[int, int]], float]:
        """The segments in frames and the stream's duration in seconds."""
        self.segmenter.feed(*self.stream.finish())
        return self.segmenter.finish(), self.stream.samples / SAMPLE_RATE


def find_turns(
    path: str | Path,
    *,
    options: TurnOptions = TurnOptions(),
    vad: VadModel | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Turn]:
    """Find the speech turns of a file's audio, sorted by start time (then channel).

    Reads the audio in ``options.chunk_seconds`` chunks (memory does not grow with the file).
    Returns an empty list when nobody speaks. ``progress`` gets the seconds of audio processed.
    Raises :class:`~affectgraph.errors.MediaError` for a file without an audio stream, and
    :class:`~affectgraph.errors.ConfigError` when ``options.roles`` does not name one role per
    VAD stream.
    """
    vad = vad or VadModel.load(threads=options.threads)
    detectors: list[_ChannelDetector] = []
    for chunk in media.iter_audio(path, chunk_seconds=options.chunk_seconds):
        signals = list(_signals(chunk.samples, options.channels))
        if not detectors:
            _check_roles(options, len(signals), path)
            detectors = [_ChannelDetector(vad, options) for _ in signals]
        for detector, signal in zip(detectors, signals, strict=True):
            detector.push(signal)
        if progress is not None:
            progress(chunk.end)
    split = options.channels == "split"
    turns = [
        Turn(span=span, channel=channel if split else None,
             role=options.roles[channel] if options.roles else None)
        for channel, detector in enumerate(detectors)
        for span in spans_from_segments(*detector.finish(), options)
    ]
    return sorted(turns, key=lambda t: (t.span.start, channel_order(t.channel)))


def channel_order(channel: int | None) -> int:
    """A sort key for a turn's channel: the mono mix (``None``) first."""
    return -1 if channel is None else channel


def turn_signal(samples: np.ndarray, turn: Turn, path: str | Path) -> np.ndarray:
    """The (n,) signal of ``turn`` from (channels, n) audio: its channel, or the mono mix."""
    if turn.channel is None or not samples.size:
        return mix_down(samples)
    if turn.channel >= samples.shape[0]:
        raise InputError(
            f"a turn at {turn.span} is on channel {turn.channel} but {path} has "
            f"{samples.shape[0]} audio channel(s); were the turns found on another file?"
        )
    return samples[turn.channel]


def _signals(samples: np.ndarray, mode: ChannelMode) -> Iterator[np.ndarray]:
    """The (n,) signals to run VAD on: the mix, or each channel."""
    if mode == "mix":
        yield mix_down(samples)
    else:
        yield from samples


def mix_down(samples: np.ndarray) -> np.ndarray:
    """The mean of (channels, n) audio over its channels: the (n,) mono mix."""
    return samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]


def _check_roles(options: TurnOptions, streams: int, path: str | Path) -> None:
    if options.roles is not None and len(options.roles) != streams:
        raise ConfigError(
            f"roles {options.roles!r} name {len(options.roles)} speaker(s) but {path} gives "
            f"{streams} VAD stream(s) with channels={options.channels!r}; give {streams} role(s) "
            "(one per channel in split mode, one in mix mode) or none"
        )


def spans_from_segments(
    segments: list[tuple[int, int]], duration: float, options: TurnOptions
) -> list[TimeSpan]:
    """Pad segments (in frames) by ``options.pad``, join those closer than ``merge_gap`` while
    the result stays within ``max_turn``, and split overlapping padding halfway. Seconds,
    clipped to ``[0, duration]``."""
    spans: list[tuple[float, float]] = []
    for first, end in segments:
        start = max(0.0, first * FRAME_SECONDS - options.pad)
        stop = min(duration, end * FRAME_SECONDS + options.pad)
        if spans:
            prev_start, prev_stop = spans[-1]
            if start - prev_stop < options.merge_gap and stop - prev_start <= options.max_turn:
                spans[-1] = (prev_start, stop)
                continue
            if start < prev_stop:
                middle = (start + prev_stop) / 2
                spans[-1], start = (prev_start, middle), middle
        spans.append((start, stop))
    return [TimeSpan(start=round(s, 3), end=round(e, 3)) for s, e in spans if e > s]
