"""How well the kNN label vote recognises emotions, with speakers held out.

Each protocol splits labelled items into folds whose test items share no speaker (or person)
with their training items; the vote of each test item's ``k`` nearest training exemplars
(:func:`knn_vote`, exact search) is its prediction; predictions are pooled over folds and
scored with :func:`affectgraph.evals.metrics.score`:

- ``voice-ravdess``: RAVDESS speech, leave-one-actor-out (18 folds); TESS always in training.
- ``text-meld`` / ``text-emorynlp``: train on the default text library's items (MELD train +
  EmoryNLP train + GoEmotions at most 1,000 per label), test on MELD dev / EmoryNLP dev.
- ``face-fer2013``: FER2013 in 5 random folds (seed 0: the set has no identities), crops
  vectorised whole; faces_web always in training.
- ``face-web``: faces_web in 5 folds by person, face found by the detector; FER2013 always in
  training. Photos where no face is found are not scored (``KnnResult.scored`` < ``total``).

``speaker_norm`` z-scores each raw vector with the mean and spread of its speaker's *other*
items (leave-one-out, no labels used) before anything else: the speaker-adaptive option of the
voice path. :func:`knn_vote` is reusable: the emotion heads combine its (n, 7) votes with their
own probabilities.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectgraph.datasets import Item, load_dataset, speaker_folds
from affectgraph.errors import InputError, unknown_name
from affectgraph.evals.metrics import Scores, score
from affectgraph.features import Progress, Vectoriser, extract
from affectgraph.labels import LABELS
from affectgraph.retrieval.index import IndexOptions, VectorIndex
from affectgraph.retrieval.library import Transform, label_codes, unit_rows
from affectgraph.retrieval.search import TEMPERATURE, vote

VectoriserFor = Callable[[Item], Vectoriser]


@dataclass(frozen=True)
class Fold:
    train: list[Item]
    test: list[Item]


@dataclass(frozen=True)
class KnnResult:
    """Scores of the pooled predictions, how many test items there were and how many had a
    vector (and so were scored), and the votes (scored, 7) with their items."""

    scores: Scores
    total: int
    scored: int
    votes: np.ndarray
    items: tuple[Item, ...]


def knn_vote(train: np.ndarray, labels: Sequence[str] | np.ndarray, test: np.ndarray, *,
             k: int = 10, temperature: float = TEMPERATURE, standardise: bool = False
             ) -> np.ndarray:
    """(n_test, 7) vote distributions over :data:`~affectgraph.labels.LABELS` of the ``k``
    training vectors (n_train, dim) nearest each test vector (n_test, dim), by cosine after
    standardising with the training set's statistics when ``standardise``.
    ``labels`` are canonical names or indices into ``LABELS``."""
    codes = np.asarray(labels) if np.asarray(labels).dtype.kind == "i" else label_codes(labels)
    transform = Transform.fit(np.asarray(train, np.float32)) if standardise else None
    def space(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return unit_rows(transform.apply(x) if transform is not None else x)
    index = VectorIndex.build(space(train), options=IndexOptions(kind="flat"))
    sims, rows = index.search(space(test), k)
    return vote(sims, np.where(rows >= 0, codes[np.maximum(rows, 0)], -1), temperature)


def knn_scores(folds: Sequence[Fold], vectoriser: Vectoriser | VectoriserFor, *, k: int = 10,
               temperature: float = TEMPERATURE, standardise: bool = False,
               speaker_norm: bool = False, progress: Progress | None = None) -> KnnResult:
    """Vote for every test item of every fold from its fold's training items; score the
    pooled predictions. ``vectoriser`` is one vectoriser or a function choosing one per item
    (faces: crops vs. photos). Vectors come through the feature cache."""
    items = list({i.id: i for f in folds for i in (*f.train, *f.test)}.values())
    vectors, ok = _vectors(items, vectoriser, progress)
    if speaker_norm:
        vectors = _speaker_normalised(items, vectors, ok)
    row = {item.id: n for n, item in enumerate(items)}
    votes, scored, total = [], [], 0
    for fold in folds:
        train = [row[i.id] for i in fold.train if ok[row[i.id]]]
        test = [row[i.id] for i in fold.test if ok[row[i.id]]]
        total += len(fold.test)
        if test:
            votes.append(knn_vote(vectors[train], [items[n].label.value for n in train],
                                  vectors[test], k=k, temperature=temperature,
                                  standardise=standardise))
            scored += [items[n] for n in test]
    if not votes:
        raise InputError(f"none of the {total} test items has a vector to vote with")
    pooled = np.concatenate(votes)
    predicted = [LABELS[i] for i in pooled.argmax(axis=1)]
    return KnnResult(scores=score([i.label.value for i in scored], predicted), total=total,
                     scored=len(scored), votes=pooled, items=tuple(scored))


def _vectors(items: list[Item], vectoriser: Vectoriser | VectoriserFor,
             progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    choose: VectoriserFor = (vectoriser if not hasattr(vectoriser, "vectorise")
                             else lambda item: vectoriser)  # type: ignore[assignment,return-value]
    groups: dict[int, tuple[Vectoriser, list[int]]] = {}
    for n, item in enumerate(items):
        vec = choose(item)
        groups.setdefault(id(vec), (vec, []))[1].append(n)
    vectors, ok = None, np.zeros(len(items), dtype=bool)
    for vec, rows in groups.values():
        features = extract([items[n] for n in rows], vec, progress=progress)
        vectors = np.zeros((len(items), vec.dim), np.float32) if vectors is None else vectors
        vectors[rows], ok[rows] = features.vectors, features.ok
    assert vectors is not None
    return vectors, ok


def _speaker_normalised(items: list[Item], vectors: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Each vector z-scored by its speaker's other items (leave-one-out mean and deviation)."""
    out = vectors.copy()
    by_group: dict[str, list[int]] = {}
    for n, item in enumerate(items):
        if ok[n] and item.speaker:
            by_group.setdefault(item.group, []).append(n)
    for rows in by_group.values():
        if len(rows) < 3:
            continue
        x = vectors[rows].astype(np.float64)
        m = len(rows) - 1
        mean = (x.sum(axis=0) - x) / m
        var = ((x**2).sum(axis=0) - x**2) / m - mean**2
        out[rows] = (x - mean) / np.sqrt(np.maximum(var, 1e-12))
    return out


# -- the protocols -------------------------------------------------------------------------

def voice_ravdess(root: Path | None = None) -> list[Fold]:
    ravdess, tess = load_dataset("ravdess_speech", root=root), load_dataset("tess", root=root)
    actors = len({i.group for i in ravdess})
    return _held_out(speaker_folds(ravdess, actors), always=tess)


def _text(test_set: str) -> Callable[[Path | None], list[Fold]]:
    def folds(root: Path | None = None) -> list[Fold]:
        from affectgraph.retrieval.defaults import recipe_items

        return [Fold(train=recipe_items("text", root),
                     test=load_dataset(test_set, root=root, split="dev"))]

    return folds


def face_fer2013(root: Path | None = None, folds: int = 5) -> list[Fold]:
    fer = load_dataset("faces_fer2013", root=root)
    order = list(range(len(fer)))
    random.Random(0).shuffle(order)
    parts = [[fer[n] for n in order[f::folds]] for f in range(folds)]
    return _held_out(parts, always=load_dataset("faces_web", root=root))


def face_web(root: Path | None = None, folds: int = 5) -> list[Fold]:
    web = load_dataset("faces_web", root=root)
    return _held_out(speaker_folds(web, folds), always=load_dataset("faces_fer2013", root=root))


def _held_out(parts: list[list[Item]], always: list[Item]) -> list[Fold]:
    return [Fold(train=[i for p, part in enumerate(parts) if p != f for i in part] + always,
                 test=part) for f, part in enumerate(parts)]


@dataclass(frozen=True)
class Protocol:
    modality: str
    folds: Callable[[Path | None], list[Fold]]
    standardise: bool = False


PROTOCOLS: dict[str, Protocol] = {
    "voice-ravdess": Protocol("voice", voice_ravdess, standardise=True),
    "text-meld": Protocol("text", _text("meld")),
    "text-emorynlp": Protocol("text", _text("emorynlp")),
    "face-fer2013": Protocol("face", face_fer2013),
    "face-web": Protocol("face", face_web),
}


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise unknown_name("evaluation protocol", name, PROTOCOLS)
    return PROTOCOLS[name]
