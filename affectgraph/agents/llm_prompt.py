"""What the LLM aggregator asks: the evidence as a compact numbered list, and the answer schema.

Each line of the list starts with the id to cite and says what the cited records measured, in
the words and units the verifier checks (``happy p=0.62``, ``at 0.79-2.80 s``, ``pitch range 7.3
semitones``, ``happy in 11 of 17 frames``), so a model that copies what it read writes grounded
claims::

    1. [face:0-16] face, 17 frames at 0.00-3.24 s: happy in 11, neutral in 4; mean p: happy 0.61
    2. [face:0-2] face, 3 frames at 0.00-0.60 s: happy in 3; mean p: happy 0.95
    ...
    9. [voice:0] voice, speech turn at 0.79-2.80 s: disgusted p=0.28, neutral p=0.24; pitch
       122 Hz, pitch range 7.3 semitones, loudness 0.12 sones, 3.1 syllables/s
    10. [text:0] words at 0.79-2.31 s: "Kids are talking by the door." read as neutral p=0.50
    11. [vote:1] the 10 labelled face exemplars nearest face:5: happy 9, sad 1

Face frames are grouped into runs of consecutive frames with the same top label (a long video
has thousands of frames; a small model reads 40 lines). Exemplar votes get short aliases
(``vote:1``) that :func:`expand_aliases` turns back into the exemplar ids the verifier checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from affectgraph.errors import ConfigError
from affectgraph.evidence import FaceEvidence, TranscriptEvidence, VoiceEvidence
from affectgraph.labels import LABELS, canonical
from affectgraph.verdict import Exemplar, compact_ids

MIN_SHOWN = 0.05  # probabilities below this are left out of a line
_BRACKET = re.compile(r"\[([^\]]*)\]")


class AnswerStep(BaseModel):
    """One claim of the LLM's rationale and the ids it rests on."""

    model_config = ConfigDict(extra="ignore")

    claim: str = Field(description="one specific claim with its ids in brackets, e.g. 'the face "
                                   "shows happiness in 11 of 17 frames at 0.00-3.24 s [face:0-16]'")
    cites: list[str] = Field(default_factory=list, description="the ids the claim rests on")

    @field_validator("cites", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Answer(BaseModel):
    """The JSON object the LLM must answer with."""

    model_config = ConfigDict(extra="ignore")

    label: str | None = Field(description="one of " + ", ".join(LABELS) + "; null to abstain")
    abstention: str | None = Field(default=None, description="why you abstain (label null)")
    confidence: float | None = Field(default=None, ge=0, le=1,
                                     description="probability that the label is right")
    distribution: dict[str, float] | None = Field(
        default=None, description="probability of each label (optional), summing to 1")
    steps: list[AnswerStep] = Field(description="2 to 5 claims, strongest evidence first")

    @field_validator("label", mode="before")
    @classmethod
    def _canonical_label(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in
                             ("", "null", "none", "abstain")):
            return None
        if not isinstance(value, str):
            return value
        return _label(value)

    @field_validator("distribution", mode="before")
    @classmethod
    def _canonical_keys(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, float] = {}
        for key, p in value.items():
            label = _label(str(key))
            out[label] = out.get(label, 0.0) + float(p)
        return out


def _label(value: str) -> str:
    """A canonical label from a model's word for it (``Happiness`` -> ``happy``)."""
    try:
        emotion = canonical(value)
    except ConfigError:
        emotion = None
    if emotion is None:
        raise ValueError(f"{value!r} is not one of {', '.join(LABELS)}")
    return emotion.value


def _answer_schema() -> dict[str, Any]:
    """:class:`Answer`'s JSON schema with the labels as an enum, so that servers constraining
    their decoding to the schema can only write canonical labels."""
    schema = Answer.model_json_schema()
    label = schema["properties"]["label"]
    label["anyOf"] = [{"type": "string", "enum": list(LABELS)}, {"type": "null"}]
    return {**schema, "title": "affect_verdict"}


ANSWER_SCHEMA: dict[str, Any] = _answer_schema()

SYSTEM = """You decide which emotion a person shows in a clip, from evidence that specialist \
models measured. Answer with one JSON object and nothing else:
{{"label": one of {labels}, or null to abstain,
 "abstention": null, or why you abstain (the evidence is too weak or contradicts itself),
 "confidence": the probability (0 to 1) that your label is right,
 "distribution": {{"<label>": probability, ...}} (optional; sums to 1),
 "steps": [{{"claim": "...", "cites": ["<id>", ...]}}, ...]}}
Steps: 2 to 5, strongest evidence first. Each step is one specific claim about what the cited \
evidence shows, with the ids it rests on in brackets at its end and in "cites". Cite only ids \
from the numbered list (a run such as face:0-16 is one id). State only what the cited lines \
say, with their times, labels and numbers as written there. When modalities disagree, say so \
in a step that cites both.
Example step: {{"claim": "The voice sounds angry (p=0.62) at 0.90-3.10 s [voice:0]", \
"cites": ["voice:0"]}}"""


@dataclass(frozen=True)
class EvidenceList:
    """The numbered list the model reads, and the vote aliases in it (``vote:1`` -> the
    exemplar citations it stands for)."""

    text: str
    ids: frozenset[str]
    aliases: Mapping[str, tuple[str, ...]]


def system_prompt() -> str:
    return SYSTEM.format(labels=", ".join(LABELS))


def evidence_list(evidence: Sequence[Any], exemplars: Sequence[Exemplar], *,
                  hint: Mapping[str, float] | None = None, duration: float | None = None,
                  max_runs: int = 12) -> EvidenceList:
    """The evidence as a numbered list; ``hint`` (e.g. the fusion distribution) is added as a
    hint, not as evidence; at most ``max_runs`` face runs (longer videos get coarser runs)."""
    lines: list[tuple[str, str]] = []
    for modality in ("face", "voice", "text"):
        records = [r for r in evidence if r.modality == modality]
        if modality == "face" and records:
            lines += _face_lines(records, max_runs)
        else:
            lines += [(r.id, _line(r)) for r in records]
    aliases: dict[str, tuple[str, ...]] = {}
    for query, group in _vote_groups(exemplars).items():
        alias = f"vote:{len(aliases) + 1}"
        aliases[alias] = tuple(e.citation for e in group)
        lines.append((alias, _vote_line(query, group)))
    head = f"Evidence for a clip of {duration:.2f} s" if duration else "Evidence"
    body = [f"{n}. [{i}] {text}" for n, (i, text) in enumerate(lines, 1)]
    tail = []
    if hint:
        tail = ["Hint, not evidence (do not cite): a fusion model estimates "
                + _probs(hint, " ") + "."]
    text = "\n".join([head + " (cite the ids in brackets):", *body, *tail])
    return EvidenceList(text, frozenset(i for i, _ in lines), aliases)


def _face_lines(records: Sequence[Any], max_runs: int) -> list[tuple[str, str]]:
    runs = _runs(records)
    if len(runs) > max_runs:
        size = -(-len(records) // max_runs)
        runs = [list(records[i:i + size]) for i in range(0, len(records), size)]
    lines = [(_cite(records), _face_line(records))] if len(records) > 1 else []
    if len(runs) > 1 or len(records) == 1:
        lines += [(_cite(run), _face_line(run)) for run in runs]
    return lines


def _runs(records: Sequence[Any]) -> list[list[Any]]:
    """Consecutive records with the same top label (or the same reason for no face)."""
    runs: list[list[Any]] = []
    for r in records:
        key = r.label or r.reason
        if runs and (runs[-1][-1].label or runs[-1][-1].reason) == key:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def _face_line(run: Sequence[FaceEvidence]) -> str:
    frames = sum(r.frames for r in run)
    when = f"{run[0].span.start:.2f}-{run[-1].span.end:.2f} s"
    decided = [r for r in run if r.distribution]
    if not decided:
        return f"face, {frames} frames at {when}: {run[0].reason or 'no face'}"
    if len(run) == 1:
        return f"face, frame {run[0].frame_index} at {when}: {_reading(run[0])}"
    counts = {c: sum(r.label == c for r in decided) for c in LABELS}
    said = ", ".join(f"{c} in {n}" for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n)
    mean = {c: sum(r.distribution[c] for r in decided if r.distribution) / len(decided)
            for c in LABELS}
    missing = len(run) - len(decided)
    no_face = f"; no face in {missing}" if missing else ""
    return f"face, {len(run)} frames at {when}: {said}{no_face}; mean p: {_probs(mean, ' ')}"


def _line(record: Any) -> str:
    when = f"at {record.span.start:.2f}-{record.span.end:.2f} s"
    if isinstance(record, VoiceEvidence):
        text = f"voice, speech turn {when}: " + _reading(record)
        if record.prosody:
            text += "; " + _prosody(record)
        return text
    if isinstance(record, TranscriptEvidence):
        said = f'"{record.text.strip()}"' if record.text.strip() else "(no words)"
        return f"words {when}: {said} read as " + _reading(record)
    return f"{record.modality} {when}: " + _reading(record)


def _reading(record: Any) -> str:
    if not record.distribution:
        return f"undecided ({record.reason or 'no distribution'})"
    return _probs(record.distribution, "=", first_p=True)


def _prosody(record: VoiceEvidence) -> str:
    p = record.prosody
    assert p is not None
    parts = []
    if p.pitch_mean_hz is not None:
        parts.append(f"pitch {p.pitch_mean_hz:.0f} Hz")
    if p.pitch_range_st is not None:
        parts.append(f"pitch range {p.pitch_range_st:.1f} semitones")
    parts += [f"loudness {p.loudness:.2f} sones", f"{p.speaking_rate:.1f} syllables/s",
              f"pauses {p.pause_ratio:.0%}"]
    return ", ".join(parts)


def _probs(dist: Mapping[str, float], sep: str, first_p: bool = False) -> str:
    ranked = sorted(dist.items(), key=lambda kv: -kv[1])
    shown = [(c, p) for c, p in ranked if p >= MIN_SHOWN][:3] or ranked[:1]
    if first_p:
        return ", ".join(f"{c} p={p:.2f}" for c, p in shown)
    return ", ".join(f"{c}{sep}{p:.2f}" for c, p in shown)


def _vote_groups(exemplars: Sequence[Exemplar]) -> dict[str, list[Exemplar]]:
    groups: dict[str, list[Exemplar]] = {}
    for e in exemplars:
        groups.setdefault(e.evidence_id, []).append(e)
    return groups


def _vote_line(query: str, group: Sequence[Exemplar]) -> str:
    counts = {c: sum(e.label == c for e in group) for c in LABELS}
    said = ", ".join(f"{c} {n}" for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n)
    library = group[0].library or query.split(":")[0]
    return f"the {len(group)} labelled {library} exemplars nearest {query}: {said}"


def _cite(records: Sequence[Any]) -> str:
    return ", ".join(compact_ids(r.id for r in records))


# -- reading the answer ------------------------------------------------------------------------

def parse_json(text: str) -> Any:
    """The JSON object in a model's text: the whole text, a fenced block, or the outermost
    ``{...}``; :class:`ValueError` says what was wrong."""
    body = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", body, re.S)
    candidates = [body] + ([fenced[1]] if fenced else [])
    if "{" in body and "}" in body:
        candidates.append(body[body.index("{"):body.rindex("}") + 1])
    error: ValueError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError as exc:
            error = error or exc
    shown = body if len(body) <= 80 else body[:80] + "..."
    raise ValueError(f"not a JSON object ({error}): {shown!r}")


def expand_aliases(claim: str, cites: Sequence[str], aliases: Mapping[str, Sequence[str]]
                   ) -> tuple[str, list[str]]:
    """A step with ``vote:N`` replaced by the exemplar ids it stands for. A claim whose only
    bracket holds vote aliases loses the bracket and rests on ``cites`` (ten exemplar ids would
    drown the claim); other brackets have the ids written in."""
    def ids(items: Sequence[str]) -> list[str]:
        return [x for i in items for x in aliases.get(i.strip(), (i.strip(),))]

    brackets = list(_BRACKET.finditer(claim))
    inside = [[i.strip() for i in b[1].split(",") if i.strip()] for b in brackets]
    if len(brackets) == 1 and inside[0] and all(i in aliases for i in inside[0]):
        claim = (claim[:brackets[0].start()] + claim[brackets[0].end():]).strip()
        return claim, list(dict.fromkeys(ids([*inside[0], *cites])))
    claim = _BRACKET.sub(lambda b: "[" + ", ".join(ids(b[1].split(","))) + "]", claim)
    named = [i for group in inside for i in group]
    return claim, list(dict.fromkeys(ids([*cites, *named])))
