"""Evidence described as claims the verifier can check: what, when, how much, and the ids.

Every function returns :class:`~affectgraph.verdict.RationaleStep` s whose claims are built from
the measured values of the records they cite ("From 1.4 to 2.0 s the face shows anger (mean
p=0.33) [face:7-9]"), in the phrasing the verifier checks (:mod:`affectgraph.agents.verifier`):
times in seconds, ``p=`` probabilities of the emotion the clause names, ``x of n`` counts over
the cited records, prosody with its units, quotes from the cited text. The offline chat answers
(:mod:`affectgraph.agents.offline_answers`) are made of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from affectgraph.agents.rationale import NOUN
from affectgraph.evidence import (
    FaceEvidence,
    TranscriptEvidence,
    VoiceEvidence,
    Word,
    top,
)
from affectgraph.labels import LABELS
from affectgraph.verdict import RationaleStep, compact_ids

MOST_RUNS = 8  # face runs listed in one answer (the longest ones, in time order)
MOST_RECORDS = 6  # voice turns or transcript segments listed one by one
QUOTE_WORDS = 14  # a longer transcript segment is quoted up to here


def when(start: float, end: float) -> str:
    """``0.8-2.8 s``: one decimal (the verifier allows 0.3 s around spans), two when that
    would make a short span look empty (``3.20-3.24 s``, not ``3.2-3.2 s``)."""
    if f"{start:.1f}" == f"{end:.1f}" and end > start:
        return f"{start:.2f}-{end:.2f} s"
    return f"{start:.1f}-{end:.1f} s"


def step(claim: str, records: Sequence[Any]) -> RationaleStep:
    """A claim ending in the bracketed ids of ``records``."""
    ids = compact_ids(r.id for r in records)
    return RationaleStep(claim=f"{claim} [{', '.join(ids)}]", cites=ids)


def noun(modality: str, label: str) -> str:
    """How a label reads after "the face shows" (a noun) or "sounds" / "read as" (an
    adjective)."""
    return NOUN[label] if modality == "face" else label


def mean_of(records: Sequence[Any]) -> dict[str, float]:
    dists = [r.distribution for r in records]
    return {c: sum(d[c] for d in dists) / len(dists) for c in LABELS}


def extent(records: Sequence[Any]) -> tuple[float, float]:
    return min(r.span.start for r in records), max(r.span.end for r in records)


# -- face ----------------------------------------------------------------------------------------

def face_overall(records: Sequence[FaceEvidence]) -> list[RationaleStep]:
    """The face over ``records``: the label most frames show, and where no face was found."""
    decided = [r for r in records if r.distribution]
    out = []
    if decided:
        label, p = top(mean_of(decided))
        n = sum(1 for r in decided if r.label == label)
        out.append(step(f"The face shows {NOUN[label]} in {n} of {len(decided)} sampled frames "
                        f"(mean p={p:.2f}) at {when(*extent(decided))}", decided))
    out += [step(f"No face was found at {when(*extent(run))}", run)
            for run in runs(records, lambda r: r.distribution is None) if not run[0].distribution]
    return out


def face_runs(records: Sequence[FaceEvidence], most: int = MOST_RUNS) -> list[RationaleStep]:
    """Stretches of consecutive frames with the same most likely label, in time order (the
    ``most`` longest when there are more)."""
    found = [run for run in runs(records, lambda r: r.label) if run[0].distribution]
    if len(found) > most:
        longest = sorted(found, key=lambda run: -len(run))[:most]
        found = sorted(longest, key=lambda run: run[0].span.start)
    return [face_run(run) for run in found]


def face_run(run: Sequence[FaceEvidence]) -> RationaleStep:
    label, p = top(mean_of(run))
    start, end = extent(run)
    if len(run) == 1:
        return step(f"At {when(start, end)} the face shows {NOUN[label]} (p={p:.2f})", run)
    return step(f"From {start:.1f} to {end:.1f} s the face shows {NOUN[label]} "
                f"(mean p={p:.2f})", run)


def face_at(record: FaceEvidence, t: float) -> RationaleStep:
    if not record.distribution:
        return step(f"At {t:.1f} s no face was found", [record])
    label, p = top(record.distribution)
    return step(f"At {t:.1f} s the face shows {NOUN[label]} (p={p:.2f})", [record])


def runs(records: Sequence[Any], key: Any) -> list[list[Any]]:
    """Consecutive records with the same ``key(record)``."""
    runs: list[list[Any]] = []
    for record in records:
        if runs and key(runs[-1][-1]) == key(record):
            runs[-1].append(record)
        else:
            runs.append([record])
    return runs


# -- voice ---------------------------------------------------------------------------------------

def voice_turn(record: VoiceEvidence, lead: str = "") -> list[RationaleStep]:
    """One turn's label (and the runner-up when close) and its prosody."""
    if not record.distribution:
        span = when(record.span.start, record.span.end)
        return [step(f"{lead}The voice could not be analysed at {span}", [record])]
    (label, p), (second, q) = sorted(record.distribution.items(), key=lambda kv: -kv[1])[:2]
    span = when(record.span.start, record.span.end)
    claim = f"{lead}The voice sounds {label} (p={p:.2f}) at {span}"
    if q >= 0.2:
        claim += f"; next comes {second} (p={q:.2f})"
    out = [step(claim, [record])]
    if prosody := prosody_claim([record]):
        out.append(prosody)
    return out


def voice_overall(records: Sequence[VoiceEvidence]) -> list[RationaleStep]:
    decided = [r for r in records if r.distribution]
    if len(decided) < 2:
        return []
    label, p = top(mean_of(decided))
    n = sum(1 for r in decided if r.label == label)
    return [step(f"{n} of {len(decided)} turns sound {label} (mean p={p:.2f}) at "
                 f"{when(*extent(decided))}", decided)]


def prosody_claim(records: Sequence[VoiceEvidence]) -> RationaleStep | None:
    """Pitch, pitch range, loudness and speaking rate (means over several turns)."""
    voiced = [r for r in records if r.prosody]
    if not voiced:
        return None

    def avg(name: str) -> float | None:
        got = [getattr(r.prosody, name) for r in voiced if getattr(r.prosody, name) is not None]
        return sum(got) / len(got) if got else None

    parts = []
    if (hz := avg("pitch_mean_hz")) is not None:
        parts.append(f"pitch around {hz:.0f} Hz")
    if (st := avg("pitch_range_st")) is not None:
        parts.append(f"a pitch range of {st:.1f} semitones")
    parts.append(f"loudness {avg('loudness'):.2f} sones")
    parts.append(f"{avg('speaking_rate'):.1f} syllables/s")
    lead = "On average the voice has " if len(voiced) > 1 else "The voice has "
    return step(lead + ", ".join(parts), voiced)


def prosody_change(a: VoiceEvidence, b: VoiceEvidence) -> list[RationaleStep]:
    """How pitch, loudness and speaking rate differ from turn ``a`` to turn ``b``."""
    if not (a.prosody and b.prosody):
        return []
    measures = (("pitch", "pitch_mean_hz", "{:.0f} Hz"), ("loudness", "loudness", "{:.2f} sones"),
                ("speaking rate", "speaking_rate", "{:.1f} syllables/s"))
    out = []
    for name, field, unit in measures:
        x, y = getattr(a.prosody, field), getattr(b.prosody, field)
        if x is None or y is None:
            continue
        verb = "rises" if y > x else "falls" if y < x else "stays"
        claim = (f"The {name} {verb} from {unit.format(x)} [{a.id}] to {unit.format(y)} "
                 f"[{b.id}]")
        out.append(RationaleStep(claim=claim, cites=[a.id, b.id]))
    return out


# -- words ---------------------------------------------------------------------------------------

def text_segment(record: TranscriptEvidence) -> RationaleStep:
    span = when(record.span.start, record.span.end)
    if not record.text.strip():
        return step(f"No words were recognised at {span}", [record])
    said = quote(record.text)
    if not record.distribution:
        return step(f"At {span} the words are \"{said}\"", [record])
    label, p = top(record.distribution)
    return step(f"At {span} the words \"{said}\" read as {label} (p={p:.2f})", [record])


def text_overall(records: Sequence[TranscriptEvidence]) -> list[RationaleStep]:
    decided = [r for r in records if r.distribution]
    if len(decided) < 2:
        return []
    label, p = top(mean_of(decided))
    n = sum(1 for r in decided if r.label == label)
    return [step(f"{n} of {len(decided)} segments read as {label} (mean p={p:.2f}) at "
                 f"{when(*extent(decided))}", decided)]


def words_at(record: TranscriptEvidence, t: float, reach: float = 0.3) -> RationaleStep | None:
    """What is being said at ``t`` (s): the word there and its neighbours, from word times."""
    near = [i for i, w in enumerate(record.words) if w.start - reach <= t <= w.end + reach]
    if not near:
        return None
    centre = min(near, key=lambda i: _distance(record.words[i], t))
    said = " ".join(w.text.strip() for w in record.words[max(0, centre - 1):centre + 2])
    return step(f"At {t:.1f} s the speaker is saying \"{_strip(said)}\"", [record])


def quote(text: str, most: int = QUOTE_WORDS) -> str:
    words = text.split()
    return _strip(" ".join(words[:most])) + (" ..." if len(words) > most else "")


def _strip(text: str) -> str:
    return text.strip().strip("\"'“”")


def _distance(word: Word, t: float) -> float:
    return 0.0 if word.start <= t <= word.end else min(abs(word.start - t), abs(word.end - t))


# -- any record ----------------------------------------------------------------------------------

def describe(record: Any) -> list[RationaleStep]:
    """One record as claims: a face frame, a voice turn, a transcript segment."""
    if isinstance(record, FaceEvidence):
        if record.distribution:
            return [face_run([record])]
        return [step(f"No face was found at {when(record.span.start, record.span.end)}", [record])]
    if isinstance(record, VoiceEvidence):
        return voice_turn(record)
    return [text_segment(record)]


def summary(modality: str, records: Sequence[Any]) -> list[RationaleStep]:
    """What one modality showed over ``records`` (in time order)."""
    if modality == "face":
        listed = face_runs(records)
        return face_overall(records) + (listed if len(listed) > 1 else [])
    if modality == "voice":
        listed = [s for r in records[:MOST_RECORDS] for s in voice_turn(r)]
        return voice_overall(records) + listed
    return text_overall(records) + [text_segment(r) for r in records[:MOST_RECORDS]]
