"""An exemplar library in memory: exemplars, their vectors, a FAISS index; load, add, save.

The folder format is described in :mod:`affectgraph.retrieval.manifest`. Vectors live in
*query space*: a raw vector from the library's vectoriser is standardised (voice: eGeMAPS
functionals have wildly different scales) with the library's ``transform`` and L2-normalised
(:meth:`ExemplarLibrary.prepare`), so the index's inner product is the cosine similarity.

Saving writes every file into ``<folder>.partial/``, the manifest (with the files' checksums)
last, then renames the folder into place: a crash leaves a ``.partial`` folder that never loads.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectgraph.errors import ConfigError, InputError, ModelUnavailable
from affectgraph.labels import LABELS
from affectgraph.models import sha256_of
from affectgraph.retrieval.index import IndexOptions, VectorIndex
from affectgraph.retrieval.manifest import (
    MANIFEST,
    Exemplar,
    IndexInfo,
    LibraryManifest,
    Source,
    read_manifest,
)

MAX_LISTED = 10
UNKNOWN_LICENCE = "not recorded"


@dataclass(frozen=True)
class Transform:
    """Standardisation of raw vectors: ``(x - mean) / scale``, both (dim,) float32."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, raw: np.ndarray) -> Transform:
        """Mean and standard deviation per column of (n, dim) ``raw`` (constant columns: 1)."""
        scale = raw.std(axis=0)
        return cls(raw.mean(axis=0).astype(np.float32),
                   np.where(scale > 1e-12, scale, 1.0).astype(np.float32))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.mean) / self.scale


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def label_codes(labels: Iterable[str]) -> np.ndarray:
    """Indices into :data:`~affectgraph.labels.LABELS` of canonical label names."""
    codes = {label: n for n, label in enumerate(LABELS)}
    return np.array([codes[label] for label in labels], dtype=np.int64)


def partial_of(folder: Path) -> Path:
    """Where a library bound for ``folder`` is written before it is renamed into place."""
    return folder.with_name(folder.name + ".partial")


class ExemplarLibrary:
    """A loaded library. ``exemplars[i]`` is row ``i`` of ``vectors`` and id ``i`` of the index.

    Build one with :meth:`create` (or :func:`affectgraph.retrieval.build.build_library`), or
    :meth:`load` a folder.
    """

    def __init__(
        self, manifest: LibraryManifest, exemplars: list[Exemplar], vectors: np.ndarray,
        index: VectorIndex, transform: Transform | None, folder: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self.exemplars = exemplars
        self.vectors = vectors
        self.index = index
        self.transform = transform
        self.folder = folder
        self._groups: dict[str, list[int]] | None = None
        self._codes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.exemplars)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def dim(self) -> int:
        return self.manifest.vectoriser.dim

    @property
    def codes(self) -> np.ndarray:
        """(n,) label of each exemplar as an index into :data:`~affectgraph.labels.LABELS`."""
        if self._codes is None:
            self._codes = label_codes(e.label for e in self.exemplars)
        return self._codes

    # -- creating, loading, saving --------------------------------------------------------

    @classmethod
    def create(cls, manifest: LibraryManifest, exemplars: Sequence[Exemplar], raw: np.ndarray,
               index: IndexOptions | None = None) -> ExemplarLibrary:
        """A library of ``exemplars`` with raw vectors ``raw`` (n, dim) as the vectoriser gave
        them. ``manifest`` describes it; its counts, size and index fields are filled in here,
        and the standardisation is fitted here when ``manifest.vectoriser.standardised``."""
        rows = _check_rows(list(exemplars), raw, manifest.vectoriser.dim, taken=set())
        transform = Transform.fit(rows) if manifest.vectoriser.standardised else None
        stored = _query_space(rows, transform, manifest.vectors_dtype)
        library = cls(manifest, list(exemplars), stored.astype(manifest.vectors_dtype),
                      VectorIndex.build(stored, options=index or IndexOptions()), transform)
        library._refresh_manifest()
        return library

    @classmethod
    def load(cls, folder: str | Path, *, threads: int = 1) -> ExemplarLibrary:
        """Load a library folder, verifying every file's checksum first.

        Raises :class:`~affectgraph.errors.ModelUnavailable` naming the folder and the fix when
        it is missing, unfinished, changed or truncated.
        """
        root = Path(folder)
        manifest = read_manifest(root)
        vectors = np.load(root / "vectors.npy", mmap_mode="r")
        with (root / "items.jsonl").open(encoding="utf-8") as fh:
            exemplars = [Exemplar.model_validate_json(line) for line in fh if line.strip()]
        transform = None
        if manifest.vectoriser.standardised:
            mean, scale = np.load(root / "transform.npy")
            transform = Transform(mean, scale)
        if manifest.index.kind == "flat":
            index = VectorIndex.build(vectors, options=IndexOptions(kind="flat", threads=threads))
        else:
            index = VectorIndex.load(root / "index.faiss", nprobe=manifest.index.nprobe,
                                     threads=threads)
        if not (len(exemplars) == len(vectors) == len(index) == manifest.size):
            raise ModelUnavailable(f"{root}: {len(exemplars)} exemplars, {len(vectors)} vectors "
                                   f"and {len(index)} indexed, manifest says {manifest.size}; "
                                   "rebuild it")
        return cls(manifest, exemplars, vectors, index, transform, root)

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the library to ``folder`` atomically (via ``<folder>.partial``); an existing
        library there is replaced only with ``overwrite``."""
        target = Path(folder)
        if target.exists() and not overwrite:
            raise InputError(f"{target} already exists; choose another folder or overwrite it "
                             "(--overwrite)")
        partial = partial_of(target)
        partial.mkdir(parents=True, exist_ok=True)
        files = {name: sha256_of(path) for name, path in self._write(partial).items()}
        for entry in partial.iterdir():  # leftovers of an interrupted build
            if entry.name not in files:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        manifest = self.manifest.model_copy(update={"files": files})
        (partial / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        _swap(partial, target)
        self.manifest, self.folder = manifest, target
        return target

    def _write(self, folder: Path) -> dict[str, Path]:
        paths = {"vectors.npy": folder / "vectors.npy", "items.jsonl": folder / "items.jsonl"}
        np.save(paths["vectors.npy"], np.asarray(self.vectors))
        with paths["items.jsonl"].open("w", encoding="utf-8") as fh:
            for exemplar in self.exemplars:
                fh.write(exemplar.model_dump_json(exclude_none=True) + "\n")
        if self.transform is not None:
            paths["transform.npy"] = folder / "transform.npy"
            np.save(paths["transform.npy"], np.stack([self.transform.mean, self.transform.scale]))
        if self.index.kind != "flat":
            paths["index.faiss"] = self.index.save(folder / "index.faiss")
        return paths

    # -- vectors and search ---------------------------------------------------------------

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Raw vectors (n, dim) from the library's vectoriser -> unit query vectors (n, dim)."""
        x = np.atleast_2d(np.asarray(raw, dtype=np.float32))
        if x.shape[1] != self.dim:
            raise InputError(f"vectors have {x.shape[1]} values; library {self.name!r} holds "
                             f"{self.dim}-d vectors of {self.manifest.vectoriser.name}")
        return _query_space(x, self.transform, "float32")

    def nearest(self, raw: np.ndarray, k: int = 10, exclude_groups: Iterable[str] = ()
                ) -> tuple[np.ndarray, np.ndarray]:
        """Similarities (q, k) and exemplar rows (q, k) (``-1``: none) of the ``k`` exemplars
        nearest each raw query vector, leaving out ``exclude_groups``: exemplar groups
        (``ravdess_speech/actor07``) or whole data sets (``tess``); unknown names exclude
        nothing."""
        return self.index.search(self.prepare(raw), k, exclude=self.rows_of(exclude_groups))

    def rows_of(self, groups: Iterable[str]) -> np.ndarray:
        """Rows of the exemplars in the given groups or data sets."""
        if self._groups is None:
            self._groups = {}
            for row, exemplar in enumerate(self.exemplars):
                self._groups.setdefault(exemplar.group, []).append(row)
                self._groups.setdefault(exemplar.dataset, []).append(row)
        rows = [r for g in dict.fromkeys(groups) for r in self._groups.get(g, [])]
        return np.unique(np.asarray(rows, dtype=np.int64))

    def check_vectoriser(self, vec: object) -> None:
        """Raise :class:`~affectgraph.errors.ConfigError` unless ``vec`` gives vectors
        comparable with this library's (same name and dim, same model revision; the
        ``-cropped`` preprocessing suffix of the face vectoriser does not matter)."""
        info = self.manifest.vectoriser
        name, revision = getattr(vec, "name", None), str(getattr(vec, "revision", ""))
        if (name, getattr(vec, "dim", None)) != (info.name, info.dim) or (
                revision.removesuffix("-cropped") != info.revision.removesuffix("-cropped")):
            raise ConfigError(f"library {self.name!r} holds {info.name} {info.revision} vectors "
                              f"({info.dim}-d); the query vectoriser is {name} {revision}: "
                              f"rebuild the library with this vectoriser")

    # -- adding ---------------------------------------------------------------------------

    def add(self, exemplars: Sequence[Exemplar], raw: np.ndarray | Sequence[np.ndarray],
            licences: Mapping[str, str] | None = None) -> None:
        """Add exemplars with their raw vectors (one per exemplar, ``dim`` values each).

        The standardisation is kept as fitted (queries stay comparable); IVF lists are not
        retrained. Raises :class:`~affectgraph.errors.InputError` listing the offending rows
        (wrong dimension, non-finite values, unknown labels, ids already present). New data
        sets are recorded with their ``licences`` (default "not recorded"). Call :meth:`save`
        to keep the result.
        """
        taken = {e.id for e in self.exemplars}
        rows = _check_rows(list(exemplars), raw, self.dim, taken)
        stored = _query_space(rows, self.transform, self.manifest.vectors_dtype)
        start = len(self.exemplars)
        self.index.add(stored, np.arange(start, start + len(rows), dtype=np.int64))
        self.vectors = np.concatenate([np.asarray(self.vectors), stored.astype(self.vectors.dtype)])
        self.exemplars = [*self.exemplars, *exemplars]
        self._groups = self._codes = None
        self._refresh_manifest(licences or {})

    def _refresh_manifest(self, licences: Mapping[str, str] | None = None) -> None:
        counts = {label: 0 for label in LABELS}
        per_set: dict[str, int] = {}
        for exemplar in self.exemplars:
            counts[exemplar.label] += 1
            per_set[exemplar.dataset] = per_set.get(exemplar.dataset, 0) + 1
        known = {s.dataset: s for s in self.manifest.sources}
        sources = tuple(
            known[d].model_copy(update={"count": n}) if d in known else
            Source(dataset=d, licence=(licences or {}).get(d, UNKNOWN_LICENCE), count=n)
            for d, n in per_set.items())
        index = IndexInfo(kind=self.index.kind, nlist=self.index.nlist, nprobe=self.index.nprobe)
        self.manifest = self.manifest.model_copy(update={
            "counts": {k: v for k, v in counts.items() if v}, "size": len(self.exemplars),
            "sources": sources, "index": index})


def _query_space(raw: np.ndarray, transform: Transform | None, dtype: str) -> np.ndarray:
    """Standardised (when ``transform``) unit rows, rounded to ``dtype`` as stored, float32."""
    unit = unit_rows(transform.apply(raw) if transform is not None else raw)
    return unit.astype(dtype).astype(np.float32)


def _check_rows(exemplars: list[Exemplar], raw: np.ndarray | Sequence[np.ndarray], dim: int,
                taken: set[str]) -> np.ndarray:
    """(n, dim) float32 of ``raw`` after checking every row; InputError listing bad rows."""
    vectors = list(raw)
    problems: list[str] = []
    if len(vectors) != len(exemplars):
        raise InputError(f"{len(exemplars)} exemplars but {len(vectors)} vectors")
    if not exemplars:
        raise InputError("no exemplars to index")
    seen = set(taken)
    for row, (exemplar, vector) in enumerate(zip(exemplars, vectors, strict=True)):
        values = np.asarray(vector, dtype=np.float32)
        if values.shape != (dim,):
            problems.append(f"row {row} ({exemplar.id}): {values.size} values, expected {dim}")
        elif not np.isfinite(values).all():
            problems.append(f"row {row} ({exemplar.id}): non-finite values")
        if exemplar.label not in LABELS:
            problems.append(f"row {row} ({exemplar.id}): unknown label {exemplar.label!r} "
                            f"(valid: {', '.join(LABELS)})")
        if exemplar.id in seen:
            problems.append(f"row {row}: id {exemplar.id!r} is already in the library")
        seen.add(exemplar.id)
    if problems:
        raise InputError(listing(f"{len(problems)} bad exemplar row(s)", problems))
    return np.stack([np.asarray(v, dtype=np.float32) for v in vectors])


def listing(title: str, problems: Sequence[str]) -> str:
    """``title`` and the first :data:`MAX_LISTED` problems, one per line."""
    more = len(problems) - MAX_LISTED
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return f"{title}:\n  " + "\n  ".join(problems[:MAX_LISTED]) + tail


def _swap(partial: Path, target: Path) -> None:
    """Move the finished ``partial`` folder to ``target``, replacing an old library there."""
    if not target.exists():
        partial.rename(target)
        return
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    partial.rename(target)
    shutil.rmtree(old)
