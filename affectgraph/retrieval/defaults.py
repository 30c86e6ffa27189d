"""The default exemplar libraries shipped inside the package, and where libraries are found.

One library per modality under ``affectgraph/assets/exemplars/<modality>/``, rebuilt
reproducibly from the data folder by ``affectgraph exemplars build-defaults``
(:func:`build_defaults`):

- ``voice``: RAVDESS speech (actors 01-18) + TESS, standardised eGeMAPS functionals;
- ``text``: MELD train + EmoryNLP train (all: dialogue turns, the domain of analysed speech)
  + GoEmotions (single-label, Ekman) at most 1,000 per label (seeded sample: it adds the rare
  fear, disgust and surprise examples), MiniLM embeddings stored as float16. This mix scored
  best with MELD/EmoryNLP dev held out (weighted-F1 0.49/0.46 at k=20, against 0.47/0.45 for
  all 66k texts and 0.41/0.38 for a balanced 4,000-per-label sample). The text is kept for
  GoEmotions (Apache-2.0), not for MELD / EmoryNLP (Friends transcripts, GPL-3.0
  repository), whose exemplars keep their id;
- ``face``: faces_web (face found by the detector) + FER2013 (crops vectorised whole), fer
  expression embeddings.

Libraries the user builds can live anywhere; those under ``$AFFECTGRAPH_HOME/exemplars/<name>``
are found by name (:func:`library_folders`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from affectgraph.datasets import Item, load_dataset
from affectgraph.errors import ModelUnavailable, unknown_name
from affectgraph.features import Progress
from affectgraph.models import ModelRegistry, cache_home
from affectgraph.retrieval.build import BuildOptions, Vectorisers, build_library, sample_per_label
from affectgraph.retrieval.library import ExemplarLibrary
from affectgraph.retrieval.manifest import MANIFEST

MODALITIES = ("voice", "text", "face")


@dataclass(frozen=True)
class Take:
    """Items of one data set: a ``split`` (``None``: all), at most ``max_per_label`` per label
    (a random sample with seed 0)."""

    dataset: str
    split: str | None = None
    max_per_label: int | None = None


@dataclass(frozen=True)
class Recipe:
    sets: tuple[Take, ...]
    options: BuildOptions


RECIPES: dict[str, Recipe] = {
    "voice": Recipe(
        (Take("ravdess_speech"), Take("tess")),
        BuildOptions(name="voice", description="Acted emotional speech: RAVDESS (neutral and 7 "
                     "emotions at strong intensity) and TESS (2 speakers, 7 emotions)")),
    "text": Recipe(
        (Take("meld", "train"), Take("emorynlp", "train"), Take("goemotions", max_per_label=1000)),
        BuildOptions(name="text", description="Friends dialogue turns (MELD and EmoryNLP train) "
                     "and Reddit comments (GoEmotions, at most 1000 per label)",
                     dtype="float16", drop_text=("meld", "emorynlp"))),
    "face": Recipe(
        (Take("faces_web"), Take("faces_fer2013")),
        BuildOptions(name="face", description="Face photos (faces_web) and 48x48 crops (FER2013 "
                     "PrivateTest)")),
}


def assets_folder() -> Path:
    """Where the shipped default libraries live inside the installed package."""
    return Path(str(resources.files("affectgraph"))) / "assets" / "exemplars"


def user_folder() -> Path:
    """Where libraries are found by name: ``$AFFECTGRAPH_HOME/exemplars``."""
    return cache_home() / "exemplars"


def default_library(modality: str, *, threads: int = 1) -> ExemplarLibrary:
    """Load the shipped library of ``modality`` (``voice``, ``text`` or ``face``)."""
    if modality not in RECIPES:
        raise unknown_name("default library", modality, RECIPES)
    folder = assets_folder() / modality
    if not (folder / MANIFEST).is_file():
        raise ModelUnavailable(f"the default {modality} exemplar library is missing from "
                               f"{folder}; rebuild it: affectgraph exemplars build-defaults "
                               f"--modality {modality}")
    return ExemplarLibrary.load(folder, threads=threads)


def library_folders() -> dict[str, Path]:
    """Every library found by name: the shipped defaults, then the user's (a user library
    named like a default is listed as ``user/<name>``)."""
    shipped = assets_folder()
    found = {m: shipped / m for m in MODALITIES if (shipped / m / MANIFEST).is_file()}
    if user_folder().is_dir():
        for folder in sorted(user_folder().iterdir()):
            if (folder / MANIFEST).is_file():
                found[folder.name if folder.name not in found else f"user/{folder.name}"] = folder
    return found


def resolve_library(ref: str | Path) -> Path:
    """A library folder from a path or a name listed by :func:`library_folders`."""
    path = Path(ref)
    if path.is_dir():
        return path
    folders = library_folders()
    if str(ref) in folders:
        return folders[str(ref)]
    raise unknown_name("exemplar library (folder or name)", str(ref), folders)


def recipe_items(modality: str, root: Path | None = None) -> list[Item]:
    """The items the default library of ``modality`` is built from."""
    items = []
    for take in RECIPES[modality].sets:
        found = load_dataset(take.dataset, root=root, split=take.split)
        items += sample_per_label([found], take.max_per_label)[0]
    return items


def build_defaults(
    modalities: Sequence[str] = MODALITIES,
    *,
    root: Path | None = None,
    out: Path | None = None,
    resume: bool = True,
    registry: ModelRegistry | None = None,
    progress: Callable[[str], Progress | None] = lambda modality: None,
) -> list[ExemplarLibrary]:
    """Rebuild the default libraries from the data folder ``root`` into ``out`` (default: the
    package's assets), replacing the old ones. ``progress(modality)`` gives each build's
    progress callback."""
    built = []
    for modality in modalities:
        if modality not in RECIPES:
            raise unknown_name("default library", modality, RECIPES)
        recipe = RECIPES[modality]
        parts = Vectorisers(modality, registry).parts(recipe_items(modality, root))
        built.append(build_library(parts, (out or assets_folder()) / modality, recipe.options,
                                   data_root=root, resume=resume, overwrite=True,
                                   progress=progress(modality)))
    return built
