"""The fusion aggregator's chain of reasoning: specific, cited, ordered by how much it mattered.

Each step is one claim built from measured values of the evidence it cites, so the verifier can
check every time, emotion and number in it:

- per modality, what it showed and where: "the face shows happiness in 15 of 17 sampled frames
  (mean p=0.71) between 0.2 and 3.4 s [face:0-16]", "the voice sounds angry (p=0.62) at 0.9-3.1 s
  [voice:0]", "3 of 5 segments read as sad [text:0-4]";
- the prosody behind the voice: pitch (Hz), pitch range (semitones), loudness (sones),
  speaking rate (syllables/s);
- the retrieved exemplars, when their vote moved the decision: "8 of 10 nearest labelled voice
  exemplars are angry" (citing the exemplars);
- conflicts between modalities, named as such: "the words are neutral [text:0] while the face
  shows anger [face:4-9]".

Steps are ordered by the strength of what they rest on: the pull of that modality toward the
verdict's label in the fusion (:attr:`affectgraph.agents.fusion.Fused.pull`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from affectgraph.agents.fusion import Fused
from affectgraph.agents.signals import Pooled
from affectgraph.evidence import Distribution, TimeSpan, VoiceEvidence, top
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, RationaleStep, compact_ids

NOUN = {"neutral": "a neutral expression", "happy": "happiness", "sad": "sadness",
        "angry": "anger", "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
_BRACKET = re.compile(r"\[([^\]]+)\]")
MIN_CONFLICT = 0.35  # a modality this sure of another label than the strongest one is a conflict
MIN_VOTE_PULL = 0.05  # exemplars are cited when their vote pulled at least this much (log units)


@dataclass(frozen=True)
class _Step:
    strength: float
    step: RationaleStep


def build_rationale(records: Mapping[str, object], pooled: Mapping[str, Pooled], fused: Fused,
                    exemplars: Sequence[Exemplar]) -> list[RationaleStep]:
    """The rationale steps for a fused verdict, strongest first."""
    steps: list[_Step] = []
    strength = {m: abs(fused.pull.get(m, 0.0)) + abs(fused.vote_pull.get(m, 0.0)) for m in pooled}
    said: dict[str, tuple[str, float, list[str]]] = {}
    for modality, p in pooled.items():
        cited = [records[i] for i in p.records]
        if not cited:
            continue
        claim, label, p_label = _modality_claim(modality, cited)
        said[modality] = (label, p_label, list(p.records))
        steps.append(_Step(strength[modality], _step(claim)))
        if modality == "voice" and (prosody := _prosody_claim(cited)):
            steps.append(_Step(strength[modality] * 0.99, _step(prosody)))
        if abs(fused.vote_pull.get(modality, 0.0)) >= MIN_VOTE_PULL and p.voted:
            group = [e for e in exemplars if e.evidence_id == p.voted[0]]
            if group:
                steps.append(_Step(abs(fused.vote_pull[modality]),
                                   _exemplar_step(modality, group)))
    steps += _conflicts(said, strength)
    steps.sort(key=lambda s: -s.strength)
    return [s.step for s in steps]


def _modality_claim(modality: str, cited: Sequence[object]) -> tuple[str, str, float]:
    dists: list[Distribution] = [r.distribution for r in cited]  # type: ignore[attr-defined]
    mean = {c: sum(d[c] for d in dists) / len(dists) for c in LABELS}
    label, p = top(mean)
    tops = sum(1 for d in dists if top(d)[0] == label)
    span = TimeSpan(start=min(r.span.start for r in cited),  # type: ignore[attr-defined]
                    end=max(r.span.end for r in cited))  # type: ignore[attr-defined]
    ids = _cite(r.id for r in cited)  # type: ignore[attr-defined]
    when = f"at {span.start:.1f}-{span.end:.1f} s"
    if modality == "face":
        claim = (f"The face shows {NOUN[label]} in {tops} of {len(dists)} sampled frames "
                 f"(mean p={p:.2f}) {when} [{ids}]")
    elif len(dists) == 1:
        verb = "The voice sounds" if modality == "voice" else "The words read as"
        claim = f"{verb} {label} (p={p:.2f}) {when} [{ids}]"
    else:
        unit, verb = ("turns", "sound") if modality == "voice" else ("segments", "read as")
        claim = (f"{tops} of {len(dists)} {unit} {verb} {label} (mean p={p:.2f}) {when} "
                 f"[{ids}]")
    return claim, label, p


def _prosody_claim(cited: Sequence[object]) -> str | None:
    voiced = [r for r in cited if isinstance(r, VoiceEvidence) and r.prosody]
    if not voiced:
        return None
    mean = len(voiced) > 1

    def avg(field: str) -> float | None:
        got = [getattr(r.prosody, field) for r in voiced if getattr(r.prosody, field) is not None]
        return sum(got) / len(got) if got else None

    parts = []
    if (hz := avg("pitch_mean_hz")) is not None:
        parts.append(f"pitch around {hz:.0f} Hz")
    if (st := avg("pitch_range_st")) is not None:
        parts.append(f"a pitch range of {st:.1f} semitones")
    parts.append(f"loudness {avg('loudness'):.2f} sones")
    parts.append(f"{avg('speaking_rate'):.1f} syllables/s")
    lead = "On average over the turns the voice has " if mean else "The voice has "
    return lead + ", ".join(parts) + f" [{_cite(r.id for r in voiced)}]"


def _exemplar_step(modality: str, group: Sequence[Exemplar]) -> RationaleStep:
    """The vote of one retrieval; the exemplars are cited in ``cites`` (ten ids would drown
    the claim), so the whole claim rests on them."""
    counts = {c: sum(1 for e in group if e.label == c) for c in LABELS}
    label = max(counts, key=lambda c: counts[c])
    claim = (f"{counts[label]} of {len(group)} nearest labelled {modality} exemplars are "
             f"{label} (retrieved for {group[0].evidence_id})")
    return RationaleStep(claim=claim, cites=[e.citation for e in group])


def _conflicts(said: Mapping[str, tuple[str, float, list[str]]], strength: Mapping[str, float]
               ) -> list[_Step]:
    """The strongest modality against each other one that is at least :data:`MIN_CONFLICT`
    sure of a different label."""
    phrase = {"face": "the face shows {}", "voice": "the voice sounds {}",
              "text": "the words are {}"}
    names = sorted(said, key=lambda m: -strength[m])
    if not names:
        return []
    first, out = names[0], []
    a, _, a_ids = said[first]
    for second in names[1:]:
        b, b_p, b_ids = said[second]
        if a == b or b_p < MIN_CONFLICT:
            continue
        a_word = NOUN[a] if first == "face" else a
        b_word = NOUN[b] if second == "face" else b
        claim = (f"The modalities disagree: {phrase[first].format(a_word)} [{_cite(a_ids)}] "
                 f"while {phrase[second].format(b_word)} [{_cite(b_ids)}]")
        out.append(_Step(strength[second], _step(claim)))
    return out


def _step(claim: str) -> RationaleStep:
    """A step citing every id in the claim's brackets."""
    ids = [i.strip() for match in _BRACKET.finditer(claim) for i in match[1].split(",")]
    return RationaleStep(claim=claim, cites=list(dict.fromkeys(ids)))


def _cite(ids: Iterable[str]) -> str:
    return ", ".join(compact_ids(list(ids)))
