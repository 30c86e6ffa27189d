"""Emotion in words, behind a pluggable interface.

Any object with a ``name``, a ``revision`` and ``predict(texts)`` returning one canonical
distribution per text (``None`` for a text without words) is a :class:`TextEmotionModel`.
Models are found through the entry-point group ``affectgraph.text_emotion`` (name -> a callable
returning a loaded model); the built-ins are registered there the same way a plugin package
registers its own, and :func:`load_text_emotion` builds one by name (unknown names fail with the
valid ones listed).

The default, ``minilm-head``, is the project's trained head over MiniLM sentence embeddings
(:mod:`affectgraph.heads.text`, MiniLM's top two layers fine-tuned: MELD dev weighted-F1 0.567,
0.584 mixed with the kNN vote of the default text library at the weight its manifest records).
The built-in ``nade`` model (fastText emoji features + LightGBM, MIT, from the ``nade`` package)
scores Plutchik's eight emotions independently in [0, 1]. It is a weak start, measured on MELD dev
(1109 Friends utterances, 7 canonical labels): macro-F1 0.22, weighted-F1 0.34, accuracy 0.44,
against weighted-F1 0.25 for always answering neutral.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from affectgraph.errors import ModelUnavailable, unknown_name
from affectgraph.evidence import Distribution, normalise
from affectgraph.labels import Emotion, canonical


@runtime_checkable
class TextEmotionModel(Protocol):
    """A text emotion classifier: canonical distributions (sum to 1) per text, None for no words."""

    name: str
    revision: str

    def predict(self, texts: Sequence[str]) -> list[Distribution | None]: ...


def has_words(text: str) -> bool:
    """Whether ``text`` holds at least one letter or digit."""
    return any(ch.isalnum() for ch in text)


class NadeTextEmotion:
    """The ``nade`` package's Plutchik-8 regressors mapped onto the canonical labels.

    Joy, sadness, anger, fear, disgust and surprise map to their canonical labels; trust and
    anticipation have none and are dropped. Nade scores each emotion on its own and has no
    neutral, so neutral gets the chance that none of the six is present if they were
    independent, ``prod(1 - score)``; then the seven scores are normalised. On MELD train this
    rule gave macro-F1 0.23 against 0.17 for ``1 - max(score)`` (the rule was chosen on train,
    the figures in the module docstring are on dev).
    """

    name = "nade"

    def __init__(self, nade: object, revision: str) -> None:
        self.nade = nade
        self.revision = revision

    @classmethod
    def load(cls) -> NadeTextEmotion:
        """Load nade's models (about 0.2-1.3 s; its first load unpacks them next to its code)."""
        try:
            import nade
        except ImportError as exc:
            raise ModelUnavailable(f"text emotion model 'nade' needs its package ({exc}): "
                                   "pip install nade") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "unpack <emotion> model"
                model = nade.Nade()
        except OSError as exc:
            folder = Path(nade.__file__).parent / "data"
            raise ModelUnavailable(
                f"nade could not unpack its models into {folder} ({exc}); run "
                "`python -c 'import nade; nade.Nade()'` once as a user who may write there"
            ) from None
        return cls(model, f"nade-{nade.__version__}")

    def predict(self, texts: Sequence[str]) -> list[Distribution | None]:
        """One canonical distribution per text; ``None`` for a text without words."""
        kept = [i for i, text in enumerate(texts) if has_words(text)]
        out: list[Distribution | None] = [None] * len(texts)
        if not kept:
            return out
        raw = self.nade.predict([texts[i] for i in kept])  # type: ignore[attr-defined]
        scores = {label: column.to_pylist() for label, column in raw.items()}
        for row, index in enumerate(kept):
            out[index] = _to_canonical({label: s[row] for label, s in scores.items()})
        return out


def _to_canonical(plutchik: dict[str, float]) -> Distribution:
    mapped: dict[Emotion, float] = {}
    for label, score in plutchik.items():
        emotion = canonical(label, scheme="plutchik")
        if emotion is not None:
            mapped[emotion] = min(1.0, max(0.0, float(score)))
    mapped[Emotion.NEUTRAL] = math.prod(1.0 - s for s in mapped.values())
    return normalise({e.value: s for e, s in mapped.items()})


TextEmotionLoader = Callable[[], TextEmotionModel]

ENTRY_POINTS = "affectgraph.text_emotion"
DEFAULT = "minilm-head"


def text_emotion_loaders() -> dict[str, Callable[[], TextEmotionLoader]]:
    """Every registered text emotion model: name -> a function importing its loader."""
    from importlib.metadata import entry_points

    return {ep.name: ep.load for ep in entry_points(group=ENTRY_POINTS)}


def load_text_emotion(name: str = DEFAULT) -> TextEmotionModel:
    """Load the text emotion model registered as ``name``.

    Raises :class:`~affectgraph.errors.ConfigError` (with a "did you mean") for an unknown name and
    :class:`~affectgraph.errors.ModelUnavailable` when the model's files or package are missing.
    """
    loaders = text_emotion_loaders()
    if name not in loaders:
        raise unknown_name("text emotion model", name, loaders)
    return loaders[name]()()
