"""Whisper-encoder embeddings of speech turns: what the voice head reads beside eGeMAPS.

The Whisper encoder the transcript specialist already loads (faster-whisper, CTranslate2) maps
speech to 20 ms frames of 512 values (base) that carry much of what a voice sounds like. The
mean of the frames that cover a turn's audio, concatenated with the turn's eGeMAPS functionals,
raised the voice head's leave-actors-out RAVDESS UAR from 0.58 to 0.81 on single clips and from
0.69 to 0.85 with speaker normalisation (18 actor folds, nested; the heads' manifests).

Each turn is encoded alone, padded to Whisper's 30 s window as in training (the encoder was
trained on padded windows; encoding the clips unpadded was 20x cheaper but scored about 0.05-0.1
lower), so a turn costs one full encoder pass: 1-3 s on one busy CPU thread for base. A turn
longer than 30 s is encoded in 30 s pieces whose frames are pooled together.

>>> encoding = SpeechEncoding.load("whisper-base")  # doctest: +SKIP
>>> encoding.embed(signal).shape  # signal: (n,) float32 at 16 kHz  # doctest: +SKIP
(512,)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from affectgraph.errors import InputError, ModelUnavailable
from affectgraph.evidence import ModelRef
from affectgraph.models import ModelRegistry

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
"""Whisper's input window: 30 s of 16 kHz audio, 3000 mel frames, 1500 encoder frames."""
FRAME_SAMPLES = 320
"""Samples per encoder frame (20 ms): two 10 ms mel hops, halved by the encoder's stride-2 conv."""
PREFIX = "whisper"


def feature_names(model: str, dim: int) -> list[str]:
    """The names of the ``dim`` embedding values of encoder ``model`` (e.g. ``whisper-base``), as
    they appear in :attr:`VoiceEvidence.features <affectgraph.evidence.VoiceEvidence.features>`:
    ``<model>_mean_000``, ..."""
    return [f"{model}_mean_{k:03d}" for k in range(dim)]


@dataclass(frozen=True)
class SpeechEncoding:
    """A loaded faster-whisper model used as a speech encoder. ``dim``: values per frame."""

    whisper: object  # faster_whisper.WhisperModel
    ref: ModelRef

    @classmethod
    def load(cls, name: str = "whisper-base", registry: ModelRegistry | None = None, *,
             threads: int = 1) -> SpeechEncoding:
        """Load a registry Whisper model (``whisper-base``, ``whisper-tiny.en``) int8 on
        ``threads`` CPU threads. To share the transcript specialist's copy, use
        :meth:`from_whisper` instead. Raises :class:`~affectgraph.errors.ModelUnavailable` when
        its files are missing."""
        from faster_whisper import WhisperModel

        registry = registry or ModelRegistry.default()
        folder = registry.resolve(name)
        try:
            whisper = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                   cpu_threads=threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelUnavailable(f"{folder}: faster-whisper could not load it ({exc})") from None
        return cls(whisper=whisper, ref=ModelRef(name=name, revision=registry.get(name).revision))

    @classmethod
    def from_whisper(cls, whisper: object, ref: ModelRef) -> SpeechEncoding:
        """Wrap an already loaded ``faster_whisper.WhisperModel`` (e.g. the transcript
        specialist's: ``TranscriptModel.engine.model``) named by ``ref``: nothing is loaded."""
        if not hasattr(whisper, "feature_extractor") or not hasattr(whisper, "model"):
            raise InputError(f"{type(whisper).__name__} is not a faster_whisper.WhisperModel")
        return cls(whisper=whisper, ref=ref)

    @cached_property
    def dim(self) -> int:
        """Values per encoder frame (384 tiny, 512 base); found by encoding 0.2 s of silence
        once, since CTranslate2 does not expose the width."""
        return int(self._encode(np.zeros(10 * FRAME_SAMPLES, dtype=np.float32)).shape[1])

    @property
    def names(self) -> list[str]:
        """The embedding's value names (:func:`feature_names`)."""
        return feature_names(self.ref.name, self.dim)

    def embed(self, signal: np.ndarray) -> np.ndarray:
        """The (dim,) float32 mean of the encoder frames covering ``signal``, (n,) float32 audio
        at 16 kHz of at least one frame (20 ms), each 30 s piece encoded in its padded window."""
        audio = np.asarray(signal, dtype=np.float32)
        if audio.ndim != 1 or audio.size < FRAME_SAMPLES:
            raise InputError(f"a speech embedding needs (n,) audio of >= {FRAME_SAMPLES} samples "
                             f"(20 ms at 16 kHz), got shape {audio.shape}")
        frames = [self._encode(audio[start:start + WINDOW_SAMPLES])
                  for start in range(0, audio.size, WINDOW_SAMPLES)]
        return np.concatenate(frames).mean(axis=0).astype(np.float32)

    def features(self, signal: np.ndarray) -> dict[str, float]:
        """:meth:`embed` of ``signal`` by value name (:attr:`names`): what a voice record's
        ``features`` hold beside the eGeMAPS functionals for the encoder voice heads."""
        return dict(zip(self.names, map(float, self.embed(signal)), strict=True))

    def _encode(self, piece: np.ndarray) -> np.ndarray:
        """(m, dim) encoder frames covering ``piece`` (<= 30 s), encoded in its padded window."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        whisper = self.whisper
        mel = whisper.feature_extractor(piece)  # type: ignore[attr-defined]
        window = np.ascontiguousarray(pad_or_trim(mel, 3000)[None], dtype=np.float32)
        encoded = whisper.model.encode(  # type: ignore[attr-defined]
            ctranslate2.StorageView.from_array(window), to_cpu=True)
        covered = max(1, int(np.ceil(piece.size / FRAME_SAMPLES)))
        return np.asarray(encoded)[0, :covered]


def encoder_names(features: str) -> tuple[str, int] | None:
    """The encoder model and embedding size named by a head's ``features`` string
    (``egemaps-v02+whisper-base-mean512`` -> (``whisper-base``, 512)), or ``None``."""
    for part in features.split("+"):
        if part.startswith(PREFIX) and "-mean" in part:
            model, _, size = part.rpartition("-mean")
            if size.isdigit():
                return model, int(size)
    return None
