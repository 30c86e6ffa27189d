"""Training and evaluating the voice heads on RAVDESS + TESS, actors held out.

Data: every clip of ``ravdess_speech`` (18 actors; calm counts as neutral) and of ``tess`` (2
speakers), as the 88 eGeMAPSv02 functionals the voice specialist computes
(:class:`~affectgraph.features.VoiceVectoriser`: the speech from the first to the last VAD turn),
plus copies of each clip played 0.9x and 1.1x as fast (pitch and tempo shifted together: the
usual speed perturbation), each copy of a speaker counted as a speaker of its own. Classes get
equal total weight; TESS rows are weighted by ``tess_weight`` (TESS is two speakers saying single
words, and weighted fully it pulls the model away from RAVDESS sentences).

Models: standardisation -> multinomial logistic regression (one hidden ReLU layer of 64 units was
within noise of it, +-0.02 UAR, and 20x slower to fit), calibrated by a temperature fitted on
held-out logits.

- single-clip head: on the raw functionals;
- speaker-adaptive head: logits of a model on speaker-standardised functionals
  (:func:`~affectgraph.heads.voice.leave_one_out_z` over each speaker's clips, never including
  the clip itself) plus ``alpha`` x the single-clip logits (the absolute level still says
  something). Both are linear, so it is one linear head over [z (88), raw (88)].

Evaluation (:func:`evaluate_voice_head`): ``folds`` actor folds over the 18 RAVDESS actors (18:
leave one actor out), scored on the original RAVDESS clips only. In each fold the test actor's
clips and their speed-perturbed copies are out of training, TESS is always in, and (C, TESS
weight) per model and ``alpha`` are chosen by an inner actor-fold cross-validation on the
training actors alone. Speaker-adaptive setting: each test clip is standardised with the
statistics of its actor's *other* 7 clips, not itself; no label of the test actor is used.

With ``encoder`` (:class:`VoiceHeadOptions`; ``whisper-base``) every clip's features are its
functionals followed by the mean Whisper-encoder state over the same speech
(:class:`~affectgraph.features.EncoderVectoriser`, 88 + 512 values): one Whisper encoder pass per
clip (about 1-3 s on one core), so no speed-perturbed copies unless asked for. With the same
nested protocol the encoder heads reach UAR 0.81 single-clip and 0.85 speaker-normalised
(eGeMAPS alone without speed copies: 0.56 / 0.65; with them: 0.58 / 0.69).

Each fold also scores the kNN vote (the 10 nearest *original* clips of the training actors and
TESS, by cosine of standardised functionals; speaker-z functionals in the speaker-adaptive
setting) and its mixture with the calibrated head, the vote weight chosen by the same inner
cross-validation (:mod:`affectgraph.heads.combination`). The inner folds chose weights of 0-0.2:
the vote adds nothing the linear heads lack (UAR single 0.579 head, 0.476 vote, 0.571 mixture;
speaker-normalised 0.687 / 0.520 / 0.687).

>>> head, report = train_voice_head(out="heads")  # doctest: +SKIP
>>> evaluation = report.evaluation  # doctest: +SKIP
>>> round(evaluation.single.uar, 3), round(evaluation.speaker.uar, 3)  # doctest: +SKIP
(0.579, 0.687)
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from affectgraph.datasets import Item, load_dataset
from affectgraph.evals.metrics import Scores, score
from affectgraph.heads.artefact import Head, HeadManifest, fit_temperature
from affectgraph.heads.combination import Comparison, choose_weight, compare, mix
from affectgraph.heads.voice import (
    Z_CLIP,
    VoiceHead,
    head_folders,
    heads_dir,
    leave_one_out_z,
)
from affectgraph.labels import LABELS
from affectgraph.speech_encoding import encoder_names

if TYPE_CHECKING:
    from affectgraph.features import EncoderVectoriser, VoiceVectoriser

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total), e.g. ("features x1.1", 320, 844)."""
Setting = Literal["single", "speaker"]

DATASETS = ("ravdess_speech", "tess")
TARGET = "ravdess_speech"
LICENCES = {"ravdess_speech": "CC BY-NC-SA 4.0", "tess": "CC BY-NC-ND 4.0"}
VOTE_K = 10
"""Neighbours in the kNN vote mixed with the heads (the retrieval default)."""


class VoiceHeadOptions(BaseModel):
    """How the voice heads are trained and evaluated. The inner cross-validation
    (``inner_folds`` actor folds) chooses each model's (C, TESS weight) from ``c_grid`` x
    ``tess_weights`` and the speaker-adaptive head's ``alpha`` from ``alphas``; ``folds``: actor
    folds of the evaluation (18: leave one actor out); ``speeds``: speed-perturbed copies added
    to training (empty: none); ``encoder``: also read this speech encoder's embedding
    (``whisper-base``; ``None``: eGeMAPS only). With an encoder, ``speeds`` defaults to none
    (each copy would cost another Whisper pass per clip)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    c_grid: tuple[float, ...] = (0.03, 0.1, 0.3)
    tess_weights: tuple[float, ...] = (0.1, 0.3, 1.0)
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    speeds: tuple[float, ...] = (0.9, 1.1)
    folds: int = Field(default=18, ge=2)
    inner_folds: int = Field(default=6, ge=2)
    max_iter: int = Field(default=3000, ge=100)
    encoder: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_copies_by_default_with_an_encoder(cls, values: object) -> object:
        if isinstance(values, dict) and values.get("encoder") and "speeds" not in values:
            return {**values, "speeds": ()}
        return values


@dataclass(frozen=True)
class VoiceData:
    """Features of the training clips and their copies: ``x`` (n, d) float64 (the 88
    functionals, then any encoder embedding, as ``features`` names them), ``y`` (n,)
    indices into LABELS, ``speaker`` (n,) the normalisation group (a copy's speaker is its own),
    ``actor`` (n,) the original speaker (what folds hold out), ``dataset`` (n,), ``original``
    (n,) bool (False for speed-perturbed copies)."""

    x: np.ndarray
    y: np.ndarray
    speaker: np.ndarray
    actor: np.ndarray
    dataset: np.ndarray
    original: np.ndarray
    feature_names: tuple[str, ...]
    revision: str
    features: str = "egemaps-v02"

    @property
    def encoder(self) -> str | None:
        """The speech encoder whose embedding follows the functionals, or ``None``."""
        found = encoder_names(self.features)
        return found[0] if found else None

    def speaker_z(self) -> np.ndarray:
        """(n, d) each clip's features standardised by its speaker's other clips."""
        z = np.empty_like(self.x)
        for group in np.unique(self.speaker):
            rows = self.speaker == group
            z[rows] = leave_one_out_z(self.x[rows])
        return z

    @property
    def actors(self) -> list[str]:
        """The RAVDESS actors, sorted (what evaluation folds hold out)."""
        return sorted(set(self.actor[self.dataset == TARGET]))

    def scored(self, actors: Sequence[str]) -> np.ndarray:
        """(n,) bool: the original RAVDESS clips of ``actors`` (what is scored)."""
        return self.original & (self.dataset == TARGET) & np.isin(self.actor, actors)


@dataclass(frozen=True)
class Recipe:
    """How a pair of heads is trained: (C, TESS weight) of the single-clip model and of the
    speaker-z model, and ``alpha``, the single-clip logits' weight in the speaker-adaptive
    head."""

    single: tuple[float, float]
    speaker: tuple[float, float]
    alpha: float


@dataclass(frozen=True)
class Mixing:
    """How a setting's head is mixed with the kNN vote: the head's calibration
    ``temperature`` and the vote's ``weight`` (:func:`~affectgraph.heads.combination.mix`)."""

    temperature: float
    weight: float


@dataclass(frozen=True)
class VoiceEvaluation:
    """Held-out scores of both settings, and the recipe each outer fold chose; ``comparison``
    per setting: the head, the kNN vote of the training folds' original clips and their
    mixture, with the mixing each outer fold chose by inner cross-validation."""

    single: Scores
    speaker: Scores
    recipes: list[Recipe]
    folds: int
    comparison: dict[str, Comparison] = field(default_factory=dict)


@dataclass(frozen=True)
class VoiceTrainingReport:
    """What training did: clips per set, the recipe chosen by cross-validation over all actors,
    that cross-validation's UAR per setting (optimistic: chosen on the same folds), the
    temperatures, and the nested evaluation when asked for."""

    counts: dict[str, int]
    recipe: Recipe
    selection_uar: dict[str, float]
    temperatures: dict[str, float]
    evaluation: VoiceEvaluation | None
    folder: Path


# -- data ----------------------------------------------------------------------------------------

class _SpeedPerturbed:
    """``inner`` (a voice model or speech encoding) whose ``method`` reads the signal played
    ``factor`` times as fast; every other attribute is ``inner``'s."""

    def __init__(self, inner: object, factor: float, method: str) -> None:
        self.inner, self.factor, self.method = inner, factor, method

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute
        return lambda signal: attribute(self._faster(signal))

    def _faster(self, signal: np.ndarray) -> np.ndarray:
        from scipy.signal import resample_poly

        ratio = Fraction(1 / self.factor).limit_denominator(100)
        return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


def _speed_vectoriser(base: VoiceVectoriser | EncoderVectoriser,
                      factor: float) -> VoiceVectoriser | EncoderVectoriser:
    """``base`` computing features of speed-perturbed speech, cached under its own name."""
    vec = copy.copy(base)
    if hasattr(base, "encoding"):
        vec.encoding = _SpeedPerturbed(base.encoding, factor, "embed")  # type: ignore[union-attr]
    else:
        vec.voice = _SpeedPerturbed(base.voice, factor, "functionals")  # type: ignore[union-attr]
    vec.name = f"{base.name}-speed{factor:g}"
    return vec


def load_voice_data(data_root: str | Path | None = None, *, speeds: Sequence[float] = (0.9, 1.1),
                    progress: Progress | None = None, encoder: str | None = None) -> VoiceData:
    """:func:`voice_data` of every RAVDESS speech and TESS clip under ``data_root``."""
    items = [i for name in DATASETS for i in load_dataset(name, root=data_root)]
    return voice_data(items, speeds=speeds, progress=progress, encoder=encoder)


def voice_data(items: Sequence[Item], *, speeds: Sequence[float] = (0.9, 1.1),
               progress: Progress | None = None, encoder: str | None = None) -> VoiceData:
    """The functionals of ``items`` (RAVDESS speech and TESS clips) and of their
    speed-perturbed copies, followed by the ``encoder``'s embedding of the same speech when one
    is named (``whisper-base``); items without speech are left out. Cached under
    ``$AFFECTGRAPH_HOME/features``: about 90 s per pass over the 844 clips for the functionals,
    about 1-2 s per clip for the encoder, when not cached."""
    from affectgraph.features import EncoderVectoriser, VoiceVectoriser

    bases: list[VoiceVectoriser | EncoderVectoriser] = [VoiceVectoriser()]
    if encoder is not None:
        bases.append(EncoderVectoriser(model=encoder))
    rows = []
    for factor in (1.0, *speeds):
        vectors, ok = _features(items, bases, factor, progress)
        suffix = "" if factor == 1.0 else f"@x{factor:g}"
        rows += [(vectors[k], item, suffix) for k, item in enumerate(items) if ok[k]]
    names = tuple(n for base in bases for n in base.names)
    return VoiceData(
        x=np.array([r[0] for r in rows], dtype=np.float64).reshape(len(rows), len(names)),
        y=np.array([LABELS.index(r[1].label.value) for r in rows]),
        speaker=np.array([r[1].group + r[2] for r in rows]),
        actor=np.array([r[1].group for r in rows]),
        dataset=np.array([r[1].dataset for r in rows]),
        original=np.array([not r[2] for r in rows]),
        feature_names=names,
        revision="+".join(base.revision for base in bases),
        features="+".join(_block_name(base) for base in bases),
    )


def _features(items: Sequence[Item], bases: Sequence[VoiceVectoriser | EncoderVectoriser],
              factor: float, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) features of ``items`` played ``factor`` times as fast, every block side by side,
    and (n,) whether every block had some."""
    from affectgraph.features import extract

    blocks, ok = [], np.ones(len(items), dtype=bool)
    for base in bases:
        vec = base if factor == 1.0 else _speed_vectoriser(base, factor)
        stage = base.name if factor == 1.0 else f"{base.name} x{factor:g}"
        report = (lambda d, n, s=stage: progress(s, d, n)) if progress else None
        found = extract(items, vec, progress=report)
        blocks.append(found.vectors)
        ok &= found.ok
    return np.hstack(blocks), ok


def _block_name(vec: VoiceVectoriser | EncoderVectoriser) -> str:
    """A feature block's name in a head's ``features``: ``egemaps-v02``, or
    ``whisper-base-mean512`` (:func:`~affectgraph.speech_encoding.encoder_names` reads it)."""
    return vec.name if vec.name == "egemaps-v02" else f"{vec.name}{vec.dim}"


# -- fitting ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Linear:
    """A fitted linear head's arrays: logits = ((x - mean) / scale) @ W + b."""

    mean: np.ndarray
    scale: np.ndarray
    W: np.ndarray
    b: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.W + self.b


def _weights(data: VoiceData, rows: np.ndarray, tess_weight: float) -> np.ndarray:
    """Per-row weights of the training ``rows``: TESS x ``tess_weight``, classes equalised."""
    w = np.where(data.dataset[rows] == TARGET, 1.0, tess_weight)
    y = data.y[rows]
    totals = np.array([w[y == c].sum() for c in range(len(LABELS))])
    return w * totals[totals > 0].mean() / totals[y]


def _fit(data: VoiceData, inputs: np.ndarray, rows: np.ndarray, c: float, tess_weight: float,
         max_iter: int) -> _Linear:
    from sklearn.linear_model import LogisticRegression

    x, y, w = inputs[rows], data.y[rows], _weights(data, rows, tess_weight)
    mean = np.average(x, axis=0, weights=w)
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
    scale = np.where(scale > 1e-12, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=max_iter).fit((x - mean) / scale, y, sample_weight=w)
    W, b = np.zeros((x.shape[1], len(LABELS))), np.full(len(LABELS), -30.0)  # absent class: p ~ 0
    W[:, model.classes_], b[model.classes_] = model.coef_.T, model.intercept_
    return _Linear(mean=mean, scale=scale, W=W, b=b)


def _actor_folds(actors: Sequence[str], folds: int) -> list[list[str]]:
    """``actors`` dealt round-robin into ``min(folds, len(actors))`` folds."""
    k = min(folds, len(actors))
    return [list(actors[i::k]) for i in range(k)]


def _splits(data: VoiceData, actors: Sequence[str], folds: int):
    """(training rows, scored test rows) per actor fold of ``actors``; TESS always trains."""
    pool = np.isin(data.actor, actors) | (data.dataset != TARGET)
    for fold in _actor_folds(actors, folds):
        held = np.isin(data.actor, fold)
        yield pool & ~held, data.scored(fold)


def _uar(data: VoiceData, rows: np.ndarray, logits: np.ndarray) -> float:
    truth, predicted = data.y[rows], logits[rows].argmax(axis=1)
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def _choose(data: VoiceData, x: np.ndarray, z: np.ndarray, rows: np.ndarray,
            options: VoiceHeadOptions) -> tuple[Recipe, dict[str, np.ndarray]]:
    """The recipe with the best held-out UAR over ``inner_folds`` actor folds of the RAVDESS
    actors among ``rows``, and the held-out logits (n, C) of its two heads."""
    actors = sorted(set(data.actor[rows & (data.dataset == TARGET)]))
    scored = data.scored(actors)
    candidates = list(itertools.product(options.c_grid, options.tess_weights))
    held = {(kind, cand): np.zeros((len(data.y), len(LABELS)))
            for kind in ("x", "z") for cand in candidates}
    for train, test in _splits(data, actors, options.inner_folds):
        for cand in candidates:
            for kind, inputs in (("x", x), ("z", z)):
                fit = _fit(data, inputs, train, *cand, options.max_iter)
                held[kind, cand][test] = fit.logits(inputs[test])
    single = max(candidates, key=lambda c: _uar(data, scored, held["x", c]))
    speaker = max(candidates, key=lambda c: _uar(data, scored, held["z", c]))
    combined = {a: held["z", speaker] + a * held["x", single] for a in options.alphas}
    alpha = max(options.alphas, key=lambda a: _uar(data, scored, combined[a]))
    return Recipe(single, speaker, alpha), {"single": held["x", single], "speaker": combined[alpha]}


def _votes(data: VoiceData, inputs: np.ndarray, train: np.ndarray, test: np.ndarray
           ) -> np.ndarray:
    """(n, C) kNN votes for the ``test`` rows (zeros elsewhere) from the original clips among
    the ``train`` rows (a library holds clips, not their speed-perturbed copies), by cosine
    after standardising with the library's statistics."""
    from affectgraph.retrieval.evaluate import knn_vote

    out = np.zeros((len(data.y), len(LABELS)))
    library = train & data.original
    out[test] = knn_vote(inputs[library], data.y[library], inputs[test], k=VOTE_K,
                         standardise=True)
    return out


def _probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _mixing(data: VoiceData, inputs: np.ndarray, rows: np.ndarray, held: np.ndarray,
            options: VoiceHeadOptions) -> Mixing:
    """The temperature of held-out ``logits`` and the vote weight with the best UAR, both on
    ``inner_folds`` actor folds of the RAVDESS actors among ``rows`` (the folds ``held``, from
    :func:`_choose`, came from)."""
    actors = sorted(set(data.actor[rows & (data.dataset == TARGET)]))
    scored = data.scored(actors)
    votes = np.zeros((len(data.y), len(LABELS)))
    for train, test in _splits(data, actors, options.inner_folds):
        votes += _votes(data, inputs, train, test)
    temperature = fit_temperature(held[scored], data.y[scored])
    weight = choose_weight([LABELS[k] for k in data.y[scored]],
                           _probabilities(held[scored], temperature), votes[scored], metric="uar")
    return Mixing(temperature, weight)


def _fit_pair(data: VoiceData, x: np.ndarray, z: np.ndarray, rows: np.ndarray, recipe: Recipe,
              options: VoiceHeadOptions) -> dict[str, _Linear]:
    """The two heads trained on ``rows``; the speaker-adaptive one reads [z, x] (176)."""
    single = _fit(data, x, rows, *recipe.single, options.max_iter)
    on_z = _fit(data, z, rows, *recipe.speaker, options.max_iter)
    speaker = _Linear(mean=np.concatenate([on_z.mean, single.mean]),
                      scale=np.concatenate([on_z.scale, single.scale]),
                      W=np.vstack([on_z.W, recipe.alpha * single.W]),
                      b=on_z.b + recipe.alpha * single.b)
    return {"single": single, "speaker": speaker}


# -- evaluation and training ---------------------------------------------------------------------

def evaluate_voice_head(
    data_root: str | Path | None = None,
    *,
    options: VoiceHeadOptions | None = None,
    data: VoiceData | None = None,
    progress: Progress | None = None,
) -> VoiceEvaluation:
    """Leave-actors-out scores of both heads on the RAVDESS clips (see the module docstring):
    ``options.folds`` outer actor folds, recipes chosen by inner cross-validation on the
    training actors only (``None``: the defaults). About 2 minutes on one core once features
    are cached."""
    options = options or VoiceHeadOptions()
    data = data if data is not None else load_voice_data(
        data_root, speeds=options.speeds, progress=progress, encoder=options.encoder)
    x, z = data.x, data.speaker_z()
    xz = np.hstack([z, x])
    inputs = {"single": x, "speaker": z}  # what the head reads, and what the vote searches by
    settings = ("single", "speaker")
    logits, probabilities, votes, combined = (
        {s: np.zeros((len(data.y), len(LABELS))) for s in settings} for _ in range(4))
    recipes: list[Recipe] = []
    weights: dict[str, list[float]] = {s: [] for s in settings}
    splits = list(_splits(data, data.actors, options.folds))
    for k, (train, test) in enumerate(splits):
        recipe, held = _choose(data, x, z, train, options)
        pair = _fit_pair(data, x, z, train, recipe, options)
        logits["single"][test] = pair["single"].logits(x[test])
        logits["speaker"][test] = pair["speaker"].logits(xz[test])
        for s in settings:
            mixing = _mixing(data, inputs[s], train, held[s], options)
            probabilities[s][test] = _probabilities(logits[s][test], mixing.temperature)
            votes[s][test] = _votes(data, inputs[s], train, test)[test]
            combined[s][test] = mix(probabilities[s][test], votes[s][test], mixing.weight)
            weights[s].append(mixing.weight)
        recipes.append(recipe)
        if progress:
            progress("evaluate", k + 1, len(splits))
    scored = data.scored(data.actors)
    truth = [LABELS[k] for k in data.y[scored]]
    scores = {s: score(truth, [LABELS[k] for k in v[scored].argmax(axis=1)], labels=LABELS)
              for s, v in logits.items()}
    comparison = {s: compare(truth, probabilities[s][scored], votes[s][scored],
                             combined[s][scored], weights[s]) for s in settings}
    return VoiceEvaluation(single=scores["single"], speaker=scores["speaker"], recipes=recipes,
                           folds=len(splits), comparison=comparison)


def train_voice_head(
    data_root: str | Path | None = None,
    *,
    out: str | Path | None = None,
    options: VoiceHeadOptions | None = None,
    evaluate: bool = True,
    data: VoiceData | None = None,
    progress: Progress | None = None,
) -> tuple[VoiceHead, VoiceTrainingReport]:
    """Train both voice heads on every RAVDESS and TESS clip and save them to ``out`` (a heads
    folder; default: the package's, :func:`~affectgraph.heads.voice.heads_dir`) as ``voice/``
    and ``voice-speaker-norm/`` (with ``options.encoder``, :func:`~affectgraph.heads.voice.
    head_folders`: ``voice-<encoder>/`` ...); return them, reloaded, and a report.

    The recipe is chosen by ``inner_folds`` actor-fold cross-validation over all 18 actors and
    each head's temperature is fitted on that cross-validation's held-out logits. With
    ``evaluate`` the nested leave-actors-out evaluation runs too and its scores go into the
    manifests' ``metrics``; without it they hold only the (optimistic) selection UAR. ``data``
    replaces the clips of ``data_root`` (e.g. :func:`voice_data` of a subset); ``options=None``:
    the defaults.
    """
    options = options or VoiceHeadOptions()
    data = data if data is not None else load_voice_data(
        data_root, speeds=options.speeds, progress=progress, encoder=options.encoder)
    evaluation = (evaluate_voice_head(options=options, data=data, progress=progress)
                  if evaluate else None)
    x, z = data.x, data.speaker_z()
    every = np.isin(data.actor, data.actors) | (data.dataset != TARGET)
    scored = data.scored(data.actors)
    recipe, held = _choose(data, x, z, every, options)
    pair = _fit_pair(data, x, z, every, recipe, options)
    mixing = {s: _mixing(data, inputs, every, held[s], options)
              for s, inputs in (("single", x), ("speaker", z))}
    folder = Path(out) if out is not None else heads_dir()
    temperatures: dict[str, float] = {}
    selection: dict[str, float] = {}
    single_name, speaker_name = head_folders(data.encoder)
    names: tuple[tuple[Setting, str], ...] = (("single", single_name), ("speaker", speaker_name))
    for setting, name in names:
        temperatures[setting] = fit_temperature(held[setting][scored], data.y[scored])
        selection[setting] = _uar(data, scored, held[setting])
        manifest = _manifest(setting, data, options, recipe, selection[setting], evaluation,
                             mixing[setting])
        fit = pair[setting]
        Head(manifest=manifest, mean=fit.mean, scale=fit.scale, W=fit.W, b=fit.b,
             temperature=temperatures[setting]).save(folder / name)
    head = VoiceHead(single=Head.load(folder / single_name),
                     speaker=Head.load(folder / speaker_name), feature_names=data.feature_names)
    counts = {name: int(((data.dataset == name) & data.original).sum()) for name in DATASETS}
    return head, VoiceTrainingReport(counts=counts, recipe=recipe, selection_uar=selection,
                                     temperatures=temperatures, evaluation=evaluation,
                                     folder=folder)


def _manifest(setting: Setting, data: VoiceData, options: VoiceHeadOptions, recipe: Recipe,
              selection_uar: float, evaluation: VoiceEvaluation | None,
              mixing: Mixing) -> HeadManifest:
    metrics: dict[str, float | str] = {"selection_cv_uar": round(selection_uar, 4),
                                       "vote_k": float(VOTE_K), "vote_weight": mixing.weight}
    if evaluation is not None:
        s = evaluation.single if setting == "single" else evaluation.speaker
        metrics |= {"ravdess_war": round(s.war, 4), "ravdess_uar": round(s.uar, 4),
                    "ravdess_macro_f1": round(s.macro_f1, 4),
                    "ravdess_weighted_f1": round(s.weighted_f1, 4),
                    "protocol": _protocol(setting, evaluation.folds, options)}
        if setting in evaluation.comparison:
            compared = evaluation.comparison[setting]
            for method, scores in (("knn", compared.knn), ("combined", compared.combined)):
                metrics |= {f"ravdess_{method}_{m}": round(getattr(scores, m), 4)
                            for m in ("war", "uar", "macro_f1", "weighted_f1")}
    c, tess = recipe.single
    speeds = ", ".join(f"x{s:g}" for s in options.speeds) or "none"
    common = f"TESS weight {tess:g}, speed perturbation {speeds}"
    d = data.x.shape[1]
    what = ("88 eGeMAPSv02 functionals" if data.encoder is None else
            f"88 eGeMAPSv02 functionals + {d - 88} {data.encoder} encoder means")
    if setting == "single":
        features, dim = data.features, d
        notes = f"one turn's {what}; logistic regression C={c:g}, {common}"
    else:
        features, dim = f"{data.features}-speaker-z+{data.features}", 2 * d
        cz, tz = recipe.speaker
        notes = (f"input [z ({d}), raw ({d})] of the {what}: z = the features standardised by "
                 f"the mean and sd (ddof=1) of the same speaker's other turns, clipped to "
                 f"+-{Z_CLIP:g}; logits = LR on z (C={cz:g}, TESS weight {tz:g}) + "
                 f"{recipe.alpha:g} x the single-clip head's (C={c:g}, {common})")
    single_name, speaker_name = head_folders(data.encoder)
    return HeadManifest(
        name=single_name if setting == "single" else speaker_name, modality="voice",
        classes=LABELS,
        features=features, features_revision=data.revision, dim=dim, trained_on=LICENCES,
        metrics=metrics, notes=notes,
    )


def _protocol(setting: Setting, folds: int, options: VoiceHeadOptions) -> str:
    where = ("each test clip alone" if setting == "single" else
             "each test clip standardised with its actor's other clips (not itself)")
    return (f"RAVDESS speech, 18 actors in {folds} held-out actor folds, 7 classes (calm -> "
            f"neutral), {where}; recipe chosen by {options.inner_folds}-fold inner CV on the "
            "training actors; TESS always in training")
