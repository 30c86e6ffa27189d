"""Answers to the common questions about a clip from its evidence alone, with no language model.

:func:`answer_offline` parses the question (:mod:`affectgraph.agents.questions`) and answers by
intent: the verdict (*what emotion*), its verified reasoning (*why*), the timeline's changes
(*when did it change*), one modality's evidence (*what did the face / voice / words show*), one
moment or range (*what happened at 2 s*, *at 1:05*, *in turn 2*), a comparison (*compare turn
1 and turn 3*, *voice:0 vs voice:2*, *the face and the voice*) and single records (*what is
face:3*). Every statement about the evidence is a claim built from measured values
(:mod:`affectgraph.agents.claims`) that cites ids and times, and goes through the verifier.
What it cannot answer, it says, and lists what it can (:data:`CAPABILITIES`); a time past the
clip's end gets the clip's duration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

from affectgraph.agents import claims
from affectgraph.agents.answer import Answer, Part, checked_answer
from affectgraph.agents.questions import LAST, Question, parse_question
from affectgraph.analysis import Analysis
from affectgraph.evidence import (
    MODALITIES,
    FaceEvidence,
    TimeSpan,
    TranscriptEvidence,
    VoiceEvidence,
    top,
)
from affectgraph.summary import describe_valence_arousal, top_labels
from affectgraph.verdict import RationaleStep, TimelineEntry, compact_ids, expand_ids

CAPABILITIES = (
    "what emotion is it? (the verdict)",
    "why? (the verified reasoning behind it)",
    "when did it change? (the timeline)",
    "what did the face / the voice / the words show?",
    "what happened at 2 s? (or at 1:05, between 1 and 2 s, in turn 2)",
    "compare turn 1 and turn 3 (or voice:0 vs voice:2, or the face and the voice)",
    "what is face:3? (one evidence record)",
)
"""The questions the offline answerer understands, as shown to users."""

NAMES = {"face": "face", "voice": "voice", "text": "words"}
SPECIALIST = {"face": "face", "voice": "voice", "text": "transcript"}
EDGE = 0.05  # seconds past the end of the clip still read as its end (rounding of "3.2 s")


def answer_offline(question: str | Question, analysis: Analysis) -> Answer:
    """Answer ``question`` about ``analysis`` from its evidence, citing ids and times."""
    q = question if isinstance(question, Question) else parse_question(
        question, analysis.media.duration)
    parts = _ANSWERS[q.intent](q, analysis)
    return checked_answer(q.text, parts, analysis, intent=q.intent)


def capabilities() -> list[str]:
    return ["I can answer, from this clip's evidence:", *(f"  {c}" for c in CAPABILITIES)]


# -- the verdict ---------------------------------------------------------------------------------

def _emotion(q: Question, a: Analysis) -> list[Part]:
    v = a.verdict
    if v is None:
        return _no_verdict(a)
    whole = claims.when(0.0, a.media.duration)
    if v.abstained:
        parts: list[Part] = [f"No single emotion over the clip ({whole}): the verdict abstains "
                             f"because {v.abstention}.",
                             f"Most likely: {top_labels(v.distribution)}."]
    else:
        yes = "Yes: " if q.emotion == v.label else ""
        parts = [f"{yes}The clip reads as {v.label} over {whole} (confidence {v.confidence:.2f}; "
                 f"next: {_runners_up(v.distribution, v.label)}).",
                 f"{describe_valence_arousal(v.valence, v.arousal).capitalize()}."]
    if q.emotion and q.emotion != v.label:
        parts += _asked_emotion(q.emotion, a)
    strongest = [s for s in v.rationale if s.grounded][:2]
    if strongest:
        parts.append("Strongest evidence:")
        parts += strongest
    return parts


def _asked_emotion(emotion: str, a: Analysis) -> list[Part]:
    """Where the evidence shows an emotion the user asked about that the verdict is not."""
    v = a.verdict
    assert v is not None
    fused = f"{emotion} has p={v.distribution[emotion]:.2f} in the fused distribution"
    parts: list[Part] = [f"Not {emotion} overall: {fused}." if v.label else
                         f"Undecided: {fused}."]
    shown = []
    for modality in MODALITIES:
        records = a.of(modality)
        if modality == "face":
            shown += [claims.face_run(run) for run in claims.runs(records, lambda r: r.label)
                      if run[0].label == emotion][:3]
        else:
            shown += [s for r in records if r.label == emotion for s in claims.describe(r)][:3]
    if shown:
        parts.append(f"Evidence that does show {emotion}:")
        return parts + shown
    return [*parts, f"No evidence record has {emotion} as its most likely label."]


def _why(q: Question, a: Analysis) -> list[Part]:
    v = a.verdict
    if v is None:
        return _no_verdict(a)
    if v.abstained:
        head = f"The verdict abstains because {v.abstention}."
    else:
        head = f"The verdict is {v.label} (confidence {v.confidence:.2f}) because:"
    parts: list[Part] = [head, *(s for s in v.rationale if s.grounded)]
    if v.rejected:
        parts.append(f"({len(v.rejected)} reasoning steps failed verification and are not "
                     f"shown as fact.)")
    if v.note:
        parts.append(f"Note: {v.note}.")
    return parts


def _no_verdict(a: Analysis) -> list[Part]:
    parts: list[Part] = ["This analysis has no verdict (no aggregator ran); what each modality "
                         "showed:"]
    for modality in MODALITIES:
        parts += _modality_parts(modality, a.of(modality), a)
    return parts


def _runners_up(distribution: dict[str, float], label: str | None) -> str:
    rest = {k: p for k, p in distribution.items() if k != label}
    return top_labels(rest, 2)


# -- time ----------------------------------------------------------------------------------------

def _change(q: Question, a: Analysis) -> list[Part]:
    if a.verdict is None:
        return _no_verdict(a)
    entries = a.verdict.timeline
    kind = "speech turn" if a.turns else "window"
    if not entries:
        parts: list[Part] = ["The verdict has no timeline: no turn or window had evidence."]
    else:
        parts = [f"The fused estimate per {kind}: " + "; ".join(
            f"{kind} {i} ({claims.when(e.span.start, e.span.end)}) {_label(e)}"
            for i, e in enumerate(entries, 1)) + "."]
    changes = [(i, x, y) for i, (x, y) in enumerate(pairwise(entries), 1)
               if x.label != y.label]
    for i, x, y in changes[:5]:
        parts.append(f"It changes from {_label(x)} to {_label(y)} between {x.span.end:.1f} and "
                     f"{y.span.start:.1f} s ({kind} {i} to {i + 1}):")
        for entry in (x, y):
            parts += _entry_claims(entry, a)
    if len(entries) > 1 and not changes:
        parts.append(f"It does not change between {kind}s.")
    elif len(entries) == 1:
        parts.append(f"With one {kind}, the fused estimate cannot change between {kind}s.")
    face = claims.face_runs(_faces(a))
    if len(face) > 1:
        parts.append("The face changes within the clip:")
        parts += face
    return parts


def _entry_claims(entry: TimelineEntry, a: Analysis) -> list[Part]:
    """The voice and words of one timeline entry (the face is shown as runs separately)."""
    ids = set(expand_ids(entry.evidence))
    out: list[Part] = []
    for modality in ("voice", "text"):
        records = [r for r in a.of(modality) if r.id in ids]
        out += [s for r in records[:2] for s in claims.describe(r)[:1]]
    if not out:
        faces = [r for r in _faces(a) if r.id in ids]
        out += claims.face_overall(faces)
    return out


def _label(entry: TimelineEntry) -> str:
    return entry.label or "uncertain"


def _time(q: Question, a: Analysis) -> list[Part]:
    duration = a.media.duration
    start, end = q.span  # type: ignore[misc]
    if start > duration + EDGE:
        return _beyond(q, a)
    if end > duration + EDGE:
        note = (f"The clip ends at {duration:.1f} s, before the end of what you asked "
                f"({', '.join(q.time_words)}); up to its end:")
        return [note, *_range(TimeSpan(start=start, end=duration), q, a)]
    if end - start < 1e-9:
        return _moment(min(start, duration), q, a)
    return _range(TimeSpan(start=start, end=end), q, a)


def _beyond(q: Question, a: Analysis) -> list[Part]:
    d = a.media.duration
    asked = ", ".join(f"{w} ({t:g} s)" if ":" in w else w
                      for w, t in zip(q.time_words, q.times, strict=False)) or f"{q.times[0]:g} s"
    return [f"The clip lasts {d:.1f} s ({_clock(d)}); {asked} is past its end. "
            f"Ask about a time between 0 and {d:.1f} s."]


def _moment(t: float, q: Question, a: Analysis) -> list[Part]:
    chosen = q.modalities or MODALITIES
    parts: list[Part] = []
    entry = next((e for e in (a.verdict.timeline if a.verdict else [])
                  if e.span.contains(t, EDGE)), None)
    parts.append(f"At {t:.1f} s" + (f", in the {claims.when(entry.span.start, entry.span.end)} "
                                   f"stretch, the fused estimate is {_label(entry)}:"
                                   if entry else ":"))
    if "face" in chosen:
        parts += _face_at(t, a)
    if "voice" in chosen:
        parts += _covering("voice", t, a)
    if "text" in chosen:
        parts += _covering("text", t, a)
    return parts


def _face_at(t: float, a: Analysis) -> list[Part]:
    records = _faces(a)
    if not records:
        return [_missing("face", a)]
    nearest = min(records, key=lambda r: 0.0 if r.span.contains(t) else
                  min(abs(r.span.start - t), abs(r.span.end - t)))
    if not nearest.span.contains(t, 0.25):
        return [f"No face frame was sampled near {t:.1f} s."]
    out: list[Part] = [claims.face_at(nearest, t)]
    run = next(run for run in claims.runs(records, lambda r: r.label) if nearest in run)
    if len(run) > 1 and nearest.distribution:
        out.append(claims.face_run(run))
    return out


def _covering(modality: str, t: float, a: Analysis) -> list[Part]:
    records = a.of(modality)  # type: ignore[arg-type]
    if not records:
        return [_missing(modality, a)]
    here = [r for r in records if r.span.contains(t, EDGE)]
    if not here:
        nearest = min(records, key=lambda r: min(abs(r.span.start - t), abs(r.span.end - t)))
        what = "speech turn" if modality == "voice" else "transcript segment"
        return [f"No {what} covers {t:.1f} s; the nearest one:", *claims.describe(nearest)]
    out: list[Part] = [s for r in here for s in claims.describe(r)]
    if modality == "text":
        out += [s for r in here if isinstance(r, TranscriptEvidence)
                if (s := claims.words_at(r, t))]
    return out


def _range(span: TimeSpan, q: Question, a: Analysis, title: str | None = None) -> list[Part]:
    chosen = q.modalities or MODALITIES
    parts: list[Part] = [title or f"Between {span.start:.1f} and {span.end:.1f} s:"]
    for entry in a.verdict.timeline if a.verdict else []:
        if entry.span.overlap(span) > 0:
            parts.append(f"  the fused estimate for {claims.when(entry.span.start, entry.span.end)}"
                         f" is {_label(entry)}")
    for modality in chosen:
        records = [r for r in a.of(modality) if _inside(r.span, span)]
        parts += _modality_parts(modality, records, a, none=f"no {NAMES[modality]} evidence "
                                 f"between {span.start:.1f} and {span.end:.1f} s")
    return parts


def _inside(record: TimeSpan, span: TimeSpan) -> bool:
    return record.overlap(span) > 0 or (record.duration == 0 and span.contains(record.start))


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


# -- modalities, turns, records ------------------------------------------------------------------

def _modality(q: Question, a: Analysis) -> list[Part]:
    parts: list[Part] = []
    for modality in q.modalities:
        records = a.of(modality)
        parts.append(f"The {NAMES[modality]}:")
        parts += _modality_parts(modality, records, a)
        if q.emotion and records:
            decided = [r for r in records if r.distribution]
            if decided:
                p = claims.mean_of(decided)[q.emotion]
                parts.append(f"  ({q.emotion}: mean p={p:.2f} over {len(decided)} "
                             f"{NAMES[modality]} records; most likely "
                             f"{top(claims.mean_of(decided))[0]})")
    return parts


def _modality_parts(modality: str, records: Sequence[Any], a: Analysis,
                    none: str | None = None) -> list[Part]:
    """The summary of ``records``; without any, why the modality has none (or ``none`` when
    the clip has that modality's evidence elsewhere)."""
    if records:
        listed: list[Part] = list(claims.summary(modality, records))
        if modality != "face" and len(records) > claims.MOST_RECORDS:
            listed.append(f"  ({len(records) - claims.MOST_RECORDS} more not listed: ask about a "
                          f"turn, a time or an id)")
        return listed
    if none is None or not a.of(modality):  # type: ignore[arg-type]
        return [_missing(modality, a)]
    return [f"  {none}"]


def _missing(modality: str, a: Analysis) -> str:
    name = SPECIALIST[modality]
    why = a.skipped.get(name) or a.failures.get(name)
    if why:
        return f"  No {NAMES[modality]} evidence (the {name} specialist: {why})."
    return f"  No {NAMES[modality]} evidence in this clip."


def _turn(q: Question, a: Analysis) -> list[Part]:
    turns = _turns(a)
    number = q.turns[0]
    index = len(turns) if number == LAST else number
    if not 1 <= index <= len(turns):
        return [_no_turn(number, turns)]
    span = turns[index - 1]
    return _range(span, q, a, title=f"Turn {index} ({claims.when(span.start, span.end)}):")


def _faces(a: Analysis) -> list[FaceEvidence]:
    return [r for r in a.of("face") if isinstance(r, FaceEvidence)]


def _voices(a: Analysis) -> list[VoiceEvidence]:
    return [r for r in a.of("voice") if isinstance(r, VoiceEvidence)]


def _turns(a: Analysis) -> list[TimeSpan]:
    return sorted({t.span for t in a.turns}, key=lambda s: (s.start, s.end))


def _no_turn(number: int, turns: Sequence[TimeSpan]) -> str:
    listed = "; ".join(f"{i}: {claims.when(s.start, s.end)}" for i, s in enumerate(turns, 1))
    if not turns:
        return "This clip has no speech turns, so there is no turn to talk about."
    plural = "s" if len(turns) > 1 else ""
    return f"This clip has {len(turns)} speech turn{plural} ({listed}); there is no turn {number}."


def _evidence(q: Question, a: Analysis) -> list[Part]:
    parts: list[Part] = []
    for cite in q.ids:
        parts += _record_parts(cite, a)
    return parts


def _record_parts(cite: str, a: Analysis) -> list[Part]:
    if cite.startswith("exemplar:"):
        found = [e for e in a.exemplars if e.citation == cite]
        if not found:
            return [f"There is no exemplar {cite} in this analysis ({len(a.exemplars)} were "
                    f"retrieved)."]
        e = found[0]
        said = f" saying \"{e.text}\"" if e.text else ""
        return [RationaleStep(claim=f"{cite} is a labelled {e.library} exemplar{said}, "
                                    f"labelled {e.label}, retrieved for {e.evidence_id} "
                                    f"[{cite}]", cites=[cite])]
    known = {r.id: r for r in a.evidence}
    ids = expand_ids([cite])
    missing = [i for i in ids if i not in known]
    if missing:
        return [f"There is no evidence {', '.join(compact_ids(missing))}; this analysis has "
                f"{', '.join(compact_ids(known)) or 'no evidence'}."]
    records = [known[i] for i in ids]
    if len(records) == 1:
        return list(claims.describe(records[0]))
    return list(claims.summary(records[0].modality, records))


def _compare(q: Question, a: Analysis) -> list[Part]:
    if len(q.turns) >= 2:
        return _compare_turns(q, a)
    if len(q.ids) >= 2:
        parts = [p for cite in q.ids for p in _record_parts(cite, a)]
        return [*parts, *_agreement([_top_of(cite, a) for cite in q.ids], q.ids)]
    if len(q.modalities) >= 2:
        return _compare_modalities(q, a)
    return ["Name two things to compare: two turns (compare turn 1 and turn 3), two evidence "
            "ids (voice:0 vs voice:2) or two modalities (compare the face and the voice).",
            _turn_list(a)]


def _compare_turns(q: Question, a: Analysis) -> list[Part]:
    turns = _turns(a)
    numbers = [len(turns) if n == LAST else n for n in q.turns[:4]]
    bad = [n for n in numbers if not 1 <= n <= len(turns)]
    if bad:
        return [_no_turn(bad[0], turns)]
    parts: list[Part] = []
    labels: list[str | None] = []
    voices: list[VoiceEvidence | None] = []
    for n in numbers:
        span = turns[n - 1]
        entry = next((e for e in a.verdict.timeline if e.span == span), None) if a.verdict else None
        labels.append(_label(entry) if entry else None)
        fused = f": the fused estimate is {_label(entry)}" if entry else ""
        parts.append(f"Turn {n} ({claims.when(span.start, span.end)}){fused}")
        for modality in MODALITIES:
            records = [r for r in a.of(modality) if _inside(r.span, span)]
            if modality == "face":
                parts += claims.face_overall([r for r in _faces(a) if _inside(r.span, span)])
            else:
                parts += [s for r in records[:2] for s in claims.describe(r)]
        voices.append(next((r for r in _voices(a) if r.span == span), None))
    if voices[0] is not None and voices[1] is not None:
        parts.append(f"From turn {numbers[0]} to turn {numbers[1]}:")
        parts += claims.prosody_change(voices[0], voices[1])
    names = [f"turn {n}" for n in numbers]
    return parts + _agreement(labels, names)


def _compare_modalities(q: Question, a: Analysis) -> list[Part]:
    parts: list[Part] = []
    labels: list[str | None] = []
    for modality in q.modalities:
        records = [r for r in a.of(modality) if r.distribution]
        parts.append(f"The {NAMES[modality]}:")
        if not records:
            parts.append(_missing(modality, a))
            labels.append(None)
            continue
        labels.append(top(claims.mean_of(records))[0])
        parts += claims.summary(modality, records)[:1]
    conflicts = [s for s in (a.verdict.rationale if a.verdict else [])
                 if s.claim.startswith("The modalities disagree")
                 and {c.split(":")[0] for c in s.cites} <= set(q.modalities)]
    return parts + _agreement(labels, [NAMES[m] for m in q.modalities]) + conflicts


def _agreement(labels: Sequence[str | None], names: Sequence[str]) -> list[Part]:
    known = [(n, x) for n, x in zip(names, labels, strict=False) if x]
    if len(known) < 2:
        return []
    if len({x for _, x in known}) == 1:
        return [f"They agree: {' and '.join(n for n, _ in known)} are all {known[0][1]}."]
    return ["They differ: " + ", ".join(f"{n} is {x}" for n, x in known) + "."]


def _top_of(cite: str, a: Analysis) -> str | None:
    known = {r.id: r for r in a.evidence}
    records = [known[i] for i in expand_ids([cite]) if i in known and known[i].distribution]
    return top(claims.mean_of(records))[0] if records else None


def _turn_list(a: Analysis) -> str:
    turns = _turns(a)
    if not turns:
        return "This clip has no speech turns."
    return f"This clip has {len(turns)} speech turns: " + "; ".join(
        f"{i}: {claims.when(s.start, s.end)}" for i, s in enumerate(turns, 1)) + "."


# -- help ----------------------------------------------------------------------------------------

def _help(q: Question, a: Analysis) -> list[Part]:
    return list(capabilities())


def _unknown(q: Question, a: Analysis) -> list[Part]:
    return ["I cannot answer that from the evidence without a language model: I recognise "
            "questions about the emotion, the reasons for it, changes over time, one modality, "
            "a moment or turn, a comparison, or an evidence id. (Start the chat with --llm "
            "for free-form questions.)", *capabilities()]


_ANSWERS: dict[str, Callable[[Question, Analysis], list[Part]]] = {
    "help": _help, "emotion": _emotion, "why": _why, "change": _change, "time": _time,
    "modality": _modality, "turn": _turn, "evidence": _evidence, "compare": _compare,
    "unknown": _unknown,
}
