"""Speech recognition backends behind one small class, :class:`TranscriptModel`.

Two backends read Whisper weights that are already on this machine; neither ever downloads:

- ``faster-whisper`` (default): a CTranslate2 model folder, either a registry entry
  (``whisper-base``, multilingual; ``whisper-tiny.en``, English only and about twice as fast) or a
  path to a folder holding ``model.bin``, run int8 on the CPU.
- ``openai-whisper`` (optional extra): a local ``.pt`` checkpoint ``{"dims", "model_state_dict"}``
  read by ``whisper.load_model(path)``.

:meth:`TranscriptModel.transcribe` takes up to ~30 s of 16 kHz mono audio and returns segments
with word times in seconds from the start of that audio.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from affectgraph.errors import ConfigError, ModelUnavailable, unknown_name
from affectgraph.evidence import ModelRef, Word
from affectgraph.models import ModelRegistry

Backend = Literal["faster-whisper", "openai-whisper"]
BACKENDS: tuple[str, ...] = ("faster-whisper", "openai-whisper")
_INSTALL_OPENAI = "pip install 'affectgraph[openai-whisper]'"


@dataclass(frozen=True)
class AsrSegment:
    """One recognised segment; times in seconds from the start of the transcribed audio."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    avg_logprob: float

    @property
    def confidence(self) -> float:
        """Mean word probability, or ``exp(avg_logprob)`` when there are no word probabilities.

        Word probabilities come first: ``avg_logprob`` also averages timestamp and punctuation
        tokens, which sit around 0.6 even on a perfect transcript.
        """
        probabilities = [w.probability for w in self.words if w.probability is not None]
        if not probabilities:
            return min(1.0, math.exp(self.avg_logprob))
        return min(1.0, max(0.0, sum(probabilities) / len(probabilities)))


@dataclass(frozen=True)
class AsrResult:
    """What one call recognised: the language (given or detected) and the segments."""

    language: str
    segments: tuple[AsrSegment, ...]


# Whisper's schedule: decode again, hotter, while the text is too repetitive or improbable.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class _Engine(Protocol):
    languages: tuple[str, ...]

    def transcribe(self, audio: np.ndarray, language: str | None, beam_size: int,
                   word_timestamps: bool, temperatures: tuple[float, ...]) -> AsrResult: ...


class TranscriptModel:
    """A loaded speech recogniser (inject it into :func:`analyze_transcript` to load it once)."""

    def __init__(self, engine: _Engine, ref: ModelRef, backend: Backend) -> None:
        self.engine = engine
        self.ref = ref
        self.backend = backend

    @classmethod
    def load(cls, name_or_path: str | Path = "whisper-base", registry: ModelRegistry | None = None,
             *, backend: Backend = "faster-whisper", threads: int = 1) -> TranscriptModel:
        """Load a registry model by name, or a model at a local path, on ``threads`` CPU threads.

        Raises :class:`~affectgraph.errors.ModelUnavailable` when the files (or, for
        ``openai-whisper``, the package) are missing and :class:`~affectgraph.errors.ConfigError`
        for an unknown name or backend.
        """
        if backend == "faster-whisper":
            registry = registry or ModelRegistry.default()
            folder, ref = _faster_whisper_folder(str(name_or_path), registry)
            return cls(_FasterWhisper(folder, threads), ref, backend)
        if backend == "openai-whisper":
            checkpoint = _openai_checkpoint(str(name_or_path))
            ref = ModelRef(name=f"openai-whisper:{checkpoint.name}",
                           revision=_fingerprint(checkpoint))
            return cls(_OpenAIWhisper(checkpoint, threads), ref, backend)
        raise unknown_name("speech recognition backend", backend, BACKENDS)

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes the model knows (``("en",)`` for English-only models)."""
        return self.engine.languages

    def check_language(self, language: str | None) -> None:
        """Raise :class:`~affectgraph.errors.ConfigError` if the model lacks ``language``."""
        if language is None or language in self.languages:
            return
        if self.languages == ("en",):
            raise ConfigError(f"model {self.ref.name!r} knows only English, not language "
                              f"{language!r}; use the multilingual 'whisper-base'")
        raise unknown_name("language code", language, self.languages)

    def transcribe(self, audio: np.ndarray, *, language: str | None = None, beam_size: int = 1,
                   word_timestamps: bool = True, fallback: bool = False) -> AsrResult:
        """Recognise ``audio``, (n,) float32 at 16 kHz; ``language=None`` detects it.

        ``fallback`` re-decodes a segment at rising temperatures when its text is too repetitive
        or improbable (Whisper's default); off, each window is decoded once, greedily.
        """
        self.check_language(language)
        temperatures = FALLBACK_TEMPERATURES if fallback else (0.0,)
        return self.engine.transcribe(np.ascontiguousarray(audio, dtype=np.float32), language,
                                      beam_size, word_timestamps, temperatures)


def _faster_whisper_folder(name: str, registry: ModelRegistry) -> tuple[Path, ModelRef]:
    if name in registry.specs:
        return registry.resolve(name), ModelRef(name=name, revision=registry.get(name).revision)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "model.bin").is_file():
            raise ModelUnavailable(f"{folder} holds no model.bin: not a faster-whisper "
                                   "(CTranslate2) model folder")
        return folder, ModelRef(name=folder.name, revision=_fingerprint(folder / "model.bin"))
    if "/" in name or name.endswith(".pt"):
        raise ModelUnavailable(f"{name}: no such model folder (faster-whisper needs a CTranslate2 "
                               "folder with model.bin; a .pt file needs backend 'openai-whisper')")
    names = [s.name for s in registry if s.role == "speech recognition"]
    error = unknown_name("speech recognition model", name, names)
    raise ConfigError(f"{error}, or the path of a faster-whisper (CTranslate2) model folder")


def _openai_checkpoint(name: str) -> Path:
    if importlib.util.find_spec("whisper") is None:
        raise ModelUnavailable(f"the openai-whisper backend needs its package: {_INSTALL_OPENAI}")
    path = Path(name).expanduser()
    if not path.is_file():
        raise ModelUnavailable(
            f"openai-whisper weights must be a local .pt checkpoint file ({{'dims', "
            f"'model_state_dict'}}); {name!r} is not a file and affectgraph never downloads "
            "weights. Give the checkpoint's path, or use backend 'faster-whisper' for the "
            "built-in models (whisper-base, whisper-tiny.en)"
        )
    return path.resolve()


def _fingerprint(path: Path) -> str:
    """A cheap content revision: sha256 of the size and the first and last MiB (12 hex digits)."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(fh.read())
    return digest.hexdigest()[:12]


def _words(raw: Any, key: str = "word") -> tuple[Word, ...]:
    return tuple(
        Word(text=str(w[key]).strip(), start=float(w["start"]), end=float(w["end"]),
             probability=min(1.0, max(0.0, float(w["probability"]))))
        for w in raw or ()
    )


class _FasterWhisper:
    """faster-whisper's ``WhisperModel``, int8 on the CPU, one call at a time."""

    def __init__(self, folder: Path, threads: int) -> None:
        try:
            self.model = _encode_once_model()(str(folder), device="cpu", compute_type="int8",
                                              cpu_threads=threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelUnavailable(f"{folder}: faster-whisper could not load it ({exc})") from None
        self.languages = tuple(self.model.supported_languages)
        self.lock = threading.Lock()  # the model keeps one call's encoder output (see below)

    def transcribe(self, audio: np.ndarray, language: str | None, beam_size: int,
                   word_timestamps: bool, temperatures: tuple[float, ...]) -> AsrResult:
        with self.lock:
            # No conditioning on earlier text: a repeated phrase then cannot loop through a turn.
            segments, info = self.model.transcribe(
                audio, language=language, beam_size=beam_size, word_timestamps=word_timestamps,
                condition_on_previous_text=False, vad_filter=False, temperature=list(temperatures),
            )
            return AsrResult(info.language, tuple(
                AsrSegment(float(s.start), float(s.end), s.text.strip(),
                           _words([vars(w) for w in s.words or ()]), float(s.avg_logprob))
                for s in segments
            ))


@functools.cache
def _encode_once_model() -> type:
    """``WhisperModel`` that encodes the first 30 s once when it also detects the language.

    With ``language=None``, faster-whisper encodes the first 30 s to detect the language and
    then again to decode them (0.45 s each for base on two threads: two thirds of a short clip's
    recognition). This subclass keeps the detection's encoder output and hands it to the
    decoding of the first 30 s. The two inputs differ only in the frame past the audio's end
    (the detection sees the feature extractor's padding frame, the decoding zeros), so the text
    is the same. Not thread-safe: :class:`_FasterWhisper` makes one call at a time.
    """
    from faster_whisper import WhisperModel

    class EncodeOnce(WhisperModel):  # type: ignore[misc]
        _first: Any = None  # the detection's first encoder output, until decoding takes it
        _detecting = False

        def transcribe(self, *args: Any, **kwargs: Any) -> Any:
            self._first = None  # never one left by a call that failed before decoding
            return super().transcribe(*args, **kwargs)

        def encode(self, features: np.ndarray) -> Any:
            output = super().encode(features)
            if self._detecting and self._first is None:
                self._first = output
            return output

        def detect_language(self, *args: Any, **kwargs: Any) -> Any:
            self._first, self._detecting = None, True
            try:
                return super().detect_language(*args, **kwargs)
            finally:
                self._detecting = False

        def generate_segments(self, features: np.ndarray, tokenizer: Any, options: Any,
                              log_progress: Any, encoder_output: Any = None) -> Any:
            first, self._first = self._first, None
            return super().generate_segments(features, tokenizer, options, log_progress,
                                             first if encoder_output is None else encoder_output)

    return EncodeOnce


class _OpenAIWhisper:
    """openai-whisper's PyTorch model from a local checkpoint, float32 on the CPU."""

    def __init__(self, checkpoint: Path, threads: int) -> None:
        import whisper
        from whisper.tokenizer import LANGUAGES

        self.threads = threads
        try:
            with _torch_threads(threads):
                # An absolute path never equals an official model name, so this cannot download.
                self.model = whisper.load_model(str(checkpoint), device="cpu")
        except (RuntimeError, KeyError, TypeError, ValueError, OSError) as exc:
            raise ModelUnavailable(f"{checkpoint}: not an openai-whisper checkpoint "
                                   f"{{'dims', 'model_state_dict'}} ({exc})") from None
        self.languages = tuple(LANGUAGES) if self.model.is_multilingual else ("en",)

    def transcribe(self, audio: np.ndarray, language: str | None, beam_size: int,
                   word_timestamps: bool, temperatures: tuple[float, ...]) -> AsrResult:
        import whisper

        with _torch_threads(self.threads):
            result = whisper.transcribe(
                self.model, audio, language=language, word_timestamps=word_timestamps,
                beam_size=beam_size if beam_size > 1 else None, fp16=False, verbose=None,
                condition_on_previous_text=False, temperature=temperatures,
            )
        return AsrResult(result["language"], tuple(
            AsrSegment(float(s["start"]), float(s["end"]), s["text"].strip(),
                       _words(s.get("words")), float(s["avg_logprob"]))
            for s in result["segments"]
        ))


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run torch on ``threads`` threads inside the block, then restore the caller's setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
