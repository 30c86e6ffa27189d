"""Building an exemplar library from labelled items (a manifest CSV or the bundled data sets).

:func:`build_library` vectorises the items with :func:`affectgraph.features.extract`, whose
SQLite cache commits every batch, so an interrupted build resumes where it stopped: rerun it
and only the vectors it had not reached are computed (``resume=True``, the default).
``resume=False`` restarts: it discards the unfinished build and computes every vector again,
into a cache private to that build (``<folder>.partial/features``), which a later resume
continues from. Files are written to ``<folder>.partial/`` and renamed into place at the end,
so an interrupted build never leaves a library that loads.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.datasets import Item, default_data_root
from affectgraph.errors import InputError
from affectgraph.evidence import Modality
from affectgraph.features import Progress, Vectoriser, extract, vectoriser
from affectgraph.labels import SCHEMES
from affectgraph.models import ModelRegistry
from affectgraph.retrieval.catalogue import CATALOGUE
from affectgraph.retrieval.index import IndexOptions
from affectgraph.retrieval.library import ExemplarLibrary, partial_of
from affectgraph.retrieval.manifest import (
    Exemplar,
    IndexInfo,
    LibraryManifest,
    Source,
    VectoriserInfo,
)

USER_LICENCE = "not recorded (user data)"


@dataclass(frozen=True)
class Part:
    """Items vectorised by one vectoriser. A library may join parts whose vectorisers differ
    only in preprocessing (faces: detected vs. already-cropped images); the first part's
    vectoriser is the one queries must match."""

    items: Sequence[Item]
    vectoriser: Vectoriser


class Vectorisers:
    """The vectoriser of each item of a modality: ``primary`` (the one queries use), or for
    face crops (data sets marked ``cropped`` in the catalogue, or all with ``cropped=True``)
    the same model on the whole image."""

    def __init__(self, modality: str, registry: ModelRegistry | None = None, *,
                 cropped: bool = False) -> None:
        self.primary = vectoriser(modality, registry, **({"cropped": True} if cropped else {}))
        self.whole = (vectoriser("face", registry, cropped=True)
                      if modality == "face" and not cropped else self.primary)

    def __call__(self, item: Item) -> Vectoriser:
        known = CATALOGUE.get(item.dataset)
        return self.whole if known is not None and known.cropped else self.primary

    def parts(self, items: Sequence[Item]) -> list[Part]:
        """``items`` as parts by vectoriser, the primary one first."""
        primary = [i for i in items if self(i) is self.primary]
        whole = [i for i in items if self(i) is not self.primary]
        return [Part(primary, self.primary)] + ([Part(whole, self.whole)] if whole else [])


class BuildOptions(BaseModel):
    """``name`` and ``description`` of the library; ``index`` options; vectors stored as
    ``dtype``; at most ``max_per_label`` exemplars per label (a ``seed``-ed random sample);
    ``drop_text``: data sets whose text is not stored (licence); items per cache ``batch``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    description: str = ""
    index: IndexOptions = IndexOptions()
    dtype: Literal["float32", "float16"] = "float32"
    max_per_label: int | None = Field(default=None, ge=1)
    seed: int = 0
    drop_text: tuple[str, ...] = ()
    batch: int = Field(default=64, ge=1)


def build_library(
    parts: Sequence[Part],
    folder: str | Path,
    options: BuildOptions,
    *,
    licences: Mapping[str, str] | None = None,
    data_root: Path | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: Progress | None = None,
    cache: Path | None = None,
) -> ExemplarLibrary:
    """Vectorise ``parts`` and write a library to ``folder``; returns it loaded.

    ``licences`` maps data set -> licence (the bundled sets' are known); media paths are
    recorded relative to ``data_root`` (default: the data folder) when inside it. Items that
    give no vector (no face found, too little audio) are left out and counted by reason in the
    manifest. Raises :class:`~affectgraph.errors.InputError` when there is nothing to index or
    ``folder`` exists (without ``overwrite``).
    """
    target = Path(folder)
    if target.exists() and not overwrite:
        raise InputError(f"{target} already exists; choose another --out or --overwrite")
    chosen = sample_per_label([p.items for p in parts], options.max_per_label, options.seed)
    if not any(chosen):
        raise InputError("no items to build a library from")
    partial = partial_of(target)
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "features").mkdir(parents=True)
    private = partial / "features"
    store = private if private.is_dir() else cache
    found = _vectorise(parts, chosen, store, options, progress, data_root or default_data_root())
    if not found.exemplars:
        raise InputError(f"none of the {sum(map(len, chosen))} items gave a vector: "
                         f"{found.skipped}")
    manifest = _manifest(parts[0].vectoriser, options, licences or {}, found.revisions,
                         found.skipped)
    library = ExemplarLibrary.create(manifest, found.exemplars, np.stack(found.vectors),
                                     options.index)
    library.save(target, overwrite=overwrite)
    return library


@dataclass
class _Found:
    exemplars: list[Exemplar] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)  # data set -> vectoriser revision


def _vectorise(parts: Sequence[Part], chosen: list[list[Item]], store: Path | None,
               options: BuildOptions, progress: Progress | None, root: Path) -> _Found:
    found, done, total = _Found(), 0, sum(map(len, chosen))
    for part, items in zip(parts, chosen, strict=True):
        features = extract(items, part.vectoriser, cache=store, batch=options.batch,
                           progress=_offset(progress, done, total))
        done += len(items)
        for item, ok, vector, reason in zip(items, features.ok, features.vectors,
                                            features.reasons, strict=True):
            if not ok:
                why = reason or "no vector"
                found.skipped[why] = found.skipped.get(why, 0) + 1
                continue
            keep_text = item.dataset not in options.drop_text
            found.exemplars.append(exemplar_of(item, root, keep_text=keep_text))
            found.vectors.append(vector)
            found.revisions.setdefault(item.dataset, part.vectoriser.revision)
    return found


def exemplar_of(item: Item, data_root: Path, *, keep_text: bool = True) -> Exemplar:
    """The exemplar record of an item; its media path relative to ``data_root`` if inside."""
    media = None
    if item.path is not None:
        path = item.path.resolve()
        try:
            media = path.relative_to(data_root.resolve()).as_posix()
        except ValueError:
            media = str(path)
    return Exemplar(id=item.id, label=item.label.value, dataset=item.dataset, speaker=item.speaker,
                    text=(item.text or item.transcript) if keep_text else None, media=media,
                    start=item.start, end=item.end)


def sample_per_label(groups: Sequence[Sequence[Item]], cap: int | None, seed: int = 0
                     ) -> list[list[Item]]:
    """At most ``cap`` items per label over all groups (a seeded random sample; order kept)."""
    if cap is None:
        return [list(g) for g in groups]
    flat = [(g, n) for g, items in enumerate(groups) for n in range(len(items))]
    by_label: dict[str, list[int]] = {}
    for position, (g, n) in enumerate(flat):
        by_label.setdefault(groups[g][n].label.value, []).append(position)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for label in sorted(by_label):
        positions = by_label[label]
        keep.update(rng.choice(positions, cap, replace=False).tolist() if len(positions) > cap
                    else positions)
    out: list[list[Item]] = [[] for _ in groups]
    for position in sorted(keep):
        g, n = flat[position]
        out[g].append(groups[g][n])
    return out


def _offset(progress: Progress | None, done: int, total: int) -> Progress | None:
    if progress is None:
        return None
    return lambda current, _: progress(done + current, total)


def _manifest(vec: Vectoriser, options: BuildOptions, licences: Mapping[str, str],
              revisions: Mapping[str, str], skipped: dict[str, int]) -> LibraryManifest:
    sources = []
    for dataset, revision in revisions.items():
        known = CATALOGUE.get(dataset)
        scheme = known.scheme if known else None
        sources.append(Source(
            dataset=dataset, count=0, vectoriser_revision=revision,
            licence=licences.get(dataset) or (known.licence if known else USER_LICENCE),
            scheme=scheme, note=known.note if known else "",
            label_map={k: v.value if v else None for k, v in SCHEMES[scheme].items()}
            if scheme else {},
            text_stored=dataset not in options.drop_text))
    return LibraryManifest(
        name=options.name, modality=cast(Modality, vec.modality), description=options.description,
        sources=tuple(sources), counts={}, size=0, vectors_dtype=options.dtype,
        vectoriser=VectoriserInfo(name=vec.name, revision=vec.revision, dim=vec.dim,
                                  standardised=vec.modality == "voice"),
        index=IndexInfo(kind="flat"), skipped=skipped)
