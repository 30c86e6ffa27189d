"""The face specialist on real clips, photos and face crops, and on synthetic edge cases."""

from __future__ import annotations

import gc
import sys
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from affectgraph.errors import ConfigError, ModelUnavailable
from affectgraph.evidence import FaceEvidence
from affectgraph.labels import LABELS
from affectgraph.media import Frame, iter_frames
from affectgraph.tools import face
from affectgraph.tools.blazeface import ssd_anchors
from affectgraph.tools.face import FaceModel, FaceOptions, analyze_face

from .conftest import write_video

RAVDESS_CLIPS = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess_av"
                        / "mp4").glob("*.mp4"))


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def write_frames(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """Encode (h, w, 3) uint8 RGB frames as an mpeg4 video."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def assert_valid_face(record: FaceEvidence) -> None:
    assert record.decided and record.distribution is not None
    assert set(record.distribution) == set(LABELS)
    assert record.confidence == pytest.approx(max(record.distribution.values()))
    embedding = np.asarray(record.embedding)
    assert embedding.shape == (128,) and np.linalg.norm(embedding) == pytest.approx(1, abs=1e-4)


def test_anchors_match_mediapipe_layout() -> None:
    # 128 px: a 16x16 map with 2 anchors per cell, then an 8x8 map with 6 (three stride-16
    # layers); x varies fastest; anchors sit at cell centres.
    anchors = ssd_anchors(128)
    assert anchors.shape == (896, 2) and ssd_anchors(256).shape == (896, 2)
    np.testing.assert_allclose(anchors[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    np.testing.assert_allclose(anchors[512:519], [[1 / 16, 1 / 16]] * 6 + [[3 / 16, 1 / 16]])
    np.testing.assert_allclose(anchors[-1], [15 / 16, 15 / 16])
    np.testing.assert_allclose(ssd_anchors(256), anchors)  # strides double with the input


def test_happy_clip_one_track_mostly_happy(model: FaceModel, ravdess_clip: Path) -> None:
    records = analyze_face(ravdess_clip, model=model)
    assert [r.id for r in records] == [f"face:{n}" for n in range(len(records))]
    assert len(records) == 17 and all(r.decided for r in records)  # 3.24 s at 5 fps
    for record in records:
        assert_valid_face(record)
        box = record.box
        assert box is not None and record.detection_score is not None
        assert record.detection_score > 0.9
        # The actor's face sits near the middle of the 1280x720 frame, 300-500 px tall.
        assert 300 < box.x + box.width / 2 < 980 and 300 < box.height < 500
        assert record.span.duration == pytest.approx(0.2, abs=0.05) or record is records[-1]
    assert {r.track_id for r in records} == {0}
    assert [r.frame_index for r in records] == list(range(17))
    labels = Counter(r.label for r in records)
    assert labels.most_common(1)[0][0] == "happy" and labels["happy"] >= 9
    assert records[-1].span.end == pytest.approx(3.24, abs=0.05)  # clipped to the clip's end


@pytest.mark.parametrize("clip", RAVDESS_CLIPS, ids=lambda p: p.stem)
def test_ravdess_clips_face_in_most_frames(model: FaceModel, clip: Path) -> None:
    records = analyze_face(clip, model=model)
    faces = [r for r in records if r.decided]
    assert len(faces) >= 0.9 * 15
    assert len({r.track_id for r in faces}) == 1


def test_boxes_are_in_original_pixels(model: FaceModel, ravdess_clip: Path) -> None:
    small = analyze_face(ravdess_clip, model=model, options=FaceOptions(start=1.0, end=1.5))
    full = analyze_face(ravdess_clip, model=model,
                        options=FaceOptions(start=1.0, end=1.5, max_side=None))
    assert len(small) == len(full) >= 2
    for a, b in zip(small, full, strict=True):
        assert a.box is not None and b.box is not None
        assert a.box.iou(b.box) > 0.85
        assert a.span.start >= 1.0 - 0.05


def test_photo(model: FaceModel, face_photo: Path) -> None:
    (record,) = analyze_face(face_photo, model=model)
    assert_valid_face(record)
    assert record.span.start == record.span.end == 0
    assert record.box is not None and 0 < record.box.width <= 350
    assert record.label == "angry"  # faces_web labels this photo anger


def test_two_faces_side_by_side(model: FaceModel, face_photo: Path, data_dir: Path) -> None:
    smiling = rgb(data_dir / "faces_web" / "images" / "happiness" / "AJ_Cook_0001.jpg")
    image = np.concatenate([rgb(face_photo), smiling], axis=1)
    image = np.pad(image, ((100, 100), (50, 50), (0, 0)), constant_values=255)
    readings = model.analyze_image(image)
    assert len(readings) == 2
    left, right = sorted(readings, key=lambda r: r.box.x if r.box else 0)
    assert left.box is not None and right.box is not None
    # Each box's centre lies on its own photo (x 50-400 and 400-750 of the canvas).
    assert 50 < left.box.x + left.box.width / 2 < 400 < right.box.x + right.box.width / 2 < 750
    top = [max(r.expression.distribution, key=r.expression.distribution.__getitem__)
           for r in (left, right)]
    assert top == ["angry", "happy"]
    assert len(model.analyze_image(image, FaceOptions(max_faces=1))) == 1


def test_fer2013_crop_cropped(model: FaceModel, data_dir: Path) -> None:
    crop = data_dir / "faces_fer2013" / "test" / "surprise" / "PrivateTest_10072988.jpg"
    (record,) = analyze_face(crop, model=model, options=FaceOptions(cropped=True))
    assert_valid_face(record)
    assert record.label == "surprised" and (record.confidence or 0) > 0.9
    assert record.detection_score is None
    assert record.box is not None and (record.box.width, record.box.height) == (48, 48)
    (reading,) = model.analyze_image(rgb(crop), FaceOptions(cropped=True))
    # PIL and FFmpeg decode the JPEG a little differently.
    assert reading.expression.distribution == pytest.approx(record.distribution, abs=0.01)


def test_black_video_gives_one_no_face_record(model: FaceModel, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "black.mp4", seconds=2.0, tone_hz=None)
    (record,) = analyze_face(clip, model=model)
    assert not record.decided and record.distribution is None and record.embedding is None
    assert record.frames == 10 and record.frame_index == 0
    assert record.reason == (
        "no face detected in 10 sampled frames (BlazeFace short+full, score < 0.5)"
    )
    assert record.span.start == 0 and record.span.end == pytest.approx(2.0, abs=0.1)
    assert record.model.name == "blazeface-short+blazeface-full"


def test_a_long_run_without_a_face_keeps_no_frames(model: FaceModel, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The frames of a run without a face are counted, not kept until a face appears: ten minutes
    # of a video without one would otherwise hold ~3,000 decoded frames.
    alive: list[int] = []

    def watched(*args: Any, **kwargs: Any) -> Iterator[Frame]:
        seen: list[weakref.ref] = []
        for frame in iter_frames(*args, **kwargs):
            gc.collect()
            alive.append(sum(ref() is not None for ref in seen))
            seen.append(weakref.ref(frame.image))
            yield frame

    monkeypatch.setattr(face, "iter_frames", watched)
    clip = write_video(tmp_path / "black.mp4", seconds=6.0, tone_hz=None)
    (record,) = analyze_face(clip, model=model)
    assert record.frames == 30 and not record.decided
    assert len(alive) == 30 and max(alive) <= 1


def test_face_gap_splits_runs_and_tracks(model: FaceModel, ravdess_clip: Path,
                                         tmp_path: Path) -> None:
    faces = [f.image for f in iter_frames(ravdess_clip, 5.0, max_side=320)][:4]
    black = [np.zeros_like(faces[0])] * 3
    clip = write_frames(tmp_path / "gap.mp4", faces + black + faces, fps=5)
    records = analyze_face(clip, model=model, options=FaceOptions(detector="short"))
    kinds = ["face" if r.decided else "none" for r in records]
    assert kinds == ["face"] * 4 + ["none"] + ["face"] * 4
    gap = records[4]
    assert gap.frames == 3 and gap.frame_index == 4
    assert gap.span.start == pytest.approx(0.8, abs=0.01)
    assert gap.span.end == pytest.approx(1.4, abs=0.01)
    assert "BlazeFace short," in (gap.reason or "")
    # The face reappears after more frames than a track may miss: a new track.
    assert [r.track_id for r in records if r.decided] == [0] * 4 + [1] * 4


def test_progress_reports_media_seconds(model: FaceModel, ravdess_clip: Path) -> None:
    seen: list[float] = []
    analyze_face(ravdess_clip, model=model, options=FaceOptions(fps=2), progress=seen.append)
    assert seen == sorted(seen) and len(seen) == 7
    assert seen[0] == pytest.approx(0.5) and seen[-1] == pytest.approx(3.24, abs=0.01)


def test_evidence_json_round_trip(model: FaceModel, face_photo: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "black.mp4", seconds=0.4, tone_hz=None)
    records = analyze_face(face_photo, model=model) + analyze_face(clip, model=model)
    for record in records:
        assert FaceEvidence.model_validate_json(record.model_dump_json()) == record


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="fsp"):
        FaceOptions(fsp=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="'short', 'full' or 'auto'"):
        FaceOptions(detector="mtcnn")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must come after start"):
        FaceOptions(start=2.0, end=1.0)
    with pytest.raises(ValidationError, match="frozen"):
        FaceOptions().fps = 2.0  # type: ignore[misc]


def test_model_and_options_backend_must_agree(model: FaceModel, face_photo: Path) -> None:
    with pytest.raises(ConfigError, match="backend='deepface'"):
        analyze_face(face_photo, model=model, options=FaceOptions(backend="deepface"))


# The deepface backend: deepface's real loading and inference code on weights made here.


@pytest.fixture
def deepface_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("deepface")
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    return tmp_path


def test_deepface_backend_end_to_end(deepface_home: Path, face_photo: Path) -> None:
    import torch

    from affectgraph.tools.expression import deepface_weights

    weights = deepface_weights()
    if weights.suffix != ".pth":
        pytest.skip(f"deepface runs on another engine here ({weights.name})")
    from deepface.models.demography.pytorch.Emotion import EmotionModel

    weights.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(EmotionModel().state_dict(), weights)  # random weights, deepface's file format
    model = FaceModel.load(backend="deepface")
    (record,) = analyze_face(face_photo, model=model, options=FaceOptions(backend="deepface"))
    assert_valid_face(record)
    assert record.model.name == "deepface-emotion" and record.box is not None
    assert sorted(p.name for p in weights.parent.iterdir()) == [weights.name]  # nothing fetched


def test_deepface_missing_weights_names_the_path(deepface_home: Path) -> None:
    with pytest.raises(ModelUnavailable, match="facial_expression_model_weights") as error:
        FaceModel.load(backend="deepface")
    assert str(deepface_home / ".deepface" / "weights") in str(error.value)
    assert not (deepface_home / ".deepface").exists()  # and deepface did not start a download


def test_deepface_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "deepface" or m.startswith("deepface.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "deepface", None)
    with pytest.raises(ModelUnavailable, match=r"pip install 'affectgraph\[deepface\]'"):
        FaceModel.load(backend="deepface")
