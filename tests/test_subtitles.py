"""Reading given transcripts: WebVTT, SubRip, JSON (ours and Whisper's) and plain text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectgraph.errors import ConfigError, InputError
from affectgraph.tools.subtitles import read_transcript

VTT = """WEBVTT - a call

NOTE this note is skipped

intro
00:00.800 --> 00:02.500 align:start
<v Agent>Hello, how can I <i>help</i>?</v>

00:00:03.000 --> 00:00:05.250
Fish &amp; chips
please.
"""

SRT = """1
00:00:00,800 --> 00:00:02,500
<i>Kids are talking</i>
by the door.

2
00:00:03,000 --> 00:00:04,000
{\\an8}Really?
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_vtt_cues_speakers_tags_and_entities(tmp_path: Path) -> None:
    first, second = read_transcript(_write(tmp_path, "call.vtt", VTT))
    assert (first.start, first.end) == (0.8, 2.5)
    assert first.text == "Hello, how can I help?" and first.speaker == "Agent"
    assert first.line == 5
    assert (second.start, second.end) == (3.0, 5.25)
    assert second.text == "Fish & chips please." and second.speaker is None


def test_srt_cues_in_time_order(tmp_path: Path) -> None:
    reordered = SRT.split("\n\n")[1] + "\n\n" + SRT.split("\n\n")[0] + "\n"
    first, second = read_transcript(_write(tmp_path, "clip.srt", "\ufeff" + reordered))
    assert first.text == "Kids are talking by the door." and (first.start, first.end) == (0.8, 2.5)
    assert second.text == "Really?" and second.start == 3.0


def test_json_in_our_format_and_whispers(tmp_path: Path) -> None:
    ours = [{"start": 0.5, "end": 1.5, "text": " Hi there ", "speaker": "A",
             "words": [{"text": "Hi", "start": 0.5, "end": 0.9},
                       {"text": "there", "start": 0.9, "end": 1.5, "probability": 0.8}]}]
    (cue,) = read_transcript(_write(tmp_path, "ours.json", json.dumps(ours)))
    assert cue.text == "Hi there" and cue.speaker == "A"
    assert [(w.text, w.start, w.probability) for w in cue.words] == [("Hi", 0.5, None),
                                                                    ("there", 0.9, 0.8)]
    whisper = {"text": " Bonjour.", "language": "fr", "segments": [
        {"id": 0, "seek": 0, "start": 0.0, "end": 1.2, "text": " Bonjour.", "avg_logprob": -0.2,
         "words": [{"word": " Bonjour.", "start": 0.1, "end": 1.1, "probability": 0.97}]}]}
    (cue,) = read_transcript(_write(tmp_path, "whisper.json", json.dumps(whisper)))
    assert cue.text == "Bonjour." and cue.language == "fr" and cue.words[0].text == "Bonjour."


def test_txt_is_one_cue_over_the_clip(tmp_path: Path) -> None:
    path = _write(tmp_path, "clip.txt", "Kids are talking\n  by the door.\n")
    (cue,) = read_transcript(path, duration=3.3)
    assert (cue.start, cue.end, cue.text) == (0.0, 3.3, "Kids are talking by the door.")
    assert read_transcript(_write(tmp_path, "empty.txt", "\n \n"), duration=3.0) == []
    with pytest.raises(InputError, match=r"clip\.txt: a \.txt transcript has no times"):
        read_transcript(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.srt", "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 --> 00:00:0x,000\nbad\n",
         r"t.srt line 6: timestamp '00:00:0x,000' is not HH:MM:SS,mmm"),
        ("t.srt", "1\n00:00:01,000 00:00:02,000\nno arrow\n",
         r"t.srt line 1: expected a timing line 'start --> end'"),
        ("t.srt", "one\n00:00:01,000 --> 00:00:02,000\nx\n",
         r"t.srt line 1: expected a cue number"),
        ("t.srt", "1\n00:00:05,000 --> 00:00:02,000\nx\n", r"t.srt line 2: cue ends .* before"),
        ("t.vtt", "00:01.000 --> 00:02.000\nno header\n", r"t.vtt line 1: .* start with 'WEBVTT'"),
        ("t.vtt", "WEBVTT\n\n\n00:01.000 --> 00:62.000\nx\n",
         r"t.vtt line 4: timestamp '00:62.000'"),
        ("t.json", '[{"start": 0, "end": 1, "text": "a"},\n {"start": 1 "end": 2}]',
         r"t.json line 2: invalid JSON"),
        ("t.json", '[{"start": 0, "end": 1, "text": "a"}, {"start": -1, "end": 2, "text": "b"}]',
         r"t.json segment 1: 'start' must be a number of seconds >= 0, got -1"),
        ("t.json", '[{"start": 0, "end": 1}]', r"t.json segment 0: needs a 'text' string"),
        ("t.json", '[{"start": 0, "end": 1, "text": "a", "words": [{"start": 0, "end": 1}]}]',
         r"t.json segment 0 word 0: needs a 'text' \(or 'word'\) string"),
        ("t.json", '{"text": "no segments"}', r"t.json line 1: expected a list of segments"),
    ],
)
def test_malformed_files_name_the_line_and_problem(tmp_path: Path, name: str, text: str,
                                                   message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_transcript(_write(tmp_path, name, text))


def test_missing_unreadable_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such transcript file"):
        read_transcript(tmp_path / "missing.vtt")
    latin1 = tmp_path / "latin1.srt"
    latin1.write_bytes("1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.srt: not UTF-8 text"):
        read_transcript(latin1)
    with pytest.raises(ConfigError, match=r"unknown transcript format '.sub'.*Valid: .json, .srt"):
        read_transcript(_write(tmp_path, "x.sub", "{1}{2}hi"))
