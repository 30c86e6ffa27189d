"""Chat about a clip: the offline answers on real evidence, the LLM path with a fake chat model,
threads that survive a restart, and the terminal loop.

Two real analyses: ``tests/reference/verifier_ravdess_clip.json`` (a RAVDESS video, actor 05,
happy: 17 face frames, one voice turn, one transcript segment; its verdict is rebuilt here by
the shipped fusion model and verified), and three RAVDESS speech clips of actor 01 (angry, sad,
happy) joined with pauses into one wav, analysed (voice only, ~3 s) through the chat graph's own
``analyse`` node, which gives three speech turns to compare and a timeline that can change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import wave
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import BaseMessage

from affectgraph import AnalyzeOptions, Analyzer
from affectgraph.agents.aggregate import aggregate
from affectgraph.agents.answer import Answer
from affectgraph.agents.chat_llm import answer_with_llm, split_claims
from affectgraph.agents.fusion import FusionModel
from affectgraph.agents.offline_answers import CAPABILITIES, answer_offline
from affectgraph.agents.questions import LAST, parse_question
from affectgraph.agents.verifier import verify_verdict
from affectgraph.analysis import Analysis
from affectgraph.errors import ConfigError, InputError, MediaError
from affectgraph.evidence import top
from affectgraph.graphs.chat import ChatSession, chat, compile_chat_graph
from affectgraph.verdict import RationaleStep, expand_ids

from .conftest import write_wav

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "tests" / "reference" / "chat_graph.mmd"
ACTOR_01 = ("03-01-05-02-01-01-01.wav", "03-01-04-02-01-01-01.wav", "03-01-03-02-01-01-01.wav")
_SPAN = re.compile(r"(\d+\.\d+)-(\d+\.\d+) s")
_AT = re.compile(r"\b[Aa]t (\d+\.\d) s")


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(reference_analysis: Analysis) -> Analysis:
    """The real video's analysis with its verdict (fusion, then the verifier)."""
    a = reference_analysis
    verdict = aggregate(a.evidence, a.exemplars, a.turns, a.media.duration, FusionModel.load())
    return a.model_copy(update={"verdict": verify_verdict(verdict, a.evidence, a.exemplars)})


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(AnalyzeOptions(specialists=("voice",)))


@pytest.fixture(scope="module")
def three_wav(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Actor 01 angry, sad, happy, each followed by 0.5 s of silence (48 kHz mono)."""
    parts = []
    for name in ACTOR_01:
        with wave.open(str(data_dir / "ravdess_speech" / "wav" / "Actor_01" / name)) as fh:
            rate = fh.getframerate()
            samples = np.frombuffer(fh.readframes(fh.getnframes()), "<i2") / 32768.0
        parts += [samples, np.zeros(rate // 2)]
    return write_wav(tmp_path_factory.mktemp("chat") / "three.wav", np.concatenate(parts), rate)


@pytest.fixture(scope="module")
def three(three_wav: Path, analyzer: Analyzer, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Analysis, Answer]:
    """The three-turn clip analysed by the chat graph on its first question."""
    db = tmp_path_factory.mktemp("db") / "chat.sqlite"
    with ChatSession(three_wav, db=db, analyzer=analyzer) as session:
        assert not session.analysed
        first = session.ask("what emotion is it?")
        assert session.analysed
        return session.analysis, first  # type: ignore[return-value]


# -- helpers -----------------------------------------------------------------------------------

def ids_of(analysis: Analysis) -> set[str]:
    return {r.id for r in analysis.evidence} | {e.citation for e in analysis.exemplars}


def records(analysis: Analysis, cites: list[str]) -> list[Any]:
    known = {r.id: r for r in analysis.evidence}
    return [known[i] for i in expand_ids(cites) if i in known]


def assert_well_cited(answer: Answer, analysis: Analysis) -> None:
    """Grounded, every cited id exists, every time in the text lies within the clip."""
    assert answer.grounded, [s.check for s in answer.unverified]
    assert answer.cites and set(expand_ids(answer.cites)) <= ids_of(analysis)
    assert all(s.grounded for s in answer.steps)
    end = analysis.media.duration + 0.05
    times = [float(t) for m in _SPAN.finditer(answer.text) for t in m.groups()]
    times += [float(t) for t in _AT.findall(answer.text)]
    assert times and all(0 <= t <= end for t in times), times


def step_citing(answer: Answer, cite: str) -> RationaleStep:
    return next(s for s in answer.steps if cite in expand_ids(s.cites))


# -- the question parser -----------------------------------------------------------------------

@pytest.mark.parametrize(("question", "intent", "expected"), [
    ("What emotion is it?", "emotion", {}),
    ("is she angry?", "emotion", {"emotion": "angry"}),
    ("Why?", "why", {}),
    ("How do you know?", "why", {}),
    ("When did it change?", "change", {}),
    ("what did the face show?", "modality", {"modalities": ("face",)}),
    ("what did the voice and the words show?", "modality", {"modalities": ("voice", "text")}),
    ("what happened at 2 s?", "time", {"times": (2.0,)}),
    ("what happened at 1:05?", "time", {"times": (65.0,), "time_words": ("1:05",)}),
    ("and at 800 ms?", "time", {"times": (0.8,)}),
    ("what did the face show between 1 and 2.5 s?", "time",
     {"times": (1.0, 2.5), "modalities": ("face",)}),
    ("what happened at the end?", "time", {"times": (3.2,)}),
    ("what happened in turn 2?", "turn", {"turns": (2,)}),
    ("compare turn 1 and turn 3", "compare", {"turns": (1, 3)}),
    ("compare the second turn with the last turn", "compare", {"turns": (2, LAST)}),
    ("voice:0 vs voice:2", "compare", {"ids": ("voice:0", "voice:2")}),
    ("do the face and the voice agree?", "compare", {"modalities": ("face", "voice")}),
    ("what is face:3?", "evidence", {"ids": ("face:3",)}),
    ("what can you answer?", "help", {}),
    ("who is speaking?", "unknown", {}),
])
def test_questions_are_parsed_into_intents_and_references(question: str, intent: str,
                                                          expected: dict[str, Any]) -> None:
    q = parse_question(question, duration=3.2)
    assert q.intent == intent
    for field, value in expected.items():
        assert getattr(q, field) == value, field


# -- offline answers on the real video -----------------------------------------------------------

def test_what_emotion_gives_the_verdict_with_its_strongest_cited_evidence(clip: Analysis) -> None:
    answer = answer_offline("What emotion is it?", clip)
    assert clip.verdict is not None and clip.verdict.label == "happy"
    assert answer.intent == "emotion" and answer.answerer == "offline"
    assert answer.text.startswith("The clip reads as happy over 0.0-3.2 s "
                                  f"(confidence {clip.verdict.confidence:.2f}")
    assert_well_cited(answer, clip)
    assert answer.steps[0].claim == clip.verdict.rationale[0].claim  # the strongest step


def test_asking_about_another_emotion_shows_where_the_evidence_has_it(clip: Analysis) -> None:
    answer = answer_offline("is she angry?", clip)
    assert "Not angry overall: angry has p=0.02" in answer.text
    assert_well_cited(answer, clip)
    angry = [s for s in answer.steps if "anger" in s.claim]
    assert angry and all(r.label == "angry" for s in angry for r in records(clip, s.cites))


def test_why_lists_every_verified_step_of_the_verdict(clip: Analysis) -> None:
    answer = answer_offline("why?", clip)
    assert clip.verdict is not None
    assert [s.claim for s in answer.steps] == [s.claim for s in clip.verdict.rationale]
    assert answer.text.startswith(
        f"The verdict is happy (confidence {clip.verdict.confidence:.2f}) because:")
    assert_well_cited(answer, clip)


def test_change_in_a_one_turn_clip_names_the_face_changes(clip: Analysis) -> None:
    answer = answer_offline("When did it change?", clip)
    assert "With one speech turn, the fused estimate cannot change" in answer.text
    assert_well_cited(answer, clip)
    runs = [records(clip, s.cites) for s in answer.steps]
    assert [r.id for run in runs for r in run] == [r.id for r in clip.of("face")]  # in order
    for run in runs:
        assert len({r.label for r in run}) == 1
    assert all(a[0].label != b[0].label for a, b in pairwise(runs))
    assert "the face shows sadness (p=0.63)" in step_citing(answer, "face:3").claim


def test_what_the_face_voice_and_words_showed(clip: Analysis) -> None:
    face = answer_offline("what did the face show?", clip)
    assert_well_cited(face, clip)
    assert {c.split(":")[0] for c in face.cites} == {"face"}
    assert "happiness in 11 of 17 sampled frames" in face.text

    voice = answer_offline("and the voice?", clip)
    assert_well_cited(voice, clip)
    record = clip.get("voice:0")
    assert voice.cites == ["voice:0"]
    assert f"sounds {record.label} (p={top(record.distribution)[1]:.2f})" in voice.text
    assert f"pitch around {record.prosody.pitch_mean_hz:.0f} Hz" in voice.text

    words = answer_offline("what did the words say?", clip)
    assert_well_cited(words, clip)
    assert words.cites == ["text:0"]
    assert '"Kids are talking by the door." read as neutral (p=0.50)' in words.text


def test_what_happened_at_a_moment_cites_the_records_covering_it(clip: Analysis) -> None:
    answer = answer_offline("what happened at 2 s?", clip)
    assert answer.intent == "time"
    assert_well_cited(answer, clip)
    cited = records(clip, answer.cites)
    assert {r.modality for r in cited} == {"face", "voice", "text"}
    assert all(r.span.contains(2.0, 0.25) for r in cited)
    said = re.search(r'saying "([^"]+)"', answer.text)
    words = [w for w in clip.get("text:0").words if w.start - 0.3 <= 2.0 <= w.end + 0.3]
    assert said and any(w.text.strip(" .") in said[1] for w in words)


def test_a_range_and_a_turn_cite_only_what_overlaps_them(clip: Analysis) -> None:
    answer = answer_offline("what did the face show between 1 and 2 s?", clip)
    assert_well_cited(answer, clip)
    cited = records(clip, answer.cites)
    assert {r.modality for r in cited} == {"face"}
    assert all(r.span.end > 1.0 and r.span.start < 2.0 for r in cited)

    turn = answer_offline("what happened in turn 1?", clip)
    assert_well_cited(turn, clip)
    span = clip.turns[0].span
    assert all(r.span.overlap(span) > 0 for r in records(clip, turn.cites))


def test_a_time_beyond_the_clip_names_its_duration(clip: Analysis) -> None:
    answer = answer_offline("what happened at 1:05?", clip)
    assert answer.text == ("The clip lasts 3.2 s (0:03); 1:05 (65 s) is past its end. "
                           "Ask about a time between 0 and 3.2 s.")
    assert not answer.grounded and answer.cites == [] and answer.steps == []


def test_records_by_id_and_unknown_ids(clip: Analysis) -> None:
    answer = answer_offline("what is face:3?", clip)
    assert_well_cited(answer, clip)
    assert answer.cites == ["face:3"] and "sadness (p=0.63)" in answer.text
    both = answer_offline("face:3 vs voice:0", clip)
    assert_well_cited(both, clip)
    assert "They differ: face:3 is sad, voice:0 is disgusted." in both.text
    missing = answer_offline("what is face:99?", clip)
    assert missing.text == ("There is no evidence face:99; this analysis has face:0-16, "
                            "voice:0, text:0.")
    assert not missing.grounded


def test_comparing_a_turn_the_clip_does_not_have(clip: Analysis) -> None:
    answer = answer_offline("compare turn 1 and turn 3", clip)
    assert answer.text == "This clip has 1 speech turn (1: 0.8-2.8 s); there is no turn 3."
    assert not answer.grounded


def test_comparing_modalities_names_the_disagreement(clip: Analysis) -> None:
    answer = answer_offline("do the face and the voice agree?", clip)
    assert_well_cited(answer, clip)
    assert "They differ: face is happy, voice is disgusted." in answer.text


def test_an_unknown_question_says_what_can_be_asked(clip: Analysis) -> None:
    for question in ("who is speaking?", "how old is she?"):
        answer = answer_offline(question, clip)
        assert answer.intent == "unknown" and not answer.grounded and not answer.cites
        assert answer.text.startswith("I cannot answer that from the evidence")
        assert all(c in answer.text for c in CAPABILITIES)
    assert answer_offline("help", clip).text.count("\n") == len(CAPABILITIES)


def test_without_a_verdict_each_modality_is_summarised(clip: Analysis) -> None:
    bare = clip.model_copy(update={"verdict": None})
    answer = answer_offline("what emotion is it?", bare)
    assert answer.text.startswith("This analysis has no verdict")
    assert_well_cited(answer, bare)
    assert {c.split(":")[0] for c in answer.cites} == {"face", "voice", "text"}


# -- offline answers on three real turns (analysed through the chat graph) -----------------------

def test_the_first_question_runs_the_analysis(three: tuple[Analysis, Answer]) -> None:
    analysis, first = three
    assert len(analysis.turns) == 3 and len(analysis.of("voice")) == 3
    assert analysis.of("face") == [] and analysis.skipped["face"]
    assert analysis.verdict is not None
    assert_well_cited(first, analysis)


def test_change_over_three_turns_follows_the_timeline(three: tuple[Analysis, Answer]) -> None:
    analysis, _ = three
    answer = answer_offline("when did it change?", analysis)
    assert_well_cited(answer, analysis)
    labels = [e.label or "uncertain" for e in analysis.verdict.timeline]  # type: ignore[union-attr]
    assert len(labels) == 3
    for n, label in enumerate(labels, 1):
        assert f"speech turn {n} " in answer.text and label in answer.text
    changes = [(a, b) for a, b in pairwise(labels) if a != b]
    assert answer.text.count("It changes from") == len(changes)
    for a, b in changes:
        assert f"It changes from {a} to {b}" in answer.text


def test_compare_turns_contrasts_their_voices(three: tuple[Analysis, Answer]) -> None:
    analysis, _ = three
    answer = answer_offline("compare turn 1 and turn 3", analysis)
    assert_well_cited(answer, analysis)
    assert set(expand_ids(answer.cites)) == {"voice:0", "voice:2"}
    first, third = analysis.get("voice:0").prosody, analysis.get("voice:2").prosody
    verb = "falls" if third.pitch_mean_hz < first.pitch_mean_hz else "rises"
    assert (f"The pitch {verb} from {first.pitch_mean_hz:.0f} Hz [voice:0] to "
            f"{third.pitch_mean_hz:.0f} Hz [voice:2]") in answer.text
    labels = [analysis.verdict.timeline[i].label for i in (0, 2)]  # type: ignore[union-attr]
    assert ("They agree" if labels[0] == labels[1] else "They differ") in answer.text
    last = answer_offline("voice:0 vs voice:2", analysis)
    assert_well_cited(last, analysis)
    assert step_citing(last, "voice:2").claim.startswith(
        f"The voice sounds {analysis.get('voice:2').label}")


def test_a_moment_between_turns_points_to_the_nearest(three: tuple[Analysis, Answer]) -> None:
    analysis, _ = three
    gap = (analysis.turns[0].span.end + analysis.turns[1].span.start) / 2
    answer = answer_offline(f"what did the voice show at {gap:.1f} s?", analysis)
    assert "No speech turn covers" in answer.text
    assert_well_cited(answer, analysis)


# -- threads persist -------------------------------------------------------------------------------

def test_a_thread_resumes_in_a_new_process(clip: Analysis, tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite"
    with ChatSession(clip.media.path, db=db, thread="mine", analysis=clip) as session:
        session.ask("what emotion is it?")
        session.ask("why?")
    script = (
        "import json, sys\n"
        "from affectgraph.graphs.chat import ChatSession\n"
        "with ChatSession(sys.argv[1], db=sys.argv[2], thread='mine') as s:\n"
        "    before = (s.analysed, [a.question for a in s.history()])\n"
        "    answer = s.ask('what happened at 2 s?')\n"
        "    print(json.dumps({'before': before, 'answer': answer.model_dump(mode='json'),\n"
        "                      'messages': [m.type for m in s.state['messages']]}))\n")
    run = subprocess.run([sys.executable, "-c", script, clip.media.path, str(db)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["before"] == [True, ["what emotion is it?", "why?"]]
    assert out["messages"] == ["human", "ai"] * 3
    answer = Answer.model_validate(out["answer"])
    assert answer.intent == "time" and answer.grounded and "face:9" in answer.cites

    class Refuses:  # the analysis is in the thread: nothing may analyse again
        def analyze(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("analysed twice")

    with ChatSession(clip.media.path, db=db, thread="mine", analyzer=Refuses()) as session:
        assert len(session.history()) == 3
        assert session.ask("when did it change?").grounded


def test_a_thread_belongs_to_one_clip(clip: Analysis, tmp_path: Path, three_wav: Path) -> None:
    db = tmp_path / "chat.sqlite"
    with ChatSession(clip.media.path, db=db, thread="t", analysis=clip) as session:
        session.ask("why?")
        with pytest.raises(InputError, match="empty"):
            session.ask("  ")
    with pytest.raises(ConfigError, match=r"thread 't' .* is about .*01-01-03-01-01-02-05\.mp4"):
        ChatSession(three_wav, db=db, thread="t")
    with pytest.raises(MediaError, match="no such file"):
        ChatSession(tmp_path / "missing.mp4", db=db)


def test_the_chat_graph_wiring_matches_the_snapshot() -> None:
    drawing = compile_chat_graph().get_graph().draw_mermaid()
    if os.environ.get("AFFECTGRAPH_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(drawing)
    assert drawing == SNAPSHOT.read_text(), (
        "the chat graph's wiring changed; if intended, refresh the snapshot: "
        "AFFECTGRAPH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_chat.py")


# -- the LLM path ----------------------------------------------------------------------------------

class Recording(GenericFakeChatModel):
    """A scripted chat model that keeps the messages it was sent."""

    seen: list[list[BaseMessage]]

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


REPLY = ("The face shows happiness from 2.4 to 3.2 s (mean p=0.97) [face:12-16]. "
         "The words read as neutral (p=0.50) [text:0].\n"
         "- The face shows anger at 0.1 s [face:99].\n"
         "- The voice sounds happy [voice:0].\n"
         "Overall she is sad. Hope that helps!")


def test_llm_claims_go_through_the_verifier(clip: Analysis) -> None:
    model = Recording(messages=iter([REPLY]), seen=[])
    answer = answer_with_llm(model, "why is it happy?", clip)
    assert answer.answerer == "llm" and not answer.grounded
    verdicts = {s.claim.split(" [")[0]: s for s in answer.steps}
    assert verdicts["The face shows happiness from 2.4 to 3.2 s (mean p=0.97)"].grounded
    assert verdicts["The words read as neutral (p=0.50)"].grounded
    invented = verdicts["The face shows anger at 0.1 s"]
    assert not invented.grounded and "unknown evidence face:99" in invented.check
    assert not verdicts["The voice sounds happy"].grounded  # voice:0 is not happy
    assert "cites no evidence" in verdicts["Overall she is sad."].check
    assert answer.cites == ["face:12-16", "text:0"]
    assert answer.text.count("[not verified:") == 3 and "Hope that helps!" in answer.text
    prompt = model.seen[0][0].text
    assert all(f"[{r.id}]" in prompt for r in clip.evidence)
    assert '"Kids are talking by the door."' in prompt and "pitch 122 Hz" in prompt


def test_split_claims_tells_claims_from_connecting_text() -> None:
    parts = split_claims("Here is what I see:\n1. Happy at 1.2 s (see face:5).\nThat is all.")
    assert parts[0] == "Here is what I see:" and parts[2] == "That is all."
    assert isinstance(parts[1], RationaleStep) and parts[1].cites == ["face:5"]


def test_a_session_with_a_chat_model_sends_the_history(clip: Analysis, tmp_path: Path) -> None:
    model = Recording(messages=iter(["The voice sounds disgusted (p=0.28) [voice:0].",
                                     "It is at 0.8-2.8 s [voice:0]."]), seen=[])
    with ChatSession(clip.media.path, db=tmp_path / "c.sqlite", analysis=clip,
                     llm=model) as session:
        first = session.ask("what does the voice sound like?")
        second = session.ask("when?")
    assert first.answerer == "llm" and first.grounded and first.cites == ["voice:0"]
    assert second.grounded
    sent = [m.type for m in model.seen[1]]
    assert sent == ["system", "human", "ai", "human"]
    assert model.seen[1][1].text == "what does the voice sound like?"


def test_a_failing_chat_model_falls_back_to_the_offline_answer(clip: Analysis) -> None:
    class Down(GenericFakeChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("connection refused")

    answer = answer_with_llm(Down(messages=iter([])), "what emotion is it?", clip)
    assert answer.answerer == "offline" and answer.grounded
    assert answer.note and "ConnectionError: connection refused" in answer.note


# -- the terminal loop ------------------------------------------------------------------------

def test_the_terminal_loop(three_wav: Path, analyzer: Analyzer, tmp_path: Path) -> None:
    lines = iter(["what emotion is it?", "", "/help", "at 99 s", "/history", "/quit",
                  "never read"])
    out: list[str] = []
    db = tmp_path / "t.sqlite"
    code = chat(three_wav, db=db, analyzer=analyzer, read=lambda _: next(lines),
                write=out.append)
    assert code == 0 and next(lines) == "never read"
    text = "\n".join(out)
    assert "Analysing the clip" in text and "The clip reads as" in text
    assert "/quit" in text and CAPABILITIES[0] in text
    assert "The clip lasts 13.1 s (0:13); 99 s is past its end." in text
    assert "Q: what emotion is it?" in text and "Q: at 99 s" in text
    resumed: list[str] = []
    chat(three_wav, db=db, analyzer=analyzer, read=lambda _: "/quit", write=resumed.append)
    assert "Resuming: 2 earlier question(s); the last was 'at 99 s'." in resumed


def test_a_tool_calling_model_answers_as_the_investigator_with_new_evidence(
        clip: Analysis, analyzer: Analyzer, ravdess_clip: Path, tmp_path: Path) -> None:
    """A chat question that needs new evidence: the model looks at the face again between 1 and
    2 s at 10 fps; the new records are verified and stay citable in the thread."""
    import json as _json

    from langchain_core.messages import AIMessage as _AI

    from affectgraph.testing import ScriptedChatModel

    def face_call(messages: list[Any]) -> _AI:
        return _AI("", tool_calls=[{"name": "face", "args": {"start": 1.0, "end": 2.0,
                                                            "fps": 10}, "id": "c1"}])

    def conclude(messages: list[Any]) -> _AI:
        found = _json.loads(messages[-1].content)
        ids = found["added"][0]
        return _AI("", tool_calls=[{"name": "conclude", "id": "c2", "args": {
            "conclusion": f"I looked at the face again between 1.0 and 2.0 s [{ids}]",
            "steps": [{"claim": f"The face was sampled at 10 fps between 1.0 and 2.0 s [{ids}]",
                       "cites": [ids]}]}}])

    model = ScriptedChatModel(script=[face_call, conclude])
    with ChatSession(ravdess_clip, db=tmp_path / "chat.sqlite", llm=model, analyzer=analyzer,
                     analysis=clip) as session:
        answer = session.ask("Look closer at the face between 1 and 2 seconds, at 10 fps")
        assert answer.grounded and answer.answerer == "llm" and "face:17-26" in answer.cites
        assert session.analysis.get("face:26").span.start >= 1.0
