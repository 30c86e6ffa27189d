"""The verifier: checks every rationale step against the evidence it cites.

No rationale reaches a user without passing here, whoever wrote it (the fusion aggregator, an
LLM, the project's own MLLM): :func:`verify_verdict` keeps the grounded steps in a verdict's
``rationale``, moves the others to ``rejected`` with the reason, and sets ``grounding`` (the
share of grounded steps). A step is **grounded** when all of these hold:

1. **ids exist**: it cites at least one id, and every cited id (``face:4``, a run ``face:4-9``,
   ``exemplar:<id>``) names evidence of this analysis or an exemplar retrieved for it;
2. **modalities match**: a stretch of the claim that speaks of the face (``face``, ``frames``),
   the voice (``voice``, ``pitch``, ``loudness``) or the words (``words``, ``transcript``)
   cites a record of at least one of the modalities it names (an exemplar counts as the
   modality of the record it was retrieved for); one that speaks of the ``neighbours`` or
   ``exemplars`` cites exemplars;
3. **times fall inside**: every time point in the claim (``1.2 s``, ``1.2-2.6 s``, ``between 12
   and 18 seconds``, ``800 ms``) lies within the spans of the evidence it is attributed to, give
   or take :attr:`Tolerances.seconds`; a duration (``lasts 2 s``, ``a pause of 0.4 s``, ``a
   2-second pause``) is no longer than the cited evidence covers;
4. **emotions are supported**: every emotion the claim attributes to its evidence (``anger``,
   ``angrily``, ``happier``, ``smiling``...) is supported by the distributions of the cited
   records and the labels of the cited exemplars (each a one-hot distribution): it is the top
   label of their mean, has a mean probability of at least :attr:`Tolerances.support`, or is the
   top label of at least a third of them. A negated emotion ("no anger", "not angry", "happy
   rather than sad") must *not* be the top label of that mean;
5. **numbers match**: every number with a unit (``9 semitones``, ``180 Hz``, ``64%``,
   ``p=0.64``, ``3.1 syllables/s``, ``0.4 sones``, ``12 of 17 frames``, ``7 of the 10
   neighbours``) matches a value of the cited evidence within the tolerance of its unit: the
   prosody of voice turns (and their means and differences over several turns), probabilities,
   confidences and detection / recognition scores, exemplar similarities and vote shares, and
   counts over the cited records (``x of n``: records whose top label is an emotion, exemplars
   voting for it, faces found). A clause (the claim split at ``,`` ``;`` ``.`` ``but``
   ``while``) that names an emotion ties its numbers to it: ``12 of 17 frames`` must be the
   frames whose top label it is, ``p=0.64`` its probability, not a detection score; ``mean
   p=0.64`` the mean over the cited records, not one record's; ``pitch range`` / ``mean pitch``
   in semitones the range or the mean;
6. **quotes are said**: a quotation ("...") in a stretch that cites transcript records or
   exemplars with text appears in their text (ignoring case and punctuation); the quoted words
   are not checked for emotions, since saying "I am happy" is not being happy.

Not checked, by design: a number without a unit ("pitch rose by 3", "a score of 0.8") cannot be
matched to a field and is left alone, as are words the lists above do not know (``tense``;
``flat``, which describes prosody rather than an emotion) and whether an inference is sound
("so the speaker is happy") beyond the emotion it names. Values the evidence does not carry
(eGeMAPS functionals such as jitter in %, relative changes in %) match nothing and are rejected:
a rationale should state what the evidence measured.

A claim with ``[ids]`` inside it attributes each stretch of text to the bracket that ends it
("the words are neutral [text:1] while the face shows anger [face:4-9]"); text after the last
bracket goes with it; without brackets the whole claim rests on the step's ``cites``.
"""

from __future__ import annotations

import math
import re
import string
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from affectgraph.evidence import FaceEvidence, TimeSpan, TranscriptEvidence, VoiceEvidence, top
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, RationaleStep, Verdict, compact_ids, expand_ids

__all__ = ["EMOTION_WORDS", "Check", "Exemplar", "Tolerances", "Verifier", "grounding",
           "verify_verdict"]


def _words(label: str, words: str) -> dict[str, str]:
    return dict.fromkeys(words.split(), label)


def _bag(words: str) -> frozenset[str]:
    return frozenset(words.split())


EMOTION_WORDS: Mapping[str, str] = {
    **_words("neutral", "neutral neutrally calm calmly calmer unemotional"),
    **_words("happy", "happy happier happiest happily happiness joy joyful joyfully joyous "
                      "smile smiles smiled smiling cheerful cheerfully glad gladly pleased "
                      "delighted delight elated ecstatic thrilled amused amusement laughing "
                      "laughter laughs"),
    **_words("sad", "sad sadder saddest sadly sadness sorrow sorrowful sorrowfully unhappy "
                    "unhappiness grief upset gloomy dejected depressed miserable crying tearful "
                    "melancholic despair"),
    **_words("angry", "angry angrier angriest angrily anger angered mad furious furiously fury "
                      "irritated irritation annoyed annoyance rage enraged hostile outraged livid "
                      "frustrated frustration resentful indignant"),
    **_words("fearful", "fear fears fearful fearfully afraid scared anxious anxiously anxiety "
                        "frightened fright nervous nervously terrified terror panic worried "
                        "horrified dread alarmed apprehensive"),
    **_words("disgusted", "disgust disgusted disgustedly revulsion repulsed revolted repelled "
                          "grossed"),
    **_words("surprised", "surprise surprised astonished astonishment amazed amazement startled "
                          "shocked"),
}
"""Words that attribute a canonical emotion, inflections included (``angrily``, ``happier``)."""

_NEGATIONS = _bag("no not never without nor neither lack lacks lacking absence hardly barely "
                  "cannot")
_NEGATING_PAIRS = frozenset({("rather", "than"), ("instead", "of"), ("free", "of")})
_ABSENT = _bag("absent missing isn't wasn't aren't weren't")
_COPULAS = _bag("is was are were")
_SCOPE_ENDS = _bag("but while whereas although though yet however")
_MODALITY_WORDS: Mapping[str, str] = {
    **_words("face", "face faces facial frame frames"),
    **_words("voice", "voice voices vocal pitch prosody prosodic loudness intonation"),
    **_words("text", "words wording transcript text sentence"),
    **_words("exemplar", "neighbour neighbours neighbor neighbors exemplar exemplars"),
}
_NAMES = {"face": "face", "voice": "voice", "text": "words", "exemplar": "exemplars"}
_MEASURES: Mapping[str, str] = {
    **_words("range", "range ranges span spread varied variation wider widened narrow narrowed"),
    **_words("mean", "mean average median level baseline"),
}

_TOKEN = re.compile(r"[a-z]+(?:['’][a-z]+)?|[,;:!?()]|\.(?!\d)")
_CLAUSE = re.compile(r"[,;!?]|\.(?!\d)|\b(?:but|while|whereas|although|though|yet|however)\b")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_RANGE_ID = re.compile(r"^([a-z]+):(\d+)-(\d+)$")
_QUOTE = re.compile(r"\"([^\"]+)\"|“([^”]+)”|(?<![\w'’])['‘]([^'’]+)['’](?![\w'’])")

_N = r"(\d+(?:\.\d+)?)"
_UNIT_S = r"(ms|milliseconds?|s|secs?|seconds?)\b"
_DURATION = re.compile(
    rf"\b(?:lasts?|lasted|lasting|for|duration of|pauses? of|silences? of)\s+"
    rf"(?:about\s+|around\s+|nearly\s+|almost\s+|over\s+)?{_N}\s*{_UNIT_S}"
    rf"|{_N}\s*{_UNIT_S}\s+long\b|{_N}-(?:second|sec)s?\b")
_TIME_RANGE = re.compile(rf"{_N}\s*(?:s\s*)?(?:-|–|—|to|and|until)\s*{_N}\s*{_UNIT_S}")
_TIME = re.compile(rf"{_N}\s*{_UNIT_S}")
_UNITS: Mapping[str, re.Pattern[str]] = {
    "st": re.compile(rf"{_N}\s*(?:semitones?|st)\b"),
    "hz": re.compile(rf"{_N}\s*(?:hz|hertz)\b"),
    "percent": re.compile(rf"{_N}\s*(?:%|percent\b|per cent\b)"),
    "p": re.compile(rf"\bp\s*(?:\([a-z ]+\))?\s*(?:=|≈|~)\s*{_N}"
                    rf"|\bprobability\s+(?:of\s+)?{_N}|{_N}\s+probability\b"),
    "rate": re.compile(rf"{_N}\s*(?:syllables?|voiced segments?)\s*(?:/|per)\s*(?:s|sec|second)\b"),
    "sone": re.compile(rf"{_N}\s*sones?\b"),
}
_COUNT_NOUN = r"(?:frames?|turns?|segments?|neighbou?rs?|exemplars?|records?)\b"
_COUNT = re.compile(
    rf"\b(\d+)\s*(?:of|out of|/)\s*(?:the\s+)?(\d+)\s+(?:[a-z]+\s+){{0,3}}?{_COUNT_NOUN}")
_BARE_COUNT = re.compile(rf"\b(\d+)\s+(?:[a-z]+\s+)?{_COUNT_NOUN}")


@dataclass(frozen=True)
class Tolerances:
    """How close a claim must be: ``seconds`` around spans; ``relative`` for measured values
    (10%, plus 0.05 absolute for rounding); ``probability`` for probabilities (0.05 = 5
    points); ``support``: the mean probability an emotion needs over the cited records when it
    is not their top label."""

    seconds: float = 0.3
    relative: float = 0.1
    probability: float = 0.05
    support: float = 0.2


@dataclass(frozen=True)
class Check:
    """The verifier's judgement of one step: grounded or not, and why."""

    grounded: bool
    why: str


# -- what the claim says ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Mention:
    emotion: str
    word: str
    negated: bool


def _tokens(text: str) -> list[str]:
    """Lower-case words (possessive ``'s`` dropped, ``’`` as ``'``) and punctuation marks."""
    words = _TOKEN.findall(text.lower().replace("’", "'"))
    return [w[:-2] if w.endswith("'s") else w for w in words]


def _mentions(text: str) -> list[_Mention]:
    """The emotion words of a text and whether each is negated ("no anger", "not angry",
    "happy rather than sad", "anger is absent"); a negation reaches at most three words and
    stops at punctuation and at ``but`` / ``while``."""
    tokens = _tokens(text)
    return [_Mention(EMOTION_WORDS[t], t, _negated(tokens, n))
            for n, t in enumerate(tokens) if t in EMOTION_WORDS]


def _negated(tokens: list[str], n: int) -> bool:
    for k in range(n - 1, max(-1, n - 4), -1):
        t = tokens[k]
        if _ends_scope(t):
            break
        if t in _NEGATIONS or t.endswith("n't") or (k and (tokens[k - 1], t) in _NEGATING_PAIRS):
            return True
    for k in range(n + 1, min(len(tokens), n + 4)):
        t = tokens[k]
        if _ends_scope(t) or t in EMOTION_WORDS:
            break
        if t in _ABSENT or (t == "not" and tokens[k - 1] in _COPULAS):
            return True
    return False


def _ends_scope(token: str) -> bool:
    return not token[0].isalpha() or token in _SCOPE_ENDS


def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE.split(text) if c and c.strip()]


def _seconds(value: str, unit: str) -> float:
    return float(value) / 1000 if unit.startswith("m") else float(value)


def _times(text: str) -> tuple[list[float], list[float], str]:
    """(time points, durations, the text without them), all in seconds."""
    points: list[float] = []
    durations: list[float] = []

    def duration(m: re.Match[str]) -> str:
        value, unit = (m[1], m[2]) if m[1] else (m[3], m[4]) if m[3] else (m[5], "s")
        durations.append(_seconds(value, unit))
        return " "

    def time_range(m: re.Match[str]) -> str:
        points.extend((_seconds(m[1], m[3]), _seconds(m[2], m[3])))
        return " "

    def time(m: re.Match[str]) -> str:
        points.append(_seconds(m[1], m[2]))
        return " "

    rest = _TIME.sub(time, _TIME_RANGE.sub(time_range, _DURATION.sub(duration, text.lower())))
    return points, durations, rest


def _quotes(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _QUOTE.finditer(text)]


def _plain(text: str) -> str:
    """Lower case, punctuation removed, spaces collapsed: how quotes are compared."""
    kept = "".join(" " if c in string.punctuation or c in "“”‘’" else c for c in text.lower())
    return " ".join(kept.split())


# -- what the cited evidence shows -------------------------------------------------------------

class _Value(NamedTuple):
    """A number a claim may state: of which label (``None``: of none in particular) and which
    measure it is (``mean`` over the cited records, a pitch ``range``, ``None``: one record's)."""

    of: str | None
    measure: str | None
    value: float


class _Spread(NamedTuple):
    """The sorted values of one prosody measure over several turns, standing for their
    pairwise differences (of no label, of measure ``measure``) without listing them: the n²/2
    differences of a 30-minute call's 563 turns took 80 MB."""

    measure: str | None
    values: list[float]


@dataclass
class _Facts:
    """Everything the records and exemplars cited by one stretch of a claim show."""

    spans: list[TimeSpan] = field(default_factory=list)
    modalities: set[str] = field(default_factory=set)
    distributions: list[Mapping[str, float]] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    numbers: dict[str, list[_Value]] = field(default_factory=dict)
    counts: list[tuple[str | None, int, int]] = field(default_factory=list)
    # per unit, a prosody measure's values over several turns (sorted): any two of them differ
    # by a value the claim may state
    spreads: dict[str, list[_Spread]] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        n = len(self.distributions)
        return {c: sum(d.get(c, 0.0) for d in self.distributions) / n for c in LABELS}

    @property
    def tops(self) -> list[str]:
        return [top(d)[0] for d in self.distributions]


def _facts(records: list[Any], exemplars: list[Any], sources: list[Any]) -> _Facts:
    """What ``records`` and ``exemplars`` show (``sources``: the records the exemplars were
    retrieved for)."""
    facts = _Facts(numbers={unit: [] for unit in _UNITS})
    for record in records:
        facts.spans.append(record.span)
        facts.modalities.add(record.modality)
        if record.distribution:
            facts.distributions.append(record.distribution)
        else:
            facts.undecided.append(f"{record.id} ({record.reason or 'no distribution'})")
        if isinstance(record, TranscriptEvidence):
            facts.texts.append(record.text)
        facts.numbers["p"] += [_Value(c, None, p) for c, p in (record.distribution or {}).items()]
    facts.numbers["p"] += _scores(records)
    voiced = [r.prosody for r in records if isinstance(r, VoiceEvidence) and r.prosody]
    _prosody_values(voiced, facts)
    _exemplar_facts(exemplars, sources, facts)
    _count_values(records, exemplars, facts)
    if facts.distributions:
        facts.numbers["p"] += [_Value(c, "mean", p) for c, p in facts.mean.items()]
    facts.numbers["percent"] = facts.numbers["p"]
    return facts


def _scores(records: list[Any]) -> list[_Value]:
    """Probabilities of no label: detection and recognition scores, pause ratios, confidences
    other than the top probability; each record's and their mean."""
    out = []
    for name in ("detection_score", "asr_confidence", "pause_ratio", "confidence"):
        got = [v for v in (_score(r, name) for r in records) if v is not None]
        out += [_Value(None, None, v) for v in got]
        if got:
            out.append(_Value(None, "mean", sum(got) / len(got)))
    return out


def _score(record: Any, name: str) -> float | None:
    if name == "pause_ratio":
        prosody = getattr(record, "prosody", None)
        return prosody.pause_ratio if prosody else None
    value = getattr(record, name, None)
    if name == "confidence" and value is not None and record.distribution and abs(
            value - top(record.distribution)[1]) <= 1e-6:
        return None  # the top label's probability, counted with the labels
    return value


def _prosody_values(voiced: list[Any], facts: _Facts) -> None:
    """Each turn's prosody, and over several turns their means and pairwise differences."""
    fields = (("st", "range", "pitch_range_st"), ("st", "mean", "pitch_mean_st"),
              ("hz", "mean", "pitch_mean_hz"), ("rate", None, "speaking_rate"),
              ("sone", None, "loudness"))
    for unit, measure, name in fields:
        got = [v for v in (getattr(p, name) for p in voiced) if v is not None]
        facts.numbers[unit] += [_Value(None, measure, v) for v in got]
        if len(got) > 1:
            facts.numbers[unit].append(_Value(None, measure, sum(got) / len(got)))
            facts.spreads.setdefault(unit, []).append(_Spread(measure, sorted(got)))


def _exemplar_facts(exemplars: list[Any], sources: list[Any], facts: _Facts) -> None:
    """Exemplars as one-hot distributions, their similarities and vote shares; they speak for
    the spans and modalities of the records they were retrieved for."""
    if not exemplars:
        return
    facts.modalities.add("exemplar")
    facts.spans += [r.span for r in sources]
    facts.modalities |= {r.modality for r in sources}
    for e in exemplars:
        facts.distributions.append({c: float(c == e.label) for c in LABELS})
        facts.numbers["p"].append(_Value(None, None, e.similarity))
        if e.text:
            facts.texts.append(e.text)
    similarity = sum(e.similarity for e in exemplars) / len(exemplars)
    facts.numbers["p"].append(_Value(None, "mean", similarity))
    for c in LABELS:
        votes = sum(e.label == c for e in exemplars)
        facts.numbers["p"].append(_Value(c, "mean", votes / len(exemplars)))
        facts.counts.append((c, votes, len(exemplars)))


def _count_values(records: list[Any], exemplars: list[Any], facts: _Facts) -> None:
    """``x of n`` facts: records whose top label is each emotion, faces found, transcripts."""
    decided = [r for r in records if r.distribution]
    for c in LABELS:
        if decided:
            facts.counts.append((c, sum(r.label == c for r in decided), len(decided)))
    faces = [r for r in records if isinstance(r, FaceEvidence)]
    facts.counts.append((None, sum(f.decided for f in faces), len(faces)))
    facts.counts.append((None, len(records), len(records)))
    facts.counts.append((None, len(exemplars), len(exemplars)))


# -- the verifier ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Part:
    """A stretch of a claim and the citations (as written) it rests on."""

    text: str
    cites: tuple[str, ...]


class Verifier:
    """Checks rationale steps against the evidence and exemplars of one analysis.

    ``exemplars`` are :class:`~affectgraph.verdict.Exemplar` (anything with ``id``, ``label``,
    ``similarity`` and optionally ``evidence_id`` and ``text`` will do), cited as
    ``exemplar:<id>``.
    """

    def __init__(self, evidence: Iterable[Any], exemplars: Iterable[Any] = (),
                 tolerances: Tolerances = Tolerances()) -> None:
        self.records: dict[str, Any] = {r.id: r for r in evidence}
        self.exemplars: dict[str, Any] = {}
        self._sources: dict[str, list[Any]] = {}  # an exemplar may be retrieved for several
        for e in exemplars:
            self.exemplars.setdefault(f"exemplar:{e.id}", e)
            query = (getattr(e, "evidence_id", None) or "").split(",")  # face:0-16 when pooled
            self._sources.setdefault(f"exemplar:{e.id}", []).extend(
                self.records[i] for i in expand_ids(q.strip() for q in query) if i in self.records)
        self.tol = tolerances

    def verify(self, steps: Sequence[RationaleStep]) -> list[RationaleStep]:
        """Each step with ``grounded`` and ``check`` filled in."""
        out = []
        for step in steps:
            result = self.check(step)
            out.append(step.model_copy(update={"grounded": result.grounded, "check": result.why}))
        return out

    def check(self, step: RationaleStep) -> Check:
        """Whether one step is grounded, and why (every problem found, ``;``-separated)."""
        parts = _attribute(step)
        if not any(p.cites for p in parts):
            return Check(False, "cites no evidence: add the ids it rests on, e.g. [face:4-9]")
        if not re.search(r"[a-z]", _BRACKET.sub(" ", step.claim).lower()):
            return Check(False, "the claim is empty")
        problems = [problem for part in parts for problem in self._check_part(part)]
        if problems:
            return Check(False, "; ".join(dict.fromkeys(problems)))
        return Check(True, "ids exist; times, emotions and numbers match the cited evidence")

    def _check_part(self, part: _Part) -> list[str]:
        if not part.cites:
            return [f"an empty citation [] after {part.text.strip()!r}"]
        ids, unknown = self._resolve(part.cites)
        if unknown:
            return [f"cites unknown evidence {', '.join(unknown)} ({self._known()})"]
        cited = [i for i in ids if i in self.exemplars]
        facts = _facts([self.records[i] for i in ids if i in self.records],
                       [self.exemplars[i] for i in cited],
                       [r for i in cited for r in self._sources[i]])
        text, problems = self._quoted(part.text, facts)
        problems += _modality_problems(text, facts)
        points, durations, rest = _times(text)
        problems += self._time_problems(points, durations, facts)
        for clause in _clauses(rest):
            problems += self._emotion_problems(clause, facts)
            problems += self._number_problems(clause, facts)
        return problems

    def _resolve(self, cites: Sequence[str]) -> tuple[list[str], list[str]]:
        """(cited ids with runs expanded, the citations that name nothing)."""
        ids: list[str] = []
        unknown: list[str] = []
        for cite in cites:
            match = _RANGE_ID.match(cite)
            if cite in self.exemplars or not match:
                (ids if cite in self.records or cite in self.exemplars else unknown).append(cite)
            elif int(match[3]) - int(match[2]) >= len(self.records):
                unknown.append(cite)  # a run longer than the analysis: do not expand it
            else:
                run = expand_ids([cite])
                ids += [i for i in run if i in self.records]
                unknown += compact_ids(i for i in run if i not in self.records)
        return ids, unknown

    def _known(self) -> str:
        known = ", ".join(compact_ids(self.records)) or "no evidence"
        n = len(self.exemplars)
        return f"this analysis has {known}" + (f" and {n} exemplars" if n else "")

    def _quoted(self, text: str, facts: _Facts) -> tuple[str, list[str]]:
        """The text without the quotations found in the cited texts; a problem for each one
        that is not there. Without cited texts quotes stay (scare quotes are claims too)."""
        if not facts.texts:
            return text, []
        said = [f" {_plain(t)} " for t in facts.texts]
        problems = [f"the quote {q!r} is not in the cited text" for q in _quotes(text)
                    if not any(f" {_plain(q)} " in s for s in said)]  # whole words
        return _QUOTE.sub(" ", text), problems

    def _time_problems(self, points: list[float], durations: list[float],
                       facts: _Facts) -> list[str]:
        if not facts.spans:
            return [f"time {t:g} s cannot be checked: the cited exemplars have no span"
                    for t in points]
        out = [f"time {t:g} s lies outside the cited evidence ({_spans(facts.spans)})"
               for t in points if not any(s.contains(t, self.tol.seconds) for s in facts.spans)]
        extent = max(s.end for s in facts.spans) - min(s.start for s in facts.spans)
        out += [f"a duration of {d:g} s is longer than the cited evidence ({extent:.2f} s)"
                for d in durations if d > extent + self.tol.seconds]
        return out

    def _emotion_problems(self, clause: str, facts: _Facts) -> list[str]:
        out = []
        for m in _mentions(clause):
            if not facts.distributions:
                out.append(f"{m.word!r} cannot be checked: the cited evidence has no emotion "
                           f"distribution ({'; '.join(facts.undecided) or 'none cited'})")
            elif m.negated and top(facts.mean)[0] == m.emotion:
                out.append(f"the claim denies {m.emotion} ({m.word!r}) but it is the cited "
                           f"evidence's most likely label (p={facts.mean[m.emotion]:.2f})")
            elif not m.negated and not self._supports(m.emotion, facts):
                out.append(f"the cited evidence does not show {m.emotion} ({m.word!r}: "
                           f"p={facts.mean[m.emotion]:.2f}, top label {top(facts.mean)[0]})")
        return out

    def _supports(self, emotion: str, facts: _Facts) -> bool:
        mean, tops = facts.mean, facts.tops
        return (top(mean)[0] == emotion or mean[emotion] >= self.tol.support
                or tops.count(emotion) >= len(tops) / 3)

    def _number_problems(self, clause: str, facts: _Facts) -> list[str]:
        emotions = {m.emotion for m in _mentions(clause) if not m.negated}
        measures = {_MEASURES[w] for w in _tokens(clause) if w in _MEASURES}
        out = [f"'{m[0].strip()}' does not match the cited evidence"
               for m in _count_mismatches(clause.lower(), facts.counts, emotions)]
        for unit, pattern in _UNITS.items():
            values = [v.value for v in facts.numbers[unit]
                      if _fits(v, unit, emotions, measures)]
            spreads = [s.values for s in facts.spreads.get(unit, [])
                       if _fits(_Value(None, s.measure, 0.0), unit, emotions, measures)]
            for match in pattern.finditer(clause.lower()):
                number = float(next(g for g in match.groups() if g))
                if not any(self._close(number, v, unit) for v in values) and not any(
                        self._differ_by(number, s) for s in spreads):
                    out.append(f"'{match[0].strip()}' does not match the cited evidence"
                               + _of(unit, emotions, measures))
        return out

    def _close(self, number: float, value: float, unit: str) -> bool:
        if unit in ("percent", "p"):
            p = number / 100 if unit == "percent" else number
            return abs(p - value) <= self.tol.probability
        return abs(number - value) <= self.tol.relative * abs(value) + 0.05

    def _differ_by(self, number: float, values: list[float]) -> bool:
        """Whether two of the sorted ``values`` differ by ``number`` as :meth:`_close` (a
        measured value) has it: by a difference ``d`` with ``|number - d| <= relative * d +
        0.05``, i.e. ``d`` between ``low`` and ``high``; one binary search per value."""
        low = max(0.0, (number - 0.05) / (1 + self.tol.relative))
        high = (number + 0.05) / (1 - self.tol.relative) if self.tol.relative < 1 else math.inf
        for i, a in enumerate(values[:-1]):
            j = bisect_left(values, a + low, i + 1)
            if j < len(values) and values[j] - a <= high:
                return True
        return False


def _attribute(step: RationaleStep) -> list[_Part]:
    """Each stretch of the claim with the bracket that ends it (text after the last bracket
    goes with it, or with every bracket when it says ``both`` / ``each``: "the words [text:0]
    and the face [face:2] are both calm"); the step's other ``cites`` as a part with no text
    (they must exist)."""
    matches = list(_BRACKET.finditer(step.claim))
    if not matches:
        return [_Part(step.claim, tuple(c.strip() for c in step.cites))]
    parts, start = [], 0
    for match in matches:
        cites = tuple(c.strip() for c in match[1].split(",") if c.strip())
        parts.append(_Part(step.claim[start:match.start()], cites))
        start = match.end()
    tail = step.claim[start:]
    if tail.strip(" .;,"):
        shared = [_Part(tail, p.cites) for p in parts[:-1]]
        parts[-1] = _Part(parts[-1].text + " " + tail, parts[-1].cites)
        if {"both", "each", "alike"} & set(_tokens(tail)):
            parts += shared
    in_brackets = {c for p in parts for c in p.cites}
    extra = tuple(c for c in step.cites if c.strip() not in in_brackets)
    if extra:
        parts.append(_Part("", extra))
    return parts


def _modality_problems(text: str, facts: _Facts) -> list[str]:
    """Speaking of the face, voice or words needs a record of one of them; speaking of the
    neighbours needs exemplars."""
    named = {_MODALITY_WORDS[w] for w in _tokens(text) if w in _MODALITY_WORDS}
    records = named - {"exemplar"}
    missing = sorted(records if not records & facts.modalities else set())
    if "exemplar" in named and "exemplar" not in facts.modalities:
        missing.append("exemplar")
    if not missing:
        return []
    return [f"the claim speaks of the {' and '.join(_NAMES[m] for m in missing)} but cites "
            f"only {' and '.join(sorted(facts.modalities))} evidence"]


def _count_mismatches(clause: str, counts: list[tuple[str | None, int, int]],
                      emotions: set[str]) -> list[re.Match[str]]:
    """The ``x of n`` (and bare ``x frames``) phrases no count of the cited evidence gives;
    in a clause naming an emotion, ``x`` must count that emotion."""
    allowed = [(x, n) for key, x, n in counts if not emotions or key in emotions]
    bad = [m for m in _COUNT.finditer(clause) if (int(m[1]), int(m[2])) not in allowed]
    xs = {x for x, _ in allowed} | {n for _, _, n in counts}
    bad += [m for m in _BARE_COUNT.finditer(_COUNT.sub(" ", clause)) if int(m[1]) not in xs]
    return bad


def _fits(value: _Value, unit: str, emotions: set[str], measures: set[str]) -> bool:
    """Whether a value is one the clause may state: a probability of the emotion it names (a
    mean when it says ``mean``), a semitone value of the measure it names (range or mean)."""
    if unit in ("p", "percent"):
        return ((not emotions or value.of in emotions)
                and ("mean" not in measures or value.measure == "mean"))
    return unit != "st" or not measures or value.measure in measures


def _of(unit: str, emotions: set[str], measures: set[str]) -> str:
    named = [*sorted(emotions)] if unit in ("p", "percent") else []
    if (unit == "st" and measures) or (unit in ("p", "percent") and "mean" in measures):
        named += sorted(measures) if unit == "st" else ["mean"]
    return f" for {', '.join(named)}" if named else ""


def _spans(spans: list[TimeSpan]) -> str:
    """The spans, runs of adjacent ones merged: ``0.00-3.24 s`` for 17 sampled frames."""
    merged: list[TimeSpan] = []
    for s in sorted(spans, key=lambda s: s.start):
        if merged and s.start <= merged[-1].end + 0.05:
            merged[-1] = TimeSpan(start=merged[-1].start, end=max(merged[-1].end, s.end))
        else:
            merged.append(s)
    return ", ".join(str(s) for s in merged[:3]) + (" ..." if len(merged) > 3 else "")


# -- verdicts ----------------------------------------------------------------------------------

def grounding(steps: Sequence[RationaleStep]) -> float | None:
    """The share of grounded steps (``None`` when there are none to judge)."""
    return sum(bool(s.grounded) for s in steps) / len(steps) if steps else None


def verify_verdict(verdict: Verdict, evidence: Iterable[Any], exemplars: Iterable[Any] = (),
                   tolerances: Tolerances = Tolerances()) -> Verdict:
    """A copy of ``verdict`` whose ``rationale`` holds only its grounded steps.

    Each step of ``verdict.rationale`` is checked against ``evidence`` and ``exemplars``; the
    ungrounded ones move to ``rejected`` (after any already there, which stay rejected) with
    ``check`` saying why, and ``grounding`` becomes the share of grounded steps among all of
    them (``None`` when there are none). Applying it twice changes nothing.
    """
    checked = Verifier(evidence, exemplars, tolerances).verify(verdict.rationale)
    kept = [s for s in checked if s.grounded]
    rejected = [*verdict.rejected, *(s for s in checked if not s.grounded)]
    total = len(kept) + len(rejected)
    share = len(kept) / total if total else None
    return verdict.model_copy(update={"rationale": kept, "rejected": rejected, "grounding": share})
