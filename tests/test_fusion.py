"""The fusion aggregator: pooling, missing modalities, abstention, training, rationale."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from affectgraph.agents.aggregate import AggregateOptions, aggregate
from affectgraph.agents.fusion import FusionModel, FusionParams, Signals
from affectgraph.agents.fusion_data import HeldOut
from affectgraph.agents.fusion_training import (
    choose_threshold,
    cross_fit,
    fit,
    make_samples,
    scores_by,
)
from affectgraph.agents.verifier import verify_verdict
from affectgraph.analysis import Analysis
from affectgraph.labels import LABELS

REFERENCE = Path(__file__).parent / "reference" / "verifier_ravdess_clip.json"
MODALITIES = ("face", "voice", "text")


def peaked(label: str, p: float) -> dict[str, float]:
    rest = (1 - p) / (len(LABELS) - 1)
    return {c: p if c == label else rest for c in LABELS}


def params(**update) -> FusionParams:
    base = dict(model_weight={m: (0.5, 0.0) for m in MODALITIES},
                vote_weight={m: (0.0, 0.0) for m in MODALITIES}, label_bias={},
                abstain_below=0.3)
    return FusionParams(**(base | update))


@pytest.fixture(scope="module")
def shipped() -> FusionModel:
    return FusionModel.load()


@pytest.fixture(scope="module")
def reference() -> Analysis:
    return Analysis.model_validate_json(REFERENCE.read_text())


def test_a_missing_modality_has_no_term_rather_than_a_zero_filled_one() -> None:
    model = FusionModel(params())
    voice = Signals(peaked("angry", 0.6), None, 3.0)
    alone = model.fuse({"voice": voice})
    with_empty = model.fuse({"voice": voice, "face": Signals(None, None, 0.0)})
    assert alone is not None and with_empty is not None
    assert alone.distribution == with_empty.distribution
    assert alone.weights == {"voice": 1.0}
    assert model.fuse({}) is None


def test_agreeing_modalities_raise_confidence_and_disagreeing_ones_lower_it() -> None:
    model = FusionModel(params())
    voice = Signals(peaked("angry", 0.6), None, 3.0)
    alone = model.fuse({"voice": voice})
    agree = model.fuse({"voice": voice, "face": Signals(peaked("angry", 0.6), None, 1.0)})
    clash = model.fuse({"voice": voice, "face": Signals(peaked("happy", 0.6), None, 1.0)})
    assert agree.label == "angry" and agree.confidence > alone.confidence
    assert clash.confidence < alone.confidence
    assert agree.pull["voice"] > 0 and agree.pull["face"] > 0


def test_reliability_moves_the_weight_when_the_model_learned_it_should() -> None:
    model = FusionModel(params(model_weight={"face": (-1.0, 4.0), "voice": (0.5, 0.0),
                                             "text": (0.5, 0.0)}))
    few = model.weights("face", 0.1)[0]
    many = model.weights("face", 1.0)[0]
    assert many > 3 * few


def _synthetic_rows(n: int = 300, seed: int = 0) -> list[HeldOut]:
    """Voice right 80 % of the time, text noise: fusion must learn to trust the voice."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        said = label if rng.random() < 0.8 else rng.choice(LABELS)
        noise = rng.choice(LABELS)
        group = f"synthetic/speaker{i % 10}"
        rows += [HeldOut("voice", "synthetic", f"s{i}", group, label, peaked(said, 0.5), None, 2.0),
                 HeldOut("text", "synthetic", f"s{i}", group, label, peaked(noise, 0.5), None, 6.0)]
    return rows


def test_training_learns_to_trust_the_informative_modality() -> None:
    model = FusionModel(fit(make_samples(_synthetic_rows())))
    assert model.weights("voice", 2.0)[0] > 3 * model.weights("text", 6.0)[0]


def test_cross_fitting_scores_fusion_against_each_single_source() -> None:
    fitted = cross_fit(make_samples(_synthetic_rows()), folds=5)
    scores = scores_by(fitted, kind="real")
    assert set(scores) == {"fusion", "voice model", "text model"}
    assert scores["fusion"].war >= scores["voice model"].war - 0.02
    assert scores["text model"].war < 0.3
    threshold = choose_threshold(fitted)
    kept = fitted.confidence >= threshold
    assert 0.0 < kept.mean() < 1.0  # the noise-only (text alone) answers are abstained on
    assert fitted.correct[kept].mean() > 0.6 > 1 / 3 > fitted.correct[~kept].mean()


def test_the_shipped_model_records_its_data_and_held_out_scores(shipped: FusionModel) -> None:
    p = shipped.params
    assert {"ravdess_speech", "meld", "faces_web"} <= set(p.trained_on)
    assert 0 < p.abstain_below < 0.6
    assert p.metrics["ravdess_speech_fusion_uar"] > 0.4


def test_aggregating_real_evidence_gives_a_fully_grounded_verdict(
        reference: Analysis, shipped: FusionModel) -> None:
    verdict = aggregate(reference.evidence, reference.exemplars, reference.turns,
                        reference.media.duration, shipped)
    checked = verify_verdict(verdict, reference.evidence, reference.exemplars)
    assert checked.label == "happy"  # the clip is RAVDESS "happy"; the face carries it
    assert checked.grounding == 1.0 and not checked.rejected
    assert len(checked.rationale) >= 3
    assert abs(sum(checked.distribution.values()) - 1) < 1e-3
    assert set(checked.modality_weights) == {"face", "voice", "text"}
    assert checked.timeline and all(e.evidence for e in checked.timeline)
    first = checked.rationale[0].claim
    assert "face" in first.lower() and "[face:" in first  # strongest evidence first


def test_pooling_a_stretch_sees_exactly_the_records_overlapping_it(reference: Analysis) -> None:
    from affectgraph.agents.signals import Pooler, _weight, votes_of
    from affectgraph.evidence import TimeSpan

    votes = votes_of(reference.exemplars)
    pooler = Pooler(reference.evidence, votes)
    rng = random.Random(0)
    end = reference.media.duration
    spans = [TimeSpan(start=0.0, end=end), TimeSpan(start=end, end=end)] + [
        TimeSpan(start=a, end=b) for a, b in
        (sorted((rng.uniform(0, end + 1), rng.uniform(0, end + 1))) for _ in range(200))]
    for span in spans:
        everyone = [r for r in reference.evidence if _weight(r, span) > 0]
        pooled = pooler.pool(span)
        assert sorted(i for p in pooled.values() for i in p.records) == sorted(
            r.id for r in everyone if r.distribution)
        assert pooled == Pooler(everyone, votes).pool(span)  # same signals, same order


def test_conflicts_between_modalities_are_named(reference: Analysis) -> None:
    model = FusionModel(params())
    verdict = aggregate(reference.evidence, reference.exemplars, reference.turns,
                        reference.media.duration, model)
    conflicts = [s.claim for s in verdict.rationale if "disagree" in s.claim]
    assert conflicts and all(claim.count("[") == 2 for claim in conflicts)


def test_abstention_says_why(reference: Analysis) -> None:
    model = FusionModel(params())
    verdict = aggregate(reference.evidence, reference.exemplars, reference.turns,
                        reference.media.duration, model,
                        options=AggregateOptions(abstain_below=0.99))
    assert verdict.label is None and verdict.abstained
    assert "p=" in verdict.abstention and "0.99" in verdict.abstention
    weak = FusionModel(params()).fuse({"voice": Signals(peaked("sad", 0.2), None, 1.0)})
    assert weak is not None and weak.abstain


def test_a_failed_specialist_is_named_and_the_others_carry_the_verdict(
        reference: Analysis, shipped: FusionModel) -> None:
    no_face = [e for e in reference.evidence if e.modality != "face"]
    verdict = aggregate(no_face, [e for e in reference.exemplars if not
                                  e.evidence_id.startswith("face")], reference.turns,
                        reference.media.duration, shipped,
                        missing={"face": "RuntimeError: the face model crashed"})
    assert "face" not in verdict.modality_weights
    assert "face: RuntimeError" in verdict.note and "rests on text, voice" in verdict.note


def test_nothing_to_fuse_abstains() -> None:
    verdict = aggregate([], [], [], 3.0, FusionModel(params()),
                        missing={"face": "the file has no video stream"})
    assert verdict.label is None and "no specialist" in verdict.abstention
    assert "no video stream" in verdict.abstention
