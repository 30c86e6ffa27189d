"""The exemplar libraries shipped in the package: they load, fit the size budget, say their
licences, and retrieve sensibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectgraph.errors import ConfigError
from affectgraph.retrieval.defaults import (
    assets_folder,
    default_library,
    library_folders,
    resolve_library,
)
from affectgraph.retrieval.search import search

BUDGET_BYTES = 30 * 1024 * 1024


def test_the_three_libraries_fit_in_30_mb() -> None:
    files = [p for p in assets_folder().rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} == {"voice", "text", "face"}
    assert sum(p.stat().st_size for p in files) <= BUDGET_BYTES


@pytest.mark.parametrize("modality, least, datasets, licence", [
    ("voice", 800, {"ravdess_speech", "tess"}, "CC BY-NC-SA 4.0"),
    ("text", 20_000, {"goemotions", "meld", "emorynlp"}, "Apache-2.0"),
    ("face", 2_000, {"faces_web", "faces_fer2013"}, "research use"),
])
def test_defaults_load_with_their_licences(modality: str, least: int, datasets: set[str],
                                           licence: str) -> None:
    library = default_library(modality)
    m = library.manifest
    assert m.modality == modality and len(library) == m.size >= least
    assert {s.dataset for s in m.sources} == datasets
    assert all(s.licence and s.licence != "not recorded" for s in m.sources)
    assert any(licence in s.licence for s in m.sources)
    assert set(m.counts) == {"neutral", "happy", "sad", "angry", "fearful", "disgusted",
                             "surprised"}
    assert resolve_library(modality) == library.folder == library_folders()[modality]


def test_text_defaults_keep_text_only_where_the_licence_allows() -> None:
    library = default_library("text")
    assert library.vectors.dtype == np.float16
    stored = {s.dataset: s.text_stored for s in library.manifest.sources}
    assert stored == {"goemotions": True, "meld": False, "emorynlp": False}
    by_set = {e.dataset: e for e in library.exemplars}
    assert by_set["goemotions"].text and by_set["meld"].text is None
    assert by_set["meld"].id.startswith("meld/train/")


def test_default_text_library_votes_sensibly(exemplar_text_vec) -> None:
    library = default_library("text")
    sentences = ["I am so angry I could scream, get out of my house!",
                 "This is the best day of my life, thank you so much!",
                 "I'm terrified, something is moving in the dark."]
    found = search(library, exemplar_text_vec.embed(sentences), k=20)
    assert [r.label for r in found] == ["angry", "happy", "fearful"]


def test_default_voice_library_with_the_actor_held_out(exemplar_voice_vec,
                                                       data_dir: Path) -> None:
    from affectgraph.datasets import load_dataset

    library = default_library("voice")
    assert library.transform is not None and library.manifest.vectoriser.standardised
    clip = next(i for i in load_dataset("ravdess_speech", root=data_dir)
                if i.id == "ravdess_speech/03-01-05-02-01-01-07")
    raw = np.stack(exemplar_voice_vec.vectorise([clip]))
    own, = search(library, raw, k=1)
    assert own.neighbours[0].id == clip.id  # the clip itself is in the library
    held, = search(library, raw, k=10, exclude_groups=["ravdess_speech/actor07"])
    assert all(n.speaker != "actor07" for n in held.neighbours)
    assert held.neighbours[0].media and held.neighbours[0].media.startswith("ravdess_speech/")


def test_unknown_default() -> None:
    with pytest.raises(ConfigError, match="did you mean 'voice'"):
        default_library("vioce")


def test_every_bundled_data_set_has_a_licence_and_scheme() -> None:
    from affectgraph.datasets import DATASETS
    from affectgraph.labels import SCHEMES
    from affectgraph.retrieval.catalogue import CATALOGUE

    assert set(DATASETS) <= set(CATALOGUE)
    assert all(info.scheme in SCHEMES and info.licence for info in CATALOGUE.values())
