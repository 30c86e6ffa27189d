"""Training and evaluation of the text emotion head (``affectgraph train text``).

The head reads 384-d embeddings of GoEmotions (Ekman mapping, single-label rows of its train
split), MELD train and EmoryNLP train (Peaceful -> neutral, Powerful dropped) by all-MiniLM-L6-v2
whose top two layers are first fine-tuned on those same training rows
(:mod:`affectgraph.heads.text_encoder`, :class:`~affectgraph.features.TunedTextVectoriser`,
cached; ``TuningOptions(layers=0)`` keeps MiniLM frozen). Fine-tuning was chosen on the
calibration rows below, never on dev: MELD weighted-F1 there 0.557 frozen -> 0.583 tuned,
EmoryNLP 0.500 -> 0.521. The tuned choices were made by 3-fold
cross-validation over the *episodes* of MELD and EmoryNLP train (GoEmotions train always in):

- GoEmotions rows weigh 0.1: Reddit comments help a little, at full weight they cost MELD
  weighted-F1 about 5 points (0.508 against 0.555 for the linear head);
- EmoryNLP rows compete only among the five classes its scheme has (no disgust, no surprise), so a
  surprised utterance it had to call neutral or scared does not teach the head it is not surprise
  (a correction of the label sets, not a tuned choice; MELD dev surprise F1 went 0.35 -> 0.47);
- natural class prior, then flattened a quarter of the way to uniform (``prior_flattening``):
  weighted-F1 rewards getting neutral right, but a little flattening helped macro-F1 and
  weighted-F1 (balanced class weights cost 10-13 points of held-out MELD weighted-F1, and
  shifting their logits back to the natural prior only drew level);
- three MLPs (512 ReLU units, dropout 0.5, 10 epochs) whose logits are averaged, shipped as one
  1536-unit hidden layer: cross-validated MELD weighted-F1 0.572 against 0.555 for logistic
  regression. Richer frozen-MiniLM features (mean of layers 4-6, mean+max pooling, CLS) did not
  help; per-class bias tuning for F1 did not carry over to unseen data.

A tenth of the MELD and EmoryNLP training rows, in blocks of 50 consecutive rows so that whole
dialogues stay out, is kept back to fit the temperature and the weight of the kNN vote mixed with
the head (:mod:`affectgraph.heads.combination`; vote of the 20 nearest exemplars of the default
text library less those rows): the manifest records it as ``retrieval_weight``. MELD dev and
EmoryNLP dev are only ever read by :func:`evaluate_text_head` and :func:`compare_text_head`.

Measured (``affectgraph train text --evaluate``; weight 0.2 chosen on the calibration rows):
weighted-F1 on MELD dev head 0.567, vote 0.492, mixture 0.584; EmoryNLP dev 0.521 / 0.486 /
0.517 (with frozen MiniLM the head had 0.548 and 0.478, the mixture 0.548 and 0.504).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.datasets import Item, load_dataset
from affectgraph.evals.metrics import Scores, score
from affectgraph.features import TextVectoriser, TunedTextVectoriser
from affectgraph.heads.artefact import Head, HeadManifest, fit_temperature
from affectgraph.heads.combination import Comparison, choose_weight, compare, mix
from affectgraph.heads.text import HEAD_NAME
from affectgraph.heads.text_encoder import TuningOptions, fine_tune, save_deltas
from affectgraph.labels import LABELS, SCHEMES

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total), e.g. ("embed", 5120, 63099)."""

TRAIN_SETS: dict[str, str] = {"goemotions": "train", "meld": "train", "emorynlp": "train"}
EVAL_SETS: dict[str, tuple[str, str]] = {
    "meld_dev": ("meld", "dev"),
    "emorynlp_dev": ("emorynlp", "dev"),
    "goemotions_test": ("goemotions", "test"),
}
"""Evaluation name -> (data set, split)."""
SCHEME_OF: dict[str, str] = {"goemotions": "ekman", "meld": "meld", "emorynlp": "emorynlp"}
LICENCES: dict[str, str] = {
    "goemotions": "Apache-2.0",
    "meld": "GPL-3.0 (research use; Friends transcripts)",
    "emorynlp": "GPL-3.0 (research use; Friends transcripts; distributed in the MELD repository)",
}
RETRIEVAL_K = 20
"""Neighbours in the kNN vote combined with the head (k=20 scored best for text retrieval)."""
BLOCK = 50
"""Consecutive training rows held out together (MELD and EmoryNLP rows follow their dialogues)."""


class TextHeadOptions(BaseModel):
    """How the head is trained (defaults chosen by cross-validation on training data only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: int = Field(default=512, ge=0,
                        description="ReLU units per member; 0: logistic regression")
    members: int = Field(default=3, ge=1, description="networks (seeds) whose logits are averaged")
    dropout: float = Field(default=0.5, ge=0, lt=1)
    epochs: int = Field(default=10, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    batch: int = Field(default=256, ge=1)
    domain_weights: dict[str, float] = Field(
        default_factory=lambda: {"goemotions": 0.1, "meld": 1.0, "emorynlp": 1.0},
        description="loss weight of each training set's rows",
    )
    prior_flattening: float = Field(
        default=0.25, ge=0, le=1,
        description="divide probabilities by the training prior to this power (0: natural prior)",
    )
    holdout: float = Field(default=0.1, gt=0, lt=0.5,
                           description="share of conversational rows kept back for calibration")
    tuning: TuningOptions = Field(default_factory=TuningOptions,
                                  description="fine-tuning of MiniLM's top layers (layers=0: none)")


@dataclass(frozen=True)
class TextHeadReport:
    """What training did: rows per set, scores on the calibration rows, the temperature, the
    vote weight and, if asked, the evaluation (keys of :data:`EVAL_SETS`)."""

    counts: dict[str, int]
    holdout: Scores
    temperature: float
    evaluation: dict[str, Scores] = field(default_factory=dict)
    retrieval_weight: float | None = None
    """The kNN vote's weight in the head + vote mixture, chosen on the calibration rows."""
    encoder: Path | None = None
    """The folder holding the tuned MiniLM layers (``encoder.npz``), when they were tuned."""
    comparison: dict[str, Comparison] = field(default_factory=dict)
    """Head, kNN vote and mixture on MELD and EmoryNLP dev (keys of :data:`EVAL_SETS`)."""


@dataclass(frozen=True)
class TextData:
    """Embedded labelled texts: ``vectors`` (n, 384) float32, ``labels`` (n,) indices into
    :data:`~affectgraph.labels.LABELS`, ``sets`` (n,) data set names."""

    vectors: np.ndarray
    labels: np.ndarray
    sets: np.ndarray
    ids: tuple[str, ...] = ()
    """The items' ids (empty when not known)."""

    def subset(self, mask: np.ndarray) -> TextData:
        ids = tuple(np.asarray(self.ids, dtype=object)[mask]) if self.ids else ()
        return TextData(self.vectors[mask], self.labels[mask], self.sets[mask], ids)


# -- training ----------------------------------------------------------------------------------

def train_text_head(
    data_root: str | Path | None = None,
    *,
    out: str | Path | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    options: TextHeadOptions | None = None,
    vectoriser: TextVectoriser | None = None,
    evaluate: bool = True,
) -> tuple[Head, TextHeadReport]:
    """Train and calibrate the text head, evaluate it (``evaluate``) and save it to ``out`` if
    given; the manifest records the training sets with their licences and the metrics.

    With ``options.tuning.layers`` > 0 (the default) MiniLM's top layers are first fine-tuned on
    the training rows (not the calibration rows) and written to ``out`` as ``encoder.npz`` (to
    :attr:`TextHeadReport.encoder` in a temporary folder when ``out`` is ``None``); the head then
    reads :class:`~affectgraph.features.TunedTextVectoriser` embeddings, and its manifest's
    ``features`` say so.

    ``vectoriser`` is a loaded :class:`~affectgraph.features.TextVectoriser` (plain MiniLM: the
    exemplar library's vectors; loaded when ``None``). Embeddings are cached: only the first
    run pays for them (about 15 minutes for the ~57k texts on one CPU thread); tuning takes
    10-25 minutes on one core, re-embedding with the tuned model about 5, the head 1-2. Uses
    torch in the calling thread's settings (commands set one thread).
    """
    options = options or TextHeadOptions()
    base_vec = vectoriser or _vectoriser()
    items = _training_items(data_root)
    base = embed_items(items, base_vec, progress)
    held = holdout_mask(base, options.holdout, seed)
    vec: TextVectoriser | TunedTextVectoriser = base_vec
    encoder = None
    if options.tuning.layers:
        encoder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="text-encoder-"))
        vec = tune_encoder(base.subset(~held), texts_of(items, base.ids), base_vec, options,
                           encoder, seed=seed, progress=progress)
    data = embed_items(items, vec, progress) if vec is not base_vec else base
    train, calibration = data.subset(~held), data.subset(held)
    head = fit_head(train, options, seed=seed, revision=vec.revision, progress=progress)
    head = replace(head, temperature=fit_temperature(head.logits(calibration.vectors),
                                                     calibration.labels),
                   manifest=head.manifest.model_copy(update={"features": vec.name}))
    weight = vote_weight(head, calibration, base.subset(held).vectors, data_root, base_vec)
    report = TextHeadReport(
        counts={name: int((data.sets == name).sum()) for name in TRAIN_SETS},
        holdout=_score(head, calibration, allowed_classes(calibration.sets)),
        temperature=head.temperature,
        retrieval_weight=weight,
        encoder=encoder,
    )
    if evaluate:
        report = replace(report, evaluation=evaluate_text_head(head, data_root, vectoriser=vec,
                                                               progress=progress),
                         comparison=compare_text_head(head, weight, data_root, vectoriser=vec,
                                                      library_vectoriser=base_vec))
    head = replace(head, manifest=head.manifest.model_copy(update={"metrics": _metrics(report)}))
    if out is not None:
        head.save(out)
    return head, report


def texts_of(items: Sequence[Item], ids: Sequence[str]) -> dict[str, str]:
    """Id -> stripped text of the ``items`` whose id is in ``ids``."""
    wanted = set(ids)
    return {i.id: (i.text or i.transcript or "").strip() for i in items if i.id in wanted}


def tune_encoder(train: TextData, texts: dict[str, str], base: TextVectoriser,
                 options: TextHeadOptions, folder: Path, *, seed: int = 0,
                 progress: Progress | None = None) -> TunedTextVectoriser:
    """Fine-tune MiniLM's top layers (``options.tuning``) on the ``train`` rows (their texts in
    ``texts`` by id; rows weighted by ``options.domain_weights``; GoEmotions rows sampled down to
    ``tuning.goemotions_rows`` and reweighted to keep the set's total weight), write
    ``encoder.npz`` to ``folder`` and return the tuned vectoriser, built from the file as stored
    (quantised) so that the head trains on what inference computes."""
    rows = _tuning_rows(train, options.tuning.goemotions_rows, seed)
    weights = np.array([options.domain_weights.get(s, 1.0) for s in train.sets[rows]])
    go = train.sets[rows] == "goemotions"
    if go.any():
        weights[go] *= (train.sets == "goemotions").sum() / go.sum()
    deltas = fine_tune(base.model, [texts[train.ids[k]] for k in rows], train.labels[rows],
                       allowed_classes(train.sets[rows]), weights, options.tuning, seed=seed,
                       progress=progress)
    save_deltas(deltas, folder)
    return TunedTextVectoriser.load(folder, base=base)


def _tuning_rows(train: TextData, goemotions_rows: int, seed: int) -> np.ndarray:
    go = np.flatnonzero(train.sets == "goemotions")
    rng = np.random.default_rng(seed)
    if len(go) > goemotions_rows:
        go = np.sort(rng.choice(go, goemotions_rows, replace=False))
    return np.sort(np.concatenate([np.flatnonzero(train.sets != "goemotions"), go]))


def fit_head(data: TextData, options: TextHeadOptions, *, seed: int = 0, revision: str = "",
             progress: Progress | None = None) -> Head:
    """Fit ``options.members`` networks (standardise -> ReLU layer -> softmax, weighted
    cross-entropy, AdamW) and merge them into one :class:`Head` whose logits are their mean,
    prior-flattened; temperature 1."""
    mean = data.vectors.mean(axis=0).astype(np.float64)
    scale = data.vectors.std(axis=0).astype(np.float64) + 1e-6
    x = (data.vectors - mean) / scale
    weights = np.array([options.domain_weights.get(s, 1.0) for s in data.sets])
    members = []
    for member in range(options.members):
        members.append(_fit_member(x, data, weights, options, seed + member))
        if progress:
            progress("fit", member + 1, options.members)
    W1, b1, W, b = _merge(members)
    prior = np.bincount(data.labels, weights=weights, minlength=len(LABELS)) / weights.sum()
    b = b - options.prior_flattening * np.log(np.maximum(prior, 1e-6))
    manifest = HeadManifest(
        name=HEAD_NAME, modality="text", classes=LABELS, features="minilm-l6-v2",
        features_revision=revision, dim=x.shape[1],
        trained_on={name: LICENCES[name] for name in TRAIN_SETS},
        notes=f"trained by affectgraph.heads.text_training; seed {seed}; options "
              f"{options.model_dump_json()}",
    )
    return Head(manifest=manifest, mean=mean, scale=scale, W=W, b=b, W1=W1, b1=b1)


Member = tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray]
"""(W1 (D, H) or None, b1 (H,) or None, W (H or D, C), b (C,)) of one fitted network."""


def _fit_member(x: np.ndarray, data: TextData, weights: np.ndarray, options: TextHeadOptions,
                seed: int) -> Member:
    import torch
    from torch.nn.functional import cross_entropy

    torch.manual_seed(seed)
    net = _network(x.shape[1], options)
    inputs = torch.tensor(x, dtype=torch.float32)
    targets = torch.tensor(data.labels)
    w = torch.tensor(weights, dtype=torch.float32)
    mask = torch.tensor(np.where(allowed_classes(data.sets), 0.0, -1e4), dtype=torch.float32)
    optimiser = torch.optim.AdamW(net.parameters(), lr=options.learning_rate,
                                  weight_decay=options.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(options.epochs):
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(targets), options.batch):
            rows = order[start:start + options.batch]
            losses = cross_entropy(net(inputs[rows]) + mask[rows], targets[rows], reduction="none")
            optimiser.zero_grad()
            ((losses * w[rows]).sum() / w[rows].sum()).backward()
            optimiser.step()
    layers = [(m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(
        np.float64)) for m in net if isinstance(m, torch.nn.Linear)]
    return (*layers[0], *layers[1]) if len(layers) == 2 else (None, None, *layers[0])


def _network(dim: int, options: TextHeadOptions):
    import torch

    classes = len(LABELS)
    if not options.hidden:
        return torch.nn.Sequential(torch.nn.Dropout(options.dropout), torch.nn.Linear(dim, classes))
    return torch.nn.Sequential(
        torch.nn.Dropout(options.dropout), torch.nn.Linear(dim, options.hidden), torch.nn.ReLU(),
        torch.nn.Dropout(options.dropout), torch.nn.Linear(options.hidden, classes),
    )


def _merge(members: list[Member]) -> Member:
    """One network whose logits are the members' mean: their hidden units side by side (or, for
    linear members, their mean weights)."""
    W = np.vstack([m[2] for m in members]) / len(members)
    b = np.mean([m[3] for m in members], axis=0)
    hidden = [(m[0], m[1]) for m in members if m[0] is not None and m[1] is not None]
    if not hidden:
        return None, None, np.mean([m[2] for m in members], axis=0), b
    return np.hstack([w for w, _ in hidden]), np.concatenate([c for _, c in hidden]), W, b


def allowed_classes(sets: np.ndarray) -> np.ndarray:
    """(n, classes) bool: the canonical classes the labelling scheme of each row's set has."""
    table = {name: np.isin(LABELS, [e.value for e in SCHEMES[SCHEME_OF.get(name, "canonical")]
                                    .values() if e is not None]) for name in set(sets)}
    return np.stack([table[name] for name in sets]) if len(sets) else np.ones((0, len(LABELS)),
                                                                                  bool)


def holdout_mask(data: TextData, share: float, seed: int) -> np.ndarray:
    """(n,) bool: a ``share`` of the blocks of ``BLOCK`` consecutive MELD and EmoryNLP rows."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(data.labels), dtype=bool)
    for name in ("meld", "emorynlp"):
        rows = np.flatnonzero(data.sets == name)
        if len(rows):
            blocks = np.arange(len(rows)) // BLOCK
            held[rows] = (rng.random(blocks.max() + 1) < share)[blocks]
    return held


def _metrics(report: TextHeadReport) -> dict[str, float | str]:
    metrics: dict[str, float | str] = {"temperature": round(report.temperature, 4)}
    if report.retrieval_weight is not None:
        metrics |= {"retrieval_k": float(RETRIEVAL_K), "retrieval_weight": report.retrieval_weight}
    named = {"calibration_holdout": report.holdout} | report.evaluation | {
        f"{key}_knn": c.knn for key, c in report.comparison.items()} | {
        f"{key}_combined": c.combined for key, c in report.comparison.items()}
    for name, scores in named.items():
        metrics[f"{name}_n"] = float(scores.n)
        for metric in ("war", "uar", "macro_f1", "weighted_f1"):
            metrics[f"{name}_{metric}"] = round(getattr(scores, metric), 4)
    return metrics


# -- the head combined with the kNN vote -------------------------------------------------------

def library_votes(queries: np.ndarray, vec: TextVectoriser, data_root: str | Path | None = None,
                  *, exclude: Collection[str] = (), k: int = RETRIEVAL_K) -> np.ndarray:
    """(n, 7) kNN votes for (n, 384) ``queries`` from the items of the default text library
    (:func:`~affectgraph.retrieval.defaults.recipe_items`) whose ids are not in ``exclude``."""
    from affectgraph.retrieval.defaults import recipe_items
    from affectgraph.retrieval.evaluate import knn_vote

    excluded = set(exclude)
    root = Path(data_root) if data_root else None  # as load_dataset reads it: "" is the default
    library = embed_items([i for i in recipe_items("text", root) if i.id not in excluded], vec)
    return knn_vote(library.vectors, library.labels, queries, k=k)


def vote_weight(head: Head, calibration: TextData, queries: np.ndarray,
                data_root: str | Path | None, vec: TextVectoriser) -> float:
    """The vote weight with the best weighted-F1 on the calibration rows (the head's inputs in
    ``calibration``, their plain MiniLM embeddings in ``queries``, embedded by ``vec``): the
    head never trained on them and the library they vote from leaves them out."""
    votes = library_votes(queries, vec, data_root, exclude=calibration.ids)
    return choose_weight([LABELS[i] for i in calibration.labels],
                         head.predict_proba(calibration.vectors), votes, metric="weighted_f1",
                         allowed=allowed_classes(calibration.sets))


def compare_text_head(head: Head, weight: float, data_root: str | Path | None = None, *,
                      vectoriser: TextVectoriser | TunedTextVectoriser | None = None,
                      library_vectoriser: TextVectoriser | None = None) -> dict[str, Comparison]:
    """Head, kNN vote (the whole default library, k = :data:`RETRIEVAL_K`) and their mixture
    with vote weight ``weight`` on MELD dev and EmoryNLP dev (its five classes). ``vectoriser``
    gives the head's inputs (default: :func:`head_vectoriser`), ``library_vectoriser`` the
    library's (default: plain MiniLM)."""
    vec = vectoriser or head_vectoriser(head)
    library_vec = library_vectoriser or (vec if isinstance(vec, TextVectoriser) else vec.base)
    out = {}
    for key, (name, split) in EVAL_SETS.items():
        if name == "goemotions":  # the library holds GoEmotions items of every split
            continue
        items = load_dataset(name, root=data_root, split=split)
        data = embed_items(items, vec)
        probabilities = head.predict_proba(data.vectors)
        votes = library_votes(embed_items(items, library_vec).vectors, library_vec, data_root)
        out[key] = compare([LABELS[i] for i in data.labels], probabilities, votes,
                           mix(probabilities, votes, weight), [weight],
                           allowed=allowed_classes(np.array([name]))[0])
    return out


# -- evaluation --------------------------------------------------------------------------------

def evaluate_text_head(
    head: Head,
    data_root: str | Path | None = None,
    *,
    vectoriser: TextVectoriser | TunedTextVectoriser | None = None,
    progress: Progress | None = None,
) -> dict[str, Scores]:
    """Scores of ``head`` on MELD dev (7 classes), EmoryNLP dev (5 classes: its scheme has no
    disgust or surprise, so the head chooses among the five it can label) and GoEmotions test
    (Ekman, single-label rows), keyed ``meld_dev``, ``emorynlp_dev``, ``goemotions_test``.
    ``vectoriser``: what the head reads (default: :func:`head_vectoriser`)."""
    vec = vectoriser or head_vectoriser(head)
    out = {}
    for key, (name, split) in EVAL_SETS.items():
        data = embed_items(load_dataset(name, root=data_root, split=split), vec, progress)
        out[key] = _score(head, data, allowed_classes(np.array([name]))[0])
    return out


def _score(head: Head, data: TextData, allowed: np.ndarray) -> Scores:
    """Scores of the head's best class among ``allowed`` ((classes,) or (n, classes) bool)."""
    probabilities = np.where(allowed, head.predict_proba(data.vectors), -1.0)
    return score([LABELS[i] for i in data.labels],
                 [LABELS[i] for i in probabilities.argmax(axis=1)])


def embed_items(items: Sequence[Item], vec: TextVectoriser | TunedTextVectoriser,
                progress: Progress | None = None) -> TextData:
    """The cached embeddings of labelled text ``items`` (items without text are left out)."""
    from affectgraph.features import extract

    report = (lambda done, total: progress("embed", done, total)) if progress else None
    features = extract(items, vec, batch=512, progress=report)
    kept = [item for item, ok in zip(items, features.ok, strict=True) if ok]
    return TextData(features.vectors[features.ok],
                    np.array([LABELS.index(i.label.value) for i in kept], dtype=np.int64),
                    np.array([i.dataset for i in kept]), tuple(i.id for i in kept))


def _training_items(data_root: str | Path | None) -> list[Item]:
    return [item for name, split in TRAIN_SETS.items()
            for item in load_dataset(name, root=data_root, split=split)]


def _vectoriser() -> TextVectoriser:
    return TextVectoriser()


def head_vectoriser(head: Head) -> TextVectoriser | TunedTextVectoriser:
    """What ``head`` reads: plain MiniLM, or the shipped tuned MiniLM when the head was trained
    on it. Raises :class:`~affectgraph.errors.ModelUnavailable` for a head that reads other
    tuned layers (pass ``vectoriser=TunedTextVectoriser.load(its folder)``)."""
    from affectgraph.errors import ModelUnavailable
    from affectgraph.heads.text import shipped_head_path

    plain = _vectoriser()
    if head.manifest.features != TunedTextVectoriser.name:
        return plain
    tuned = TunedTextVectoriser.load(shipped_head_path(), base=plain)
    if tuned.revision != head.manifest.features_revision:
        raise ModelUnavailable(f"the text head reads tuned MiniLM {head.manifest.features_revision}"
                               f", not the shipped {tuned.revision}: pass its vectoriser, "
                               "TunedTextVectoriser.load(<the head's folder>)")
    return tuned
