"""Answers from a language model, held to the evidence by the verifier.

The model (any LangChain ``BaseChatModel``) gets the clip's evidence as a numbered list
(:func:`evidence_list`: every record with its id, span and values, the verdict and its verified
reasoning), the conversation so far and the question, and is told to cite ids in square
brackets after every statement. Its reply is split into sentences (:func:`split_claims`); each
sentence that cites ids, or that states an emotion or a number without citing any, is a claim for
the verifier; the rest is connecting text. Claims that fail (an invented id, a time outside the
cited evidence, an emotion or number it does not show, no citation) stay in the text marked
``[not verified: why]``. When the model call fails, the offline answerer answers instead and the
answer's ``note`` says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from affectgraph.agents.answer import Answer, Part, checked_answer
from affectgraph.agents.claims import runs
from affectgraph.agents.verifier import EMOTION_WORDS
from affectgraph.analysis import Analysis
from affectgraph.evidence import FaceEvidence, TranscriptEvidence, VoiceEvidence
from affectgraph.summary import top_labels
from affectgraph.verdict import RationaleStep, compact_ids

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger(__name__)

MOST_FACES = 60  # more face frames than this are listed as runs of the same label
MOST_HISTORY = 10  # earlier messages sent with the question

INSTRUCTIONS = """\
You answer questions about one analysed clip (video or audio), using only the evidence below.
After every statement about the clip, cite the evidence ids it rests on in square brackets, \
e.g. "The face shows happiness from 0.8 to 1.4 s [face:4-6]." or "The voice sounds angry \
(p=0.78) [voice:0]." Give times in seconds and numbers as the evidence states them. Do not \
cite ids that are not listed. If the evidence cannot answer the question, say so plainly. \
Statements without citations, or not supported by the evidence they cite, are shown to the \
user as unverified."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(\[])")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_ID = re.compile(r"\b(?:face|voice|text):\d+(?:-\d+)?\b|\bexemplar:[\w./-]*\w")
_ASSERTS = re.compile(r"\d")


def answer_with_llm(model: BaseChatModel, question: str, analysis: Analysis,
                    history: Sequence[BaseMessage] = ()) -> Answer:
    """The model's answer to ``question`` with every claim checked against ``analysis``."""
    from langchain_core.messages import HumanMessage, SystemMessage

    messages = [SystemMessage(INSTRUCTIONS + "\n\n" + evidence_list(analysis)),
                *history[-MOST_HISTORY:], HumanMessage(question)]
    try:
        reply = model.invoke(messages)
    except Exception as exc:  # an endpoint down or a model error: the user still gets an answer
        from affectgraph.agents.offline_answers import answer_offline

        log.warning("the language model failed: %s", exc)
        offline = answer_offline(question, analysis)
        return offline.model_copy(update={
            "note": f"the language model failed ({type(exc).__name__}: {exc}); "
                    f"answered offline from the evidence"})
    return checked_answer(question, split_claims(reply.text), analysis, intent="llm",
                          answerer="llm")


def split_claims(text: str) -> list[Part]:
    """The reply as lines: a sentence citing ids, or stating an emotion or a number, is a
    claim (a :class:`RationaleStep` citing the ids in it); others are connecting text."""
    parts: list[Part] = []
    sentences = [s.strip() for line in text.splitlines()
                 for s in _SENTENCE.split(_BULLET.sub("", line))]
    for sentence in filter(None, sentences):
        cited = [i for m in _BRACKET.finditer(sentence) for i in _ID.findall(m[1])]
        cited += _ID.findall(_BRACKET.sub(" ", sentence))
        if cited or _asserts(sentence):
            parts.append(RationaleStep(claim=sentence, cites=list(dict.fromkeys(cited))))
        else:
            parts.append(sentence)
    return parts


def _asserts(sentence: str) -> bool:
    words = re.findall(r"[a-z]+", sentence.lower())
    return bool(_ASSERTS.search(sentence)) or any(w in EMOTION_WORDS for w in words)


# -- the evidence as the model reads it ---------------------------------------------------------

def evidence_list(analysis: Analysis) -> str:
    """The clip, its verdict and every evidence record as a numbered list (ids first)."""
    media = analysis.media
    turns = sorted({t.span for t in analysis.turns}, key=lambda s: s.start)
    lines = [f"Clip: {media.kind}, {media.duration:.2f} s long; speech turns: {len(turns)}"
             + (": " + "; ".join(f"turn {i} {s}" for i, s in enumerate(turns, 1)) if turns
                else ".")]
    lines += _verdict_lines(analysis)
    missing = {**analysis.skipped, **analysis.failures}
    if missing:
        lines.append("Not analysed: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    lines.append("Evidence:")
    entries = _entries(analysis)
    lines += [f"{n}. [{cite}] {text}" for n, (cite, text) in enumerate(entries, 1)]
    return "\n".join(lines)


def _verdict_lines(analysis: Analysis) -> list[str]:
    v = analysis.verdict
    if v is None:
        return ["Verdict: none (no aggregator ran)."]
    head = (f"Verdict: {v.label} (confidence {v.confidence:.2f})" if not v.abstained
            else f"Verdict: abstains ({v.abstention})")
    lines = [f"{head}; distribution {top_labels(v.distribution)}; valence {v.valence:+.2f}, "
             f"arousal {v.arousal:+.2f}."]
    if v.timeline:
        lines.append("Timeline (fused): " + "; ".join(
            f"{e.span}: {e.label or 'uncertain'} [{', '.join(e.evidence)}]" for e in v.timeline))
    verified = [s for s in v.rationale if s.grounded]
    if verified:
        lines.append("Verified reasoning:")
        lines += [f"- {s.claim}" + ("" if "[" in s.claim else f" [{', '.join(s.cites[:3])}]")
                  for s in verified]
    return lines


def _entries(analysis: Analysis) -> list[tuple[str, str]]:
    faces = analysis.of("face")
    if len(faces) > MOST_FACES:
        out = [_face_run(run) for run in runs(faces, lambda r: r.label)]
    else:
        out = [(r.id, _record(r)) for r in faces]
    out += [(r.id, _record(r)) for r in [*analysis.of("voice"), *analysis.of("text")]]
    out += [(e.citation, f"labelled {e.label} exemplar from {e.library or 'a library'}, "
                         f"similarity {e.similarity:.2f}, retrieved for {e.evidence_id}"
                         + (f', saying "{e.text}"' if e.text else ""))
            for e in analysis.exemplars]
    return out


def _record(r: Any) -> str:
    kind = {"face": "face frame", "voice": "voice turn", "text": "words"}[r.modality]
    head = f"{kind}, {r.span}"
    if isinstance(r, TranscriptEvidence):
        head += f': "{r.text}"'
    if not r.distribution:
        return f"{head}: {r.reason or 'no emotion distribution'}"
    body = f"{head}: " + ", ".join(f"{k} p={p:.2f}" for k, p in _best(r.distribution))
    if isinstance(r, VoiceEvidence) and r.prosody:
        p = r.prosody
        pitch = (f"pitch {p.pitch_mean_hz:.0f} Hz, pitch range {p.pitch_range_st:.1f} semitones, "
                 if p.pitch_mean_hz is not None and p.pitch_range_st is not None else "")
        body += (f"; {pitch}loudness {p.loudness:.2f} sones, {p.speaking_rate:.1f} syllables/s, "
                 f"pauses {p.pause_ratio:.0%}")
    if isinstance(r, FaceEvidence) and r.track_id is not None:
        body += f"; face track {r.track_id}"
    return body


def _face_run(run: list[FaceEvidence]) -> tuple[str, str]:
    cite = compact_ids(r.id for r in run)[0]
    span = f"{run[0].span.start:.2f}-{run[-1].span.end:.2f} s"
    if not run[0].distribution:
        return cite, f"face frames, {span}: {len(run)} frames with no face"
    label = run[0].label
    mean = sum((r.distribution or {}).get(label or "", 0.0) for r in run) / len(run)
    return cite, f"face frames, {span}: {len(run)} frames, all {run[0].label} (mean p={mean:.2f})"


def _best(distribution: dict[str, float], n: int = 3) -> list[tuple[str, float]]:
    return sorted(distribution.items(), key=lambda kv: -kv[1])[:n]
