"""Where training clips come from: analyses saved as JSON, and the fusion table.

- :func:`clips_from_analyses`: analysis JSON files (``affectgraph analyze --json``) with their
  true labels in a small manifest (``path,label,speaker`` lines); the clip is seen exactly as
  at analysis time.
- :func:`clips_from_table`: the cross-fitted fusion table
  (:mod:`affectgraph.agents.fusion_data`) for speech clips (RAVDESS speech, TESS): per clip a
  voice record with the *held-out* voice head distribution and a transcript record with the
  held-out text model distribution on the spoken words, the clip's eGeMAPS functionals read
  from the feature cache (:mod:`affectgraph.features`, nothing is recomputed here) and,
  optionally, its MiniLM text embedding. Held-out predictions matter: a model trained on
  in-sample specialist outputs would learn to trust them more than they deserve.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectgraph.agents.mllm.instructions import Clip, TextEmbed, clip_from_analysis
from affectgraph.datasets import Item, load_dataset
from affectgraph.errors import InputError
from affectgraph.evidence import (
    ModelRef,
    TimeSpan,
    TranscriptEvidence,
    VoiceEvidence,
    normalise,
)

__all__ = ["cached_voice_vectors", "clips_from_analyses", "clips_from_table", "speech_clip"]

VOICE_CACHE = "egemaps-v02"


def clips_from_analyses(manifest: str | Path, *, text_embed: TextEmbed | None = None
                        ) -> list[Clip]:
    """Clips from a CSV manifest of ``path,label,speaker`` (paths relative to the manifest)."""
    file = Path(manifest)
    if not file.is_file():
        raise InputError(f"{file}: no such analyses manifest (a CSV with path,label,speaker)")
    with file.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    clips = []
    for n, row in enumerate(rows, start=2):
        if not {"path", "label", "speaker"} <= set(row):
            raise InputError(f"{file}:{n}: needs the columns path, label, speaker")
        path = (file.parent / row["path"]).resolve()
        data = json.loads(path.read_text(encoding="utf-8"))
        clips.append(clip_from_analysis(data, label=row["label"], group=row["speaker"],
                                        clip_id=str(path), text_embed=text_embed))
    return clips


def clips_from_table(table: str | Path, *, datasets: Sequence[str] = ("ravdess_speech",),
                     data_root: str | Path | None = None, text_embed: TextEmbed | None = None,
                     limit: int | None = None, cache: Path | None = None) -> list[Clip]:
    """Clips of the speech ``datasets`` in the fusion ``table`` (see the module docstring);
    ``limit``: at most this many clips (in table order, for tests)."""
    from affectgraph.agents.fusion_data import load_table, spoken_text

    rows = [r for r in load_table(table) if r.dataset in datasets]
    by_item: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_item.setdefault(row.item, {})[row.modality] = row
    items = {i.id: i for name in datasets for i in load_dataset(name, root=data_root)}
    ids = [i for i in by_item if i in items and "voice" in by_item[i]][:limit]
    if not ids:
        raise InputError(f"{table}: no rows of {', '.join(datasets)} whose items are in the data")
    voice = cached_voice_vectors([items[i] for i in ids], cache=cache)
    texts = [spoken_text(items[i]) for i in ids]
    embedded = text_embed(texts) if text_embed else None
    clips = []
    for n, item_id in enumerate(ids):
        functionals = voice[n]
        if functionals is None:
            continue
        vectors = {"voice": functionals[None, :]}
        if embedded is not None:
            vectors["text"] = np.asarray(embedded[n : n + 1], np.float32)
        clips.append(_table_clip(items[item_id], by_item[item_id], texts[n], vectors))
    return clips


def _table_clip(item: Item, rows: dict[str, Any], text: str,
                vectors: dict[str, np.ndarray]) -> Clip:
    voice, words = rows["voice"], rows.get("text")
    return speech_clip(item, voice=vectors["voice"][0], voice_distribution=voice.model,
                       text=text, text_distribution=words.model if words else None,
                       text_vector=vectors["text"][0] if "text" in vectors else None,
                       seconds=voice.reliability, model_note="held-out")


def speech_clip(item: Item, *, voice: np.ndarray, voice_distribution: Mapping[str, float] | None,
                text: str | None = None, text_distribution: Mapping[str, float] | None = None,
                text_vector: np.ndarray | None = None, seconds: float | None = None,
                feature_names: Sequence[str] | None = None, model_note: str = "") -> Clip:
    """A clip of one speech item: a voice record (its functionals, named when
    ``feature_names`` is given, and the voice model's distribution) and, with ``text``, a
    transcript record; ``seconds`` of speech (default 1 s, at least 0.5 s) is their span."""
    span = TimeSpan(start=0.0, end=round(max(seconds or 1.0, 0.5), 2))
    suffix = f"-{model_note}" if model_note else ""
    features = dict(zip(feature_names, map(float, voice), strict=True)) if feature_names else {}
    records: list[Any] = [VoiceEvidence(
        id="voice:0", span=span, specialist="voice", model=ModelRef(name="voice-head" + suffix),
        features=features,
        distribution=normalise(voice_distribution) if voice_distribution else None)]
    vectors = {"voice": np.asarray(voice, np.float32)[None, :]}
    if text is not None:
        records.append(TranscriptEvidence(
            id="text:0", span=span, specialist="transcript", source="given", text=text,
            model=ModelRef(name="text-model" + suffix),
            distribution=normalise(text_distribution) if text_distribution else None))
    if text_vector is not None:
        vectors["text"] = np.asarray(text_vector, np.float32)[None, :]
    return Clip(id=item.id, label=str(item.label.value), group=item.group,
                evidence=tuple(records), vectors=vectors)


def cached_voice_vectors(items: Sequence[Item], *, cache: Path | None = None
                         ) -> list[np.ndarray | None]:
    """Each item's eGeMAPS functionals from the feature cache of the installed openSMILE
    (``None`` when it has none); :class:`InputError` when there is no such cache (extract the
    features first). Only that file: the cache folder also holds the speed-perturbed copies
    the voice head training makes (``egemaps-v02-speed0.9-...``)."""
    from importlib.metadata import version

    from affectgraph.features import extract
    from affectgraph.models import cache_home

    folder = cache or cache_home() / "features"
    revision = version("opensmile")  # what VoiceModel records as its revision
    if not (folder / f"{VOICE_CACHE}-{revision}.sqlite").is_file():
        raise InputError(f"no cached eGeMAPS features of opensmile {revision} in {folder}; "
                         "extract them first (affectgraph.features.extract with the voice "
                         "vectoriser, as the voice head training does)")
    features = extract(items, _CacheOnly(revision), cache=folder)
    return [features.vectors[n] if features.ok[n] else None for n in range(len(items))]


class _CacheOnly:
    """A voice vectoriser that only reads the cache (loading openSMILE here is not needed)."""

    modality, name, dim = "voice", VOICE_CACHE, 88

    def __init__(self, revision: str) -> None:
        self.revision = revision

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        return ["not in the feature cache" for _ in items]

    def from_evidence(self, record: object) -> np.ndarray | None:
        return None
