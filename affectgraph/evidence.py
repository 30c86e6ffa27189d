"""Typed, time-stamped evidence records: what every specialist returns and everything cites.

Each record has a stable id (``face:12``, ``voice:3``, ``text:5``) unique within one analysis,
the span of media it speaks for (seconds from the start of the clip), which specialist and model
produced it, the values it measured, a distribution over the canonical labels of
:mod:`affectgraph.labels` when the specialist gives one, a confidence, and a ``reason`` when it
could not decide (no face, silence, a segment too short). Records are immutable pydantic models
whose JSON round-trip is exact.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from affectgraph.labels import LABELS

SCHEMA_VERSION = "1.0"

Modality = Literal["face", "voice", "text"]
MODALITIES: tuple[Modality, ...] = ("face", "voice", "text")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeSpan(_Frozen):
    """A stretch of media in seconds from its start; ``end >= start >= 0``."""

    start: float = Field(ge=0)
    end: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> TimeSpan:
        if self.end < self.start:
            raise ValueError(f"span ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def duration(self) -> float:
        return self.end - self.start

    def contains(self, t: float, tolerance: float = 0.0) -> bool:
        """Whether time ``t`` (s) lies in the span, widened by ``tolerance`` seconds each side."""
        return self.start - tolerance <= t <= self.end + tolerance

    def overlap(self, other: TimeSpan) -> float:
        """Seconds the two spans share."""
        return max(0.0, min(self.end, other.end) - max(self.start, other.start))

    def __str__(self) -> str:
        return f"{self.start:.2f}-{self.end:.2f} s"


def normalise(scores: Mapping[str, float]) -> dict[str, float]:
    """Turn non-negative scores keyed by canonical labels into a distribution (sums to 1).

    Labels missing from ``scores`` get 0; all-zero scores give the uniform distribution.
    """
    unknown = set(scores) - set(LABELS)
    if unknown:
        raise ValueError(f"not canonical labels: {sorted(unknown)}; valid: {', '.join(LABELS)}")
    values = [max(0.0, float(scores.get(label, 0.0))) for label in LABELS]
    total = sum(values)
    if total <= 0 or not math.isfinite(total):
        return {label: 1.0 / len(LABELS) for label in LABELS}
    return {label: v / total for label, v in zip(LABELS, values, strict=True)}


Distribution = dict[str, float]


def top(distribution: Mapping[str, float]) -> tuple[str, float]:
    """The most probable label of a distribution and its probability."""
    label = max(distribution, key=lambda k: distribution[k])
    return label, distribution[label]


class ModelRef(_Frozen):
    """Which model produced a record: its registry name and revision (a version or checksum)."""

    name: str
    revision: str = ""


class _Evidence(_Frozen):
    id: str = Field(pattern=r"^[a-z]+:\d+$")
    span: TimeSpan
    specialist: str
    model: ModelRef
    distribution: Distribution | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    reason: str | None = None

    @field_validator("distribution")
    @classmethod
    def _is_distribution(cls, value: Distribution | None) -> Distribution | None:
        if value is None:
            return value
        unknown = set(value) - set(LABELS)
        if unknown:
            raise ValueError(f"not canonical labels: {sorted(unknown)}")
        if any(p < 0 or p > 1 for p in value.values()):
            raise ValueError("probabilities must lie in [0, 1]")
        if abs(sum(value.values()) - 1.0) > 1e-3:
            raise ValueError(f"probabilities sum to {sum(value.values()):.4f}, not 1")
        return value

    @property
    def label(self) -> str | None:
        """The most probable canonical label, or ``None`` when the record has no distribution."""
        return top(self.distribution)[0] if self.distribution else None

    @property
    def decided(self) -> bool:
        """Whether the specialist could analyse this span (it gave no ``reason`` for not)."""
        return self.reason is None


class Box(_Frozen):
    """A face box in pixels of the original frame: top-left corner, width and height."""

    x: float
    y: float
    width: float = Field(ge=0)
    height: float = Field(ge=0)

    def iou(self, other: Box) -> float:
        """Intersection over union with another box, in [0, 1]."""
        ix = max(0.0, min(self.x + self.width, other.x + other.width) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.height, other.y + other.height) - max(self.y, other.y))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0


def _to_vector(value: object) -> array:
    if isinstance(value, array) and value.typecode == "f":
        return value
    if isinstance(value, str | bytes):
        raise ValueError("a vector is a list of numbers")
    try:
        return array("f", (float(v) for v in value))  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError("a vector is a list of numbers") from None


Vector = Annotated[
    array,
    PlainValidator(_to_vector),
    PlainSerializer(lambda v: v.tolist(), return_type=list[float]),
    WithJsonSchema({"type": "array", "items": {"type": "number"}}),
]
"""A float32 vector: a JSON list of numbers, held as ``array('f')`` (4 bytes a value, not 32:
a 30-minute video has ten thousand face embeddings). JSON round-trips are exact."""


class FaceEvidence(_Evidence):
    """One face in one sampled frame (or, with a ``reason``, a run of frames with no face).

    ``embedding`` is a vector (the expression network's penultimate features, L2-normalised)
    for retrieval; ``track_id`` follows the same face across frames.
    """

    modality: Literal["face"] = "face"
    frame_index: int | None = None
    frames: int = 1
    box: Box | None = None
    detection_score: float | None = Field(default=None, ge=0, le=1)
    track_id: int | None = None
    embedding: Vector | None = None


class Prosody(_Frozen):
    """A readable summary of one speech turn's prosody.

    Pitch in Hz and semitones (re 27.5 Hz, as eGeMAPS); ``pitch_range_st`` is the 20th-80th
    percentile range; loudness in sones (eGeMAPS auditory loudness); speaking rate in voiced
    segments (~syllables) per second; ``pause_ratio`` the share of the turn without voicing.
    """

    pitch_mean_hz: float | None
    pitch_mean_st: float | None
    pitch_range_st: float | None
    loudness: float
    speaking_rate: float
    pause_ratio: float = Field(ge=0, le=1)


class VoiceEvidence(_Evidence):
    """One speech turn: its eGeMAPSv02 functionals and a prosody summary."""

    modality: Literal["voice"] = "voice"
    channel: int | None = None
    features: dict[str, float] = Field(default_factory=dict)
    prosody: Prosody | None = None


class Word(_Frozen):
    """A recognised (or given) word with its time span and probability."""

    text: str
    start: float
    end: float
    probability: float | None = None


class TranscriptEvidence(_Evidence):
    """One transcript segment: its text, words with times, language and text emotion.

    ``speaker`` is the speaker's name when known: the turn's channel role, or a given
    transcript's speaker (a WebVTT ``<v Name>`` tag, a JSON ``speaker``).
    """

    modality: Literal["text"] = "text"
    text: str = ""
    language: str | None = None
    words: list[Word] = Field(default_factory=list)
    source: Literal["asr", "given"] = "asr"
    asr_confidence: float | None = Field(default=None, ge=0, le=1)
    channel: int | None = None
    speaker: str | None = None


Evidence = Annotated[FaceEvidence | VoiceEvidence | TranscriptEvidence,
                     Field(discriminator="modality")]
EVIDENCE_TYPES = {"face": FaceEvidence, "voice": VoiceEvidence, "text": TranscriptEvidence}


def evidence_id(modality: Modality, index: int) -> str:
    """The stable id of the ``index``-th record of a modality, e.g. ``face:12``."""
    return f"{modality}:{index}"


def renumber(records: list[Evidence]) -> list[Evidence]:
    """Give records ids in time order per modality (``voice:0``, ``voice:1``, ...)."""
    ordered = sorted(records, key=lambda r: (r.modality, r.span.start, r.span.end, r.id))
    counts: dict[str, int] = {}
    out: list[Evidence] = []
    for record in ordered:
        index = counts.get(record.modality, 0)
        counts[record.modality] = index + 1
        out.append(record.model_copy(update={"id": evidence_id(record.modality, index)}))
    return out


class Turn(_Frozen):
    """A speech turn found by voice activity detection: a span of the audio.

    ``channel`` is the audio channel the turn was found on (a stereo call analysed one speaker
    per channel), or ``None`` for the mono mix of all channels; ``role`` names the speaker when
    the user gave roles (``agent``, ``customer``).
    """

    span: TimeSpan
    channel: int | None = None
    role: str | None = None
