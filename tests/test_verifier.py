"""The verifier against real evidence: true claims generated from a real analysis are all
grounded, and every systematic corruption of them is rejected with a reason naming the problem.

The evidence is ``tests/reference/verifier_ravdess_clip.json``: the :class:`Analysis` of the real
clip of the ``ravdess_clip`` fixture (17 face frames, one voice turn, one transcript segment) with
the exemplars retrieved for ``face:5``, ``voice:0`` and ``text:0`` from the default libraries.
Running the analysis takes ~15 s, so the fast tests read it from there; regenerate it with
``python -m tests.test_verifier`` after changing a specialist. The slow test reruns the real
analysis, checks it still matches, and checks the claims generated from it.

Claims are templates with typed slots (times, numbers, emotions, citations, quotes), so each
corruption changes exactly one slot: an invented id, an id past the last record, an id of
another modality, a time moved outside the evidence, an emotion the evidence does not support, a
number beyond tolerance, a negation of what the evidence shows most, a fake quote, or no
citation at all. Edge cases use records built by hand.
"""

from __future__ import annotations

import math
import random
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from affectgraph.agents import verifier as verifier_module
from affectgraph.agents.verifier import Tolerances, Verifier, grounding, verify_verdict
from affectgraph.analysis import Analysis
from affectgraph.evidence import (
    FaceEvidence,
    ModelRef,
    Prosody,
    TimeSpan,
    TranscriptEvidence,
    VoiceEvidence,
    normalise,
    top,
)
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, RationaleStep, Verdict, expand_ids

REFERENCE = Path(__file__).parent / "reference" / "verifier_ravdess_clip.json"
RETRIEVED_FOR = ("face:5", "voice:0", "text:0")

ADJECTIVE = {c: c for c in LABELS}
NOUN = {"neutral": "calm", "happy": "happiness", "sad": "sadness", "angry": "anger",
        "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
ADVERB = {"neutral": "calmly", "happy": "happily", "sad": "sadly", "angry": "angrily",
          "fearful": "fearfully", "disgusted": "disgustedly", "surprised": "with surprise"}
COMPARATIVE = {"neutral": "calmer", "happy": "happier", "sad": "sadder", "angry": "angrier"}
FORMS = {"adjective": ADJECTIVE, "noun": NOUN, "adverb": ADVERB, "comparative": COMPARATIVE}


# -- the evidence ----------------------------------------------------------------------------

def load_reference() -> Analysis:
    return Analysis.model_validate_json(REFERENCE.read_text())


def regenerate(analysis: Analysis | None = None) -> None:
    """Store the real analysis of the clip (rerun unless given) with the exemplars retrieved
    for :data:`RETRIEVED_FOR` from the default libraries as the reference (~25 s)."""
    from affectgraph.api import Analyzer
    from affectgraph.features import vectoriser
    from affectgraph.retrieval.defaults import default_library
    from affectgraph.retrieval.search import retrieve

    clip = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess_av" / "mp4" / (
        "01-01-03-01-01-02-05.mp4")
    analysis = analysis or Analyzer().analyze(clip)
    exemplars = []
    for evidence_id in RETRIEVED_FOR:
        record = analysis.get(evidence_id)
        found = retrieve(record, default_library(record.modality), vectoriser(record.modality))
        exemplars += [Exemplar(id=n.id, label=n.label, similarity=n.similarity,
                               evidence_id=evidence_id, library=found.library,
                               speaker=n.speaker, text=n.text) for n in found.neighbours]
    stored = analysis.model_copy(update={"exemplars": exemplars, "verdict": None})
    REFERENCE.write_text(stored.model_dump_json(indent=1) + "\n")


# -- claims as templates with typed slots ----------------------------------------------------

@dataclass(frozen=True)
class Time:
    seconds: float

    def render(self) -> str:
        return f"{self.seconds:.1f}"


@dataclass(frozen=True)
class Number:
    """A number with a unit: ``kind`` is p, percent, measured or count (``of`` the total)."""

    kind: str
    value: float
    of: int | None = None
    digits: int = 1

    def render(self) -> str:
        if self.kind == "count":
            return f"{int(self.value)} of {self.of}"
        if self.kind == "percent":
            return f"{100 * self.value:.0f}%"
        return f"{self.value:.{self.digits}f}"


@dataclass(frozen=True)
class Emotion:
    label: str
    form: str
    about: tuple[str, ...]  # the ids the emotion is attributed to
    negated: bool = False

    def render(self) -> str:
        return FORMS[self.form][self.label]


@dataclass(frozen=True)
class Cite:
    ids: tuple[str, ...]

    def render(self) -> str:
        return ", ".join(self.ids)


@dataclass(frozen=True)
class Quote:
    text: str

    def render(self) -> str:
        return self.text


Slot = Time | Number | Emotion | Cite | Quote


@dataclass(frozen=True)
class Claim:
    name: str
    template: str
    slots: dict[str, Slot]

    def step(self) -> RationaleStep:
        text = self.template.format(**{k: s.render() for k, s in self.slots.items()})
        cites = [i for s in self.slots.values() if isinstance(s, Cite) for i in s.ids]
        return RationaleStep(claim=text, cites=cites)

    def with_slot(self, key: str, slot: Slot) -> Claim:
        return replace(self, slots={**self.slots, key: slot})


class Facts:
    """What the evidence shows, computed here independently of the verifier."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.records = {r.id: r for r in analysis.evidence}
        self.exemplars = {e.citation: e for e in analysis.exemplars}

    def dists(self, ids: tuple[str, ...]) -> list[dict[str, float]]:
        out = [self.records[i].distribution for i in expand_ids(ids)
               if i in self.records and self.records[i].distribution]
        out += [{c: float(c == self.exemplars[i].label) for c in LABELS}
                for i in ids if i in self.exemplars]
        return out

    def mean(self, ids: tuple[str, ...]) -> dict[str, float]:
        dists = self.dists(ids)
        return {c: sum(d[c] for d in dists) / len(dists) for c in LABELS}

    def supports(self, label: str, ids: tuple[str, ...]) -> bool:
        mean, tops = self.mean(ids), [top(d)[0] for d in self.dists(ids)]
        return top(mean)[0] == label or mean[label] >= 0.2 or tops.count(label) >= len(tops) / 3

    def unsupported(self, ids: tuple[str, ...], among: Iterable[str] = LABELS) -> str:
        mean = self.mean(ids)
        label = min(among, key=lambda c: mean[c])
        assert not self.supports(label, ids)
        return label

    def probabilities(self, ids: tuple[str, ...]) -> list[float]:
        """Every probability-like value of the cited records and exemplars."""
        out: list[float] = list(self.mean(ids).values()) if self.dists(ids) else []
        for d in self.dists(ids):
            out += d.values()
        for i in expand_ids(ids):
            r = self.records.get(i)
            if r is None:
                out.append(self.exemplars[i].similarity)
                continue
            out += [v for v in (r.confidence, getattr(r, "detection_score", None),
                                getattr(r, "asr_confidence", None)) if v is not None]
            if isinstance(r, VoiceEvidence) and r.prosody:
                out.append(r.prosody.pause_ratio)
        return out

    def measures(self, ids: tuple[str, ...]) -> list[float]:
        """Every prosody value of the cited voice turns."""
        return [v for i in expand_ids(ids) if isinstance(r := self.records.get(i), VoiceEvidence)
                and r.prosody for v in r.prosody.model_dump().values() if v is not None]

    def span(self, ids: tuple[str, ...]) -> tuple[float, float]:
        spans = [self.records[i].span for i in expand_ids(ids)]
        return min(s.start for s in spans), max(s.end for s in spans)


def longest_run(records: list[Any]) -> list[Any]:
    """The longest run of consecutive records with the same top label."""
    best: list[Any] = []
    run: list[Any] = []
    for r in records:
        run = [*run, r] if run and run[-1].label == r.label else [r]
        best = run if len(run) > len(best) else best
    return best


def run_id(records: list[Any]) -> str:
    first, last = records[0].id, records[-1].id.split(":")[1]
    return first if len(records) == 1 else f"{first}-{last}"


def true_claims(analysis: Analysis) -> list[Claim]:
    """Claims every one of which the evidence supports, from templates over the evidence."""
    facts = Facts(analysis)
    return [*_face_claims(facts), *_voice_claims(facts), *_text_claims(facts),
            *_exemplar_claims(facts)]


def _face_claims(facts: Facts) -> Iterator[Claim]:
    faces = [f for f in facts.analysis.of("face") if f.distribution]
    if not faces:
        return
    every = (run_id(faces),)
    tops = [f.label for f in faces]
    common = max(LABELS, key=tops.count)
    run = longest_run(faces)
    ids = (run_id(run),)
    start, end = facts.span(ids)
    label = run[0].label
    yield Claim("face_count", "the face shows {e} in {n} frames [{c}]", {
        "e": Emotion(common, "noun", every),
        "n": Number("count", tops.count(common), len(faces)), "c": Cite(every)})
    yield Claim("face_run", "the face is {e} from {t0} to {t1} s [{c}]", {
        "e": Emotion(label, "adjective", ids), "t0": Time(start), "t1": Time(end),
        "c": Cite(ids)})
    yield Claim("face_p", "over {t0}-{t1} s the face model gives p={p} to {e} [{c}]", {
        "t0": Time(start), "t1": Time(end), "p": Number("p", facts.mean(ids)[label], digits=2),
        "e": Emotion(label, "adjective", ids), "c": Cite(ids)})
    one = max(faces, key=lambda f: f.confidence or 0.0)
    single = (one.id,)
    yield Claim("face_percent", "at {t} s the face shows {pc} {e} [{c}]", {
        "t": Time(one.span.start + 0.05), "pc": Number("percent", one.distribution[one.label]),
        "e": Emotion(one.label, "noun", single), "c": Cite(single)})
    yield Claim("face_found", "a face was found in {n} frames [{c}]", {
        "n": Number("count", len(faces), len(facts.analysis.of("face"))), "c": Cite(every)})
    least = min(LABELS, key=lambda c: facts.mean(every)[c])
    yield Claim("face_negation", "the face shows no {e} [{c}]", {
        "e": Emotion(least, "noun", every, negated=True), "c": Cite(every)})
    yield Claim("face_adverb", "the face reacts {e} at {t} s [{c}]", {
        "e": Emotion(one.label, "adverb", single), "t": Time(one.span.end - 0.05),
        "c": Cite(single)})
    for label in COMPARATIVE:
        hi, lo = (max(faces, key=lambda f: f.distribution[label] * s)  # type: ignore[index]
                  for s in (1, -1))
        pair = (hi.id, lo.id)
        if hi is not lo and facts.supports(label, pair):
            yield Claim(f"face_{COMPARATIVE[label]}", "the face is {e} at {t1} s than at {t0} s "
                        "[{c}]", {"e": Emotion(label, "comparative", pair), "c": Cite(pair),
                                  "t1": Time(hi.span.start), "t0": Time(lo.span.start)})
    mean = facts.mean(every)
    yield Claim("builder_face", "The face shows {e} in {n} sampled frames (mean p={p}) at "
                "{t0}-{t1} s [{c}]", {
                    "e": Emotion(top(mean)[0], "noun", every),
                    "n": Number("count", tops.count(top(mean)[0]), len(faces)),
                    "p": Number("p", top(mean)[1], digits=2),
                    "t0": Time(facts.span(every)[0]), "t1": Time(facts.span(every)[1]),
                    "c": Cite(every)})


def _voice_claims(facts: Facts) -> Iterator[Claim]:
    for turn in facts.analysis.of("voice"):
        if not turn.prosody or not turn.distribution:
            continue
        ids, p = (turn.id,), turn.prosody
        t0, t1 = Time(turn.span.start), Time(turn.span.end)
        if p.pitch_range_st is not None:
            yield Claim("pitch_range", "the voice's pitch range widened to {v} semitones at "
                        "{t0}-{t1} s [{c}]", {"v": Number("measured", p.pitch_range_st),
                                              "t0": t0, "t1": t1, "c": Cite(ids)})
        if p.pitch_mean_hz is not None and p.pitch_mean_st is not None:
            yield Claim("pitch_mean", "the voice's mean pitch was {hz} Hz ({st} semitones) [{c}]",
                        {"hz": Number("measured", p.pitch_mean_hz, digits=0),
                         "st": Number("measured", p.pitch_mean_st), "c": Cite(ids)})
        yield Claim("speaking_rate", "the voice's speaking rate was {v} syllables/s [{c}]", {
            "v": Number("measured", p.speaking_rate), "c": Cite(ids)})
        yield Claim("loudness", "the voice's loudness averaged {v} sones [{c}]", {
            "v": Number("measured", p.loudness, digits=2), "c": Cite(ids)})
        yield Claim("pauses", "pauses take {v} of the voice's turn [{c}]", {
            "v": Number("percent", p.pause_ratio), "c": Cite(ids)})
        yield Claim("voice_label", "the voice sounds {e} (p={p}) [{c}]", {
            "e": Emotion(turn.label, "adjective", ids),
            "p": Number("p", turn.distribution[turn.label], digits=2), "c": Cite(ids)})
        yield Claim("voice_duration", "the voice's turn lasts {d} s [{c}]", {
            "d": Time(turn.span.duration), "c": Cite(ids)})
        if p.pitch_mean_hz is not None and p.pitch_range_st is not None:
            yield Claim("builder_prosody", "The voice has pitch around {hz} Hz, a pitch range of "
                        "{st} semitones, loudness {l} sones, {r} syllables/s [{c}]", {
                            "hz": Number("measured", p.pitch_mean_hz, digits=0),
                            "st": Number("measured", p.pitch_range_st),
                            "l": Number("measured", p.loudness, digits=2),
                            "r": Number("measured", p.speaking_rate), "c": Cite(ids)})


def _text_claims(facts: Facts) -> Iterator[Claim]:
    faces = [f for f in facts.analysis.of("face") if f.distribution]
    for segment in facts.analysis.of("text"):
        if not segment.distribution:
            continue
        ids, label = (segment.id,), segment.label
        yield Claim("text_label", "the words are {e} [{c}]", {
            "e": Emotion(label, "adjective", ids), "c": Cite(ids)})
        yield Claim("text_quote", 'the transcript reads "{q}" at {t} s [{c}]', {
            "q": Quote(segment.text.strip(" .")), "t": Time(segment.span.start),
            "c": Cite(ids)})
        yield Claim("text_percent", "the text model gives {pc} to {e} [{c}]", {
            "pc": Number("percent", segment.distribution[label]),
            "e": Emotion(label, "adjective", ids), "c": Cite(ids)})
        if segment.asr_confidence is not None:
            yield Claim("asr", "the transcript was recognised with p={p} [{c}]", {
                "p": Number("p", segment.asr_confidence, digits=2), "c": Cite(ids)})
        if faces:
            run = (run_id(longest_run(faces)),)
            yield Claim("conflict", "the words are {e0} [{c0}] while the face shows {e1} [{c1}]",
                        {"e0": Emotion(label, "adjective", ids), "c0": Cite(ids),
                         "e1": Emotion(longest_run(faces)[0].label, "noun", run),
                         "c1": Cite(run)})


def _exemplar_claims(facts: Facts) -> Iterator[Claim]:
    by_record: dict[str, list[Exemplar]] = {}
    for e in facts.analysis.exemplars:
        by_record.setdefault(e.evidence_id, []).append(e)
    for evidence_id, found in by_record.items():
        ids = tuple(e.citation for e in found)
        labels = [e.label for e in found]
        label = max(LABELS, key=labels.count)
        modality = evidence_id.split(":")[0]
        yield Claim(f"votes_{modality}", "{n} neighbours of the " + modality + " are {e} [{c}]",
                    {"n": Number("count", labels.count(label), len(found)),
                     "e": Emotion(label, "adjective", ids), "c": Cite(ids)})
        yield Claim(f"builder_votes_{modality}", "{n} nearest labelled " + modality +
                    " exemplars are {e} (retrieved for " + evidence_id + ") [{c}]", {
                        "n": Number("count", labels.count(label), len(found)),
                        "e": Emotion(label, "adjective", ids), "c": Cite(ids)})
        nearest = (found[0].citation,)
        yield Claim(f"nearest_{modality}", "the nearest exemplar is {e} [{c}]", {
            "e": Emotion(found[0].label, "adjective", nearest), "c": Cite(nearest)})


# -- corruptions: each changes one slot ------------------------------------------------------

@dataclass(frozen=True)
class Corruption:
    kind: str
    claim: Claim
    expect: str  # what the verifier's reason must say

    def step(self) -> RationaleStep:
        return self.claim.step()


def corruptions(claim: Claim, facts: Facts) -> Iterator[Corruption]:
    for key, slot in claim.slots.items():
        for kind, changed, expect in _corrupt(key, slot, claim, facts):
            yield Corruption(f"{kind}:{key}", claim.with_slot(key, changed), expect)
    yield Corruption("uncited", replace(claim, template=claim.template.replace(" [{", " {")
                                        .replace("}]", "}"), slots={
        k: (Quote("") if isinstance(s, Cite) else s) for k, s in claim.slots.items()}),
                     "cites no evidence")
    times = {k: s for k, s in claim.slots.items() if isinstance(s, Time)}
    if times and "lasts" not in claim.template:
        by = (facts.analysis.media.duration or 10.0) + 1.0
        moved = {k: Time(t.seconds + by) for k, t in times.items()}
        yield Corruption("moved", replace(claim, slots={**claim.slots, **moved}), "outside")
    yield from _other_label(claim, facts)


def _other_label(claim: Claim, facts: Facts) -> Iterator[Corruption]:
    """A number of the claim replaced by the same measure of another label (the p or count of
    the runner-up): right for the evidence, wrong for the emotion the claim names."""
    emotions = [s for s in claim.slots.values() if isinstance(s, Emotion) and not s.negated]
    if len(emotions) != 1:
        return
    named = emotions[0]
    mean = facts.mean(named.about)
    tops = [top(d)[0] for d in facts.dists(named.about)]
    for key, slot in claim.slots.items():
        if not isinstance(slot, Number) or slot.kind == "measured":
            continue
        others = [c for c in LABELS if c != named.label]
        if slot.kind == "count":
            values = {c: float(tops.count(c)) for c in others if tops.count(c) != slot.value}
        else:
            values = {c: mean[c] for c in others if abs(mean[c] - slot.value) > 0.07}
        if values:
            runner_up = max(values, key=lambda c: mean[c])
            changed = replace(slot, value=values[runner_up])
            yield Corruption(f"other_label:{key}", claim.with_slot(key, changed),
                             "does not match")


def _corrupt(key: str, slot: Slot, claim: Claim, facts: Facts
             ) -> Iterator[tuple[str, Slot, str]]:
    duration = facts.analysis.media.duration or 10.0
    if isinstance(slot, Cite):
        yield from _corrupt_cite(slot, claim, facts)
    elif isinstance(slot, Time) and "lasts" in claim.template:
        yield "longer", Time(duration + 1.0), "longer than the cited evidence"
    elif isinstance(slot, Time):
        yield "shifted", Time(slot.seconds + duration + 1.0), "outside the cited evidence"
        yield "just_after", Time(facts.span(_cites_of(claim))[1] + 0.5), "outside"
        before = facts.span(_cites_of(claim))[0] - 1.5
        if before >= 0:
            yield "before", Time(before), "outside the cited evidence"
    elif isinstance(slot, Number):
        yield from _corrupt_number(slot, claim, facts)
    elif isinstance(slot, Emotion) and slot.negated:
        yield "denied", replace(slot, label=top(facts.mean(slot.about))[0]), "denies"
    elif isinstance(slot, Emotion):
        wrong = facts.unsupported(slot.about, FORMS[slot.form])
        yield "emotion", replace(slot, label=wrong), "does not show"
    elif isinstance(slot, Quote) and slot.text:
        yield "quote", Quote(slot.text.replace("door", "window")), "not in the cited text"


def _cites_of(claim: Claim) -> tuple[str, ...]:
    return tuple(i for s in claim.slots.values() if isinstance(s, Cite) for i in s.ids)


def _corrupt_cite(slot: Cite, claim: Claim, facts: Facts) -> Iterator[tuple[str, Slot, str]]:
    first = slot.ids[0]
    if first.startswith("exemplar:"):
        yield "invented", Cite(("exemplar:meld/train/999999", *slot.ids[1:])), "unknown evidence"
        yield "modality", Cite(("face:0",)), "exemplars but cites only face evidence"
        return
    modality = first.split(":")[0]
    count = len(facts.analysis.of(modality))  # type: ignore[arg-type]
    yield "invented", Cite(("gesture:3",)), "unknown evidence gesture:3"
    last = expand_ids(slot.ids)[-1]
    start = first.split(":")[1].split("-")[0]
    past = f"{modality}:{start}-{count}" if "-" in first else f"{modality}:{count}"
    yield "past_the_end", Cite((past,)), f"unknown evidence {modality}:{count}"
    assert last in facts.records
    other = next(r.id for r in facts.analysis.evidence if r.modality != modality)
    yield "modality", Cite((other,)), f"speaks of the {_named(claim.template, modality)}"


def _named(template: str, modality: str) -> str:
    return "exemplars" if "neighbours" in template else "words" if modality == "text" else modality


def _corrupt_number(slot: Number, claim: Claim, facts: Facts
                    ) -> Iterator[tuple[str, Slot, str]]:
    cited = _cites_of(claim)
    if slot.kind == "count":
        assert slot.of is not None
        wrong_x = slot.value - 1 if slot.value >= 1 else slot.value + 1
        yield "count", replace(slot, value=wrong_x), "does not match"
        yield "total", replace(slot, of=slot.of + 1), "does not match"
        return
    if slot.kind in ("p", "percent"):
        known = facts.probabilities(cited)
        far = [v for v in (slot.value + d for d in (0.3, -0.3, 0.15, -0.15))
               if 0.0 <= v <= 1.0 and all(abs(v - k) > 0.07 for k in known)]
        near = [v for v in (slot.value + d for d in (0.08, -0.08))
                if 0.0 <= v <= 1.0 and all(abs(v - k) > 0.056 for k in known)]
    else:
        known = facts.measures(cited)
        far = [v for v in (slot.value * f for f in (1.5, 0.5, 2.5))
               if all(abs(v - k) > 0.2 * abs(k) + 0.1 for k in known)]
        rounding = 0.5 * 10 ** -slot.digits
        near = [v for v in (slot.value * 1.15 + 0.06, slot.value * 0.85 - 0.06)
                if v > 0 and all(abs(v - k) > 0.1 * abs(k) + 0.05 + rounding for k in known)]
    assert far, f"no value far from the evidence for {slot}"
    yield "number", replace(slot, value=far[0]), "does not match"
    if near:
        yield "slightly", replace(slot, value=near[0]), "does not match"


@pytest.fixture(scope="module")
def reference() -> Analysis:
    return load_reference()


@pytest.fixture(scope="module")
def verifier(reference: Analysis) -> Verifier:
    return Verifier(reference.evidence, reference.exemplars)


# parametrised at collection; without the reference (before it is first made) there are none
_STORED = load_reference() if REFERENCE.exists() else None
REFERENCE_CLAIMS = true_claims(_STORED) if _STORED else []
CORRUPTIONS = [c for claim in REFERENCE_CLAIMS for c in corruptions(claim, Facts(_STORED))
               ] if _STORED else []


# -- true claims and their corruptions --------------------------------------------------------

def test_the_reference_is_the_real_clip(reference: Analysis) -> None:
    assert reference.media.path.endswith("01-01-03-01-01-02-05.mp4")
    assert {r.modality for r in reference.evidence} == {"face", "voice", "text"}
    assert {e.evidence_id for e in reference.exemplars} == set(RETRIEVED_FOR)
    assert Analysis.model_validate_json(reference.model_dump_json()) == reference
    names = {c.name for c in REFERENCE_CLAIMS}
    assert {"face_count", "pitch_range", "conflict", "votes_voice", "face_negation"} <= names
    assert len(CORRUPTIONS) > 5 * len(REFERENCE_CLAIMS)


@pytest.mark.parametrize("claim", REFERENCE_CLAIMS, ids=lambda c: c.name)
def test_true_claims_are_grounded(verifier: Verifier, claim: Claim) -> None:
    (checked,) = verifier.verify([claim.step()])
    assert checked.grounded, f"{checked.claim!r} rejected: {checked.check}"
    assert "match the cited evidence" in (checked.check or "")


@pytest.mark.parametrize("corruption", CORRUPTIONS,
                         ids=lambda c: f"{c.claim.name}-{c.kind}")
def test_every_corruption_is_caught(verifier: Verifier, corruption: Corruption) -> None:
    (checked,) = verifier.verify([corruption.step()])
    assert checked.grounded is False, f"{checked.claim!r} passed"
    assert corruption.expect in (checked.check or ""), (checked.claim, checked.check)


def test_corruptions_cover_every_kind() -> None:
    kinds = {c.kind.split(":")[0] for c in CORRUPTIONS}
    assert kinds == {"invented", "past_the_end", "modality", "shifted", "before", "just_after",
                     "moved", "longer", "number", "slightly", "count", "total", "other_label",
                     "emotion", "denied", "quote", "uncited"}


def test_grounding_score_is_the_share_of_grounded_steps(reference: Analysis) -> None:
    true = [c.step() for c in REFERENCE_CLAIMS]
    false = [c.step() for c in CORRUPTIONS[::7]]
    mixed = [s for pair in zip(true, false, strict=False) for s in pair]
    checked = Verifier(reference.evidence, reference.exemplars).verify(mixed)
    n_true = len(true[:len(false)])
    assert grounding(checked) == pytest.approx(n_true / len(mixed))
    assert [s.claim for s in checked if s.grounded] == [s.claim for s in true[:len(false)]]
    assert grounding([]) is None


def test_verification_is_fast(verifier: Verifier) -> None:
    steps = [c.step() for c in REFERENCE_CLAIMS] * 3
    start = time.perf_counter()
    verifier.verify(steps)
    per_step = (time.perf_counter() - start) / len(steps)
    assert per_step < 0.005  # the budget: <= 50 ms per clip for aggregation + verifying


# -- verify_verdict -----------------------------------------------------------------------------

def _verdict(steps: list[RationaleStep], rejected: list[RationaleStep] | None = None) -> Verdict:
    dist = normalise({"happy": 3.0, "neutral": 1.0})
    return Verdict(label="happy", distribution=dist, confidence=0.75, valence=0.6, arousal=0.4,
                   rationale=steps, rejected=rejected or [])


def test_verify_verdict_keeps_only_grounded_steps(reference: Analysis) -> None:
    true = [c.step() for c in REFERENCE_CLAIMS[:6]]
    false = [CORRUPTIONS[0].step(), CORRUPTIONS[-1].step()]
    verdict = _verdict([true[0], false[0], *true[1:], false[1]])
    out = verify_verdict(verdict, reference.evidence, reference.exemplars)
    assert [s.claim for s in out.rationale] == [s.claim for s in true]
    assert all(s.grounded and s.check for s in out.rationale)
    assert [s.claim for s in out.rejected] == [false[0].claim, false[1].claim]
    assert all(s.grounded is False and s.check for s in out.rejected)
    assert out.grounding == pytest.approx(6 / 8)
    assert verdict.rationale[1].grounded is None and verdict.grounding is None  # a copy
    assert out.model_copy(update={"rationale": [], "rejected": [], "grounding": None}) == (
        verdict.model_copy(update={"rationale": []}))
    assert verify_verdict(out, reference.evidence, reference.exemplars) == out  # idempotent


def test_verify_verdict_without_steps_has_no_grounding(reference: Analysis) -> None:
    out = verify_verdict(_verdict([]), reference.evidence)
    assert out.grounding is None and out.rationale == [] and out.rejected == []


def test_verify_verdict_keeps_steps_already_rejected(reference: Analysis) -> None:
    earlier = RationaleStep(claim="the face is happy [face:0]", cites=["face:0"],
                            grounded=False, check="rejected upstream: malformed output")
    out = verify_verdict(_verdict([REFERENCE_CLAIMS[0].step()], [earlier]), reference.evidence)
    assert out.rejected == [earlier] and len(out.rationale) == 1 and out.grounding == 0.5


def test_verifier_takes_the_verdict_exemplar() -> None:
    assert verifier_module.Exemplar is Exemplar
    assert "verify_verdict" in verifier_module.__all__


# -- edge cases on records built by hand -------------------------------------------------------

REF = ModelRef(name="test")


def _face(i: int, scores: dict[str, float] | None, start: float) -> FaceEvidence:
    dist = normalise(scores) if scores else None
    return FaceEvidence(id=f"face:{i}", span=TimeSpan(start=start, end=start + 0.5),
                        specialist="face", model=REF, distribution=dist,
                        confidence=top(dist)[1] if dist else None,
                        detection_score=0.99 if dist else None,
                        reason=None if dist else "no face found")


def _voice(i: int, scores: dict[str, float], start: float, pitch: float, rng: float
           ) -> VoiceEvidence:
    dist = normalise(scores)
    prosody = Prosody(pitch_mean_hz=pitch, pitch_mean_st=12 * math.log2(pitch / 27.5),
                      pitch_range_st=rng, loudness=0.4, speaking_rate=4.0, pause_ratio=0.25)
    return VoiceEvidence(id=f"voice:{i}", span=TimeSpan(start=start, end=start + 2.0),
                         specialist="voice", model=REF, distribution=dist,
                         confidence=top(dist)[1], prosody=prosody)


HAND = [
    _face(0, {"happy": 8, "neutral": 2}, 0.0),
    _face(1, {"happy": 7, "surprised": 3}, 0.5),
    _face(2, {"angry": 6, "happy": 4}, 1.0),
    _face(3, None, 1.5),
    _voice(0, {"angry": 7, "fearful": 2, "neutral": 1}, 0.0, 180.0, 4.0),
    _voice(1, {"angry": 5, "neutral": 5}, 2.0, 220.0, 9.0),
    TranscriptEvidence(id="text:0", span=TimeSpan(start=0.0, end=2.0), specialist="text",
                       model=REF, distribution=normalise({"neutral": 5, "happy": 2, "sad": 3}),
                       confidence=0.5, text="I am so happy to see you, really.", source="given"),
]
HAND_EXEMPLARS = [Exemplar(id=f"ravdess_speech/{n}", label=label, similarity=0.9 - n / 100,
                           evidence_id="voice:0", library="voice")
                  for n, label in enumerate(["happy"] * 7 + ["angry"] * 3)]
HAND_EXEMPLARS.append(HAND_EXEMPLARS[0].model_copy(update={"evidence_id": "voice:1"}))
HAND_EXEMPLARS.append(Exemplar(id="faces_web/Someone_0001", label="happy", similarity=0.8,
                               evidence_id="face:0-1", library="face"))  # pooled face
VOTES = ", ".join(e.citation for e in HAND_EXEMPLARS[:10])


def _checked(claim: str, cites: tuple[str, ...] = (), **tolerances: float) -> RationaleStep:
    v = Verifier(HAND, HAND_EXEMPLARS, Tolerances(**tolerances))
    return v.verify([RationaleStep(claim=claim, cites=list(cites))])[0]


GROUNDED = [
    # negation, also after the emotion and across "rather than"
    "the face shows no anger [face:0-1]",
    "the face is not angry [face:0]",
    "anger is absent from the face [face:0-1]",
    "the face is happy rather than sad [face:0-1]",
    "the voice is angry, not happy [voice:0]",
    "the face is rather happy [face:0]",  # 'rather' alone is no negation
    # range citations and several parts
    "the face is happy in 2 of 3 frames [face:0-2]",
    "the face is happy [face:0, ]",  # a trailing comma is no citation
    "anger [voice:0] and happiness [face:0-1]",
    "the words are neutral [text:0] while the face shows happiness [face:0-1]",
    "the voice [voice:0] and the face [face:2] are both angry",
    # inflections
    "the voice sounds angrily [voice:0]; the face is happier than the voice [face:0, face:1]",
    "the face smiles happily [face:0]",
    # numbers: units, ties to the emotion or the measure, differences, bare numbers
    "the voice is angry with p=0.70 [voice:0]",
    "P(angry) = 0.70 for the voice [voice:0]",
    "the face shows happiness with probability 0.8 [face:0]",
    "the face gives 80% to happiness [face:0]",
    "the face was detected with 99% confidence [face:0]",
    "the voice's pitch range widened from 4.0 to 9.0 semitones [voice:0, voice:1]",
    "the voice's mean pitch rose by 40 Hz [voice:0, voice:1]",
    "the voice's mean pitch was 180 Hz [voice:0]",
    "the voice is angry, a score of 0.99 [voice:0]",  # no unit: not a number to check
    "the voice's pitch rose by 3 [voice:0, voice:1]",
    "7 of the 10 nearest neighbours of the voice are happy [" + VOTES + "]",
    "3 of 10 neighbours are angry [" + VOTES + "]",
    # times, durations, milliseconds
    "the voice is angry at 800 ms [voice:0]",
    "the voice is angry between 0.5 and 1.5 seconds [voice:0]",
    "the voice's turn lasts 2 s [voice:0]",
    "a 1-second pause in the voice [voice:0]",
    "the nearest neighbours are happy at 1.2 s [" + VOTES + "]",  # the span of voice:0
    "the nearest neighbour of the voice is happy at 3.5 s [exemplar:ravdess_speech/0]",  # voice:1
    "the face's nearest exemplar is happy at 0.7 s [exemplar:faces_web/Someone_0001]",
    # quotes: said words are checked against the transcript, not for emotions
    'the transcript reads "I am so happy to see you" [text:0]',
    "the words 'so happy to see you' are neutral [text:0]",
]


@pytest.mark.parametrize("claim", GROUNDED)
def test_hand_built_true_claims_are_grounded(claim: str) -> None:
    step = _checked(claim)
    assert step.grounded, step.check


REJECTED = [
    ("the face is happy", (), "cites no evidence"),
    ("the face is happy []", (), "cites no evidence"),
    ("[face:0]", (), "the claim is empty"),
    ("the face is happy [] and the voice angry [voice:0]", (), "an empty citation [] after "
                                                              "'the face is happy'"),
    ("the face is happy [face:2-0]", (), "unknown evidence face:2-0"),
    ("the face is happy [face:0-1000000000]", (), "unknown evidence face:0-1000000000"),
    ("the face is happy [Face:0]", (), "unknown evidence Face:0"),
    ("the face is happy [face:3]", (), "cannot be checked"),
    # negation of what the evidence shows most
    ("the voice shows no anger [voice:0]", (), "denies angry"),
    ("anger isn't present in the voice [voice:0]", (), "denies angry"),
    ("the voice is not only angry but happy [voice:0]", (), "does not show happy"),
    # emotion words sit in the part of other ids
    ("happiness [voice:0] and anger [face:0-1]", (), "does not show"),
    ("the face is angry [face:0] and happy", (), "does not show angry"),
    ("the voice [voice:0] and the face [face:0] are both angry", (), "does not show angry"),
    ("the face is neutral [voice:0]", (), "speaks of the face"),
    ("the words are angry [voice:0]", (), "speaks of the words"),
    ("7 of 10 neighbours are happy [voice:0]", (), "speaks of the exemplars"),
    # numbers tied to their emotion or measure
    ("7 of 10 neighbours are angry [" + VOTES + "]", (), "does not match"),
    ("the words give p=0.20 to neutral [text:0]", (), "does not match the cited evidence for "
                                                     "neutral"),
    ("the face is happy in 1 of 3 frames [face:0-2]", (), "'1 of 3 frames'"),
    ("the face is happy in 12 frames [face:0-2]", (), "'12 frames'"),
    ("the voice's pitch range was 32.5 semitones [voice:0]", (), "for range"),  # the mean
    ("the voice's mean pitch was 250 Hz [voice:0]", (), "'250 hz'"),
    ("the voice's speaking rate was 6 syllables per second [voice:0]", (), "does not match"),
    ("the voice's loudness was 0.9 sones [voice:0]", (), "does not match"),
    ("P(angry) = 0.30 for the voice [voice:0]", (), "'p(angry) = 0.30'"),
    ("the voice shows anger with 0.3 probability [voice:0]", (), "'0.3 probability'"),
    ("the face is happy (mean p=0.70) [face:0-2]", (), "for happy, mean"),  # face:1's, not mean
    ("the face is happy with p=0.99 [face:0]", (), "for happy"),  # the detection score
    # times and durations
    ("the face is happy at 3.5 s [face:0-1]", (), "time 3.5 s lies outside"),
    ("the face is happy at 1500 ms [face:0]", (), "time 1.5 s lies outside"),
    ("the voice pauses for 5 s [voice:0]", (), "a duration of 5 s"),
    ("the voice is angry between 0.5 and 9 seconds [voice:0]", (), "time 9 s lies outside"),
    # quotes
    ('the transcript reads "I hate you" [text:0]', (), "not in the cited text"),
    ('the transcript reads "so hap" [text:0]', (), "not in the cited text"),  # whole words
    ("the face's nearest exemplar is happy at 1.7 s [exemplar:faces_web/Someone_0001]", (),
     "time 1.7 s lies outside the cited evidence (0.00-1.00 s)"),
    ("the voice's nearest exemplar is happy [exemplar:faces_web/Someone_0001]", (),
     "speaks of the voice"),
    ('the face looks "angry" [face:0]', (), "does not show angry"),  # scare quotes count
    # a wrong citation listed in cites besides the brackets
    ("the face is happy [face:0]", ("face:0", "face:9"), "unknown evidence face:9"),
    ("the face is happy", ("face:7",), "unknown evidence face:7"),
]


@pytest.mark.parametrize(("claim", "cites", "why"), REJECTED)
def test_hand_built_false_claims_are_rejected(claim: str, cites: tuple[str, ...],
                                              why: str) -> None:
    step = _checked(claim, cites)
    assert step.grounded is False, f"{claim!r} passed"
    assert why in (step.check or ""), step.check



@pytest.mark.parametrize("seed", range(4))
def test_a_difference_matches_when_two_values_differ_by_it(seed: int) -> None:
    # Differences between turns are found by search, not listed: the same answers as every pair.
    rng = random.Random(seed)
    values = sorted(rng.uniform(0, 20) for _ in range(12))
    verifier = Verifier([])
    numbers = [rng.uniform(0, 25) for _ in range(300)] + [values[5] - values[2], 0.0]
    for number in numbers:
        every_pair = any(verifier._close(number, abs(a - b), "st")
                         for i, a in enumerate(values) for b in values[i + 1:])
        assert verifier._differ_by(number, values) == every_pair, number


def test_differences_over_a_long_call_stay_small() -> None:
    # 600 turns: their 180,000 pairwise pitch differences are not listed (they took 80 MB).
    turns = [_voice(i, {"angry": 6, "neutral": 4}, 2.0 * i, 150.0 + (i % 50), 4.0 + i % 7)
             for i in range(600)]
    verifier = Verifier(turns)
    tracemalloc.start()
    try:
        rose = verifier.check(RationaleStep(claim="the mean pitch rose by 40 Hz [voice:0-599]"))
        wide = verifier.check(RationaleStep(claim="the mean pitch rose by 90 Hz [voice:0-599]"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rose.grounded, rose.why
    assert not wide.grounded and "'90 hz' does not match" in wide.why
    assert peak < 10 * 2**20


def test_unknown_ids_name_what_exists() -> None:
    step = _checked("the face is happy [face:9]")
    assert "face:0-3, voice:0-1, text:0" in (step.check or "")
    assert "11 exemplars" in (step.check or "")


def test_every_problem_is_reported() -> None:
    step = _checked("the voice is happy at 9 s with p=0.99 [voice:0]")
    why = step.check or ""
    assert "does not show happy" in why and "time 9 s" in why and "'p=0.99'" in why


def test_tolerances_are_applied() -> None:
    assert _checked("the face is happy at 1.2 s [face:0-1]").grounded  # 0.2 s past face:1
    assert not _checked("the face is happy at 1.2 s [face:0-1]", seconds=0.1).grounded
    assert _checked("the voice's mean pitch was 195 Hz [voice:0]").grounded  # within 10%
    assert not _checked("the voice's mean pitch was 195 Hz [voice:0]", relative=0.05).grounded
    assert not _checked("the face is surprised [face:0-1]").grounded  # mean p 0.15 < 0.2
    assert _checked("the face is surprised [face:0-1]", support=0.1).grounded


def test_dummy_predictor_steps_are_judged_like_before() -> None:
    """The evals' dummy predictor relies on the verifier: its grounded steps stay grounded."""
    from affectgraph.evals.predictors import _corrupted

    record = TranscriptEvidence(id="text:0", span=TimeSpan(start=0.0, end=2.0), specialist="d",
                                model=REF, distribution=normalise({"happy": 6, "sad": 4}),
                                confidence=0.6, text="a synthetic sentence")
    good = [RationaleStep(claim="The words sound happy [text:0].", cites=["text:0"]),
            RationaleStep(claim="The text model gives p=0.60 to happy.", cites=["text:0"])]
    bad = [_corrupted("happy", record.distribution or {}, kind) for kind in range(4)]
    checked = Verifier([record]).verify(good + bad)
    assert [s.grounded for s in checked] == [True, True, False, False, False, False]


# -- the real analysis, rerun -------------------------------------------------------------------

@pytest.mark.slow
def test_claims_from_a_fresh_real_analysis_are_grounded(ravdess_clip: Path,
                                                        reference: Analysis) -> None:
    from affectgraph.api import Analyzer
    from affectgraph.errors import ModelUnavailable

    try:
        fresh = Analyzer().analyze(ravdess_clip)
    except ModelUnavailable as error:  # the shipped fusion model is being trained
        pytest.skip(f"the analysis cannot run: {error}")
    assert [(r.id, r.label) for r in fresh.evidence] == [
        (r.id, r.label) for r in reference.evidence], "regenerate the verifier reference"
    for new, old in zip(fresh.evidence, reference.evidence, strict=True):
        assert new.span.start == pytest.approx(old.span.start, abs=0.02)
        assert new.span.end == pytest.approx(old.span.end, abs=0.02)
    if fresh.verdict is not None:  # the graph's verify node ran verify_verdict: it is a fixpoint
        assert verify_verdict(fresh.verdict, fresh.evidence, fresh.exemplars) == fresh.verdict
    live = fresh if fresh.exemplars else fresh.model_copy(update={"exemplars": reference.exemplars})
    claims = true_claims(live)
    checked = Verifier(live.evidence, live.exemplars).verify([c.step() for c in claims])
    assert [(s.claim, s.check) for s in checked if not s.grounded] == []
    facts = Facts(live)
    caught = [Verifier(live.evidence, live.exemplars).check(c.step()).grounded
              for claim in claims for c in corruptions(claim, facts)]
    assert not any(caught)


if __name__ == "__main__":
    import sys

    regenerate(Analysis.model_validate_json(Path(sys.argv[1]).read_text())
               if len(sys.argv) > 1 else None)
    print(f"wrote {REFERENCE}")
