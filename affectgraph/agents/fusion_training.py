"""Training the fusion model on held-out specialist predictions, and measuring it.

The training table (:mod:`affectgraph.agents.fusion_data`) holds, per labelled item and
modality, the specialist model's and the retrieval vote's **out-of-fold** predictions: no row
comes from a model or library that saw its speaker. Items are then made into fusion samples:

1. **real combinations**: the modalities of one real item (a RAVDESS speech clip's voice and its
   words);
2. **pseudo-multimodal combinations**: the real item plus a row of another modality with the same
   label drawn from another data set (a face of FER2013 or faces_web beside a RAVDESS voice; a
   voice beside a face photo). No data set here has all three modalities of one person except
   the 7 audio-visual clips, which are the test set; pairing by label assumes the modalities err
   independently given the label, which overstates how much they complement each other. The
   model has 19 parameters, and the test on the real audio-visual clips says how far that holds;
3. **single modalities**: every row alone, so that a missing modality is a case the model has
   seen, not an extrapolation. Except the words of scripted speech (RAVDESS and TESS actors
   say the same neutral sentence in every emotion): alone, they teach nothing but the label
   frequencies.

Each data set weighs the same in the loss, and within it each label (so that 1,774 FER2013
faces do not drown 144 RAVDESS clips, nor neutral the rarer labels). The parameters minimise that
weighted negative log-likelihood (with a small L2 penalty) with L-BFGS. Cross-fitting by group
(speaker or person) gives held-out fused predictions, on which the abstention threshold is
chosen and the scores are reported.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from affectgraph.agents.fusion import EPSILON, FusionModel, FusionParams, Signals, squash
from affectgraph.agents.fusion_data import HeldOut
from affectgraph.evals.metrics import Scores, score
from affectgraph.evidence import MODALITIES
from affectgraph.labels import LABELS

L2 = 1e-3
ABSTAIN_ACCURACY = 1 / 3  # abstain where held-out answers were right less than one time in three
SCRIPTED = frozenset({"ravdess_speech", "tess"})  # the same words in every emotion


@dataclass(frozen=True)
class Sample:
    """One fusion training case: the modalities' signals, the truth and the fold group."""

    signals: dict[str, Signals]
    label: str
    group: str
    dataset: str
    kind: str  # "real", "pseudo" or "single"


def make_samples(rows: Sequence[HeldOut], *, seed: int = 0, partners: int = 1) -> list[Sample]:
    """Real, pseudo-multimodal and single-modality samples from the held-out table."""
    rng = random.Random(seed)
    items: dict[tuple[str, str], list[HeldOut]] = defaultdict(list)
    for row in rows:
        items[(row.dataset, row.item)].append(row)
    pools: dict[tuple[str, str], list[list[HeldOut]]] = defaultdict(list)
    for found in items.values():
        for modality in {r.modality for r in found}:
            pools[(modality, found[0].label)].append(found)
    out = []
    for (dataset, _), found in items.items():
        label, group = found[0].label, found[0].group
        own: dict[str, Signals] = {r.modality: _signals(r) for r in found}
        if len(own) > 1:
            out.append(Sample(own, label, group, dataset, "real"))
        out += [Sample({m: s}, label, group, dataset, "single") for m, s in own.items()
                if not (m == "text" and dataset in SCRIPTED)]
        for _ in range(partners):
            others = [m for m in MODALITIES if m not in own and pools.get((m, label))]
            if not others:
                continue
            partner = rng.choice(pools[(rng.choice(others), label)])
            extra: dict[str, Signals] = {r.modality: _signals(r) for r in partner
                                         if r.modality not in own}
            out.append(Sample(own | extra, label, group, dataset, "pseudo"))
    return out


def _signals(row: HeldOut) -> Signals:
    return Signals(row.model, row.vote, row.reliability)


# -- fitting --------------------------------------------------------------------------------------

def _tensors(samples: Sequence[Sample]):
    import torch

    n, m, c = len(samples), len(MODALITIES), len(LABELS)
    log_p = torch.zeros(n, m, c, dtype=torch.float64)
    log_v = torch.zeros(n, m, c, dtype=torch.float64)
    has_p = torch.zeros(n, m, dtype=torch.float64)
    has_v = torch.zeros(n, m, dtype=torch.float64)
    g = torch.zeros(n, m, dtype=torch.float64)
    for i, s in enumerate(samples):
        for j, modality in enumerate(MODALITIES):
            sig = s.signals.get(modality)
            if sig is None:
                continue
            g[i, j] = squash(modality, sig.reliability)
            if sig.model is not None:
                log_p[i, j] = torch.log(torch.tensor([sig.model.get(k, 0.0) for k in LABELS],
                                                     dtype=torch.float64) + EPSILON)
                has_p[i, j] = 1
            if sig.vote is not None:
                log_v[i, j] = torch.log(torch.tensor([sig.vote.get(k, 0.0) for k in LABELS],
                                                     dtype=torch.float64) + EPSILON)
                has_v[i, j] = 1
    y = torch.tensor([LABELS.index(s.label) for s in samples])
    return log_p, log_v, has_p, has_v, g, y


def fit(samples: Sequence[Sample], *, iterations: int = 200) -> FusionParams:
    """Fusion parameters minimising the class-balanced NLL of ``samples``."""
    import torch

    log_p, log_v, has_p, has_v, g, y = _tensors(samples)
    weight = torch.tensor(balanced_weights(samples), dtype=torch.float64)
    a = torch.zeros(len(MODALITIES), 2, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(len(MODALITIES), 2, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, c], max_iter=iterations, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        z = _logits(a, c, log_p, log_v, has_p, has_v, g)
        nll = -(torch.log_softmax(z, dim=1)[torch.arange(len(y)), y] * weight).sum()
        value = nll + L2 * (a.pow(2).sum() + c.pow(2).sum())
        value.backward()
        return value

    optimiser.step(loss)
    A, C = (t.detach().numpy() for t in (a, c))
    return FusionParams(
        model_weight={m: (float(A[j, 0]), float(A[j, 1])) for j, m in enumerate(MODALITIES)},
        vote_weight={m: (float(C[j, 0]), float(C[j, 1])) for j, m in enumerate(MODALITIES)},
        label_bias={}, abstain_below=0.0)


def balanced_weights(samples: Sequence[Sample]) -> list[float]:
    """Each data set weighs the same, and within it each label; the weights sum to 1."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    labels: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        counts[(s.dataset, s.label)] += 1
        labels[s.dataset].add(s.label)
    raw = [1.0 / (len(labels) * len(labels[s.dataset]) * counts[(s.dataset, s.label)])
           for s in samples]
    total = sum(raw)
    return [w / total for w in raw]


def _logits(a, c, log_p, log_v, has_p, has_v, g):
    import torch.nn.functional as F

    w = F.softplus(a[:, 0] + a[:, 1] * g) * has_p  # (n, m)
    u = F.softplus(c[:, 0] + c[:, 1] * g) * has_v
    return (w[..., None] * log_p + u[..., None] * log_v).sum(dim=1)


# -- cross-fitting, threshold, scores ------------------------------------------------------------

@dataclass(frozen=True)
class CrossFit:
    """Held-out fused predictions of every sample (trained without its group's fold)."""

    samples: list[Sample]
    distributions: list[dict[str, float]]

    @property
    def confidence(self) -> np.ndarray:
        return np.array([max(d.values()) for d in self.distributions])

    @property
    def correct(self) -> np.ndarray:
        return np.array([max(d, key=d.__getitem__) == s.label
                         for d, s in zip(self.distributions, self.samples, strict=True)])


def cross_fit(samples: Sequence[Sample], folds: int = 5, seed: int = 0) -> CrossFit:
    """Fit on all groups but one fold's, predict that fold; every sample once."""
    groups = sorted({s.group for s in samples})
    random.Random(seed).shuffle(groups)
    fold_of = {g: n % folds for n, g in enumerate(groups)}
    out: list[dict[str, float] | None] = [None] * len(samples)
    for fold in range(folds):
        train = [s for s in samples if fold_of[s.group] != fold]
        model = FusionModel(fit(train))
        for n, s in enumerate(samples):
            if fold_of[s.group] == fold:
                fused = model.fuse(s.signals)
                out[n] = fused.distribution if fused else None
    kept = [(s, d) for s, d in zip(samples, out, strict=True) if d is not None]
    return CrossFit([s for s, _ in kept], [d for _, d in kept])


def choose_threshold(fit_: CrossFit, *, floor: float = ABSTAIN_ACCURACY) -> float:
    """The confidence from which held-out answers are right at least ``floor`` of the time:
    the lowest confidence where the isotonic fit of correctness on confidence reaches
    ``floor`` (answers below it were right less often: the verdict abstains there)."""
    from sklearn.isotonic import IsotonicRegression

    conf, ok = fit_.confidence, fit_.correct.astype(float)
    fitted = IsotonicRegression(out_of_bounds="clip").fit(conf, ok).predict(conf)
    reached = conf[fitted >= floor]
    return float(round(reached.min(), 3)) if reached.size else 1.0


def expected_calibration_error(fit_: CrossFit, bins: int = 10) -> float:
    conf, ok = fit_.confidence, fit_.correct
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(conf[inside].mean() - ok[inside].mean())
    return float(total)


def scores_by(fit_: CrossFit, *, kind: str | None = None, dataset: str | None = None,
              modalities: frozenset[str] | None = None) -> dict[str, Scores]:
    """Fusion against each single source on the same held-out samples (those matching the
    filters): ``fusion``, ``<modality> model`` and ``<modality> vote``."""
    chosen = [(s, d) for s, d in zip(fit_.samples, fit_.distributions, strict=True)
              if (kind is None or s.kind == kind) and (dataset is None or s.dataset == dataset)
              and (modalities is None or frozenset(s.signals) == modalities)]
    if not chosen:
        return {}
    truth = [s.label for s, _ in chosen]
    out = {"fusion": score(truth, [max(d, key=d.__getitem__) for _, d in chosen])}
    for modality in MODALITIES:
        for source in ("model", "vote"):
            got = [getattr(s.signals.get(modality), source, None) if modality in s.signals
                   else None for s, _ in chosen]
            present = [g for g in got if g is not None]
            if len(present) == len(got):
                out[f"{modality} {source}"] = score(truth, [max(g, key=g.__getitem__)
                                                            for g in present])
    return out
