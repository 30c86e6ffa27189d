"""The fusion aggregator: a small trained model from per-modality signals to one distribution.

Each modality that delivered evidence contributes a :class:`Signals`: the specialist model's
distribution over the canonical labels, the label vote of its retrieved exemplars, and a
reliability (face: share of sampled frames with a face; voice: seconds of speech; text: words).
Fusion is a weighted log-linear pool (a product of experts)::

    z(y) = bias(y) + sum over present m of  w_m(r_m) * log p_m(y) + u_m(r_m) * log v_m(y)
    w_m(r) = softplus(a_m + b_m * g_m(r)),   u_m(r) = softplus(c_m + d_m * g_m(r))
    P(y) = softmax(z)(y)

with ``g_m`` a fixed squashing of the reliability into about [0, 1] (:data:`RELIABILITY`).
A missing modality or a missing vote simply has no term: nothing is zero-filled, and the
weights of the others are what they learned to be when that modality was absent. The weights
grow with reliability when the data says they should (``b_m`` is learned, not assumed), and
their scale doubles as the calibration temperature: they are fit by minimising the negative
log-likelihood of held-out predictions (:mod:`affectgraph.agents.fusion_training`).

The model abstains when the fused confidence is under ``abstain_below``: a threshold chosen on
cross-fitted predictions (below it, the answer was right less than one time in three).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import ModelUnavailable
from affectgraph.evidence import MODALITIES, Distribution
from affectgraph.labels import LABELS, VALENCE_AROUSAL, Emotion

FORMAT_VERSION = 1
EPSILON = 1e-3  # floor of every probability before its log: one model's zero cannot veto a label

RELIABILITY: Mapping[str, tuple[str, float]] = {
    "face": ("share of sampled frames with a face", 1.0),
    "voice": ("seconds of speech", 10.0),
    "text": ("words", 20.0),
}
"""What each modality's reliability measures, and the value at which ``g_m`` reaches
``log1p(r) / log1p(scale) = 1`` (face: a share, used as is)."""


def squash(modality: str, reliability: float) -> float:
    """``g_m(r)``: the reliability on a common scale (about 0 = none, 1 = plenty)."""
    if modality == "face":
        return float(min(max(reliability, 0.0), 1.0))
    return float(math.log1p(max(reliability, 0.0)) / math.log1p(RELIABILITY[modality][1]))


@dataclass(frozen=True)
class Signals:
    """What one modality says about a clip (or a stretch of it)."""

    model: Distribution | None
    vote: Distribution | None
    reliability: float

    @property
    def present(self) -> bool:
        return self.model is not None or self.vote is not None


class FusionParams(BaseModel):
    """The trained parameters of the fusion model and where they came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    labels: tuple[str, ...] = LABELS
    model_weight: dict[str, tuple[float, float]] = Field(
        description="modality -> (a, b): w = softplus(a + b * g(reliability))")
    vote_weight: dict[str, tuple[float, float]] = Field(
        description="modality -> (c, d): u = softplus(c + d * g(reliability))")
    label_bias: dict[str, float]
    abstain_below: float = Field(ge=0, le=1)
    trained_on: dict[str, str] = Field(default_factory=dict, description="data set -> licence")
    metrics: dict[str, float | str] = Field(default_factory=dict)
    notes: str = ""
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class Fused:
    """The fused distribution, and how much each modality's model and vote pulled toward the
    chosen label: ``pull[m] = weight * (log p_m(top) - mean over labels of log p_m)``."""

    distribution: Distribution
    label: str
    confidence: float
    weights: dict[str, float]
    pull: dict[str, float]
    vote_pull: dict[str, float]
    abstain: bool


def softplus(x: float) -> float:
    return float(np.logaddexp(0.0, x))


class FusionModel:
    """Inference with trained :class:`FusionParams` (numpy only, microseconds per call)."""

    def __init__(self, params: FusionParams) -> None:
        self.params = params
        self.bias = np.array([params.label_bias.get(c, 0.0) for c in LABELS])

    @property
    def abstain_below(self) -> float:
        return self.params.abstain_below

    def weights(self, modality: str, reliability: float) -> tuple[float, float]:
        """(model weight, vote weight) of ``modality`` at ``reliability``."""
        g = squash(modality, reliability)
        a, b = self.params.model_weight.get(modality, (0.0, 0.0))
        c, d = self.params.vote_weight.get(modality, (0.0, 0.0))
        return softplus(a + b * g), softplus(c + d * g)

    def fuse(self, signals: Mapping[str, Signals]) -> Fused | None:
        """The fused answer, or ``None`` when no modality delivered anything."""
        present = {m: s for m, s in signals.items() if s.present}
        if not present:
            return None
        z = self.bias.copy()
        logs: dict[str, tuple[np.ndarray | None, np.ndarray | None, float, float]] = {}
        for modality, s in present.items():
            w, u = self.weights(modality, s.reliability)
            log_p = _log(s.model)
            log_v = _log(s.vote)
            if log_p is not None:
                z += w * log_p
            if log_v is not None:
                z += u * log_v
            logs[modality] = (log_p, log_v, w if log_p is not None else 0.0,
                              u if log_v is not None else 0.0)
        p = np.exp(z - z.max())
        p /= p.sum()
        best = int(p.argmax())
        total = sum(w + u for _, _, w, u in logs.values()) or 1.0
        return Fused(
            distribution={c: round(float(v), 6) for c, v in zip(LABELS, p, strict=True)},
            label=LABELS[best],
            confidence=round(float(p[best]), 6),
            weights={m: round((w + u) / total, 4) for m, (_, _, w, u) in logs.items()},
            pull={m: float(w * (lp[best] - lp.mean())) for m, (lp, _, w, _) in logs.items()
                  if lp is not None},
            vote_pull={m: float(u * (lv[best] - lv.mean())) for m, (_, lv, _, u) in logs.items()
                       if lv is not None},
            abstain=bool(p[best] < self.abstain_below),
        )

    # -- storage ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(self.params.model_dump_json(indent=2) + "\n")
        tmp.replace(out)
        return out

    @classmethod
    def load(cls, path: str | Path | None = None) -> FusionModel:
        """The fusion model at ``path`` (default: the one shipped in the package)."""
        src = Path(path) if path is not None else shipped_path()
        try:
            return cls(FusionParams.model_validate(json.loads(src.read_text())))
        except FileNotFoundError:
            raise ModelUnavailable(f"no fusion model at {src}; train one: affectgraph train "
                                   "fusion") from None

    @property
    def revision(self) -> str:
        import hashlib

        return hashlib.sha256(self.params.model_dump_json().encode()).hexdigest()[:12]


def shipped_path() -> Path:
    return Path(str(resources.files("affectgraph"))) / "assets" / "fusion" / "fusion.json"


def _log(dist: Distribution | None) -> np.ndarray | None:
    if dist is None:
        return None
    return np.log(np.array([dist.get(c, 0.0) for c in LABELS]) + EPSILON)


def valence_arousal(distribution: Mapping[str, float]) -> tuple[float, float]:
    """Expected valence and arousal of a distribution over the circumplex placements."""
    v = sum(p * VALENCE_AROUSAL[Emotion(c)][0] for c, p in distribution.items())
    a = sum(p * VALENCE_AROUSAL[Emotion(c)][1] for c, p in distribution.items())
    return max(-1.0, min(1.0, v)), max(-1.0, min(1.0, a))


__all__ = ["MODALITIES", "Fused", "FusionModel", "FusionParams", "Signals", "squash",
           "valence_arousal"]
