"""Affect instructions: labelled clips turned into (prompt, verdict JSON) training examples.

A :class:`Clip` is one labelled clip as the analysis sees it: its evidence records (and any
exemplars), the true label, the speaker group it must be held out with, and the vectors the
connectors read (face embeddings per frame, eGeMAPS functionals per turn, text embeddings per
segment). :func:`build_examples` writes for each clip

- a **prompt**: an instruction (one of several phrasings) and one short line per modality
  that says what its records measured, each line followed by that modality's soft-token
  placeholder (``<<face>>``), which :mod:`~affectgraph.agents.mllm.model` replaces by the
  connector's tokens::

      Which emotion does the person show? Answer in JSON.
      [face:0-16] face 0.00-3.24 s: happy in 11 of 17 frames <<face>>
      [voice:0] voice 0.79-2.80 s: disgusted p=0.28 <<voice>>
      [text:0] words "Kids are talking by the door.": neutral p=0.50 <<text>>

- a **target**: the compact verdict JSON ``{"label": ..., "steps": [{"claim", "cites"}]}``,
  whose claims restate those lines in varied words. Every step is checked by the verifier
  (:func:`~affectgraph.agents.verifier.verify_verdict`) when it is built: a step it does not
  ground is dropped, and a clip left with no grounded step gives no example, so the model is
  only ever taught grounded rationales. The label is the *true* label, which the evidence may
  contradict: the model learns (from the soft tokens too) when to overrule a specialist.

Examples are split by speaker group (:func:`split_by_group`): no speaker is in both parts.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affectgraph.agents.mllm.connectors import DIMS
from affectgraph.agents.verifier import verify_verdict
from affectgraph.errors import InputError
from affectgraph.evidence import (
    FaceEvidence,
    TranscriptEvidence,
    VoiceEvidence,
    normalise,
)
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, RationaleStep, Verdict, compact_ids

__all__ = ["PLACEHOLDERS", "BuildReport", "Clip", "Example", "build_examples",
           "check_label_counts", "clip_from_analysis", "prompt_for", "record_vectors",
           "split_by_group", "target_json"]

PLACEHOLDERS: dict[str, str] = {m: f"<<{m}>>" for m in DIMS}
"""The marker of each modality's soft tokens in a prompt."""

TextEmbed = Callable[[Sequence[str]], np.ndarray]
"""Texts -> (n, 384) L2-normalised sentence embeddings (e.g. ``TextVectoriser.embed``)."""

INSTRUCTIONS = (
    "Which emotion does the person show? Answer in JSON.",
    "Decide the speaker's emotion from the evidence below. Answer in JSON.",
    "Read the evidence and give the emotion with cited steps, as JSON.",
    "What is this person feeling? Cite the evidence ids. JSON only.",
)
_NOUN = {"neutral": "a neutral state", "happy": "happiness", "sad": "sadness", "angry": "anger",
         "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
_FACE = ("the face shows {noun} in {n} of {m} frames [{ids}]",
         "{n} of {m} frames of the face look {adj} [{ids}]",
         "the face looks {adj} in {n} of {m} frames at {when} [{ids}]")
_VOICE = ("the voice sounds {adj} (p={p:.2f}) [{ids}]",
          "the voice reads as {adj} with p={p:.2f} at {when} [{ids}]",
          "{adj} voice, p={p:.2f} [{ids}]")
_TEXT = ("the words read as {adj} (p={p:.2f}) [{ids}]",
         "the transcript suggests {noun}, p={p:.2f} [{ids}]",
         "the words sound {adj} with p={p:.2f} [{ids}]")


@dataclass(frozen=True)
class Clip:
    """One labelled clip: ``evidence`` records (ids as in an analysis), ``exemplars``, the
    true ``label``, the speaker ``group`` it is held out with, and ``vectors`` per modality
    ((n, DIMS[modality]) float32; modalities without vectors may be missing)."""

    id: str
    label: str
    group: str
    evidence: tuple[Any, ...]
    exemplars: tuple[Exemplar, ...] = ()
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """One instruction example: ``prompt`` (with placeholders), ``target`` (the verdict JSON)
    and the clip it came from (for the connectors' vectors and for verifying outputs)."""

    clip: Clip
    prompt: str
    target: str

    @property
    def label(self) -> str:
        return self.clip.label


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_examples` made: examples, and the clips and steps it dropped."""

    examples: list[Example]
    dropped_clips: list[str]
    dropped_steps: int


# -- clips -------------------------------------------------------------------------------------

def clip_from_analysis(analysis: Mapping[str, Any] | Any, *, label: str, group: str,
                       clip_id: str | None = None, text_embed: TextEmbed | None = None) -> Clip:
    """A :class:`Clip` from an analysis (an ``Analysis`` or its JSON as a dict): its evidence
    and exemplars, face embeddings and voice functionals; text embeddings from ``text_embed``
    when given (else the text connector sees no vectors)."""
    data = analysis if isinstance(analysis, Mapping) else analysis.model_dump(mode="json")
    from pydantic import TypeAdapter

    from affectgraph.evidence import Evidence

    records = TypeAdapter(list[Evidence]).validate_python(data["evidence"])
    exemplars = [Exemplar.model_validate(e) for e in data.get("exemplars") or []]
    name = clip_id or str((data.get("media") or {}).get("path") or "clip")
    return Clip(id=name, label=label, group=group, evidence=tuple(records),
                exemplars=tuple(exemplars), vectors=record_vectors(records, text_embed))


def record_vectors(records: Sequence[Any], text_embed: TextEmbed | None = None
                   ) -> dict[str, np.ndarray]:
    """The connectors' input vectors of evidence records, per modality, in record order.

    Voice functionals are taken in the order the record lists them (eGeMAPSv02's own order)."""
    face = [np.asarray(r.embedding, np.float32) for r in records
            if isinstance(r, FaceEvidence) and r.embedding is not None]
    voice = [np.asarray(list(r.features.values()), np.float32) for r in records
             if isinstance(r, VoiceEvidence) and len(r.features) == DIMS["voice"]]
    texts = [r.text for r in records if isinstance(r, TranscriptEvidence) and r.text.strip()]
    out = {"face": face, "voice": voice}
    vectors = {m: np.stack(v) for m, v in out.items() if v}
    if text_embed is not None and texts:
        vectors["text"] = np.asarray(text_embed(texts), np.float32)
    return vectors


# -- examples ----------------------------------------------------------------------------------

def build_examples(clips: Sequence[Clip], *, seed: int = 0, variants: int = 1) -> BuildReport:
    """``variants`` examples per clip (different phrasings), every target step grounded."""
    rng = random.Random(seed)
    examples: list[Example] = []
    dropped: list[str] = []
    dropped_steps = 0
    for clip in clips:
        made = 0
        for _ in range(variants):
            facts = _facts(clip)
            steps, rejected = _grounded_steps(clip, facts, rng)
            dropped_steps += rejected
            if not steps:
                break
            prompt = rng.choice(INSTRUCTIONS) + "\n" + "\n".join(f[1] for f in facts)
            examples.append(Example(clip, prompt, target_json(clip.label, steps)))
            made += 1
        if not made:
            dropped.append(clip.id)
    return BuildReport(examples, dropped, dropped_steps)


def prompt_for(clip: Clip, instruction: str = INSTRUCTIONS[0]) -> str:
    """The prompt of a clip at inference time (the first phrasing by default)."""
    return instruction + "\n" + "\n".join(line for _, line in _facts(clip))


def target_json(label: str | None, steps: Sequence[RationaleStep]) -> str:
    """The compact verdict JSON the model is taught to write."""
    body = {"label": label, "steps": [{"claim": s.claim, "cites": list(s.cites)} for s in steps]}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _Fact:
    """What one modality's records show: their ids, span, top label and its measure."""

    modality: str
    ids: str
    when: str
    label: str
    p: float
    n: int = 0
    m: int = 0


def _facts(clip: Clip) -> list[tuple[_Fact | None, str]]:
    """(fact, prompt line) per modality present; the line ends with the placeholder."""
    out: list[tuple[_Fact | None, str]] = []
    for modality in DIMS:
        records = [r for r in clip.evidence if r.modality == modality]
        if not records:
            continue
        fact = _fact(modality, records)
        line = _line(fact, records) if fact else f"[{_ids(records)}] {modality}: undecided"
        out.append((fact, f"{line} {PLACEHOLDERS[modality]}"))
    return out


def _fact(modality: str, records: Sequence[Any]) -> _Fact | None:
    decided = [r for r in records if r.distribution]
    if not decided:
        return None
    when = f"{records[0].span.start:.2f}-{records[-1].span.end:.2f} s"
    if modality == "face":
        counts = Counter(r.label for r in decided)
        label, n = counts.most_common(1)[0]
        return _Fact(modality, _ids(records), when, label, 0.0, n, len(decided))
    mean = normalise({c: sum(r.distribution[c] for r in decided) / len(decided) for c in LABELS})
    label = max(mean, key=lambda c: mean[c])
    return _Fact(modality, _ids(decided), when, label, round(mean[label], 2))


def _line(fact: _Fact, records: Sequence[Any]) -> str:
    if fact.modality == "face":
        return f"[{fact.ids}] face {fact.when}: {fact.label} in {fact.n} of {fact.m} frames"
    if fact.modality == "voice":
        return f"[{fact.ids}] voice {fact.when}: {fact.label} p={fact.p:.2f}"
    said = " ".join(r.text.strip() for r in records if isinstance(r, TranscriptEvidence))
    return f'[{fact.ids}] words "{said[:160]}": {fact.label} p={fact.p:.2f}'


def _ids(records: Sequence[Any]) -> str:
    return ", ".join(compact_ids(r.id for r in records))


def _grounded_steps(clip: Clip, facts: Sequence[tuple[_Fact | None, str]],
                    rng: random.Random) -> tuple[list[RationaleStep], int]:
    """The claims of the facts (those agreeing with the label first), each kept only when the
    verifier grounds it; and how many it rejected."""
    found = [f for f, _ in facts if f is not None]
    found.sort(key=lambda f: f.label != clip.label)
    steps = [_step(f, rng) for f in found]
    if not steps:
        return [], 0
    dist = {c: 1.0 if c == clip.label else 0.0 for c in LABELS}
    verdict = Verdict(label=clip.label, distribution=dist, confidence=1.0, valence=0.0,
                      arousal=0.0, rationale=steps)
    checked = verify_verdict(verdict, clip.evidence, clip.exemplars)
    kept = [RationaleStep(claim=s.claim, cites=s.cites) for s in checked.rationale]
    return kept, len(checked.rejected)


def _step(fact: _Fact, rng: random.Random) -> RationaleStep:
    templates = {"face": _FACE, "voice": _VOICE, "text": _TEXT}[fact.modality]
    claim = rng.choice(templates).format(noun=_NOUN[fact.label], adj=fact.label, n=fact.n,
                                         m=fact.m, p=fact.p, when=fact.when, ids=fact.ids)
    claim = claim[0].upper() + claim[1:]
    return RationaleStep(claim=claim, cites=[i.strip() for i in fact.ids.split(",")])


# -- checks and splits -------------------------------------------------------------------------

def check_label_counts(examples: Sequence[Example], minimum: int) -> Counter[str]:
    """The examples per label; :class:`InputError` naming the labels with fewer than
    ``minimum`` (a label seen a handful of times cannot be learned, only memorised)."""
    counts = Counter(e.label for e in examples)
    short = {c: counts.get(c, 0) for c in sorted(set(counts) | set(LABELS))
             if 0 < counts.get(c, 0) < minimum}
    if short or not counts:
        listed = ", ".join(f"{c} {n}" for c, n in short.items()) or "no examples at all"
        raise InputError(f"too few training examples per label (need {minimum}): {listed}; add "
                         "labelled clips of those labels, drop the labels from the data, or "
                         "lower data.min_per_label")
    return counts


def split_by_group(examples: Sequence[Example], eval_share: float, *, seed: int = 0
                   ) -> tuple[list[Example], list[Example]]:
    """(train, eval) with every speaker group wholly in one part; about ``eval_share`` of the
    groups (at least one when there are two or more) go to eval."""
    groups = sorted({e.clip.group for e in examples})
    random.Random(seed).shuffle(groups)
    n_eval = min(len(groups) - 1, max(1 if len(groups) > 1 else 0,
                                      round(eval_share * len(groups))))
    held = set(groups[:n_eval])
    return ([e for e in examples if e.clip.group not in held],
            [e for e in examples if e.clip.group in held])
