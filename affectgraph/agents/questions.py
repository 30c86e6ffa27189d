"""What a chat question asks: a small rule-based parser for the offline answerer.

:func:`parse_question` finds the references in a question, then picks one intent by the first
rule that matches, in this order:

========== ====================================================== ==============================
intent     when                                                   e.g.
========== ====================================================== ==============================
help       ``help``, ``what can you ...``, ``what can I ask``     "what can you answer?"
compare    ``compare``, ``vs``, ``versus``, ``differ(ence)``,     "compare turn 1 and turn 3",
           ``contrast``, ``agree``; or two turns named            "voice:0 vs voice:2"
time       a time: ``2 s``, ``2.5 seconds``, ``800 ms``, ``1:05``  "what happened at 1:05?"
           (m:ss), ``1:02:03``, ``second 2``, ``at 2`` (a bare
           number after at/around/near), ``between 1 and 2 s``,
           ``from 1 to 2 s``, ``1-2 s``; ``at the start``/``end``
evidence   an evidence id: ``face:3``, ``voice:0-2``, ``text:1``   "what is face:3?"
turn       one turn: ``turn 2``, ``the second turn``, ``last turn`` "what happened in turn 2?"
change     ``change``, ``shift``, ``switch``, ``evolve``,          "when did it change?"
           ``over time``, ``timeline``, ``become``, ``when did``
modality   a modality named: face (``face``, ``facial``,           "what did the voice show?"
           ``expression``, ``look``), voice (``voice``, ``tone``,
           ``pitch``, ``prosody``, ``sound``, ``loud``), words
           (``words``, ``text``, ``transcript``, ``say``, ``said``)
why        ``why``, ``explain``, ``reason``, ``how do you know``,  "why?"
           ``evidence``, ``justify``, ``rationale``
emotion    ``emotion``, ``feel``, ``mood``, ``verdict``, ``label``, "is she angry?"
           ``summary``, ``overall``, ``how is he/she``, or an
           emotion word (``angry``...)
unknown    none of the above
========== ====================================================== ==============================

Turns are numbered from 1 as a user counts them. Modalities, times and an emotion word are
kept whatever the intent, so "what did the face show at 2 s?" is a ``time`` question about the
face and "is the voice angry?" a ``modality`` question naming ``angry``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from affectgraph.agents.verifier import EMOTION_WORDS
from affectgraph.evidence import Modality

Intent = Literal["help", "compare", "time", "evidence", "turn", "change", "modality", "why",
                 "emotion", "unknown"]

LAST = -1
"""The turn number of ``the last turn``."""

_NUM = r"(\d+(?:\.\d+)?)"
_UNIT = r"(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?)\b"
_CLOCK = re.compile(r"(?<![\w:.])(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)(?![\w:])")
_RANGE = re.compile(rf"\b(?:between|from)\s+{_NUM}\s*(?:{_UNIT})?\s*(?:and|to|until|-)\s*{_NUM}\s*"
                    rf"{_UNIT}|(?<![\w.]){_NUM}\s*(?:-|–|to)\s*{_NUM}\s*{_UNIT}")
_BARE = rf"\b(?:at|around|near|about)\s+{_NUM}(?![\w.:])(?!\s*(?:ms|milli|s|sec|m|min)\w*\b)"
_POINT = re.compile(rf"(?<![\w.:]){_NUM}\s*{_UNIT}|\bsecond\s+{_NUM}\b|{_BARE}")
_PREPOSITION = re.compile(r"^(?:at|around|near|about)\s+")
_EDGE = re.compile(r"\b(?:at|near|around|towards?)\s+the\s+(start|beginning|end)\b")
_ID = re.compile(r"\b(face|voice|text):(\d+)(?:-(\d+))?\b|\bexemplar:[\w./-]*\w")
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
             "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "last": LAST, "final": LAST}
_ORDINAL_TURN = re.compile(rf"\b({'|'.join(_ORDINALS)})\s+(?:speech\s+)?turns?\b")
_TURNS = re.compile(r"\bturns?\s+(\d+)((?:\s*(?:,|and|&|vs\.?|versus|to|with)\s*(?:turn\s+)?\d+)*)")
_MORE_TURNS = re.compile(r"\d+")



def _named(modality: Modality, words: str) -> dict[str, Modality]:
    return dict.fromkeys(words.split(), modality)


_MODALITY_WORDS: dict[str, Modality] = {
    **_named("face", "face faces facial expression expressions look looks looked looking eyes "
                     "smile smiling frown frowning"),
    **_named("voice", "voice vocal tone pitch prosody prosodic sound sounds sounded sounding "
                      "loud loudness intonation"),
    **_named("text", "words word text transcript say says said saying sentence spoken wording"),
}
_KEYWORDS: dict[Intent, re.Pattern[str]] = {
    "help": re.compile(r"^\s*(?:/?help|\?)\s*$|\bwhat can (?:you|i)\b|\bwhat (?:do|can) you "
                       r"(?:know|answer|do)\b|\bwhich questions\b"),
    "compare": re.compile(r"\bcompar\w*|\bvs\.?(?!\w)|\bversus\b|\bdiffer\w*|\bcontrast\w*"
                          r"|\bagree\w*|\bdisagree\w*"),
    "change": re.compile(r"\bchang\w*|\bshift\w*|\bswitch\w*|\bevolv\w*|\bover time\b"
                         r"|\btimeline\b|\bbec[oa]me?s?\b|\bturn(?:s|ed)? into\b|\bwhen did\b"
                         r"|\bdevelop\w*|\bprogress\w*|\btransition\w*"),
    "why": re.compile(r"\bwhy\b|\bexplain\w*|\breasons?\b|\breasoning\b|\bhow do you know\b"
                      r"|\bevidence\b|\bjustif\w*|\brationale\b|\bbecause\b|\bbasis\b"),
    "emotion": re.compile(r"\bemotions?\b|\bemotional\w*|\bfeel\w*|\bmood\b|\bverdict\b"
                          r"|\blabel\b|\bsentiment\b|\baffect\b|\bsummar\w*|\boverall\b"
                          r"|\boverview\b|\bhow (?:is|was|does|did) "
                          r"(?:he|she|they|the (?:speaker|person|actor|woman|man))\b"),
}


@dataclass(frozen=True)
class Question:
    """A parsed question: its intent and the references it makes.

    ``times`` are seconds from the clip's start as written (a range gives two), ``time_words``
    the same as the user wrote them (for messages); ``turns`` are 1-based (:data:`LAST` for
    "the last turn"); ``ids`` are evidence ids as written (``voice:0-2``); ``emotion`` is a
    canonical label the question names ("is she angry?" -> ``angry``).
    """

    text: str
    intent: Intent
    modalities: tuple[Modality, ...] = ()
    times: tuple[float, ...] = ()
    time_words: tuple[str, ...] = ()
    turns: tuple[int, ...] = ()
    ids: tuple[str, ...] = ()
    emotion: str | None = None

    @property
    def span(self) -> tuple[float, float] | None:
        """The time range asked about: ``(t, t)`` for a point, ``None`` without a time."""
        if not self.times:
            return None
        return (min(self.times), max(self.times))


def parse_question(text: str, duration: float | None = None) -> Question:
    """Parse ``text`` (``duration``, the clip's length in seconds, resolves "at the end").

    >>> parse_question("What happened at 1:05?").times
    (65.0,)
    >>> parse_question("compare turn 1 and turn 3").turns
    (1, 3)
    >>> parse_question("what did the voice show?").intent
    'modality'
    """
    lower = " ".join(text.lower().replace("’", "'").split())
    ids = tuple(m[0] for m in _ID.finditer(lower))
    rest = _ID.sub(" ", lower)
    turns, rest = _turns(rest)
    times, words, rest = _times(rest, duration)
    modalities = tuple(dict.fromkeys(_MODALITY_WORDS[w] for w in re.findall(r"[a-z]+", rest)
                                     if w in _MODALITY_WORDS))
    emotion = next((EMOTION_WORDS[w] for w in re.findall(r"[a-z]+", rest) if w in EMOTION_WORDS),
                   None)
    intent: Intent = "help" if _KEYWORDS["help"].search(lower) else _intent(
        rest, ids, turns, times, modalities, emotion)
    return Question(text=text, intent=intent, modalities=modalities, times=times,
                    time_words=words, turns=turns, ids=ids, emotion=emotion)


def _intent(rest: str, ids: tuple[str, ...], turns: tuple[int, ...], times: tuple[float, ...],
            modalities: tuple[Modality, ...], emotion: str | None) -> Intent:
    if _KEYWORDS["compare"].search(rest) or len(turns) > 1:
        return "compare"
    if times:
        return "time"
    if ids:
        return "evidence"
    if turns:
        return "turn"
    if _KEYWORDS["change"].search(rest):
        return "change"
    if modalities:
        return "modality"
    if _KEYWORDS["why"].search(rest):
        return "why"
    if emotion or _KEYWORDS["emotion"].search(rest):
        return "emotion"
    return "unknown"


def _turns(text: str) -> tuple[tuple[int, ...], str]:
    """Turn numbers named ("turn 1 and turn 3", "turns 2, 3", "the last turn") and the text
    without them (so "second turn" is not read as a time)."""
    found: list[tuple[int, int]] = []  # (position, number)
    for m in _ORDINAL_TURN.finditer(text):
        found.append((m.start(), _ORDINALS[m[1]]))
    text = _ORDINAL_TURN.sub(" turn ", text)
    for m in _TURNS.finditer(text):
        found.append((m.start(), int(m[1])))
        found += [(m.start(2) + n.start(), int(n[0])) for n in _MORE_TURNS.finditer(m[2])]
    text = _TURNS.sub(" turn ", text)
    return tuple(dict.fromkeys(n for _, n in sorted(found))), text


def _times(text: str, duration: float | None) -> tuple[tuple[float, ...], tuple[str, ...], str]:
    """Times named, in seconds and as written, and the text without them."""
    found: list[tuple[int, float, str]] = []

    def clock(m: re.Match[str]) -> str:
        hours = int(m[1]) if m[1] else 0
        found.append((m.start(), hours * 3600 + int(m[2]) * 60 + float(m[3]), m[0]))
        return " "

    def time_range(m: re.Match[str]) -> str:
        if m[1] is not None:
            a, a_unit, b, b_unit = m[1], m[2] or m[4], m[3], m[4]
        else:
            a, a_unit, b, b_unit = m[5], m[7], m[6], m[7]
        found.append((m.start(), _seconds(a, a_unit), m[0].strip()))
        found.append((m.start() + 1, _seconds(b, b_unit), m[0].strip()))
        return " "

    def point(m: re.Match[str]) -> str:
        value, unit = (m[1], m[2]) if m[1] else (m[3] or m[4], "s")
        found.append((m.start(), _seconds(value, unit), _PREPOSITION.sub("", m[0].strip())))
        return " "

    def edge(m: re.Match[str]) -> str:
        if m[1] != "end":
            found.append((m.start(), 0.0, f"the {m[1]}"))
        elif duration is not None:
            found.append((m.start(), duration, "the end"))
        else:
            return m[0]  # "the end" of a clip of unknown length: not a time
        return " "

    text = _EDGE.sub(edge, _POINT.sub(point, _RANGE.sub(time_range, _CLOCK.sub(clock, text))))
    found.sort()
    return tuple(t for _, t, _ in found), tuple(dict.fromkeys(w for _, _, w in found)), text


def _seconds(value: str, unit: str) -> float:
    if unit.startswith("ms") or unit.startswith("milli"):
        return float(value) / 1000
    if unit.startswith("m"):
        return float(value) * 60
    return float(value)
