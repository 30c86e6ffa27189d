"""Training and evaluating the face head on FER2013 and faces_web, people held out.

Each item is read the way the face specialist reads it (:class:`ViewVectoriser`): the first
frame decoded by PyAV at most 640 px a side, the largest face BlazeFace finds (the whole image for
the ``cropped`` FER2013 crops), fer on its 10 views. Cross-validation keeps a person's photos in
one fold (faces_web, person = file name without its number; FER2013 has no identities, so random
folds with a fixed seed); fold ``k`` of both sets is held out together, so a fold's head never
saw its test items. The head is scored against fer on the same held-out items; its calibration
temperature is fitted on the held-out logits; the shipped head is then trained on every item and
checked on frames of the RAVDESS audio-visual clips (5 fps), a source and an actor it never saw.

:func:`compare_face` scores the default face path (fer, one view) against the kNN vote of the face
library and their mixture on the same folds, the vote weight chosen on training folds only. On
faces_web the mixture reaches WAR 0.533 (fer 0.452), but with the weight chosen there (0.7) it
costs the RAVDESS frames 12 points (0.466 -> 0.345): like the head, the vote teaches faces_web's
labelling, so neither is on by default.

>>> head, scores = train_face_head()  # doctest: +SKIP
>>> scores["faces_web/head"].war, scores["ravdess_av/head"].war  # doctest: +SKIP
(0.585, 0.284)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.datasets import Item, load_dataset, speaker_folds
from affectgraph.evals.metrics import Scores, score
from affectgraph.features import extract
from affectgraph.heads.artefact import Head, HeadManifest, fit_temperature
from affectgraph.heads.combination import Comparison, choose_weight, compare, mix
from affectgraph.heads.face import EMBEDDING_DIM, INPUT_DIM, head_input, pooled
from affectgraph.labels import LABELS

if TYPE_CHECKING:
    from affectgraph.tools.face import FaceModel

LICENCES = {
    "faces_fer2013": "research use (Kaggle challenge data)",
    "faces_web": "third-party images, research use",
}
"""The training sets (cropped FER2013 dev crops; web photos, face found by the detector) and
their licences, as their SOURCE.txt state them."""
CROPPED = {"faces_fer2013": True, "faces_web": False}
VIDEO_CHECK = "ravdess_av"  # never trained on: frames of its clips test transfer to video
VIDEO_FPS = 5.0
NO_FACE = "none"  # what an item without a detected face is scored as predicting


class FaceHeadOptions(BaseModel):
    """How the face head is trained: ``ensemble`` MLPs of ``hidden`` ReLU units each (inputs and
    hidden units dropped out with ``dropout``), AdamW for ``epochs`` over mini-batches of
    ``batch``; ``folds`` and ``seed`` fix the cross-validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: int = Field(default=16, ge=1)
    ensemble: int = Field(default=3, ge=1)
    epochs: int = Field(default=15, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    dropout: float = Field(default=0.3, ge=0, lt=1)
    batch: int = Field(default=128, ge=1)
    folds: int = Field(default=5, ge=2)
    seed: int = 0


class ViewVectoriser:
    """Per item: the head's input (135) then log p of fer's unshifted view (7), of the largest
    face (of the whole image when ``cropped``); a :class:`~affectgraph.features.Vectoriser` so
    that :func:`~affectgraph.features.extract` caches it."""

    modality, name, dim = "face", "fer-views10", INPUT_DIM + len(LABELS)

    def __init__(self, model: FaceModel, *, cropped: bool) -> None:
        self.model, self.cropped = model, cropped
        self.revision = model.classifier.ref.revision + ("-cropped" if cropped else "")

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        from affectgraph import media
        from affectgraph.tools.face import face_region, face_views

        out: list[np.ndarray | str] = []
        for item in items:
            if item.path is None:
                out.append("no media path")
                continue
            rgb = next(media.iter_frames(item.path, start=item.start or 0.0, max_side=640)).image
            if self.cropped:
                region = (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0]))
            else:
                found = self.model.detect(rgb)
                if not found:
                    out.append("no face detected")
                    continue
                region = face_region(max(found, key=lambda d: d.width * d.height), 0.0)
            views = self.model.classify(face_views(rgb, region))
            distribution, embedding = pooled(views)
            if embedding is None:
                out.append("no embedding")
                continue
            single = head_input(views[0].distribution, embedding)[EMBEDDING_DIM:]
            out.append(np.concatenate([head_input(distribution, embedding), single]))
        return out

    def from_evidence(self, record: object) -> np.ndarray | None:
        """None: evidence carries the head's corrected output, not fer's pooled views."""
        return None


@dataclass(frozen=True)
class FaceSet:
    """One data set's items read for the head: ``inputs`` (n, 135) head inputs, ``single``
    (n, 7) log p of fer's unshifted view, ``labels`` (n,) indices into ``LABELS``, ``folds``
    (n,) cross-validation folds and ``ok`` (n,) whether a face was found."""

    name: str
    inputs: np.ndarray
    single: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    ok: np.ndarray

    @property
    def truth(self) -> list[str]:
        return [LABELS[k] for k in self.labels]


def face_set(name: str, items: Sequence[Item], model: FaceModel, *, folds: int = 5,
             seed: int = 0, cache: Path | None = None) -> FaceSet:
    """Read ``items`` of data set ``name`` (``faces_fer2013`` cropped, otherwise detected) and
    assign folds: by speaker when items have one, else at random with ``seed``."""
    features = extract(items, ViewVectoriser(model, cropped=CROPPED.get(name, False)),
                       cache=cache)
    if all(i.speaker for i in items):
        group = {i.id: k for k, fold in enumerate(speaker_folds(items, folds)) for i in fold}
        fold = np.array([group[i.id] for i in items])
    else:
        fold = np.random.default_rng(seed).permutation(np.arange(len(items)) % folds)
    vectors = features.vectors.astype(np.float64)
    return FaceSet(name=name, inputs=vectors[:, :INPUT_DIM], single=vectors[:, INPUT_DIM:],
                   labels=np.array([LABELS.index(i.label.value) for i in items]), folds=fold,
                   ok=features.ok)


def face_sets(data: Path | None = None, *, model: FaceModel | None = None, folds: int = 5,
              seed: int = 0, cache: Path | None = None) -> list[FaceSet]:
    """FER2013 dev crops and faces_web photos (without contempt) from ``data`` (default: the
    shared data folder), read with ``model`` (default: fer, no head)."""
    from affectgraph.tools.face import FaceModel

    model = model or FaceModel.load(head=False)
    return [face_set(name, load_dataset(name, root=data), model, folds=folds, seed=seed,
                     cache=cache) for name in LICENCES]


def frame_items(items: Sequence[Item], fps: float = VIDEO_FPS) -> list[Item]:
    """One item per sampled frame of each video item (``start`` = the frame's time, seconds)."""
    from affectgraph.media import probe

    out = []
    for item in items:
        if item.path is not None:
            times = np.arange(0.0, probe(item.path).duration, 1.0 / fps)
            out += [replace(item, id=f"{item.id}@{t:.2f}", start=float(t)) for t in times]
    return out


def fit_head(inputs: np.ndarray, labels: np.ndarray, options: FaceHeadOptions,
             manifest: HeadManifest, temperature: float = 1.0) -> Head:
    """Train the head on (n, 135) ``inputs`` and (n,) label indices; see :mod:`.face`."""
    mean = inputs.mean(axis=0)
    scale = np.where(inputs.std(axis=0) > 1e-8, inputs.std(axis=0), 1.0)
    x = (inputs - mean) / scale
    nets = [_train_mlp(x, inputs[:, EMBEDDING_DIM:], labels, options, options.seed + n)
            for n in range(options.ensemble)]
    W1, b1, W, b = _fold(nets, mean[EMBEDDING_DIM:], scale[EMBEDDING_DIM:])
    return Head(manifest=manifest, mean=mean, scale=scale, W=W, b=b, temperature=temperature,
                W1=W1, b1=b1)


Net = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # W1 (D, H), b1, W2 (H, C), b2


def _train_mlp(x: np.ndarray, log_p: np.ndarray, labels: np.ndarray, options: FaceHeadOptions,
               seed: int) -> Net:
    """One MLP of ``logits = log_p + W2 relu(W1 x + b1) + b2``, its output layer starting at 0."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    hidden, out = torch.nn.Linear(x.shape[1], options.hidden), torch.nn.Linear(options.hidden,
                                                                               len(LABELS))
    torch.nn.init.zeros_(out.weight)
    torch.nn.init.zeros_(out.bias)
    drop = torch.nn.Dropout(options.dropout)
    optimiser = torch.optim.AdamW([*hidden.parameters(), *out.parameters()],
                                  lr=options.learning_rate, weight_decay=options.weight_decay)
    X, L = torch.tensor(x, dtype=torch.float32), torch.tensor(log_p, dtype=torch.float32)
    Y = torch.tensor(labels, dtype=torch.long)
    for _ in range(options.epochs):
        order = torch.randperm(len(Y), generator=generator)
        for start in range(0, len(Y), options.batch):
            b = order[start:start + options.batch]
            logits = out(drop(torch.relu(hidden(drop(X[b]))))) + L[b]
            loss = torch.nn.functional.cross_entropy(logits, Y[b])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return tuple(p.detach().numpy().astype(np.float64).T for p in  # type: ignore[return-value]
                 (hidden.weight, hidden.bias, out.weight, out.bias))


def _fold(nets: Sequence[Net], log_mean: np.ndarray, log_scale: np.ndarray) -> Net:
    """One hidden layer computing the mean logits of ``nets`` plus the skip connection.

    The skip needs log p = standardised x * scale + mean over the last 7 inputs: 7 units
    relu(x_j) and 7 units relu(-x_j), whose difference is x_j.
    """
    classes, size = len(LABELS), sum(n[0].shape[1] for n in nets)
    W1 = np.zeros((INPUT_DIM, size + 2 * classes))
    b1 = np.zeros(size + 2 * classes)
    W = np.zeros((size + 2 * classes, classes))
    col = 0
    for w1, bias1, w2, _ in nets:
        h = w1.shape[1]
        W1[:, col:col + h], b1[col:col + h], W[col:col + h] = w1, bias1, w2 / len(nets)
        col += h
    for j in range(classes):
        W1[EMBEDDING_DIM + j, size + j], W1[EMBEDDING_DIM + j, size + classes + j] = 1.0, -1.0
        W[size + j, j], W[size + classes + j, j] = log_scale[j], -log_scale[j]
    b = np.mean([n[3] for n in nets], axis=0) + log_mean
    return W1, b1, W, b


def cross_validate(sets: Sequence[FaceSet], options: FaceHeadOptions) -> list[np.ndarray]:
    """Held-out logits (n, 7) per set; fold k of every set is held out together. Rows of items
    without a face are NaN."""
    out = [np.full((len(s.labels), len(LABELS)), np.nan) for s in sets]
    for k in range(options.folds):
        train = [(s.folds != k) & s.ok for s in sets]
        head = fit_head(np.vstack([s.inputs[t] for s, t in zip(sets, train, strict=True)]),
                        np.concatenate([s.labels[t] for s, t in zip(sets, train, strict=True)]),
                        options, _manifest({}))
        for s, logits in zip(sets, out, strict=True):
            test = (s.folds == k) & s.ok
            logits[test] = head.logits(s.inputs[test])
    return out


def _predicted(logits: np.ndarray, ok: np.ndarray) -> list[str]:
    return [LABELS[int(np.argmax(row))] if found else NO_FACE
            for row, found in zip(logits, ok, strict=True)]


def scores_of(sets: Sequence[FaceSet], held_out: Sequence[np.ndarray]) -> dict[str, Scores]:
    """``<set>/fer`` (one view), ``<set>/fer-views`` (10 views averaged) and ``<set>/head``
    (held-out logits) per set; an item without a face counts as wrong."""
    out = {}
    for s, logits in zip(sets, held_out, strict=True):
        for method, z in (("fer", s.single), ("fer-views", s.inputs[:, EMBEDDING_DIM:]),
                          ("head", logits)):
            out[f"{s.name}/{method}"] = score(s.truth, _predicted(z, s.ok))
    return out


def evaluate_face(data: Path | None = None, *, options: FaceHeadOptions | None = None,
                  model: FaceModel | None = None, cache: Path | None = None) -> dict[str, Scores]:
    """fer alone, fer on 10 views and the head: ``faces_fer2013/...`` and ``faces_web/...`` on
    held-out folds, ``ravdess_av/...`` per frame with the head trained on everything else (see
    :func:`scores_of`). The same cross-validation :func:`train_face_head` runs."""
    return train_face_head(data, options=options, model=model, cache=cache)[1]


def train_face_head(data: Path | None = None, *, options: FaceHeadOptions | None = None,
                    model: FaceModel | None = None,
                    cache: Path | None = None) -> tuple[Head, dict[str, Scores]]:
    """Cross-validate (scores and calibration temperature), train the head on every item, then
    check it on RAVDESS video frames.

    Returns the head, its manifest recording the training sets' licences and all scores, and
    the scores (those of :func:`evaluate_face`).
    """
    from affectgraph.tools.face import FaceModel

    options = options or FaceHeadOptions()
    model = model or FaceModel.load(head=False)
    sets = face_sets(data, model=model, folds=options.folds, seed=options.seed, cache=cache)
    held_out = cross_validate(sets, options)
    temperature = fit_temperature(np.vstack([z[s.ok] for z, s in zip(held_out, sets, strict=True)]),
                                  np.concatenate([s.labels[s.ok] for s in sets]))
    head = fit_head(np.vstack([s.inputs[s.ok] for s in sets]),
                    np.concatenate([s.labels[s.ok] for s in sets]), options, _manifest({}),
                    temperature)
    video = face_set(VIDEO_CHECK, frame_items(load_dataset(VIDEO_CHECK, root=data)), model,
                     cache=cache)
    scores = scores_of([*sets, video], [*held_out, head.logits(video.inputs)])
    metrics: dict[str, float | str] = {
        f"{key}/{name}": round(getattr(value, name), 4)
        for key, value in scores.items() for name in ("war", "uar", "macro_f1", "weighted_f1")
    }
    return replace(head, manifest=_manifest(metrics, options, model)), scores


def _manifest(metrics: dict[str, float | str], options: FaceHeadOptions | None = None,
              model: FaceModel | None = None) -> HeadManifest:
    options = options or FaceHeadOptions()
    revision = model.classifier.ref.revision if model is not None else ""
    return HeadManifest(
        name="face-head", modality="face", classes=LABELS, features="fer-mini-xception-views10",
        features_revision=revision, dim=INPUT_DIM, trained_on=dict(LICENCES), metrics=metrics,
        notes=(f"logits = log p_fer + MLP([embedding, log p_fer]) over fer's 10-view means; "
               f"{options.ensemble} MLPs x {options.hidden} hidden units, {options.epochs} "
               f"epochs; metrics: {options.folds}-fold cross-validation, faces_web folds by "
               f"person, FER2013 random folds (seed {options.seed}); ravdess_av: frames at "
               f"{VIDEO_FPS:g} fps, never trained on; items without a detected face counted "
               "wrong. It learns faces_web's labelling: it beats fer on faces_web's held-out "
               "people but loses to it on RAVDESS frames, so the face specialist leaves it off "
               "unless asked (FaceOptions(augment=True, head=True))."),
    )


# -- fer combined with the kNN vote --------------------------------------------------------------

VOTE_K = 10
"""Neighbours in the kNN vote mixed with fer (the retrieval default)."""


def face_vectors(name: str, items: Sequence[Item], *, cache: Path | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The exemplar-library vectors of ``items`` (fer's 128-d embedding of the unshifted
    view, :class:`~affectgraph.features.FaceVectoriser`) and whether each has one."""
    from affectgraph.features import FaceVectoriser

    features = extract(items, FaceVectoriser(cropped=CROPPED.get(name, False)), cache=cache)
    return features.vectors, features.ok


def _fer(s: FaceSet) -> np.ndarray:
    """(n, 7) fer's distribution of the unshifted view (the face specialist's default); NaN rows
    where no face was found."""
    p = np.exp(s.single - s.single.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[~s.ok] = np.nan
    return p


def _library_votes(queries: tuple[np.ndarray, np.ndarray], library: Sequence[
        tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """(n, 7) votes of ``library`` parts ((vectors, ok, labels) each) for ``queries``
    ((vectors, ok)); NaN rows where a query has no vector."""
    from affectgraph.retrieval.evaluate import knn_vote

    vectors, ok = queries
    out = np.full((len(ok), len(LABELS)), np.nan)
    if ok.any():
        out[ok] = knn_vote(np.vstack([v[k] for v, k, _ in library]),
                           np.concatenate([y[k] for _, k, y in library]), vectors[ok], k=VOTE_K)
    return out


def _held_out_votes(sets: Sequence[FaceSet], vectors: Sequence[tuple[np.ndarray, np.ndarray]],
                    target: int, folds: Sequence[int], exclude: Sequence[int] = ()) -> np.ndarray:
    """Votes for the rows of ``sets[target]`` in ``folds``, each fold from the target set's
    other folds (never those in ``exclude``) and every item of the other sets."""
    s = sets[target]
    out = np.full((len(s.labels), len(LABELS)), np.nan)
    for k in folds:
        library = [(v, ok & (~np.isin(t.folds, [k, *exclude]) if n == target else True), t.labels)
                   for n, (t, (v, ok)) in enumerate(zip(sets, vectors, strict=True))]
        rows = s.folds == k
        v, ok = vectors[target]
        out[rows] = _library_votes((v[rows], ok[rows]), library)
    return out


def _weight(sets: Sequence[FaceSet], vectors: Sequence[tuple[np.ndarray, np.ndarray]],
            target: int, folds: Sequence[int], exclude: Sequence[int] = ()) -> float:
    """The vote weight with the best WAR over the held-out ``folds`` of ``sets[target]``."""
    s = sets[target]
    rows = np.isin(s.folds, folds)
    votes = _held_out_votes(sets, vectors, target, folds, exclude)
    return choose_weight([LABELS[k] for k in s.labels[rows]], _fer(s)[rows], votes[rows],
                         metric="war")


def compare_face(data: Path | None = None, *, model: FaceModel | None = None,
                 options: FaceHeadOptions | None = None, cache: Path | None = None
                 ) -> dict[str, Comparison]:
    """fer alone (the default face path: one view), the kNN vote of the face library and their
    mixture, keyed by data set: FER2013 dev crops and faces_web photos on the folds of
    :func:`cross_validate` (a fold's vote comes from the set's other folds and all of the other
    set, as the library would hold them), and RAVDESS video frames (library: everything).

    The vote weight is chosen per way of finding the face -- crops (FER2013) or the detector
    (faces_web) -- since the face specialist knows which it does (``FaceOptions.cropped``): for
    each held-out fold, by the WAR of the same set's other folds (inner cross-validation); for
    the RAVDESS frames, on every faces_web fold. Items without a face count as wrong.
    """
    from affectgraph.tools.face import FaceModel

    options = options or FaceHeadOptions()
    model = model or FaceModel.load(head=False)
    sets = face_sets(data, model=model, folds=options.folds, seed=options.seed, cache=cache)
    vectors = [face_vectors(s.name, load_dataset(s.name, root=data), cache=cache) for s in sets]
    out = {}
    for target, s in enumerate(sets):
        fer, votes = _fer(s), _held_out_votes(sets, vectors, target, range(options.folds))
        combined, weights = np.full_like(fer, np.nan), []
        for k in range(options.folds):
            others = [j for j in range(options.folds) if j != k]
            weights.append(_weight(sets, vectors, target, others, exclude=[k]))
            rows = s.folds == k
            combined[rows] = mix(fer[rows], votes[rows], weights[-1])
        out[s.name] = compare(s.truth, fer, votes, combined, weights)
    web = [s.name for s in sets].index("faces_web")
    weight = _weight(sets, vectors, web, range(options.folds))
    frames = frame_items(load_dataset(VIDEO_CHECK, root=data))
    video = face_set(VIDEO_CHECK, frames, model, cache=cache)
    library = [(v, ok, s.labels) for (v, ok), s in zip(vectors, sets, strict=True)]
    fer = _fer(video)
    votes = _library_votes(face_vectors(VIDEO_CHECK, frames, cache=cache), library)
    out[VIDEO_CHECK] = compare(video.truth, fer, votes, mix(fer, votes, weight), [weight])
    return out
