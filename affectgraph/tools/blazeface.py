"""MediaPipe BlazeFace face detection on a LiteRT (TensorFlow Lite) interpreter.

Two models share one decoder: ``short`` (front camera, 128x128 input, faces within ~2 m) and
``full`` (back camera, 256x256 input, smaller and farther faces). Each predicts, for 896 SSD
anchors, a face score and a box (centre, size) plus six key points relative to its anchor. The
decoding follows MediaPipe's ``SsdAnchorsCalculator`` and ``TensorsToDetectionsCalculator``:
anchors at the centres of the cells of four feature maps (strides 8,16,16,16 for 128 px,
16,32,32,32 for 256 px; two anchors per cell and stride), box = raw / input size + anchor centre,
sigmoid scores, then weighted non-maximum suppression (overlapping boxes are averaged, weighted
by their scores).

Frames are letterboxed to the square input (aspect ratio kept, black bars) and the boxes are
mapped back to pixels of the original frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# MediaPipe clips raw scores at +-100; 80 keeps exp() finite in float32.
_RAW_SCORE_LIMIT = 80.0
_SUPPRESSION_IOU = 0.3
_STRIDES = {128: (8, 16, 16, 16), 256: (16, 32, 32, 32)}


@dataclass(frozen=True)
class Detection:
    """One detected face: box in pixels of the image given to the detector, and its score.

    ``x, y`` is the top-left corner; the box may reach past the image border.
    """

    x: float
    y: float
    width: float
    height: float
    score: float


def ssd_anchors(size: int) -> np.ndarray:
    """Anchor centres (896, 2) as (x, y) in [0, 1] for a ``size`` x ``size`` BlazeFace input."""
    strides = _STRIDES[size]
    anchors = []
    for stride in sorted(set(strides)):
        per_cell = 2 * strides.count(stride)
        cells = size // stride
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(centres, centres)
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(anchors)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit an (h, w, 3) uint8 image into a black ``size`` x ``size`` square, keeping its aspect.

    Returns the square as float32 in [-1, 1] (BlazeFace's input range), the scale applied and
    the left and top padding in pixels of the square.
    """
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    square = np.zeros((size, size, 3), dtype=np.uint8)
    square[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return square.astype(np.float32) / 127.5 - 1.0, scale, float(pad_x), float(pad_y)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    ``boxes`` is (n, 4) as (x0, y0, x1, y1); ``scores`` is (n,). Boxes overlapping the best
    remaining one by IoU > 0.3 are merged into their score-weighted mean, which keeps the best
    score. Returns (box, score) pairs, best first.
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept = []
    while len(scores):
        similar = _iou(boxes[0], boxes) > _SUPPRESSION_IOU
        similar[0] = True
        weights = scores[similar]
        merged = (boxes[similar] * weights[:, None]).sum(axis=0) / weights.sum()
        kept.append((merged, float(scores[0])))
        boxes, scores = boxes[~similar], scores[~similar]
    return kept


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class BlazeFace:
    """A loaded BlazeFace model (short- or full-range); call :meth:`detect` on RGB images."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        inputs = self._interpreter.get_input_details()[0]
        self.size = int(inputs["shape"][1])
        self._input = inputs["index"]
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._boxes, self._scores = outputs["regressors"], outputs["classificators"]
        self._anchors = ssd_anchors(self.size)

    def detect(self, rgb: np.ndarray, min_score: float = 0.5) -> list[Detection]:
        """Faces in an (h, w, 3) uint8 RGB image with score > ``min_score``, best first.

        Boxes are in pixels of ``rgb``.
        """
        square, scale, pad_x, pad_y = letterbox(rgb, self.size)
        self._interpreter.set_tensor(self._input, square[None])
        self._interpreter.invoke()
        raw_boxes = self._interpreter.get_tensor(self._boxes)[0]
        raw_scores = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        keep = scores > min_score
        if not keep.any():
            return []
        corners = self._corners(raw_boxes[keep], self._anchors[keep])
        detections = []
        for (x0, y0, x1, y1), score in weighted_nms(corners, scores[keep]):
            if x1 <= x0 or y1 <= y0:
                continue
            x0, x1 = (x0 * self.size - pad_x) / scale, (x1 * self.size - pad_x) / scale
            y0, y1 = (y0 * self.size - pad_y) / scale, (y1 * self.size - pad_y) / scale
            box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
            detections.append(Detection(*box, score))
        return detections

    def _corners(self, raw: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """(n, 16) raw regressions -> (n, 4) boxes (x0, y0, x1, y1) in [0, 1] of the square."""
        centre = raw[:, :2] / self.size + anchors
        half = raw[:, 2:4] / self.size / 2
        return np.concatenate([centre - half, centre + half], axis=1)
