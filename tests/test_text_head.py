"""The text emotion head: the shipped artefact, the model on clear sentences, and training on a
small real subset of GoEmotions, MELD and EmoryNLP."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from affectgraph.evidence import top
from affectgraph.features import TextVectoriser, TunedTextVectoriser
from affectgraph.heads.artefact import Head
from affectgraph.heads.combination import WEIGHTS
from affectgraph.heads.text import HEAD_NAME, MiniLMHeadTextEmotion, shipped_head_path
from affectgraph.heads.text_encoder import ENCODER_FILE, TuningOptions, file_revision
from affectgraph.heads.text_training import (
    LICENCES,
    TextData,
    TextHeadOptions,
    allowed_classes,
    holdout_mask,
    train_text_head,
)
from affectgraph.labels import LABELS
from affectgraph.models import ModelRegistry
from affectgraph.tools.text_emotion import TextEmotionModel

CLEAR = [
    ("I am so happy today!", "happy"),
    ("I love this, it is wonderful!", "happy"),
    ("I am so sad and lonely", "sad"),
    ("He passed away last night.", "sad"),
    ("I hate you, get out!", "angry"),
    ("I'm terrified of what might happen.", "fearful"),
    ("That smell is revolting, yuck", "disgusted"),
    ("Wow, I did not expect that at all!", "surprised"),
    ("The meeting is at three.", "neutral"),
]


@pytest.fixture(scope="module")
def model() -> MiniLMHeadTextEmotion:
    return MiniLMHeadTextEmotion.load()


def test_shipped_head_records_its_data_licences_and_scores() -> None:
    head = Head.load(shipped_head_path())
    manifest = head.manifest
    assert manifest.name == HEAD_NAME and manifest.modality == "text"
    assert manifest.classes == LABELS and manifest.dim == 384
    assert manifest.features == TunedTextVectoriser.name  # MiniLM, top layers tuned
    minilm = ModelRegistry.default().get("minilm-l6-v2").revision
    encoder = shipped_head_path() / ENCODER_FILE
    assert manifest.features_revision == f"{minilm}+{file_revision(encoder)}"
    assert manifest.trained_on == LICENCES
    assert "GPL-3.0" in manifest.trained_on["meld"]
    assert manifest.trained_on["goemotions"] == "Apache-2.0"
    for data_set in ("meld_dev", "emorynlp_dev", "goemotions_test"):
        for metric in ("war", "uar", "macro_f1", "weighted_f1"):
            assert 0.0 < float(manifest.metrics[f"{data_set}_{metric}"]) < 1.0
    assert float(manifest.metrics["meld_dev_weighted_f1"]) > 0.5
    assert float(manifest.metrics["retrieval_weight"]) in WEIGHTS
    assert sum(p.stat().st_size for p in shipped_head_path().iterdir()) < 7_000_000


def test_shipped_head_gives_distributions(model: MiniLMHeadTextEmotion) -> None:
    out = model.predict([text for text, _ in CLEAR])
    for distribution in out:
        assert distribution is not None and set(distribution) == set(LABELS)
        assert sum(distribution.values()) == pytest.approx(1.0)
        assert all(0.0 <= p <= 1.0 for p in distribution.values())


@pytest.mark.parametrize(("text", "label"), CLEAR)
def test_clear_sentences_get_their_emotion(model: MiniLMHeadTextEmotion, text: str,
                                           label: str) -> None:
    (distribution,) = model.predict([text])
    assert distribution is not None
    assert top(distribution)[0] == label


def test_texts_without_words_get_no_distribution(model: MiniLMHeadTextEmotion) -> None:
    out = model.predict(["", "   ", "?!", "I am so happy today!", "..."])
    assert out[0] is None and out[1] is None and out[2] is None and out[4] is None
    assert out[3] is not None and top(out[3])[0] == "happy"
    assert model.predict([]) == []


def test_model_is_a_text_emotion_model(model: MiniLMHeadTextEmotion) -> None:
    assert isinstance(model, TextEmotionModel)
    assert model.name == "minilm-head"
    assert model.revision == model.head.manifest.weights_sha256[:12] and len(model.revision) == 12


def test_emorynlp_rows_only_compete_among_its_five_classes() -> None:
    allowed = allowed_classes(np.array(["emorynlp", "meld", "goemotions"]))
    assert dict(zip(LABELS, allowed[0], strict=True)) == {
        "neutral": True, "happy": True, "sad": True, "angry": True, "fearful": True,
        "disgusted": False, "surprised": False}
    assert allowed[1].all() and allowed[2].all()


def test_calibration_rows_are_blocks_of_conversation() -> None:
    sets = np.array(["goemotions"] * 500 + ["meld"] * 1000 + ["emorynlp"] * 1000)
    data = TextData(np.zeros((len(sets), 2), np.float32), np.zeros(len(sets), np.int64), sets)
    held = holdout_mask(data, 0.2, seed=0)
    assert not held[:500].any()
    assert 0.1 < held[500:].mean() < 0.3
    blocks = held[500:1500].reshape(-1, 50)
    assert (blocks.all(axis=1) | ~blocks.any(axis=1)).all()


# -- training on a small real subset -----------------------------------------------------------

def _subset_root(data_dir: Path, root: Path, rows: dict[str, int]) -> Path:
    """A data folder holding the first rows of each real text file."""
    ekman = data_dir / "text" / "goemotions" / "data" / "ekman"
    out = root / "text" / "goemotions" / "data" / "ekman"
    out.mkdir(parents=True)
    (out / "labels.txt").write_text((ekman / "labels.txt").read_text())
    for split in ("train", "dev", "test"):
        lines = (ekman / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (out / f"{split}.tsv").write_text("".join(lines[:rows[f"goemotions_{split}"]]),
                                          encoding="utf-8")
    for name, files in {"meld": ("train_sent_emo.csv", "dev_sent_emo.csv"),
                        "emorynlp": ("emorynlp_train_final.csv", "emorynlp_dev_final.csv")}.items():
        (root / "text" / name).mkdir(parents=True)
        for file, split in zip(files, ("train", "dev"), strict=True):
            with (data_dir / "text" / name / file).open(newline="", encoding="utf-8") as fh:
                kept = list(itertools.islice(csv.reader(fh), 1 + rows[f"{name}_{split}"]))
            with (root / "text" / name / file).open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerows(kept)
    return root


def test_training_on_a_small_real_subset_beats_chance(data_dir: Path, tmp_path: Path) -> None:
    rows = {"goemotions_train": 700, "goemotions_dev": 0, "goemotions_test": 250,
            "meld_train": 600, "meld_dev": 250, "emorynlp_train": 500, "emorynlp_dev": 200}
    root = _subset_root(data_dir, tmp_path / "data", rows)
    options = TextHeadOptions(members=1, hidden=128, epochs=15, holdout=0.2,
                              tuning=TuningOptions(layers=0))
    head, report = train_text_head(root, out=tmp_path / "head", options=options)
    assert report.encoder is None and not (tmp_path / "head" / ENCODER_FILE).exists()
    assert head.manifest.features == TextVectoriser.name

    assert set(report.counts) == {"goemotions", "meld", "emorynlp"}
    assert 1400 < sum(report.counts.values()) <= 1800
    assert 0.25 <= report.temperature <= 8.0
    meld, emory, goemotions = (report.evaluation[k] for k in
                               ("meld_dev", "emorynlp_dev", "goemotions_test"))
    assert meld.n == 250 and emory.n > 150 and goemotions.n > 150
    # always answering neutral gets UAR 1/7 (1/5 on EmoryNLP) and a neutral-share WAR
    assert meld.uar > 1 / 7 + 0.05 and goemotions.uar > 1 / 7 + 0.05 and emory.uar > 0.2
    neutral_share = meld.per_class["neutral"].support / meld.n
    assert meld.war > neutral_share

    # the vote weight comes from the calibration rows; dev only scores the three ways
    assert report.retrieval_weight in WEIGHTS
    assert set(report.comparison) == {"meld_dev", "emorynlp_dev"}
    for key, comparison in report.comparison.items():
        assert comparison.head.weighted_f1 == pytest.approx(report.evaluation[key].weighted_f1)
        assert comparison.weights == (report.retrieval_weight,)
        assert comparison.knn.n == comparison.combined.n == report.evaluation[key].n
    assert report.comparison["meld_dev"].knn.uar > 1 / 7

    loaded = Head.load(tmp_path / "head")
    assert loaded.manifest.trained_on == LICENCES
    assert loaded.manifest.metrics["retrieval_weight"] == report.retrieval_weight
    assert "meld_dev_combined_weighted_f1" in loaded.manifest.metrics
    assert loaded.manifest.metrics["meld_dev_weighted_f1"] == pytest.approx(meld.weighted_f1,
                                                                           abs=1e-4)
    probe = np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32)
    assert np.allclose(loaded.predict_proba(probe), head.predict_proba(probe), atol=1e-5)


@pytest.mark.slow
def test_tuned_encoder_is_stored_small_and_loaded_with_the_head(data_dir: Path,
                                                                 tmp_path: Path) -> None:
    rows = {"goemotions_train": 150, "goemotions_dev": 0, "goemotions_test": 40,
            "meld_train": 200, "meld_dev": 60, "emorynlp_train": 150, "emorynlp_dev": 60}
    root = _subset_root(data_dir, tmp_path / "data", rows)
    options = TextHeadOptions(members=1, hidden=32, epochs=5, holdout=0.2,
                              tuning=TuningOptions(epochs=1, goemotions_rows=60))
    head, report = train_text_head(root, out=tmp_path / "head", options=options)
    encoder = tmp_path / "head" / ENCODER_FILE
    assert report.encoder == tmp_path / "head" and encoder.is_file()
    assert encoder.stat().st_size < 4_500_000  # two layers' changes as int8
    assert head.manifest.features == TunedTextVectoriser.name

    # the model loads the tuned layers with the head and computes the training embeddings
    model = MiniLMHeadTextEmotion.load(tmp_path / "head")
    assert isinstance(model.encoder, TunedTextVectoriser)
    assert model.encoder.revision == head.manifest.features_revision
    # .vectoriser stays plain MiniLM: callers search the exemplar libraries with it
    assert type(model.vectoriser) is TextVectoriser
    assert not isinstance(model.encoder, TextVectoriser)
    texts = ["I can't believe you did that!", "Okay, see you tomorrow."]
    tuned, plain = model.encoder.embed(texts), model.vectoriser.embed(texts)
    assert tuned.shape == (2, 384) and np.allclose(np.linalg.norm(tuned, axis=1), 1, atol=1e-5)
    assert not np.allclose(tuned, plain, atol=1e-3)  # the top layers did change
    dists = model.predict(texts)
    expected = head.predict_proba(tuned)
    assert np.allclose([[d[c] for c in LABELS] for d in dists if d], expected, atol=1e-5)
    # the plain MiniLM the exemplar libraries use is left as it was
    assert np.allclose(TextVectoriser().embed(texts), plain, atol=1e-6)
