"""The canonical emotion set and every dataset's or model's label map into it.

Canonical categories are Ekman's six plus neutral. ``contempt`` exists in some datasets
(``faces_web``); it maps to ``None`` (left out) unless a caller asks to keep it.

>>> canonical("calm", scheme="ravdess")
<Emotion.NEUTRAL: 'neutral'>
>>> canonical("joy")
<Emotion.HAPPY: 'happy'>
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from affectgraph.errors import unknown_name


class Emotion(StrEnum):
    """The canonical categories; every evaluation reports on these."""

    NEUTRAL = "neutral"
    HAPPY = "happy"
    SAD = "sad"
    ANGRY = "angry"
    FEARFUL = "fearful"
    DISGUSTED = "disgusted"
    SURPRISED = "surprised"


LABELS: tuple[str, ...] = tuple(e.value for e in Emotion)

# Circumplex coordinates (valence, arousal) in [-1, 1] per category, after Russell (1980) and the
# placements used by AffectNet's annotation guide; used to turn a distribution into valence/arousal.
VALENCE_AROUSAL: Mapping[Emotion, tuple[float, float]] = MappingProxyType(
    {
        Emotion.NEUTRAL: (0.0, 0.0),
        Emotion.HAPPY: (0.8, 0.5),
        Emotion.SAD: (-0.7, -0.4),
        Emotion.ANGRY: (-0.6, 0.8),
        Emotion.FEARFUL: (-0.6, 0.7),
        Emotion.DISGUSTED: (-0.7, 0.3),
        Emotion.SURPRISED: (0.2, 0.8),
    }
)

_E = Emotion
# One table per labelling scheme. Keys are lower-case; ``None`` means "not in the canonical set".
SCHEMES: Mapping[str, Mapping[str, Emotion | None]] = MappingProxyType(
    {
        "canonical": {e.value: e for e in Emotion},
        "ravdess": {
            "neutral": _E.NEUTRAL, "calm": _E.NEUTRAL, "happy": _E.HAPPY, "sad": _E.SAD,
            "angry": _E.ANGRY, "fearful": _E.FEARFUL, "disgust": _E.DISGUSTED,
            "surprised": _E.SURPRISED,
            "01": _E.NEUTRAL, "02": _E.NEUTRAL, "03": _E.HAPPY, "04": _E.SAD, "05": _E.ANGRY,
            "06": _E.FEARFUL, "07": _E.DISGUSTED, "08": _E.SURPRISED,
        },
        "fer": {
            "angry": _E.ANGRY, "disgust": _E.DISGUSTED, "fear": _E.FEARFUL, "happy": _E.HAPPY,
            "sad": _E.SAD, "surprise": _E.SURPRISED, "neutral": _E.NEUTRAL,
        },
        "faces_web": {
            "anger": _E.ANGRY, "contempt": None, "disgust": _E.DISGUSTED, "fear": _E.FEARFUL,
            "happiness": _E.HAPPY, "happy": _E.HAPPY, "neutral": _E.NEUTRAL,
            "sadness": _E.SAD, "surprise": _E.SURPRISED,
        },
        "tess": {
            "angry": _E.ANGRY, "disgust": _E.DISGUSTED, "fear": _E.FEARFUL, "happy": _E.HAPPY,
            "neutral": _E.NEUTRAL, "ps": _E.SURPRISED, "pleasant_surprise": _E.SURPRISED,
            "pleasant surprise": _E.SURPRISED, "surprise": _E.SURPRISED, "sad": _E.SAD,
        },
        "ekman": {
            "anger": _E.ANGRY, "disgust": _E.DISGUSTED, "fear": _E.FEARFUL, "joy": _E.HAPPY,
            "neutral": _E.NEUTRAL, "sadness": _E.SAD, "surprise": _E.SURPRISED,
        },
        "meld": {
            "neutral": _E.NEUTRAL, "joy": _E.HAPPY, "sadness": _E.SAD, "anger": _E.ANGRY,
            "fear": _E.FEARFUL, "disgust": _E.DISGUSTED, "surprise": _E.SURPRISED,
        },
        "emorynlp": {
            "neutral": _E.NEUTRAL, "joyful": _E.HAPPY, "sad": _E.SAD, "mad": _E.ANGRY,
            "scared": _E.FEARFUL, "peaceful": _E.NEUTRAL, "powerful": None,
        },
        "isear": {
            "joy": _E.HAPPY, "fear": _E.FEARFUL, "anger": _E.ANGRY, "sadness": _E.SAD,
            "disgust": _E.DISGUSTED, "shame": None, "guilt": None,
        },
        "plutchik": {
            "joy": _E.HAPPY, "sadness": _E.SAD, "anger": _E.ANGRY, "fear": _E.FEARFUL,
            "disgust": _E.DISGUSTED, "surprise": _E.SURPRISED, "trust": None,
            "anticipation": None,
        },
    }
)


def _aliases() -> dict[str, Emotion | None]:
    merged: dict[str, Emotion | None] = {}
    for table in SCHEMES.values():
        for name, emotion in table.items():
            merged.setdefault(name, emotion)
    return merged


ALIASES: Mapping[str, Emotion | None] = MappingProxyType(_aliases())


def canonical(label: str, scheme: str | None = None) -> Emotion | None:
    """Map ``label`` (any case) to its canonical :class:`Emotion`.

    Looks in ``scheme``'s table when given, else in every known alias. Returns ``None`` for a
    label that is known but outside the canonical set (``contempt``, ``shame``); raises
    :class:`~affectgraph.errors.ConfigError` for a label no table knows.
    """
    if scheme is not None and scheme not in SCHEMES:
        raise unknown_name("label scheme", scheme, SCHEMES)
    table = SCHEMES[scheme] if scheme else ALIASES
    key = label.strip().lower()
    if key not in table:
        raise unknown_name("emotion label", label, table)
    return table[key]


def parse_label_set(text: str) -> tuple[Emotion, ...]:
    """Parse a comma-separated label list (``"angry,happy"``) into canonical emotions."""
    out: list[Emotion] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        emotion = canonical(part)
        if emotion is None:
            raise unknown_name("canonical emotion", part, LABELS)
        if emotion not in out:
            out.append(emotion)
    return tuple(out)
