"""Feature vectors of labelled items, per modality, cached on disk.

One :class:`Vectoriser` per modality turns :class:`~affectgraph.datasets.Item` s (for training
heads and building exemplar libraries) and evidence records (for queries at analysis time) into
the same vectors:

- ``voice``: the 88 eGeMAPSv02 functionals of the item's speech (from the first to the last speech
  turn Silero VAD finds; the whole item when it finds none), as the voice specialist computes
  them per turn; :class:`EncoderVectoriser` gives the Whisper-encoder embedding of the same
  speech (the encoder voice heads' other input);
- ``text``: 384-d L2-normalised all-MiniLM-L6-v2 sentence embeddings;
- ``face``: the 128-d L2-normalised expression embedding of the largest detected face (of the
  whole image with ``cropped=True``).

Vectors are cached in SQLite under ``$AFFECTGRAPH_HOME/features`` keyed by vectoriser, revision
and item (path, size, mtime, span or text), committed every batch: an interrupted extraction
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from affectgraph.datasets import Item
from affectgraph.errors import InputError, unknown_name
from affectgraph.evidence import FaceEvidence, TranscriptEvidence, VoiceEvidence
from affectgraph.models import ModelRegistry, cache_home

Progress = Callable[[int, int], None]
"""Called with (items done, items in all)."""


@dataclass(frozen=True)
class Features:
    """Vectors of items: ``vectors`` (n, dim) float32; ``ok[i]`` is False where item ``i`` gave
    no vector (no face, no speech), with the reason in ``reasons[i]``."""

    vectors: np.ndarray
    ok: np.ndarray
    reasons: tuple[str | None, ...]


class Vectoriser(Protocol):
    modality: str
    name: str
    revision: str
    dim: int

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        """A vector, or the reason there is none, per item (no caching)."""
        ...

    def from_evidence(self, record: object) -> np.ndarray | None:
        """The vector of an evidence record of this modality, or ``None`` if it has none."""
        ...


class VoiceVectoriser:
    modality, name, dim = "voice", "egemaps-v02", 88

    def __init__(self, registry: ModelRegistry | None = None) -> None:
        from affectgraph.segments import VadModel
        from affectgraph.tools.voice import VoiceModel

        self.voice = VoiceModel.load()
        self.vad = VadModel.load()
        self.revision = self.voice.ref.revision
        self.names = self.voice.feature_names

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        out: list[np.ndarray | str] = []
        for item in items:
            audio = speech_of(item, self.vad)
            if isinstance(audio, str):
                out.append(audio)
                continue
            values = self.voice.functionals(audio)
            out.append(np.array([values[n] for n in self.names], dtype=np.float32))
        return out

    def from_evidence(self, record: object) -> np.ndarray | None:
        if not isinstance(record, VoiceEvidence) or not record.features:
            return None
        return np.array([record.features[n] for n in self.names], dtype=np.float32)


class EncoderVectoriser:
    """The Whisper-encoder embedding (:mod:`affectgraph.speech_encoding`) of the same speech as
    :class:`VoiceVectoriser` reads: what the encoder voice heads read beside eGeMAPS. ``name``:
    ``<model>-mean``, e.g. ``whisper-base-mean``; ``revision``: the Whisper model's."""

    modality = "voice"

    def __init__(self, registry: ModelRegistry | None = None, *, model: str = "whisper-base",
                 encoding: object | None = None) -> None:
        from affectgraph.segments import VadModel
        from affectgraph.speech_encoding import SpeechEncoding

        self.encoding = encoding or SpeechEncoding.load(model, registry)
        self.vad = VadModel.load()
        self.name = f"{self.encoding.ref.name}-mean"  # type: ignore[attr-defined]
        self.revision = self.encoding.ref.revision  # type: ignore[attr-defined]
        self.names = self.encoding.names  # type: ignore[attr-defined]
        self.dim = len(self.names)

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        out: list[np.ndarray | str] = []
        for item in items:
            audio = speech_of(item, self.vad)
            out.append(audio if isinstance(audio, str)
                       else self.encoding.embed(audio))  # type: ignore[attr-defined]
        return out

    def from_evidence(self, record: object) -> np.ndarray | None:
        if not isinstance(record, VoiceEvidence) or not record.features:
            return None
        if any(n not in record.features for n in self.names):
            return None
        return np.array([record.features[n] for n in self.names], dtype=np.float32)


def speech_of(item: Item, vad: object) -> np.ndarray | str:
    """The (n,) 16 kHz mono speech of a media item, from the first to the last turn Silero VAD
    finds in it (the whole item, or its span, when it finds none), or why there is none."""
    from affectgraph import media
    from affectgraph.segments import find_turns, mix_down

    if item.path is None:
        return "no media path"
    audio = mix_down(media.read_audio(item.path, start=item.start or 0.0, end=item.end))
    turns = find_turns(item.path, vad=vad) if item.start is None else []  # type: ignore[arg-type]
    if turns:
        a, b = turns[0].span.start, turns[-1].span.end
        audio = audio[int(a * media.SAMPLE_RATE): int(b * media.SAMPLE_RATE)]
    if len(audio) < media.SAMPLE_RATE // 2:
        return "less than 0.5 s of audio"
    return audio


class TextVectoriser:
    modality, name, dim = "text", "minilm-l6-v2", 384
    batch = 256

    def __init__(self, registry: ModelRegistry | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        registry = registry or ModelRegistry.default()
        self.revision = registry.get(self.name).revision
        self.model = SentenceTransformer(str(registry.resolve(self.name)), device="cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 L2-normalised embeddings."""
        return self.model.encode(list(texts), batch_size=self.batch, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        return _embed_items(self.embed, items)

    def from_evidence(self, record: object) -> np.ndarray | None:
        if not isinstance(record, TranscriptEvidence) or not record.text.strip():
            return None
        return self.embed([record.text])[0]


def _embed_items(embed: Callable[[Sequence[str]], np.ndarray],
                 items: Sequence[Item]) -> list[np.ndarray | str]:
    texts = [(i.text or i.transcript or "").strip() for i in items]
    vectors = iter(embed([t for t in texts if t])) if any(texts) else iter(())
    return [next(vectors) if t else "empty text" for t in texts]


class TunedTextVectoriser:
    """MiniLM with the text head's fine-tuned top layers (:mod:`affectgraph.heads.text_encoder`):
    the text head's input, not the exemplar libraries' (those keep plain MiniLM, ``base``; this
    is deliberately not a :class:`TextVectoriser`, so that nothing searches a library with it).
    ``revision`` is MiniLM's and the tuned layers' (``<minilm>+<encoder.npz sha256[:12]>``)."""

    modality, name, dim = "text", "minilm-l6-v2-tuned", 384

    def __init__(self, base: TextVectoriser, encoder: object) -> None:
        self.base = base
        self.encoder = encoder
        self.revision = f"{base.revision}+{encoder.revision}"  # type: ignore[attr-defined]

    @classmethod
    def load(cls, folder: str | Path, registry: ModelRegistry | None = None,
             base: TextVectoriser | None = None) -> TunedTextVectoriser:
        """The tuned encoder stored in ``folder`` (``encoder.npz``) over installed MiniLM."""
        from affectgraph.heads.text_encoder import TunedEncoder

        base = base or TextVectoriser(registry)
        return cls(base, TunedEncoder.load(folder, base.model))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 L2-normalised embeddings of the tuned model."""
        return self.encoder.embed(list(texts))  # type: ignore[attr-defined]

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        return _embed_items(self.embed, items)

    def from_evidence(self, record: object) -> np.ndarray | None:
        if not isinstance(record, TranscriptEvidence) or not record.text.strip():
            return None
        return self.embed([record.text])[0]


class FaceVectoriser:
    modality, name, dim = "face", "fer-mini-xception", 128

    def __init__(self, registry: ModelRegistry | None = None, *, cropped: bool = False) -> None:
        from affectgraph.tools.face import FaceModel, FaceOptions

        registry = registry or ModelRegistry.default()
        self.model = FaceModel.load(registry)
        self.options = FaceOptions(cropped=cropped)
        self.revision = registry.get(self.name).revision + ("-cropped" if cropped else "")

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        from affectgraph import media

        out: list[np.ndarray | str] = []
        for item in items:
            if item.path is None:
                out.append("no media path")
                continue
            frame = next(media.iter_frames(item.path, start=item.start or 0.0, max_side=640))
            readings = self.model.analyze_image(frame.image, self.options)
            if not readings:
                out.append("no face detected")
                continue
            best = max(readings, key=lambda r: r.box.width * r.box.height if r.box else 1.0)
            embedding = best.expression.embedding
            out.append("no embedding" if embedding is None else np.asarray(embedding, np.float32))
        return out

    def from_evidence(self, record: object) -> np.ndarray | None:
        if not isinstance(record, FaceEvidence) or record.embedding is None:
            return None
        return np.asarray(record.embedding, dtype=np.float32)


VECTORISERS: dict[str, type] = {"voice": VoiceVectoriser, "text": TextVectoriser,
                                "face": FaceVectoriser}


def vectoriser(modality: str, registry: ModelRegistry | None = None, **options) -> Vectoriser:
    """The vectoriser of ``modality`` (``voice``, ``text`` or ``face``), models loaded."""
    if modality not in VECTORISERS:
        raise unknown_name("modality", modality, VECTORISERS)
    return VECTORISERS[modality](registry, **options)


def extract(
    items: Sequence[Item],
    vec: Vectoriser,
    *,
    cache: Path | None = None,
    batch: int = 64,
    progress: Progress | None = None,
) -> Features:
    """Vectors of ``items``, computing only those not cached yet (``cache=None``: the default
    cache; pass a folder to use another)."""
    folder = cache or cache_home() / "features"
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / f"{vec.name}-{vec.revision}.sqlite")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS v (key TEXT PRIMARY KEY, vec BLOB, reason TEXT)")
    keys = [_key(i) for i in items]
    found = _cached(db, keys)
    todo = [n for n, k in enumerate(keys) if k not in found]
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        results = vec.vectorise([items[n] for n in chunk])
        rows = [(keys[n], r.astype(np.float32).tobytes() if isinstance(r, np.ndarray) else None,
                 r if isinstance(r, str) else None) for n, r in zip(chunk, results, strict=True)]
        with db:
            db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?, ?)", rows)
        found.update({k: (v, reason) for k, v, reason in rows})
        if progress:
            progress(len(items) - len(todo) + start + len(chunk), len(items))
    db.close()
    return _assemble(keys, found, vec.dim)


def _cached(db: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[bytes | None, str | None]]:
    found: dict[str, tuple[bytes | None, str | None]] = {}
    for start in range(0, len(keys), 900):
        part = keys[start:start + 900]
        marks = ",".join("?" * len(part))
        for key, vec, reason in db.execute(f"SELECT key, vec, reason FROM v WHERE key IN ({marks})",
                                           part):
            found[key] = (vec, reason)
    return found


def _assemble(keys: list[str], found: dict, dim: int) -> Features:
    vectors = np.zeros((len(keys), dim), dtype=np.float32)
    ok = np.zeros(len(keys), dtype=bool)
    reasons: list[str | None] = []
    for n, key in enumerate(keys):
        blob, reason = found[key]
        if blob is not None:
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.shape != (dim,):
                raise InputError(f"cached vector of {key} has {vector.size} values, not {dim}")
            vectors[n], ok[n] = vector, True
        reasons.append(reason)
    return Features(vectors=vectors, ok=ok, reasons=tuple(reasons))


def _key(item: Item) -> str:
    if item.path is not None:
        stat = item.path.stat()
        raw = f"{item.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{item.start}|{item.end}"
    else:
        raw = f"text|{item.text or item.transcript or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
