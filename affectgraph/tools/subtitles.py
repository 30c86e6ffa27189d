"""Reading transcripts the user already has: WebVTT, SubRip, JSON and plain text.

:func:`read_transcript` turns a file into :class:`Cue` records (seconds from the start of the
clip). Formats, chosen by the file's suffix:

- ``.vtt``: WebVTT cues ``[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm``; a ``<v Name>`` voice tag gives the
  speaker, other tags are dropped and HTML entities decoded.
- ``.srt``: SubRip blocks (index line, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text lines).
- ``.json``: a list of ``{"start", "end", "text", "words"?, "speaker"?}`` with ``words`` a list of
  ``{"text" or "word", "start", "end", "probability"?}``; or the JSON that faster-whisper and
  openai-whisper write (an object with ``"segments"`` in that shape and an optional ``"language"``).
- ``.txt``: one block of text over the whole clip, so the clip's ``duration`` is needed.

Both subtitle formats are parsed here rather than with ``webvtt-py`` or ``srt``: neither reports the
line of a malformed cue, and a user fixing a file needs exactly that. Bad files raise
:class:`~affectgraph.errors.InputError` naming the file, the line (or JSON segment) and the problem.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import InputError, unknown_name
from affectgraph.evidence import Word

FORMATS: tuple[str, ...] = (".vtt", ".srt", ".json", ".txt")

_ARROW = "-->"
_TIME = re.compile(r"^(?:(\d+):)?([0-5]\d):([0-5]\d)[.,](\d{3})$")
_TAG = re.compile(r"<[^>]*>")
_VOICE = re.compile(r"<v(?:\.[^\s>]+)*\s+([^>]+)>")
_SRT_STYLE = re.compile(r"\{\\[^}]*\}")


class Cue(BaseModel):
    """One stretch of a given transcript: times in seconds, its text, optional words and speaker.

    ``line`` is where the cue starts in its file (1-based; for JSON the segment's index), so later
    checks can point at it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: tuple[Word, ...] = ()
    speaker: str | None = None
    language: str | None = None
    line: int = 0


def read_transcript(file: str | Path, *, duration: float | None = None) -> list[Cue]:
    """Read a transcript file into cues in time order.

    ``duration`` (seconds) is the clip's length, needed only for ``.txt`` (whose one cue spans the
    whole clip). Raises :class:`~affectgraph.errors.InputError` for a missing, unreadable or
    malformed file and :class:`~affectgraph.errors.ConfigError` for an unknown suffix.
    """
    path = Path(file)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise unknown_name("transcript format", suffix or "(no suffix)", FORMATS)
    text = _read_text(path)
    if suffix == ".txt":
        cues = _parse_txt(path, text, duration)
    elif suffix == ".json":
        cues = _parse_json(path, text)
    else:
        cues = _parse_cues(path, text, vtt=suffix == ".vtt")
    return sorted(cues, key=lambda c: (c.start, c.end))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such transcript file (check the path)")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
                         ) from None


def _fail(path: Path, line: int | str, problem: str) -> InputError:
    where = f"line {line}" if isinstance(line, int) else line
    return InputError(f"{path.name} {where}: {problem}")


def _parse_txt(path: Path, text: str, duration: float | None) -> list[Cue]:
    if duration is None:
        raise InputError(f"{path.name}: a .txt transcript has no times; give the clip's duration")
    body = " ".join(text.split())
    return [Cue(start=0.0, end=duration, text=body, line=1)] if body else []


# -- WebVTT and SubRip --------------------------------------------------------------------------


def _blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """Blank-line separated blocks with the 1-based number of their first line."""
    block: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not block:
                first = number
            block.append(line.rstrip())
        elif block:
            yield first, block
            block = []
    if block:
        yield first, block


def _parse_cues(path: Path, text: str, *, vtt: bool) -> list[Cue]:
    blocks = list(_blocks(text))
    if vtt:
        if not blocks or not blocks[0][1][0].startswith("WEBVTT"):
            raise _fail(path, 1, "a WebVTT file must start with 'WEBVTT'")
        blocks = blocks[1:]
    cues = []
    for first, lines in blocks:
        if vtt and lines[0].split()[0] in ("NOTE", "STYLE", "REGION"):
            continue
        cues.append(_cue(path, first, lines, vtt=vtt))
    return cues


def _cue(path: Path, first: int, lines: list[str], *, vtt: bool) -> Cue:
    timing = next((i for i, line in enumerate(lines[:2]) if _ARROW in line), None)
    if timing is None:
        raise _fail(path, first, f"expected a timing line 'start {_ARROW} end', got {lines[0]!r}")
    if not vtt and timing == 1 and not lines[0].strip().isdigit():
        raise _fail(path, first, f"expected a cue number, got {lines[0]!r}")
    number = first + timing
    start_text, _, rest = lines[timing].partition(_ARROW)
    end_text = rest.split()[0] if rest.split() else ""
    start = _seconds(path, number, start_text.strip(), vtt=vtt)
    end = _seconds(path, number, end_text, vtt=vtt)
    if end < start:
        raise _fail(path, number, f"cue ends ({end_text}) before it starts ({start_text.strip()})")
    body = lines[timing + 1 :]
    speaker = next((m.group(1).strip() for line in body if (m := _VOICE.search(line))), None)
    return Cue(start=start, end=end, text=_clean(" ".join(body)), speaker=speaker, line=first)


def _seconds(path: Path, line: int, stamp: str, *, vtt: bool) -> float:
    match = _TIME.match(stamp)
    if match is None:
        shape = "[HH:]MM:SS.mmm" if vtt else "HH:MM:SS,mmm"
        raise _fail(path, line, f"timestamp {stamp!r} is not {shape}")
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _clean(text: str) -> str:
    text = _SRT_STYLE.sub("", _TAG.sub("", text))
    return " ".join(html.unescape(text).split())


# -- JSON ---------------------------------------------------------------------------------------


def _parse_json(path: Path, text: str) -> list[Cue]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    language = None
    if isinstance(data, dict):
        if not isinstance(data.get("segments"), list):
            raise _fail(path, 1, "expected a list of segments or an object with 'segments'")
        language = data.get("language") if isinstance(data.get("language"), str) else None
        data = data["segments"]
    if not isinstance(data, list):
        raise _fail(path, 1, "expected a list of segments or an object with 'segments'")
    return [_segment(path, i, item, language) for i, item in enumerate(data)]


def _segment(path: Path, index: int, item: Any, language: str | None) -> Cue:
    where = f"segment {index}"
    if not isinstance(item, dict):
        raise _fail(path, where, f"expected an object with start, end, text; got {item!r}")
    start, end = _time(path, where, item, "start"), _time(path, where, item, "end")
    if end < start:
        raise _fail(path, where, f"'end' ({end}) is before 'start' ({start})")
    if not isinstance(item.get("text"), str):
        raise _fail(path, where, "needs a 'text' string")
    raw_words = item.get("words") or []
    words = tuple(_word(path, f"{where} word {j}", w) for j, w in enumerate(raw_words))
    speaker = item.get("speaker")
    return Cue(start=start, end=end, text=" ".join(item["text"].split()), words=words,
               speaker=str(speaker) if speaker is not None else None, language=language,
               line=index)


def _word(path: Path, where: str, item: Any) -> Word:
    if not isinstance(item, dict):
        raise _fail(path, where, f"expected an object with text, start, end; got {item!r}")
    text = item.get("text", item.get("word"))
    if not isinstance(text, str):
        raise _fail(path, where, "needs a 'text' (or 'word') string")
    start, end = _time(path, where, item, "start"), _time(path, where, item, "end")
    if end < start:
        raise _fail(path, where, f"'end' ({end}) is before 'start' ({start})")
    probability = item.get("probability")
    if probability is not None and not (
        isinstance(probability, int | float) and 0 <= probability <= 1
    ):
        raise _fail(path, where, f"'probability' must be a number in [0, 1], got {probability!r}")
    return Word(text=text.strip(), start=start, end=end, probability=probability)


def _time(path: Path, where: str, item: dict, key: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise _fail(path, where, f"{key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)
