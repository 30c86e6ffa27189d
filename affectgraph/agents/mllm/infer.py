"""Inference: the tuned MLLM's answer as a verified verdict, or the fusion verdict and why.

As with the LLM aggregator (:mod:`affectgraph.agents.llm_aggregator`), an answer is used only
when it parses as the answer JSON, cites only ids of the clip's evidence and exemplars, the
verifier grounds at least ``min_grounding`` of its steps (see :func:`read_answer`);
otherwise the fusion verdict stands and its ``note`` says why. The MLLM is asked once (greedy
decoding is deterministic, so asking again would give the same answer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from affectgraph.agents.fusion import valence_arousal
from affectgraph.agents.llm_prompt import Answer, parse_json
from affectgraph.agents.mllm.instructions import (
    Clip,
    Example,
    TextEmbed,
    prompt_for,
    record_vectors,
)
from affectgraph.agents.verifier import EMOTION_WORDS, verify_verdict
from affectgraph.evidence import normalise
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, RationaleStep, Verdict, compact_ids, expand_ids

__all__ = ["Reading", "mllm_verdict", "read_answer"]


@dataclass(frozen=True)
class Reading:
    """What an answer text gave: the verified verdict (``None`` when unusable) and why not."""

    verdict: Verdict | None
    reason: str
    valid_json: bool
    unknown_ids: list[str]


def read_answer(raw: str, clip: Clip, *, min_grounding: float = 0.75,
                prior: Mapping[str, float] | None = None, named_label: bool = False) -> Reading:
    """Parse, check ids and verify one answer text against the clip's evidence. The verdict's
    distribution is the answer's own when it gives one; else its label gets its
    ``confidence`` (0.5 when it gives none, as the LLM aggregator does) and the rest of the mass
    is spread as ``prior`` (the fusion distribution; uniform when ``None``) spreads it.

    ``named_label``: also require a grounded step naming the label, as the LLM aggregator does.
    Off by default: the MLLM is taught the *true* label, which it may read from the soft tokens
    against every specialist (a fearful voice the voice head calls disgusted); its steps then
    report, grounded, what the specialists said, and the label is its own reading."""
    try:
        answer = Answer.model_validate(parse_json(raw))
    except (ValidationError, ValueError) as exc:
        return Reading(None, f"not the answer JSON ({str(exc).splitlines()[0][:160]})", False, [])
    steps = [RationaleStep(claim=s.claim.strip(), cites=list(s.cites)) for s in answer.steps]
    known = {r.id for r in clip.evidence} | {e.citation for e in clip.exemplars}
    cited = [c for s in steps for c in s.cites]
    unknown = compact_ids(i for i in expand_ids(cited) if i not in known)
    if unknown:
        return Reading(None, f"cites unknown ids {', '.join(unknown)}", True, unknown)
    if not steps or answer.label is None:
        return Reading(None, "no label or no steps", True, [])
    dist = _distribution(answer, prior)
    verdict = verify_verdict(_verdict(answer.label, dist, steps), clip.evidence, clip.exemplars)
    if (verdict.grounding or 0.0) < min_grounding:
        why = "; ".join(s.check or "" for s in verdict.rejected)[:240]
        return Reading(None, f"grounding {verdict.grounding or 0:.2f} < {min_grounding} ({why})",
                       True, [])
    if named_label and not any(_names(s.claim, answer.label) for s in verdict.rationale):
        return Reading(None, f"no grounded step shows {answer.label}", True, [])
    return Reading(verdict, "used", True, [])


def _names(claim: str, label: str) -> bool:
    words = claim.lower().replace("’", "'").split()
    return any(EMOTION_WORDS.get(w.strip(".,;:()[]\"'")) == label for w in words)


def _distribution(answer: Answer, prior: Mapping[str, float] | None) -> dict[str, float]:
    if answer.distribution:
        return normalise(answer.distribution)
    p = answer.confidence if answer.confidence is not None else 0.5
    rest = {c: (prior or {}).get(c, 1.0) for c in LABELS if c != answer.label}
    total = sum(rest.values()) or 1.0
    return normalise({answer.label or "": p, **{c: (1 - p) * v / total for c, v in rest.items()}})


def _verdict(label: str, dist: dict[str, float], steps: list[RationaleStep]) -> Verdict:
    valence, arousal = valence_arousal(dist)
    return Verdict(label=label, distribution=dist, confidence=dist[label], valence=valence,
                   arousal=arousal, rationale=steps, aggregator="mllm")


def mllm_verdict(model: Any, evidence: Sequence[Any], exemplars: Sequence[Exemplar],
                 fusion: Verdict, *, text_embed: TextEmbed | None = None, name: str = "mllm",
                 min_grounding: float = 0.75) -> Verdict:
    """The MLLM's verified verdict for one clip's evidence, or ``fusion`` with the reason."""
    clip = Clip(id="clip", label="", group="", evidence=tuple(evidence),
                exemplars=tuple(exemplars), vectors=record_vectors(evidence, text_embed))
    if not evidence:
        return _fallback(fusion, name, "there is no evidence to show it")
    raw = model.generate([Example(clip, prompt_for(clip), "")])[0]
    reading = read_answer(raw, clip, min_grounding=min_grounding, prior=fusion.distribution)
    if reading.verdict is None:
        return _fallback(fusion, name, reading.reason)
    verdict = reading.verdict.model_copy(update={
        "timeline": fusion.timeline, "aggregator": name,
        "note": f"answer by {name}, grounding {reading.verdict.grounding:.2f}"})
    return verdict


def _fallback(fusion: Verdict, name: str, why: str) -> Verdict:
    note = f"the {name} gave no usable answer ({why}); this is the fusion verdict"
    return fusion.model_copy(update={"note": note + (f"; {fusion.note}" if fusion.note else "")})
