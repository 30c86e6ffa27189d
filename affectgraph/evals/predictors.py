"""What the harness evaluates: a :class:`Predictor` turns items into :class:`Prediction` s.

A predictor is built from a picklable :class:`PredictorSpec` (registry name, modality, label set,
options) so that each worker process builds its own and loads its models once. Every prediction is
a distribution over the run's label set (the specialist's canonical distribution renormalised over
it, :func:`restrict`), its top label and confidence, or an abstention with its reason; predictors
that reason also return their rationale steps as the verifier judged them.

Built-ins (:data:`PREDICTORS`): ``face``, ``voice``, ``text`` (one specialist each, with its
trained head and retrieval as configured, :mod:`affectgraph.evals.specialists`), ``av`` (the
whole analysis graph) and ``dummy`` (:class:`DummyPredictor`: deterministic, instant, with
rationales, so the harness runs and is tested without any model). :func:`register_predictor`
adds another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from affectgraph.errors import unknown_name
from affectgraph.evals.splits import EvalItem
from affectgraph.evals.task import EvalModality
from affectgraph.labels import LABELS
from affectgraph.verdict import RationaleStep


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PredictorOptions(_Strict):
    """How a predictor is configured.

    ``head``: use the modality's trained head (``None``: as the specialist does by default; the
    face specialist leaves its head off, the voice and text ones use theirs); ``retrieval``: mix
    in the label vote of the ``k``
    nearest exemplars of the default library, weighted ``retrieval_weight`` (linear mixture of
    distributions). ``face_cropped``: images are face crops (no detection); ``fps``: frames per
    second sampled from videos for the face. ``text_model``: a registered text emotion model
    (default: the transcript specialist's). ``threads``: CPU threads per model. ``seed``: the
    dummy's answers and nothing else (models are deterministic). ``aggregator``: who writes the
    ``av`` verdict: ``fusion``, ``mllm`` (the shipped tuned MLLM), ``mllm:FOLDER`` or
    ``mllm:zero-shot`` (:mod:`affectgraph.agents.mllm.aggregator`). ``refit_head`` (voice):
    the shipped voice head learned from every RAVDESS and TESS speaker, so score instead a head
    trained by the same recipe without each fold's test speakers.
    """

    head: bool | None = None
    refit_head: bool = False
    retrieval: bool = True
    k: int = Field(default=10, ge=1, le=100)
    retrieval_weight: float = Field(default=0.5, ge=0, le=1)
    face_cropped: bool = False
    fps: float = Field(default=2.0, gt=0, le=30)
    text_model: str | None = None
    threads: int = Field(default=1, ge=1)
    seed: int = 0
    aggregator: str = "fusion"

    @field_validator("aggregator")
    @classmethod
    def _known_aggregator(cls, spelling: str) -> str:
        from affectgraph.agents.mllm.aggregator import parse_aggregator

        return parse_aggregator(spelling).spelling  # ConfigError naming the valid spellings


class PredictorSpec(_Strict):
    """Everything needed to build a predictor, in any process."""

    name: str
    modality: EvalModality
    labels: tuple[str, ...]
    options: PredictorOptions = Field(default_factory=PredictorOptions)


class PredictorInfo(_Strict):
    """What was evaluated: ``revision`` identifies the models (it keys the result cache);
    ``components`` name each part; ``trained_on`` maps a trained part (a head) to the data sets
    it learned from, so a report can flag a task drawn from one of them. (Exemplar libraries are
    not listed: retrieval always leaves the test groups out.)"""

    name: str
    revision: str
    components: dict[str, str] = Field(default_factory=dict)
    trained_on: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class ModelAnswer(_Strict):
    """What a language-model aggregator itself answered for an item, before any fallback:
    whether it was the answer JSON (``valid_json``), its ``label``, all its ``steps`` as the
    verifier judged them, whether the graph ``used`` it (else the fusion verdict stood, for
    ``reason``) and the ``seconds`` it took to answer."""

    valid_json: bool
    label: str | None = None
    steps: tuple[RationaleStep, ...] = ()
    used: bool = False
    reason: str = ""
    seconds: float = 0.0


class Prediction(_Strict):
    """One item's answer: ``label`` (``None`` when abstaining, with ``reason``), its
    ``distribution`` over the run's labels, ``confidence`` (the top probability), the verified
    rationale ``steps`` when the predictor reasons, the compute ``seconds`` it took, and with a
    language-model aggregator its own ``answer``."""

    id: str
    label: str | None
    distribution: dict[str, float] = Field(default_factory=dict)
    confidence: float = Field(default=0.0, ge=0, le=1)
    reason: str | None = None
    steps: tuple[RationaleStep, ...] = ()
    seconds: float = 0.0
    answer: ModelAnswer | None = None

    @property
    def abstained(self) -> bool:
        return self.label is None


class Predictor(Protocol):
    """Predicts a batch of items (any fold mix), one :class:`Prediction` per item, in order."""

    info: PredictorInfo

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]: ...


@dataclass(frozen=True)
class PredictorEntry:
    """A registered predictor: ``build`` loads its models; ``revision`` names them without
    loading anything (it keys the cache before any model loads)."""

    build: Callable[[PredictorSpec], Predictor]
    revision: Callable[[PredictorSpec], str]


def restrict(distribution: Mapping[str, float], labels: Sequence[str]) -> dict[str, float]:
    """``distribution`` renormalised over ``labels`` (uniform when it gives them nothing)."""
    values = [max(0.0, float(distribution.get(label, 0.0))) for label in labels]
    total = sum(values)
    if total <= 0:
        return {label: 1.0 / len(labels) for label in labels}
    return {label: v / total for label, v in zip(labels, values, strict=True)}


def decide(item_id: str, distribution: Mapping[str, float], labels: Sequence[str], *,
           steps: Sequence[RationaleStep] = ()) -> Prediction:
    """The prediction of a canonical ``distribution`` restricted to ``labels``."""
    dist = restrict(distribution, labels)
    label = max(dist, key=lambda k: dist[k])
    return Prediction(id=item_id, label=label, distribution=dist,
                      confidence=min(1.0, dist[label]), steps=tuple(steps))


def abstain(item_id: str, reason: str) -> Prediction:
    return Prediction(id=item_id, label=None, reason=reason)


# -- the dummy -------------------------------------------------------------------------------

class DummyPredictor:
    """Deterministic answers from a hash of (seed, item id), for fast tests of the harness.

    It is right with probability ``accuracy`` (else it names another label), abstains with
    probability ``abstain``, and, with ``rationale``, reasons over one synthetic transcript
    record: a grounded step naming its label and probability, and with probability ``corrupt``
    a corrupted step (an unknown id, a time outside the evidence, an emotion the evidence does
    not show, or no citation). The real :class:`~affectgraph.agents.verifier.Verifier` judges
    the steps, so reasoning metrics are computed exactly as for a real aggregator.
    """

    def __init__(self, spec: PredictorSpec, *, accuracy: float = 0.7, abstain: float = 0.05,
                 rationale: bool = True, corrupt: float = 0.4) -> None:
        self.spec = spec
        self.accuracy, self.abstain, self.rationale, self.corrupt = (
            accuracy, abstain, rationale, corrupt)
        self.info = PredictorInfo(name="dummy", revision=dummy_revision(spec),
                                  components={"dummy": "hash of (seed, item id)"})

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]:
        return [self._one(e) for e in items]

    def _one(self, entry: EvalItem) -> Prediction:
        u = _uniforms(f"{self.spec.options.seed}:{entry.id}", 5)
        labels = self.spec.labels
        if u[0] < self.abstain:
            return abstain(entry.id, "the dummy abstains on this item")
        truth = entry.item.label.value
        if u[1] < self.accuracy and truth in labels:
            label = truth
        else:
            others = [c for c in labels if c != truth] or list(labels)
            label = others[int(u[2] * len(others)) % len(others)]
        peak = 0.4 + 0.5 * u[3]
        rest = (1.0 - peak) / max(1, len(labels) - 1)
        dist = {c: (peak if c == label else rest) for c in labels} if len(labels) > 1 else {
            label: 1.0}
        steps = self._steps(label, dist, u[4]) if self.rationale else []
        return decide(entry.id, dist, labels, steps=steps)

    def _steps(self, label: str, dist: dict[str, float], u: float) -> list[RationaleStep]:
        from affectgraph.agents.verifier import Verifier
        from affectgraph.evidence import ModelRef, TimeSpan, TranscriptEvidence

        record = TranscriptEvidence(
            id="text:0", span=TimeSpan(start=0.0, end=2.0), specialist="dummy",
            model=ModelRef(name="dummy"), distribution={c: dist.get(c, 0.0) for c in LABELS},
            confidence=max(dist.values()), text="a synthetic sentence")
        steps = [RationaleStep(claim=f"The words sound {label} [text:0].", cites=["text:0"]),
                 RationaleStep(claim=f"The text model gives p={dist[label]:.2f} to {label}.",
                               cites=["text:0"])]
        if u < self.corrupt:
            steps.append(_corrupted(label, dist, int(u / self.corrupt * 4) % 4))
        return Verifier([record]).verify(steps)


def _corrupted(label: str, dist: Mapping[str, float], kind: int) -> RationaleStep:
    wrong = min((c for c in LABELS if c != label), key=lambda c: dist.get(c, 0.0))
    claims = [
        RationaleStep(claim=f"The face looks {label} [face:9].", cites=["face:9"]),
        RationaleStep(claim="The voice rises at 7.5 s [text:0].", cites=["text:0"]),
        RationaleStep(claim=f"The words are clearly {wrong} [text:0].", cites=["text:0"]),
        RationaleStep(claim=f"Overall the speaker seems {label}.", cites=[]),
    ]
    return claims[kind]


def _uniforms(key: str, n: int) -> list[float]:
    digest = hashlib.sha256(key.encode()).digest()
    return [int.from_bytes(digest[4 * i: 4 * i + 4], "big") / 2**32 for i in range(n)]


def dummy_revision(spec: PredictorSpec) -> str:
    return f"dummy-1-seed{spec.options.seed}"


# -- the registry --------------------------------------------------------------------------------

def _specialist(name: str) -> PredictorEntry:
    def build(spec: PredictorSpec) -> Predictor:
        from affectgraph.evals import specialists

        return specialists.build(name, spec)

    def revision(spec: PredictorSpec) -> str:
        from affectgraph.evals import specialists

        return specialists.revision(name, spec)

    return PredictorEntry(build, revision)


PREDICTORS: dict[str, PredictorEntry] = {
    **{name: _specialist(name) for name in ("face", "voice", "text", "av")},
    "dummy": PredictorEntry(DummyPredictor, dummy_revision),
}


def register_predictor(name: str, entry: PredictorEntry) -> None:
    """Make ``--predictor name`` build predictors with ``entry`` (replacing any of that name)."""
    PREDICTORS[name] = entry


def predictor_entry(name: str) -> PredictorEntry:
    if name not in PREDICTORS:
        raise unknown_name("predictor", name, PREDICTORS)
    return PREDICTORS[name]


def build_predictor(spec: PredictorSpec) -> Predictor:
    """Load the predictor ``spec`` names (its models load here)."""
    return predictor_entry(spec.name).build(spec)
