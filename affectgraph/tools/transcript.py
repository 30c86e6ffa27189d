"""The transcript specialist: what was said, when, and the emotion in the words.

:func:`analyze_transcript` recognises the speech turns of a clip with Whisper
(:class:`~affectgraph.tools.asr.TranscriptModel`); :func:`transcript_from_file` reads a transcript
the user already has instead. Both return :class:`~affectgraph.evidence.TranscriptEvidence`
records, one per segment, with word times and a text-emotion distribution
(:mod:`affectgraph.tools.text_emotion`).

Whisper pads every input to 30 s, so consecutive turns of one channel are grouped into windows of
up to ``max_window`` seconds and each window is recognised in one call; the audio of all windows
is cut in one streaming pass over the file, so a long call never sits in memory. Each window's
audio reaches a little beyond its turns, since voice activity can clip a word's onset, but
segment and word times are kept within the turns. Segments that fall wholly in the silence
between a window's turns are dropped (Whisper invents text in silence).

>>> turns = [Turn(span=TimeSpan(start=0.7, end=2.5))]
>>> [r.text for r in analyze_transcript("clip.mp4", turns)]  # doctest: +SKIP
['Kids are talking by the door.']
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from affectgraph import media
from affectgraph.errors import InputError
from affectgraph.evidence import (
    ModelRef,
    TimeSpan,
    TranscriptEvidence,
    Turn,
    Word,
    evidence_id,
    top,
)
from affectgraph.memory import release_free_memory
from affectgraph.segments import channel_order, turn_signal
from affectgraph.tools.asr import AsrResult, Backend, TranscriptModel
from affectgraph.tools.subtitles import Cue, read_transcript
from affectgraph.tools.text_emotion import TextEmotionModel, load_text_emotion

__all__ = ["TranscriptModel", "TranscriptOptions", "analyze_transcript", "transcript_from_file"]

SPECIALIST = "transcript"
_NO_WORDS = "no words"
# Texts per text-emotion call. MiniLM's activations grow with the batch: a 30-minute recording's
# ~400 segments in one call (MiniLM batches of 256) added ~100 MB at the end of its analysis.
EMOTION_BATCH = 32


class TranscriptOptions(BaseModel):
    """How speech becomes transcript evidence. Times are in seconds.

    ``model`` is a registry name (``whisper-base``: multilingual; ``whisper-tiny.en``: English
    only, about twice as fast) or a path (a CTranslate2 folder for ``faster-whisper``, a ``.pt``
    checkpoint for ``openai-whisper``). ``language`` is an ISO 639-1 code, or ``None`` to detect
    it per window. ``beam_size`` 1 is greedy decoding (beam 5 was no better on RAVDESS).
    ``fallback`` turns on Whisper's temperature fallback (re-decoding repetitive or improbable
    segments hotter): off by default, since on repetitive speech it tripled the time of base
    (real-time factor 0.30 against 0.10) for a WER change within noise (0.020 against 0.026).
    ``max_window`` bounds a window of grouped turns, whose audio reaches ``context`` beyond
    them (voice activity often starts a turn after a word's onset: a shouted "Kids" in RAVDESS
    was lost without it); windows with less than ``min_speech`` of speech are not recognised
    and get a reason. ``threads``: CPU threads of the recogniser (2 by default: Whisper
    dominates a clip's latency, 1.1 s on one thread against 0.7 s on two for a 3.2 s RAVDESS
    clip, and it runs beside the other specialists); ``text_emotion`` names a model registered in
    :func:`~affectgraph.tools.text_emotion.text_emotion_loaders` (entry points).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "whisper-base"
    backend: Backend = "faster-whisper"
    language: str | None = None
    beam_size: int = Field(default=1, ge=1, le=10)
    word_timestamps: bool = True
    fallback: bool = False
    threads: int = Field(default=2, ge=1)
    max_window: float = Field(default=30.0, gt=0, le=30.0)
    context: float = Field(default=0.5, ge=0, le=5.0)
    min_speech: float = Field(default=0.3, ge=0)
    text_emotion: str = "minilm-head"

    @field_validator("language")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().lower()
        if not code.isalpha() or not 2 <= len(code) <= 3:
            raise ValueError(f"language must be an ISO 639-1 code such as 'en', got {value!r}")
        return code


@dataclass(frozen=True)
class Window:
    """Consecutive turns of one channel recognised in one call, and the audio around them.

    ``start`` and ``end`` (s) bound the audio cut for the call: the turns widened by some
    context, never into the neighbouring windows of the channel.
    """

    turns: tuple[Turn, ...]
    start: float
    end: float

    @property
    def span(self) -> TimeSpan:
        return TimeSpan(start=self.start, end=self.end)

    @property
    def speech_span(self) -> TimeSpan:
        return TimeSpan(start=self.turns[0].span.start, end=self.turns[-1].span.end)

    @property
    def channel(self) -> int | None:
        return self.turns[0].channel

    @property
    def speech(self) -> float:
        """Seconds of speech in the window's turns."""
        return sum(t.span.duration for t in self.turns)


def plan_windows(turns: Sequence[Turn], max_window: float, context: float = 0.0) -> list[Window]:
    """Group consecutive turns of each channel into windows of at most ``max_window`` s.

    Each window's audio reaches ``context`` s beyond its turns (at most halfway to the next
    window of its channel), turns included, so a window of several turns stays within
    ``max_window``; a turn longer than that gets a window of its own (Whisper walks through it
    in 30 s steps). Windows are returned in order of start time.
    """
    groups: list[list[Turn]] = []
    for turn in sorted(turns, key=lambda t: (channel_order(t.channel), t.span.start, t.span.end)):
        current = groups[-1] if groups else None
        if (current and turn.channel == current[0].channel
                and turn.span.end - current[0].span.start <= max_window - 2 * context):
            current.append(turn)
        else:
            groups.append([turn])
    windows = []
    for i, group in enumerate(groups):
        before = groups[i - 1] if i and groups[i - 1][0].channel == group[0].channel else None
        after = groups[i + 1] if i + 1 < len(groups) else None
        start, end = group[0].span.start, group[-1].span.end
        low = (before[-1].span.end + start) / 2 if before else 0.0
        high = (end + after[0].span.start) / 2 if after and after[0].channel == group[0].channel \
            else end + context
        windows.append(Window(tuple(group), max(low, start - context), min(high, end + context)))
    return sorted(windows, key=lambda w: (w.start, channel_order(w.channel)))


def analyze_transcript(
    path: str | Path,
    turns: Sequence[Turn],
    *,
    options: TranscriptOptions = TranscriptOptions(),
    model: TranscriptModel | None = None,
    text_emotion: TextEmotionModel | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[TranscriptEvidence]:
    """Recognise the speech ``turns`` of the clip at ``path``: one record per Whisper segment.

    Records (ids ``text:0``, ... in time order) carry the text, words with times in seconds from
    the start of the clip, the language (given or detected), ``asr_confidence`` (mean word
    probability) and a canonical distribution from ``text_emotion``. A window with too little
    speech, or in which nothing was recognised, gives one record with a ``reason``. With no
    turns returns ``[]`` (the caller reports "no speech"). ``model`` and ``text_emotion`` are
    loaded from ``options`` when not given. ``progress`` gets the end (s) of the latest window.

    Raises :class:`~affectgraph.errors.MediaError` for a file without audio,
    :class:`~affectgraph.errors.ConfigError` for a language the model does not know and
    :class:`~affectgraph.errors.InputError` for a turn on a channel the file lacks.
    """
    if not turns:
        return []
    model = model or TranscriptModel.load(options.model, backend=options.backend,
                                          threads=options.threads)
    model.check_language(options.language)
    emotion = text_emotion or load_text_emotion(options.text_emotion)
    windows = plan_windows(turns, options.max_window, options.context)
    short = [w for w in windows if w.speech < options.min_speech]
    records = [_too_short(w, model.ref, options.min_speech) for w in short]
    done = 0.0
    long = [w for w in windows if w.speech >= options.min_speech]
    for window, signal in _window_audio(path, long):
        records += _recognise(window, signal, model, options)
        release_free_memory()  # what the recogniser freed, so it does not pile up window by window
        done = max(done, window.speech_span.end)
        if progress is not None:
            progress(done)
    if progress is not None:
        progress(max(w.speech_span.end for w in windows))
    return _finish(records, emotion)


def _window_audio(path: str | Path, windows: list[Window]) -> Iterator[tuple[Window, np.ndarray]]:
    """Each window with its (n,) signal, cut in one pass: the turns' channel, or the mono mix."""
    spans = [(w.span.start, w.span.end) for w in windows]
    split = any(w.channel is not None for w in windows)
    for i, samples in media.iter_spans(path, spans, mono=not split):
        yield windows[i], turn_signal(samples, windows[i].turns[0], path)


def _too_short(window: Window, ref: ModelRef, min_speech: float) -> TranscriptEvidence:
    reason = f"speech too short for recognition ({window.speech:.2f} s < {min_speech:.2f} s)"
    return _record(window.speech_span, ref, window, reason=reason)


def _recognise(window: Window, signal: np.ndarray, model: TranscriptModel,
               options: TranscriptOptions) -> list[TranscriptEvidence]:
    result = model.transcribe(signal, language=options.language, beam_size=options.beam_size,
                              word_timestamps=options.word_timestamps,
                              fallback=options.fallback)
    end = min(window.end, window.start + signal.size / media.SAMPLE_RATE)
    records = _segments(window, end, result, model.ref)
    if not records:
        reason = f"{_NO_WORDS} recognised in {len(window.turns)} speech turn(s)"
        return [_record(window.speech_span, model.ref, window, reason=reason)]
    return records


def _segments(window: Window, end: float, result: AsrResult,
              ref: ModelRef) -> list[TranscriptEvidence]:
    """Segments in clip time, kept within the turns they overlap.

    Empty segments and those wholly in the silence between turns are dropped (Whisper invents
    text in silence). A segment in the context audio before the first turn or after the last
    (which ends at ``end`` s) belongs to that turn. Times are clamped to the turns: Whisper's
    word times, tiny.en's above all, run on into pauses and start early.
    """
    turns = [t.span for t in window.turns]
    reach = list(turns)
    reach[0] = TimeSpan(start=window.start, end=reach[0].end)
    reach[-1] = TimeSpan(start=reach[-1].start, end=max(end, reach[-1].start))
    records = []
    for segment in result.segments:
        raw = _clamp(segment.start + window.start, segment.end + window.start,
                     TimeSpan(start=window.start, end=end))
        touched = [turn for turn, area in zip(turns, reach, strict=True) if raw.overlap(area) > 0
                   or area.contains(raw.start)]
        if not segment.text or not touched:
            continue
        span = _clamp(raw.start, raw.end, TimeSpan(start=touched[0].start, end=touched[-1].end))
        records.append(_record(span, ref, window, text=segment.text,
                               words=_shift_words(segment.words, window.start, span),
                               language=result.language, asr_confidence=segment.confidence))
    return records


def _clamp(start: float, end: float, bounds: TimeSpan) -> TimeSpan:
    """The span ``start..end`` moved inside ``bounds``, rounded to milliseconds."""
    start = round(min(max(start, bounds.start), bounds.end), 3)
    return TimeSpan(start=start, end=round(min(max(end, start), bounds.end), 3))


def _shift_words(words: Sequence[Word], offset: float, bounds: TimeSpan) -> list[Word]:
    """Words moved by ``offset`` s, kept inside ``bounds`` and never going back in time."""
    out: list[Word] = []
    floor = bounds.start
    for word in words:
        span = _clamp(max(word.start + offset, floor), word.end + offset, bounds)
        out.append(word.model_copy(update={"start": span.start, "end": span.end}))
        floor = span.start
    return out


def _record(span: TimeSpan, ref: ModelRef, window: Window, **values) -> TranscriptEvidence:
    return TranscriptEvidence(id=evidence_id("text", 0), span=span, specialist=SPECIALIST,
                              model=ref, channel=window.channel,
                              speaker=window.turns[0].role, **values)


def _finish(records: list[TranscriptEvidence],
            emotion: TextEmotionModel) -> list[TranscriptEvidence]:
    """Order records in time, number them and add the text emotion of those with words
    (``EMOTION_BATCH`` texts per call, so memory does not grow with the number of records)."""
    records = sorted(records, key=lambda r: (r.span.start, r.span.end, channel_order(r.channel)))
    texts = [r.text if r.reason is None else "" for r in records]
    distributions = [d for i in range(0, len(texts), EMOTION_BATCH)
                     for d in emotion.predict(texts[i : i + EMOTION_BATCH])]
    out = []
    for index, (record, distribution) in enumerate(zip(records, distributions, strict=True)):
        update: dict = {"id": evidence_id("text", index)}
        if distribution is not None:
            update |= {"distribution": distribution, "confidence": top(distribution)[1]}
        elif record.reason is None:
            update["reason"] = _NO_WORDS
        out.append(record.model_copy(update=update))
    return out


def transcript_from_file(
    file: str | Path,
    *,
    duration: float | None = None,
    options: TranscriptOptions = TranscriptOptions(),
    text_emotion: TextEmotionModel | None = None,
) -> list[TranscriptEvidence]:
    """Evidence from a transcript the user gave (``.vtt``, ``.srt``, ``.json`` or ``.txt``).

    One record per cue with ``source="given"``; ``duration`` (s), the clip's length, is needed
    for ``.txt`` and clips cue ends that run past the clip. The language is the file's (Whisper
    JSON) or ``options.language``; ``text_emotion`` is loaded from ``options`` when not given.
    Raises :class:`~affectgraph.errors.InputError` for a malformed file or a cue that starts
    after the clip ends.
    """
    path = Path(file)
    cues = read_transcript(path, duration=duration)
    ref = ModelRef(name=f"given:{path.name}", revision=_file_revision(path))
    records = [_given(cue, path, ref, duration, options.language) for cue in cues]
    return _finish(records, text_emotion or load_text_emotion(options.text_emotion))


def _given(cue: Cue, path: Path, ref: ModelRef, duration: float | None,
           language: str | None) -> TranscriptEvidence:
    limit = duration if duration is not None else cue.end
    if cue.start > limit:
        where = f"line {cue.line}" if path.suffix.lower() != ".json" else f"segment {cue.line}"
        raise InputError(f"{path.name} {where}: cue starts at {cue.start:.3f} s, after the clip's "
                         f"end ({limit:.3f} s); is this the transcript of another clip?")
    span = _clamp(cue.start, cue.end, TimeSpan(start=0.0, end=limit))
    return TranscriptEvidence(
        id=evidence_id("text", 0), span=span, words=_shift_words(cue.words, 0.0, span),
        specialist=SPECIALIST, model=ref, text=cue.text, source="given",
        language=cue.language or language, speaker=cue.speaker,
    )


def _file_revision(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
