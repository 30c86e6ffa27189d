"""The verifier: checks every rationale step against the evidence it cites.

No rationale reaches a user without passing here, whoever wrote it (the fusion aggregator, an
LLM, the project's own MLLM). A step is **grounded** when all of these hold:

1. **ids exist**: it cites at least one id, and every cited id (``face:4``, a run ``face:4-9``,
   ``exemplar:<id>``) names evidence of this analysis or an exemplar retrieved for it;
2. **times fall inside**: every time in the claim (``1.2 s``, ``1.2-2.6 s``, ``between 12 and
   18 seconds``) lies within the spans of the evidence it is attributed to, give or take
   :attr:`Tolerances.seconds`;
3. **emotions are supported**: every emotion the claim attributes to its evidence (``anger``,
   ``smiling``, ``fearful``... not negated ones: "no anger") is supported by that evidence's
   distributions: the top label of their mean, a mean probability of at least
   :attr:`Tolerances.support`, or the top label of at least a third of the cited records; for
   exemplars, their label;
4. **numbers match**: every number with a unit (``9 semitones``, ``180 Hz``, ``64%``,
   ``p=0.64``, ``3.1 syllables/s``, ``12 of 17 frames``) matches a value of the cited evidence
   (its prosody, confidence, probabilities, or counts and means over the cited records) within
   the tolerance of its unit.

A claim with ``[ids]`` inside it attributes each stretch of text to the bracket that ends it
("the words are neutral [text:1] while the face shows anger [face:4-9]"); without brackets the
whole claim rests on the step's ``cites``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from affectgraph.evidence import FaceEvidence, TranscriptEvidence, VoiceEvidence
from affectgraph.labels import LABELS
from affectgraph.verdict import RationaleStep, expand_ids

EMOTION_WORDS: Mapping[str, str] = {
    **{w: "neutral" for w in ("neutral", "calm", "flat", "composed")},
    **{w: "happy" for w in ("happy", "happiness", "joy", "joyful", "smile", "smiles", "smiling",
                            "cheerful", "glad", "pleased", "delighted")},
    **{w: "sad" for w in ("sad", "sadness", "sorrow", "sorrowful", "unhappy", "grief", "upset")},
    **{w: "angry" for w in ("angry", "anger", "mad", "furious", "irritated", "annoyed", "rage")},
    **{w: "fearful" for w in ("fear", "fearful", "afraid", "scared", "anxious", "anxiety",
                              "frightened", "nervous")},
    **{w: "disgusted" for w in ("disgust", "disgusted", "revulsion", "repulsed")},
    **{w: "surprised" for w in ("surprise", "surprised", "astonished", "amazed", "startled")},
}
_NEGATIONS = {"no", "not", "never", "without", "nor", "lacks", "absent", "rather", "instead"}
_BRACKET = re.compile(r"\[([^\]]+)\]")
_NUMBER = r"(\d+(?:\.\d+)?)"
_TIME_RANGE = re.compile(rf"{_NUMBER}\s*(?:-|–|to|and)\s*{_NUMBER}\s*(?:s|sec|secs|seconds)\b")
_TIME = re.compile(rf"{_NUMBER}\s*(?:s|sec|secs|seconds)\b")
_UNITS: Mapping[str, re.Pattern[str]] = {
    "st": re.compile(rf"{_NUMBER}\s*(?:semitones?|st)\b"),
    "hz": re.compile(rf"{_NUMBER}\s*hz\b"),
    "percent": re.compile(rf"{_NUMBER}\s*%"),
    "p": re.compile(rf"\bp\s*=\s*{_NUMBER}"),
    "rate": re.compile(rf"{_NUMBER}\s*(?:syllables?|voiced segments?)\s*(?:/|per)\s*(?:s|sec|second)"),
    "sone": re.compile(rf"{_NUMBER}\s*sones?\b"),
    "count": re.compile(rf"\b{_NUMBER}\s+(?:of|out of)\s+{_NUMBER}\s+(?:sampled\s+)?(?:frames|turns|segments|neighbours|exemplars)"),
}


@dataclass(frozen=True)
class Tolerances:
    """How close a claim must be: ``seconds`` around spans; ``relative`` for measured values
    (10%); ``probability`` for probabilities (0.05 = 5 points); ``support``: the mean probability
    an emotion needs over the cited records when it is not their top label."""

    seconds: float = 0.3
    relative: float = 0.1
    probability: float = 0.05
    support: float = 0.2


@dataclass(frozen=True)
class Exemplar:
    """A retrieved exemplar as the verifier sees it."""

    id: str
    label: str
    similarity: float


@dataclass(frozen=True)
class Check:
    grounded: bool
    why: str


class Verifier:
    """Checks rationale steps against the evidence and exemplars of one analysis."""

    def __init__(self, evidence: Iterable[Any], exemplars: Iterable[Exemplar] = (),
                 tolerances: Tolerances = Tolerances()) -> None:
        self.records: dict[str, Any] = {r.id: r for r in evidence}
        self.exemplars = {f"exemplar:{e.id}": e for e in exemplars}
        self.tol = tolerances

    def verify(self, steps: Sequence[RationaleStep]) -> list[RationaleStep]:
        """Each step with ``grounded`` and ``check`` filled in."""
        out = []
        for step in steps:
            result = self.check(step)
            out.append(step.model_copy(update={"grounded": result.grounded, "check": result.why}))
        return out

    def check(self, step: RationaleStep) -> Check:
        parts = self._attribute(step)
        if not parts:
            return Check(False, "cites no evidence")
        for text, ids in parts:
            unknown = [i for i in ids if i not in self.records and i not in self.exemplars]
            if unknown:
                return Check(False, f"cites unknown evidence {', '.join(unknown)}")
            for problem in (self._times(text, ids), self._emotions(text, ids),
                            self._numbers(text, ids)):
                if problem:
                    return Check(False, problem)
        return Check(True, "ids exist; times, emotions and numbers match the cited evidence")

    # -- attribution ---------------------------------------------------------------------------

    def _attribute(self, step: RationaleStep) -> list[tuple[str, list[str]]]:
        """(text, cited ids) pairs: each stretch of the claim with the bracket that ends it."""
        matches = list(_BRACKET.finditer(step.claim))
        if not matches:
            ids = expand_ids(step.cites)
            return [(step.claim, ids)] if ids else []
        parts, start = [], 0
        for match in matches:
            ids = expand_ids(i.strip() for i in match[1].split(","))
            parts.append((step.claim[start:match.start()], ids))
            start = match.end()
        if step.claim[start:].strip(" .;,") and parts:
            text, ids = parts[-1]
            parts[-1] = (text + step.claim[start:], ids)
        extra = set(expand_ids(step.cites)) - {i for _, ids in parts for i in ids}
        if extra:
            parts.append(("", sorted(extra)))
        return parts

    # -- the three content checks ----------------------------------------------------------------

    def _times(self, text: str, ids: list[str]) -> str | None:
        spans = [self.records[i].span for i in ids if i in self.records]
        if not spans:
            return None
        lowered = text.lower()
        times = [float(t) for m in _TIME_RANGE.finditer(lowered) for t in m.groups()]
        stripped = _TIME_RANGE.sub(" ", lowered)
        times += [float(m[1]) for m in _TIME.finditer(stripped)]
        for t in times:
            if not any(s.contains(t, self.tol.seconds) for s in spans):
                return f"time {t:g} s lies outside the cited evidence ({_spans(spans)})"
        return None

    def _emotions(self, text: str, ids: list[str]) -> str | None:
        words = re.findall(r"[a-z]+", text.lower())
        for n, word in enumerate(words):
            emotion = EMOTION_WORDS.get(word)
            if emotion is None or _NEGATIONS & set(words[max(0, n - 3):n]):
                continue
            if not self._supports(emotion, ids):
                return f"the cited evidence does not show {emotion} ({word!r})"
        return None

    def _supports(self, emotion: str, ids: list[str]) -> bool:
        if any(self.exemplars[i].label == emotion for i in ids if i in self.exemplars):
            return True
        dists = [self.records[i].distribution for i in ids
                 if i in self.records and self.records[i].distribution]
        if not dists:
            return False
        tops = [max(d, key=d.get) for d in dists]
        mean = {label: sum(d.get(label, 0.0) for d in dists) / len(dists) for label in LABELS}
        return (max(mean, key=mean.get) == emotion or mean[emotion] >= self.tol.support
                or tops.count(emotion) >= len(tops) / 3)

    def _numbers(self, text: str, ids: list[str]) -> str | None:
        lowered = _TIME.sub(" ", _TIME_RANGE.sub(" ", text.lower()))
        values = _values(
            [self.records[i] for i in ids if i in self.records],
            [self.exemplars[i] for i in ids if i in self.exemplars],
        )
        for unit, pattern in _UNITS.items():
            for match in pattern.finditer(lowered):
                if unit == "count":
                    if (float(match[1]), float(match[2])) not in values["count"]:
                        return f"'{match[0]}' does not match the cited evidence"
                    continue
                number = float(match[1])
                if not self._matches(number, unit, values):
                    return f"'{match[0]}' does not match the cited evidence"
        return None

    def _matches(self, number: float, unit: str, values: Mapping[str, Any]) -> bool:
        if unit in ("percent", "p"):
            p = number / 100 if unit == "percent" else number
            return any(abs(p - v) <= self.tol.probability for v in values["p"])
        return any(abs(number - v) <= self.tol.relative * max(abs(v), 1e-9) + 0.05
                   for v in values[unit])


def _spans(spans: list[Any]) -> str:
    return ", ".join(str(s) for s in spans[:3]) + (" ..." if len(spans) > 3 else "")


def _values(records: list[Any], exemplars: list[Exemplar]) -> dict[str, Any]:
    """Every number a claim about these records may state, by unit."""
    values: dict[str, Any] = {"st": [], "hz": [], "p": [], "rate": [], "sone": [], "count": set()}
    dists = [r.distribution for r in records if getattr(r, "distribution", None)]
    for r in records:
        values["p"] += [v for v in (r.confidence, getattr(r, "detection_score", None),
                                    getattr(r, "asr_confidence", None)) if v is not None]
        if r.distribution:
            values["p"] += list(r.distribution.values())
        if isinstance(r, VoiceEvidence) and r.prosody:
            pr = r.prosody
            values["st"] += [v for v in (pr.pitch_mean_st, pr.pitch_range_st) if v is not None]
            values["hz"] += [v for v in (pr.pitch_mean_hz,) if v is not None]
            values["rate"].append(pr.speaking_rate)
            values["sone"].append(pr.loudness)
            values["p"].append(pr.pause_ratio)
    for label in LABELS:
        if dists:
            values["p"].append(sum(d.get(label, 0.0) for d in dists) / len(dists))
        tops = sum(1 for d in dists if max(d, key=d.get) == label)
        values["count"].add((float(tops), float(len(dists))))
        votes = sum(1 for e in exemplars if e.label == label)
        values["count"].add((float(votes), float(len(exemplars))))
        values["p"].append(votes / len(exemplars) if exemplars else 0.0)
    values["p"] += [e.similarity for e in exemplars]
    voiced = [r.prosody for r in records if isinstance(r, VoiceEvidence) and r.prosody]
    if len(voiced) > 1:
        for key, field in (("st", "pitch_range_st"), ("hz", "pitch_mean_hz"),
                           ("rate", "speaking_rate"), ("sone", "loudness")):
            got = [getattr(p, field) for p in voiced if getattr(p, field) is not None]
            if got:
                values[key].append(sum(got) / len(got))
    faces = [r for r in records if isinstance(r, FaceEvidence)]
    texts = [r for r in records if isinstance(r, TranscriptEvidence)]
    values["count"].add((float(len([f for f in faces if f.decided])), float(len(faces))))
    values["count"].add((float(len(texts)), float(len(texts))))
    return values
