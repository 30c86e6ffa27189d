"""The voice specialist: eGeMAPS functionals and a readable prosody summary per speech turn.

For each :class:`~affectgraph.evidence.Turn` (from :func:`affectgraph.segments.find_turns`) it cuts
the turn's audio in one streaming pass over the file, computes the 88 eGeMAPSv02 functionals
(Eyben et al. 2016) with openSMILE, and reads a :class:`~affectgraph.evidence.Prosody` summary off
those same functionals: pitch mean and 20th-80th percentile range in semitones (re 27.5 Hz),
loudness, voiced segments per second as a speaking rate, and the unvoiced share of the turn.

A class distribution comes from :attr:`VoiceModel.classifier` (the analysis graph plugs in the
trained voice head of :mod:`affectgraph.heads.voice`); without one, records carry
``distribution=None``.

Licence: openSMILE (the ``opensmile`` package and its ``libSMILEapi``) is distributed by audEERING
under a research-only licence: free for private, research and educational use, **no commercial
use** without a commercial licence from audEERING. The voice specialist inherits that restriction.

>>> evidence = analyze_voice("clip.mp4", find_turns("clip.mp4"))  # doctest: +SKIP
>>> evidence[0].prosody.pitch_mean_hz  # doctest: +SKIP
113.2
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph import media
from affectgraph.errors import MediaError
from affectgraph.evidence import (
    ModelRef,
    Prosody,
    TimeSpan,
    Turn,
    VoiceEvidence,
    evidence_id,
    normalise,
)
from affectgraph.segments import channel_order, turn_signal

if TYPE_CHECKING:
    from affectgraph.speech_encoding import SpeechEncoding

MODEL_NAME = "egemaps-v02"
SPECIALIST = "voice"
SAMPLE_RATE = media.SAMPLE_RATE

_F0 = "F0semitoneFrom27.5Hz_sma3nz_"
_F0_REFERENCE_HZ = 27.5

Classifier = Callable[[np.ndarray], Mapping[str, float]]
"""Maps the (88,) float32 functionals, in :attr:`VoiceModel.feature_names` order, to scores per
canonical label (normalised into a distribution)."""


class VoiceOptions(BaseModel):
    """Options of the voice specialist.

    ``min_duration`` (s): shorter turns get a reason instead of features (functionals of a few
    frames are noise). Each turn is analysed on its own channel, or on the mono mix when its
    ``channel`` is ``None``. ``chunk_seconds``: decoding chunk length (memory bound).
    ``head``: classify each turn with the trained voice head (used by the analysis graph);
    ``speaker_normalise``: re-classify each turn with features standardised by the same
    speaker's *other* turns in the recording (channel or role), where there are enough of them
    (:func:`affectgraph.heads.voice.speaker_normalised`). ``encoder``: a Whisper model
    (``whisper-base``) whose encoder embeds each turn beside its functionals, read by the voice
    heads trained on both (:mod:`affectgraph.speech_encoding`): held-out RAVDESS UAR 0.81
    single-clip and 0.85 speaker-normalised against 0.58 and 0.69, at one encoder pass per turn
    (1-3 s on one CPU thread), so it is off by default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_duration: float = Field(default=0.5, gt=0)
    head: bool = True
    speaker_normalise: bool = False
    encoder: Literal["whisper-base"] | None = None
    chunk_seconds: float = Field(default=30.0, ge=1)


@dataclass(frozen=True)
class VoiceModel:
    """An openSMILE eGeMAPSv02 functionals extractor, an optional speech encoder whose
    embedding joins the features, and an optional emotion classifier reading
    ``classifier_features`` (default: the functionals)."""

    smile: object  # opensmile.Smile
    revision: str
    classifier: Classifier | None = None
    classifier_name: str | None = None
    encoding: SpeechEncoding | None = None
    classifier_features: tuple[str, ...] | None = None

    @classmethod
    def load(cls) -> VoiceModel:
        """Create the extractor (about 0.15 s; the library runs on one thread)."""
        import opensmile

        smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.Functionals,
        )
        return cls(smile=smile, revision=opensmile.__version__)

    @property
    def ref(self) -> ModelRef:
        name = f"{MODEL_NAME}+{self.classifier_name}" if self.classifier_name else MODEL_NAME
        return ModelRef(name=name, revision=self.revision)

    @property
    def feature_names(self) -> list[str]:
        """The 88 functional names, in output order."""
        return list(self.smile.feature_names)  # type: ignore[attr-defined]

    def functionals(self, signal: np.ndarray) -> dict[str, float]:
        """The 88 eGeMAPSv02 functionals of a (n,) float32 signal at 16 kHz."""
        frame = self.smile.process_signal(signal, SAMPLE_RATE)  # type: ignore[attr-defined]
        return {name: float(value) for name, value in frame.iloc[0].items()}


def analyze_voice(
    path: str | Path,
    turns: Sequence[Turn],
    *,
    options: VoiceOptions = VoiceOptions(),
    model: VoiceModel | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[VoiceEvidence]:
    """One :class:`VoiceEvidence` per turn (ids ``voice:0``, ... in time order).

    Each record has the 88 eGeMAPSv02 functionals in ``features`` and a ``prosody`` summary; a
    turn shorter than ``options.min_duration`` or without voiced frames gets a ``reason`` and no
    features. With no turns at all, returns one record spanning the whole clip whose reason says
    no speech was detected. ``progress`` gets the end (s) of the latest turn analysed.

    Raises :class:`~affectgraph.errors.MediaError` when the file has no audio stream and
    :class:`~affectgraph.errors.InputError` when a turn names a channel the file lacks.
    """
    model = model or VoiceModel.load()
    if not turns:
        return [_no_speech(path, model)]
    ordered = sorted(turns, key=lambda t: (t.span.start, t.span.end, channel_order(t.channel)))
    records: list[VoiceEvidence | None] = [None] * len(ordered)
    spans = [(t.span.start, t.span.end) for t in ordered]
    done = 0.0
    for i, samples in media.iter_spans(path, spans, chunk_seconds=options.chunk_seconds):
        signal = turn_signal(samples, ordered[i], path)
        records[i] = _analyse_turn(i, ordered[i], signal, model, options)
        done = max(done, ordered[i].span.end)
        if progress is not None:
            progress(done)
    empty = np.zeros(0, dtype=np.float32)
    return [r or _analyse_turn(i, ordered[i], empty, model, options) for i, r in enumerate(records)]


def _no_speech(path: str | Path, model: VoiceModel) -> VoiceEvidence:
    info = media.probe(path)
    if not info.has_audio:
        raise MediaError(path, "has no audio stream", "analyse it without voice and transcript")
    return VoiceEvidence(
        id=evidence_id("voice", 0),
        span=TimeSpan(start=0.0, end=info.duration),
        specialist=SPECIALIST,
        model=model.ref,
        reason="no speech detected in the audio (voice activity found no turns)",
    )


def _analyse_turn(
    index: int, turn: Turn, signal: np.ndarray, model: VoiceModel, options: VoiceOptions
) -> VoiceEvidence:
    seconds = signal.size / SAMPLE_RATE
    if seconds < options.min_duration:
        reason = f"turn too short for prosody ({seconds:.2f} s < {options.min_duration:.2f} s)"
        return _record(index, turn, model, reason=reason)
    features = model.functionals(signal)
    prosody = prosody_from_functionals(features)
    if prosody is None:
        reason = "no voiced frames in the turn (no pitch found: not speech, or too noisy)"
        return _record(index, turn, model, reason=reason)
    if model.encoding is not None:
        features |= model.encoding.features(signal)
    distribution = confidence = None
    if model.classifier is not None:
        names = model.classifier_features or model.feature_names
        vector = np.array([features[name] for name in names], dtype=np.float32)
        distribution = normalise(model.classifier(vector))
        confidence = max(distribution.values())
    return _record(index, turn, model, features=features, prosody=prosody,
                   distribution=distribution, confidence=confidence)


def _record(index: int, turn: Turn, model: VoiceModel, **values: Any) -> VoiceEvidence:
    return VoiceEvidence(
        id=evidence_id("voice", index),
        span=turn.span,
        specialist=SPECIALIST,
        model=model.ref,
        channel=turn.channel,
        **values,
    )


def prosody_from_functionals(features: Mapping[str, float]) -> Prosody | None:
    """The :class:`Prosody` summary read off eGeMAPSv02 functionals; ``None`` when unvoiced.

    ``pitch_mean_hz`` is the mean semitone value converted to Hz (a geometric mean of F0);
    ``pause_ratio`` is 1 - voiced segments per second x mean voiced segment length.
    """
    semitones = features[_F0 + "amean"]
    rate = features["VoicedSegmentsPerSec"]
    if not (semitones > 0 and rate > 0):
        return None
    voiced_share = rate * features["MeanVoicedSegmentLengthSec"]
    return Prosody(
        pitch_mean_hz=_F0_REFERENCE_HZ * 2 ** (semitones / 12),
        pitch_mean_st=semitones,
        pitch_range_st=features[_F0 + "pctlrange0-2"],
        loudness=features["loudness_sma3_amean"],
        speaking_rate=rate,
        pause_ratio=min(1.0, max(0.0, 1.0 - voiced_share)),
    )
