"""What an exemplar library is: its versioned manifest, and the checksums that guard it.

A library is a folder::

    manifest.json    LibraryManifest: name, modality, sources with their licences, label
                     scheme, vectoriser (name, revision, dim), count per label, index, checksums
    vectors.npy      (n, dim) float32 or float16: the exemplars' vectors as searched (standardised
                     with transform.npz when there is one, then L2-normalised)
    items.jsonl      one Exemplar per line, in the row order of vectors.npy
    transform.npz    (voice only) ``mean`` and ``scale`` (dim,) that standardise a raw vector
    index.faiss      (ivf and ivfpq only) the trained FAISS index; a flat index is exact and
                     rebuilt from vectors.npy at load in milliseconds, so it is not stored twice

The manifest is written last and lists the sha256 of every other file; a folder whose files
do not match (half-written, edited, truncated) does not load.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import ModelUnavailable
from affectgraph.evidence import Modality, TimeSpan
from affectgraph.models import sha256_of
from affectgraph.retrieval.index import IndexKind

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """One data set in a library: its licence, how its labels were mapped (``scheme``: a table
    of :data:`affectgraph.labels.SCHEMES`; ``label_map`` raw label -> canonical, ``None`` =
    dropped), how many exemplars it gave, and the vectoriser revision its vectors came from."""

    dataset: str
    licence: str
    count: int
    scheme: str | None = None
    label_map: dict[str, str | None] = Field(default_factory=dict)
    vectoriser_revision: str = ""
    text_stored: bool = True
    note: str = ""


class VectoriserInfo(_Frozen):
    """The vectoriser of the library's vectors; a query must come from a compatible one."""

    name: str
    revision: str
    dim: int
    standardised: bool = Field(description="raw vectors are standardised with transform.npz")


class IndexInfo(_Frozen):
    kind: IndexKind
    nlist: int | None = None
    nprobe: int | None = None


class LibraryManifest(_Frozen):
    """The versioned description of an exemplar library (``manifest.json``)."""

    name: str
    modality: Modality
    description: str = ""
    sources: tuple[Source, ...]
    label_scheme: Literal["canonical"] = "canonical"
    counts: dict[str, int] = Field(description="canonical label -> exemplars")
    size: int
    vectoriser: VectoriserInfo
    vectors_dtype: Literal["float32", "float16"] = "float32"
    index: IndexInfo
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="items left out for want of a vector, by reason")
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    format_version: int = FORMAT_VERSION

    @property
    def licences(self) -> dict[str, str]:
        return {s.dataset: s.licence for s in self.sources}


class Exemplar(_Frozen):
    """One labelled exemplar: ``id`` (``ravdess_speech/03-01-05-02-01-01-07``), canonical
    ``label``, ``dataset``, ``speaker`` (or other group), its ``text`` when stored, its
    ``media`` (relative to the data root when it lies inside it) and the span used."""

    id: str
    label: str
    dataset: str
    speaker: str | None = None
    text: str | None = None
    media: str | None = None
    start: float | None = None
    end: float | None = None

    @property
    def group(self) -> str:
        """What a speaker-independent search excludes together (as ``datasets.Item.group``)."""
        return f"{self.dataset}/{self.speaker}" if self.speaker else self.id

    @property
    def citation(self) -> str:
        """How evidence cites it: ``exemplar:<id>``."""
        return f"exemplar:{self.id}"

    @property
    def span(self) -> TimeSpan | None:
        if self.start is None or self.end is None:
            return None
        return TimeSpan(start=self.start, end=self.end)


def read_manifest(folder: Path) -> LibraryManifest:
    """The manifest of ``folder`` after checking every file against its checksum.

    Raises :class:`~affectgraph.errors.ModelUnavailable` naming the folder, what is wrong and
    how to fix it (rebuild, or finish an interrupted build).
    """
    fix = f"rebuild it with `affectgraph exemplars build --out {folder} ...`"
    if folder.name.endswith(".partial"):
        raise ModelUnavailable(f"{folder} is an unfinished build; rerun the build to finish it")
    if not (folder / MANIFEST).is_file():
        raise ModelUnavailable(f"{folder} is not an exemplar library (no {MANIFEST}); {fix}")
    try:
        manifest = LibraryManifest.model_validate_json((folder / MANIFEST).read_text())
    except ValueError as exc:
        raise ModelUnavailable(f"{folder}/{MANIFEST} is not a valid manifest ({exc}); {fix}"
                               ) from None
    if manifest.format_version > FORMAT_VERSION:
        raise ModelUnavailable(f"{folder} has library format {manifest.format_version}; this "
                               f"affectgraph reads up to {FORMAT_VERSION}: upgrade affectgraph")
    for name, digest in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise ModelUnavailable(f"{folder}: {name} is missing; {fix}")
        if sha256_of(path) != digest:
            raise ModelUnavailable(f"{folder}: {name} does not match its checksum (changed or "
                                   f"half-written); {fix}")
    return manifest
