"""The on-disk format of a trained head, and its numpy-only inference.

A head is a folder with ``manifest.json`` (:class:`HeadManifest`) and ``weights.npz``: a
standardisation (``mean``, ``scale``), an optional hidden layer (``W1`` (D, H), ``b1`` (H,), ReLU),
the output layer (``W`` (H or D, C), ``b`` (C,)) and a calibration temperature. Inference needs no
torch and no scikit-learn, so heads load in milliseconds and ship inside the package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import ModelUnavailable
from affectgraph.labels import LABELS

FORMAT_VERSION = 1


class HeadManifest(BaseModel):
    """What a head is, what it was trained on (with licences) and how well it did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    modality: str
    classes: tuple[str, ...]
    features: str = Field(description="id of the input features, e.g. egemaps-v02 or minilm-l6-v2")
    features_revision: str = ""
    dim: int
    trained_on: dict[str, str] = Field(description="data set -> its licence")
    metrics: dict[str, float | str] = Field(default_factory=dict)
    notes: str = ""
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class Head:
    """A loaded head: ``predict_proba`` maps (n, dim) features to (n, classes) probabilities."""

    manifest: HeadManifest
    mean: np.ndarray
    scale: np.ndarray
    W: np.ndarray
    b: np.ndarray
    temperature: float = 1.0
    W1: np.ndarray | None = None
    b1: np.ndarray | None = None

    def logits(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean) / self.scale
        if self.W1 is not None and self.b1 is not None:
            x = np.maximum(x @ self.W1 + self.b1, 0.0)
        return x @ self.W + self.b

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = self.logits(features) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def distributions(self, features: np.ndarray) -> list[dict[str, float]]:
        """Canonical distributions (every canonical label, 0 for classes the head lacks)."""
        out = []
        for row in self.predict_proba(features):
            dist = dict.fromkeys(LABELS, 0.0)
            dist.update({c: float(p) for c, p in zip(self.manifest.classes, row, strict=True)})
            out.append(dist)
        return out

    def save(self, folder: str | Path) -> Path:
        """Write ``weights.npz``, then ``manifest.json`` (with their checksum) to ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale, "W": self.W, "b": self.b,
                  "temperature": np.array(self.temperature)}
        if self.W1 is not None and self.b1 is not None:
            arrays |= {"W1": self.W1, "b1": self.b1}
        weights = out / "weights.npz"
        # allow_pickle given, or mypy matches the **arrays against it; numeric arrays never pickle
        np.savez(weights, allow_pickle=False,
                 **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        manifest = self.manifest.model_copy(update={"weights_sha256": digest})
        (out / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> Head:
        """Load a head, checking the weights against the manifest's checksum."""
        src = Path(folder)
        try:
            manifest = HeadManifest.model_validate_json((src / "manifest.json").read_text())
            raw = (src / "weights.npz").read_bytes()
        except FileNotFoundError as exc:
            raise ModelUnavailable(f"no trained head in {src}: {exc.filename} is missing") from None
        if manifest.weights_sha256 and hashlib.sha256(raw).hexdigest() != manifest.weights_sha256:
            raise ModelUnavailable(f"{src}/weights.npz does not match its manifest's checksum")
        with np.load(src / "weights.npz") as data:
            arrays = {k: data[k].astype(np.float64) for k in data.files}
        return cls(manifest=manifest, mean=arrays["mean"], scale=arrays["scale"], W=arrays["W"],
                   b=arrays["b"], temperature=float(arrays["temperature"]),
                   W1=arrays.get("W1"), b1=arrays.get("b1"))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of held-out ``logits`` (n, C)."""
    best, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 60)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        nll = -(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(axis=1))).mean()
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best
