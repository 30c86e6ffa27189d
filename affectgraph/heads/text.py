"""The text emotion model ``minilm-head``: MiniLM sentence embeddings + the trained text head.

The head (``affectgraph/assets/heads/text``, trained by
:mod:`affectgraph.heads.text_training`) maps a 384-d all-MiniLM-L6-v2 embedding to the seven
canonical labels with calibrated probabilities. When the folder holds ``encoder.npz`` (manifest
``features`` ``minilm-l6-v2-tuned``) the embedding comes from MiniLM with its top layers
fine-tuned for emotion (:mod:`affectgraph.heads.text_encoder`); the exemplar libraries keep plain
MiniLM. The manifest's ``retrieval_weight`` is the weight of the kNN vote of the default text
library (k = ``retrieval_k``) in a mixture with the head, chosen on training data. Measured on
data it never saw (MELD and EmoryNLP dev, GoEmotions test), the figures are in its manifest's
``metrics`` and in ``affectgraph train text --evaluate``.

>>> model = MiniLMHeadTextEmotion.load()        # doctest: +SKIP
>>> model.predict(["I am so happy today!", "..."])  # doctest: +SKIP
[{'neutral': 0.03, 'happy': 0.93, ...}, None]
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from affectgraph.errors import ModelUnavailable
from affectgraph.evidence import Distribution
from affectgraph.features import TextVectoriser, TunedTextVectoriser
from affectgraph.heads.artefact import Head
from affectgraph.models import ModelRegistry

HEAD_NAME = "minilm-head"


def shipped_head_path() -> Path:
    """The folder of the text head shipped in the package (``affectgraph/assets/heads/text``)."""
    return Path(str(resources.files("affectgraph") / "assets" / "heads" / "text"))


class MiniLMHeadTextEmotion:
    """A :class:`~affectgraph.tools.text_emotion.TextEmotionModel`: MiniLM embeddings + a head.

    ``revision`` is the first 12 hex digits of the head weights' sha256.
    """

    name = HEAD_NAME

    def __init__(self, head: Head, vectoriser: TextVectoriser,
                 encoder: TunedTextVectoriser | None = None) -> None:
        self.head = head
        self.vectoriser = vectoriser
        """Plain MiniLM: what the exemplar libraries hold (callers reuse it to search them)."""
        self.encoder = encoder
        """The tuned MiniLM the head reads, when it reads one."""
        self.revision = head.manifest.weights_sha256[:12]

    @classmethod
    def load(cls, path: str | Path | None = None,
             registry: ModelRegistry | None = None) -> MiniLMHeadTextEmotion:
        """Load the head at ``path`` (default: the shipped one), MiniLM and, if the head reads
        them, its tuned layers (about 1 s).

        Raises :class:`~affectgraph.errors.ModelUnavailable` when either is missing or the head
        was trained on embeddings of another MiniLM revision.
        """
        folder = Path(path) if path is not None else shipped_head_path()
        head = Head.load(folder)
        plain = TextVectoriser(registry or ModelRegistry.default())
        encoder = (TunedTextVectoriser.load(folder, base=plain)
                   if head.manifest.features == TunedTextVectoriser.name else None)
        vec = encoder or plain
        wanted = head.manifest.features_revision
        if head.manifest.features != vec.name or (wanted and wanted != vec.revision):
            raise ModelUnavailable(
                f"text head {head.manifest.name!r} reads {head.manifest.features} revision "
                f"{wanted or '?'}, but {vec.name} revision {vec.revision} is installed; retrain "
                "it with `affectgraph train text`"
            )
        return cls(head, plain, encoder)

    def predict(self, texts: Sequence[str]) -> list[Distribution | None]:
        """One canonical distribution per text; ``None`` for a text without words."""
        # imported here: the text emotion registry imports this module to register it
        from affectgraph.tools.text_emotion import has_words

        kept = [i for i, text in enumerate(texts) if has_words(text)]
        out: list[Distribution | None] = [None] * len(texts)
        if kept:
            vectors = (self.encoder or self.vectoriser).embed([texts[i] for i in kept])
            for index, distribution in zip(kept, self.head.distributions(vectors), strict=True):
                out[index] = distribution
        return out
