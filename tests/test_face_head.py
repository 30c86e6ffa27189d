"""The face head (trained correction of fer), the face specialist's views, and face training."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from affectgraph.datasets import Item, load_dataset
from affectgraph.errors import ConfigError
from affectgraph.heads.artefact import Head
from affectgraph.heads.combination import WEIGHTS
from affectgraph.heads.face import EMBEDDING_DIM, INPUT_DIM, FaceHead, head_input, pooled
from affectgraph.heads.face_training import (
    LICENCES,
    FaceHeadOptions,
    FaceSet,
    ViewVectoriser,
    _fer,
    _fold,
    _held_out_votes,
    _manifest,
    _weight,
    cross_validate,
    face_set,
    face_vectors,
    fit_head,
    frame_items,
    scores_of,
)
from affectgraph.labels import LABELS, Emotion
from affectgraph.tools.face import (
    FaceModel,
    FaceOptions,
    analyze_face,
    crop_face,
    face_region,
    face_views,
)

SMALL = FaceHeadOptions(hidden=8, ensemble=2, epochs=10, folds=3)
VIEWS = FaceOptions(augment=True)
HEAD = FaceOptions(augment=True, head=True)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fer() -> FaceModel:
    return FaceModel.load()


@pytest.fixture(scope="module")
def small_sets(fer: FaceModel, tmp_path_factory: pytest.TempPathFactory) -> list[FaceSet]:
    """Every 4th faces_web photo (detected) and every 12th FER2013 crop, read afresh."""
    cache = tmp_path_factory.mktemp("features")
    return [face_set("faces_fer2013", load_dataset("faces_fer2013")[::12], fer, folds=3,
                     cache=cache),
            face_set("faces_web", load_dataset("faces_web")[::4], fer, folds=3, cache=cache)]


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_shipped_head_beats_fer_on_faces_web_and_records_licences() -> None:
    head = FaceHead.load()
    manifest = head.head.manifest
    assert manifest.trained_on == {
        "faces_fer2013": "research use (Kaggle challenge data)",
        "faces_web": "third-party images, research use",
    }
    assert manifest.classes == LABELS and manifest.dim == INPUT_DIM == 135
    metrics = {k: float(v) for k, v in manifest.metrics.items()}
    assert metrics["faces_web/head/war"] >= 0.50 > metrics["faces_web/fer/war"]
    assert metrics["faces_fer2013/head/war"] >= 0.66
    # The measured reason it is off by default: on video frames of an unseen source it loses.
    assert metrics["ravdess_av/head/war"] < metrics["ravdess_av/fer-views/war"]
    assert head.ref.name == "face-head" and head.ref.revision == manifest.weights_sha256[:12]
    assert 0.5 < head.head.temperature < 2.0


def test_folded_head_is_fer_plus_the_mean_of_its_mlps() -> None:
    rng = np.random.default_rng(0)
    inputs = np.hstack([rng.normal(size=(20, EMBEDDING_DIM)),
                        np.log(rng.dirichlet(np.ones(len(LABELS)), size=20))])
    mean, scale = inputs.mean(axis=0), inputs.std(axis=0)
    x = (inputs - mean) / scale
    nets = [(rng.normal(size=(INPUT_DIM, h)), rng.normal(size=h), rng.normal(size=(h, 7)),
             rng.normal(size=7)) for h in (3, 5)]
    W1, b1, W, b = _fold(nets, mean[EMBEDDING_DIM:], scale[EMBEDDING_DIM:])
    head = Head(manifest=_manifest({}), mean=mean, scale=scale, W=W, b=b, W1=W1, b1=b1)
    expected = inputs[:, EMBEDDING_DIM:] + np.mean(
        [np.maximum(x @ w1 + c1, 0) @ w2 + c2 for w1, c1, w2, c2 in nets], axis=0)
    np.testing.assert_allclose(head.logits(inputs), expected, atol=1e-9)
    # With nothing learned the head is fer: its probabilities come back unchanged.
    silent = [(w1, c1, np.zeros_like(w2), np.zeros_like(c2)) for w1, c1, w2, c2 in nets]
    W1, b1, W, b = _fold(silent, mean[EMBEDDING_DIM:], scale[EMBEDDING_DIM:])
    fer_only = Head(manifest=head.manifest, mean=mean, scale=scale, W=W, b=b, W1=W1, b1=b1)
    np.testing.assert_allclose(fer_only.predict_proba(inputs), np.exp(inputs[:, EMBEDDING_DIM:]),
                               atol=1e-9)


def test_face_views_are_shifted_and_mirrored(face_photo: Path) -> None:
    image = rgb(face_photo)
    views = face_views(image, (300.0, 10.0, 100.0, 80.0))  # reaches past the right border
    assert len(views) == 10 and all(v.shape == (80, 100, 3) for v in views)
    for view, mirror in zip(views[::2], views[1::2], strict=True):
        np.testing.assert_array_equal(view[:, ::-1], mirror)
    np.testing.assert_array_equal(views[2][:, :-5], views[0][:, 5:])  # shifted 5 px right
    np.testing.assert_array_equal(views[0][:, -50:], np.repeat(image[10:90, -1:], 50, axis=1))


def test_augment_averages_views_and_keeps_the_crop_embedding(
    fer: FaceModel, face_photo: Path
) -> None:
    image = rgb(face_photo)
    (box,) = fer.detect(image)
    (single,) = fer.analyze_image(image)
    (averaged,) = fer.analyze_image(image, VIEWS)
    # The default is the specialist as it was: fer on the square crop.
    (crop,) = fer.classify([crop_face(image, box, 0.0)])
    assert single.expression.distribution == pytest.approx(crop.distribution)
    np.testing.assert_array_equal(averaged.expression.embedding, crop.embedding)
    views = fer.classify(face_views(image, face_region(box, 0.0)))
    assert averaged.expression.distribution == pytest.approx(pooled(views)[0])
    assert averaged.expression.distribution != pytest.approx(crop.distribution, abs=1e-3)


def test_specialist_with_head_matches_training_features(face_photo: Path) -> None:
    model = FaceModel.load(head=True)
    (record,) = analyze_face(face_photo, model=model, options=HEAD)
    assert record.model.name == "fer-mini-xception+face-head"
    assert record.model.revision.endswith("+" + FaceHead.load().ref.revision)
    # The vector training reads for this photo gives the same distribution through the head.
    item = Item(id="photo", label=Emotion.ANGRY, dataset="test", path=face_photo)
    (vector,) = ViewVectoriser(model, cropped=False).vectorise([item])
    assert isinstance(vector, np.ndarray) and vector.shape == (INPUT_DIM + 7,)
    assert model.head is not None and record.distribution is not None
    expected = model.head.head.predict_proba(vector[:INPUT_DIM])[0]
    assert [record.distribution[k] for k in LABELS] == pytest.approx(expected, abs=1e-6)
    (plain,) = analyze_face(face_photo, model=model, options=VIEWS)
    assert plain.model.name == "fer-mini-xception" and plain.distribution != record.distribution


def test_head_options_are_checked(fer: FaceModel, face_photo: Path) -> None:
    with pytest.raises(ValidationError, match="needs head=False"):
        FaceOptions(backend="deepface", augment=True, head=True)
    with pytest.raises(ValidationError, match="needs augment=True"):
        FaceOptions(head=True)
    with pytest.raises(ConfigError, match="loaded without it"):
        analyze_face(face_photo, model=fer, options=HEAD)
    with pytest.raises(ConfigError, match="head=False"):
        FaceModel.load(backend="deepface", head=True)


def test_head_input_is_embedding_then_log_probabilities() -> None:
    distribution = dict.fromkeys(LABELS, 0.0) | {"happy": 1.0}
    x = head_input(distribution, np.ones(EMBEDDING_DIM))
    assert x.shape == (INPUT_DIM,) and (x[:EMBEDDING_DIM] == 1).all()
    assert x[EMBEDDING_DIM + LABELS.index("happy")] == 0.0
    assert x[EMBEDDING_DIM] == pytest.approx(np.log(1e-6))  # floor, not -inf


def test_small_real_training_run(small_sets: list[FaceSet]) -> None:
    fer2013, web = small_sets
    assert fer2013.ok.all() and web.ok.mean() > 0.95
    people = [{i.speaker for i, f in zip(load_dataset("faces_web")[::4], web.folds, strict=True)
               if f == k} for k in range(3)]
    assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
    held_out = cross_validate(small_sets, SMALL)
    assert np.isnan(held_out[1][~web.ok]).all() and np.isfinite(held_out[1][web.ok]).all()
    scores = scores_of(small_sets, held_out)
    assert set(scores) == {f"{s}/{m}" for s in ("faces_fer2013", "faces_web")
                           for m in ("fer", "fer-views", "head")}
    assert scores["faces_web/fer"].n == web.labels.size
    # Trained on these items, the head fits faces_web far better than fer does; and training
    # is deterministic.
    inputs = np.vstack([s.inputs[s.ok] for s in small_sets])
    labels = np.concatenate([s.labels[s.ok] for s in small_sets])
    options = FaceHeadOptions(hidden=16, ensemble=1, epochs=60)
    head = fit_head(inputs, labels, options, _manifest({}))
    fitted = (head.logits(web.inputs[web.ok]).argmax(1) == web.labels[web.ok]).mean()
    assert fitted > scores["faces_web/fer-views"].war + 0.1
    again = fit_head(inputs, labels, options, _manifest({}))
    np.testing.assert_array_equal(head.W, again.W)


def test_votes_come_from_other_people_and_the_weight_from_other_folds(
    small_sets: list[FaceSet], tmp_path: Path
) -> None:
    items = [load_dataset("faces_fer2013")[::12], load_dataset("faces_web")[::4]]
    vectors = [face_vectors(s.name, i, cache=tmp_path) for s, i in zip(small_sets, items,
                                                                        strict=True)]
    web = small_sets[1]
    votes = _held_out_votes(small_sets, vectors, 1, range(3))
    assert np.isfinite(votes[vectors[1][1]]).all() and np.isnan(votes[~vectors[1][1]]).all()
    np.testing.assert_allclose(votes[vectors[1][1]].sum(axis=1), 1.0)
    # a photo never votes for itself: with unrelated random vectors, a photo in its own library
    # (similarity 1) would carry its own label; left out, the votes are near chance
    unrelated = np.random.default_rng(0).normal(size=vectors[1][0].shape)
    random_votes = _held_out_votes(small_sets, [vectors[0], (unrelated, vectors[1][1])], 1,
                                   range(3))
    assert (random_votes.argmax(axis=1) == web.labels).mean() < 0.5
    weight = _weight(small_sets, vectors, 1, [0, 1], exclude=[2])
    assert weight in WEIGHTS
    fer = _fer(web)
    assert np.isnan(fer[~web.ok]).all() and np.allclose(fer[web.ok].sum(axis=1), 1.0)


def test_frame_items_follow_the_specialists_sampling(ravdess_clip: Path) -> None:
    (clip,) = [i for i in load_dataset("ravdess_av") if i.path == ravdess_clip]
    frames = frame_items([clip])
    assert len(frames) == 17  # 3.24 s at 5 fps, as analyze_face samples it
    assert frames[1].start == pytest.approx(0.2) and frames[1].id.endswith("@0.20")


@pytest.mark.slow
def test_train_face_reproduces_the_shipped_head(tmp_path: Path) -> None:
    from rich.console import Console

    from affectgraph.commands.train_face import train_face

    console = Console(record=True, width=120)
    scores = train_face(out=tmp_path / "face", evaluate=True, console=console)
    text = console.export_text()
    assert "faces_web" in text and "Recall per class" in text and "ravdess_av" in text
    assert "kNN vote" in text and "combination" in text
    assert scores["faces_web/head"].war >= 0.50 and scores["faces_fer2013/head"].war >= 0.66
    assert set(LICENCES) <= {k.split("/")[0] for k in scores}
    trained, shipped = Head.load(tmp_path / "face"), FaceHead.load().head
    np.testing.assert_allclose(trained.W, shipped.W, atol=1e-6)
    assert trained.manifest.metrics == shipped.manifest.metrics
