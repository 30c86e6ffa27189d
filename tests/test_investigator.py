"""The investigator agent on a real clip: its tools run the real specialists on the stretch the
model asks for, bad arguments come back as tool errors, the budget holds, and the final answer
is verified.

The analysis is ``reference/verifier_ravdess_clip.json`` (a real analysis of the RAVDESS clip
``01-01-03-01-01-02-05.mp4``: face:0-16, voice:0, text:0 and 30 exemplars), so nothing is
analysed twice; the tools run the face, voice and retrieval models on the requested ranges.
The models are scripted: :class:`affectgraph.testing.ScriptedChatModel`, and a real
OpenAI-compatible HTTP server on localhost (:mod:`tests.openai_server`).
"""

from __future__ import annotations

import json
import os
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from affectgraph.agents.aggregate import aggregate
from affectgraph.agents.fusion import FusionModel
from affectgraph.agents.investigator import (
    Investigation,
    InvestigatorOptions,
    build_investigator,
    chat_answer,
    conflict_question,
    conflicting,
    investigate,
)
from affectgraph.agents.llm import LLMOptions, load_chat_model
from affectgraph.analysis import Analysis
from affectgraph.errors import ConfigError, InputError, MediaError
from affectgraph.evidence import FaceEvidence, VoiceEvidence
from affectgraph.graphs.context import Toolbox
from affectgraph.testing import ScriptedChatModel
from tests.openai_server import Reply, ScriptedOpenAIServer, ToolCall, openai_server

__all__ = ["openai_server"]  # the fixture, imported for this module's tests

SNAPSHOT = Path(__file__).parent / "reference" / "investigator_graph.mmd"


@pytest.fixture(scope="module")
def analysis(reference_analysis: Analysis) -> Analysis:
    return reference_analysis


@pytest.fixture(scope="module")
def toolbox() -> Toolbox:
    """One toolbox for the module: each model loads once, as in a chat session."""
    return Toolbox()


_ids = iter(range(10_000))


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{next(_ids)}"}])


def conclude(conclusion: str, *steps: tuple[str, list[str]]) -> AIMessage:
    return call("conclude", conclusion=conclusion,
                steps=[{"claim": claim, "cites": cites} for claim, cites in steps])


def last_result(messages: list[BaseMessage]) -> dict[str, Any]:
    """The JSON of the last tool result the model was sent."""
    message = messages[-1]
    assert isinstance(message, ToolMessage) and message.status != "error", message
    return json.loads(message.content)


def face_claim(messages: list[BaseMessage]) -> AIMessage:
    """Like a model that read the face tool's result: a claim stating what it returned."""
    found = last_result(messages)
    label, count = max(found["top_labels"].items(), key=lambda kv: kv[1])
    ids = found["added"][0]
    start, end = found["records"][0]["span"][0], found["records"][-1]["span"][1]
    return conclude(f"Between {start:.1f} and {end:.1f} s the face mostly shows {label} [{ids}]",
                    (f"The face is {label} in {count} of {len(found['records'])} frames at "
                     f"{start:.2f}-{end:.2f} s [{ids}]", [ids]))


def run(analysis: Analysis, toolbox: Toolbox, script: list[Any], question: str = "Why?",
        **options: Any) -> tuple[Investigation, ScriptedChatModel]:
    chat = ScriptedChatModel(script=script)
    result = investigate(analysis, question, chat, toolbox,
                         options=InvestigatorOptions(**options))
    return result, chat


# -- the specialists on a chosen stretch ----------------------------------------------------------

def test_face_on_a_stretch_adds_records_with_fresh_ids_inside_it(analysis: Analysis,
                                                                 toolbox: Toolbox) -> None:
    result, chat = run(analysis, toolbox, [call("face", start=1.0, end=2.0, fps=10), face_claim],
                       question="What does the face show between 1 and 2 s, at 10 fps?")
    added = result.evidence
    assert [r.id for r in added] == [f"face:{n}" for n in range(17, 27)]  # after face:0-16
    assert all(isinstance(r, FaceEvidence) and r.distribution for r in added)
    assert all(1.0 - 1e-6 <= r.span.start < r.span.end <= 2.0 + 1e-6 for r in added)
    assert [round(r.span.start, 2) for r in added] == [round(1.0 + n / 10, 2) for n in range(10)]
    assert not {r.id for r in added} & {r.id for r in analysis.evidence}
    merged = result.merged(analysis)
    assert [r.id for r in merged.of("face")] == [f"face:{n}" for n in range(27)]
    assert merged.get("face:26") == added[-1] and analysis.evidence == merged.evidence[:19]

    [face] = result.calls
    assert (face.name, face.args, face.status, face.added) == (
        "face", {"start": 1.0, "end": 2.0, "fps": 10}, "ok", ["face:17-26"])
    assert 0 < face.seconds < 30
    sent = last_result(chat.calls[1].messages)
    assert sent["added"] == ["face:17-26"] and sent["fps"] == 10
    assert sum(sent["top_labels"].values()) == 10
    assert {r["id"] for r in sent["records"]} == {r.id for r in added}

    assert result.stopped is None and result.conclusion.startswith("Between 1.0 and 2.0 s")
    answer = chat_answer(result, analysis)
    assert answer.grounded and answer.answerer == "llm" and answer.cites == ["face:17-26"]
    assert answer.text.splitlines()[0].startswith("- Between 1.0 and 2.0 s")
    assert [s.grounded for s in result.steps] == [True], result.steps
    assert result.conclusion_check.grounded, result.conclusion_check
    assert result.grounding == 1.0


def test_voice_on_a_stretch_and_lookup(analysis: Analysis, toolbox: Toolbox) -> None:
    def pitch_claim(messages: list[BaseMessage]) -> AIMessage:
        records = {r["id"]: r for r in last_result(messages)["records"]}
        hz = records["voice:1"]["prosody"]["pitch_mean_hz"]
        return conclude(f"The voice's pitch is about {hz:.0f} Hz [voice:1]",
                        (f"The mean pitch is {hz:.0f} Hz at 0.80-2.80 s [voice:1]", ["voice:1"]),
                        ("The words read as neutral [text:0]", ["text:0"]))

    result, chat = run(analysis, toolbox, [
        call("voice", start=0.8, end=2.8),
        call("lookup", ids=["voice:1", "face:0-1", "exemplar:faces_web/Sheila_Taormina_0001"]),
        pitch_claim])
    [voice] = result.evidence
    assert isinstance(voice, VoiceEvidence) and voice.id == "voice:1"
    assert (voice.span.start, voice.span.end) == (0.8, 2.8)
    assert voice.prosody is not None and 80 < voice.prosody.pitch_mean_hz < 300
    assert voice.distribution is not None and len(voice.features) == 88

    looked = last_result(chat.calls[2].messages)["records"]
    assert [r["id"] for r in looked] == ["voice:1", "face:0", "face:1",
                                         "exemplar:faces_web/Sheila_Taormina_0001"]
    assert looked[0]["prosody"]["pitch_mean_hz"] == round(voice.prosody.pitch_mean_hz, 2)
    assert looked[3]["label"] == "happy" and looked[3]["retrieved_for"] == "face:5"
    assert [c.name for c in result.calls] == ["voice", "lookup"]
    assert all(s.grounded for s in result.steps), result.steps


def test_retrieved_exemplars_become_citable(analysis: Analysis, toolbox: Toolbox) -> None:
    def vote_claim(messages: list[BaseMessage]) -> AIMessage:
        found = last_result(messages)
        ids = [n["id"] for n in found["neighbours"]]
        label = found["label"]
        n = sum(x["label"] == label for x in found["neighbours"])
        return conclude("The nearest faces agree", (
            f"{n} of the {len(ids)} nearest labelled face exemplars are {label}", ids))

    result, _ = run(analysis, toolbox, [call("face", start=2.0, end=2.4, fps=5),
                                        call("retrieve_exemplars", evidence_id="face:17", k=5),
                                        vote_claim])
    assert len(result.exemplars) == 5
    assert {e.evidence_id for e in result.exemplars} == {"face:17"}
    assert [s.grounded for s in result.steps] == [True], result.steps


# -- bad arguments come back as tool errors -------------------------------------------------------

def test_bad_arguments_are_tool_errors_naming_the_valid_range(analysis: Analysis,
                                                              toolbox: Toolbox) -> None:
    result, chat = run(analysis, toolbox, [
        call("face", start=1.0, end=9.0, fps=10),
        call("face", start=2.0, end=1.5),
        call("face", start=1.0, end=2.0, fps=100),
        call("face", start=0.0, end=3.2, fps=15, extra=1),
        call("voice", start="soon", end=2.0),
        call("lookup", ids=["face:99", "voice:0"]),
        call("list_evidence", modality="face", start=3.1, end=3.25),
        call("face", start=2.0, end=2.5, fps=4),
        face_claim], max_tool_calls=10)
    errors = [m.messages[-1] for m in chat.calls[1:7]]
    assert all(isinstance(m, ToolMessage) and m.status == "error" for m in errors)
    said = [m.content for m in errors]
    assert "end 9 s is beyond the clip's end" in said[0] and "end <= 3.24" in said[0]
    assert "must come after start 2 s" in said[1]
    assert "fps 100 is out of range; choose 0 < fps <= 15" in said[2]
    assert "extra" in said[3] and "Extra inputs are not permitted" in said[3]
    assert said[4].startswith("invalid arguments: start:")
    assert "unknown id(s) face:99" in said[5] and "known ids: face:0-16, text:0, voice:0" \
        in said[5]
    listed = last_result(chat.calls[7].messages)
    assert listed["span"] == [3.1, 3.24] and [r["id"] for r in listed["records"]] == [
        "face:15", "face:16"]

    assert [c.status for c in result.calls] == ["error"] * 6 + ["ok", "ok"]
    assert result.calls[0].message == said[0]
    assert [r.id for r in result.evidence] == ["face:17", "face:18"]  # 2.0 and 2.25 s
    assert result.stopped is None and all(s.grounded for s in result.steps)


def test_a_face_call_is_bounded_in_frames(analysis: Analysis, toolbox: Toolbox) -> None:
    result, chat = run(analysis, toolbox, [call("face", start=0.0, end=3.0, fps=15),
                                           conclude("Nothing new [face:0]",
                                                    ("The face is happy [face:0]", ["face:0"]))],
                       max_frames=20)
    said = chat.calls[1].messages[-1].content
    assert "45 frames, more than 20 per call; lower fps to at most 6.67" in said
    assert result.evidence == [] and result.calls[0].status == "error"


# -- the budget -----------------------------------------------------------------------------------

def test_a_model_that_keeps_calling_tools_is_stopped(analysis: Analysis,
                                                     toolbox: Toolbox) -> None:
    script = [call("lookup", ids=["face:0"]) for _ in range(3)] + [
        AIMessage("", tool_calls=[
            {"name": "list_evidence", "args": {}, "id": "a"},
            {"name": "lookup", "args": {"ids": ["text:0"]}, "id": "b"}])] + [
        call("lookup", ids=["voice:0"]) for _ in range(10)]
    result, chat = run(analysis, toolbox, script, max_tool_calls=4)
    assert [c.status for c in result.calls] == ["ok"] * 4 + ["refused", "refused"]
    refused, told = chat.calls[4].messages[-2:]
    assert isinstance(refused, ToolMessage) and refused.status == "error"
    assert "not run: the budget is spent (4 of 4 tool calls used)" in refused.content
    assert isinstance(told, HumanMessage) and "Call no more tools" in told.content
    assert result.stopped is not None and "budget spent (4 of 4 tool calls used)" in \
        result.stopped and "after being told to conclude" in result.stopped
    assert result.conclusion is None and result.steps == []
    answer = chat_answer(result, analysis)
    assert not answer.grounded and answer.note == result.stopped
    assert answer.text.startswith("The investigation gave no conclusion: budget spent")
    assert len(chat.calls) == 5  # stopped right after ignoring the budget message


def test_a_model_that_obeys_the_budget_concludes(analysis: Analysis, toolbox: Toolbox) -> None:
    result, _ = run(analysis, toolbox, [
        call("lookup", ids=["face:0"]),
        conclude("The face is happy at the start [face:0]",
                 ("The face is happy at 0.0-0.2 s [face:0]", ["face:0"]))],
        max_tool_calls=1)
    assert result.stopped is None and result.grounding == 1.0
    assert result.note == "concluded after the budget was spent (1 of 1 tool calls used)"


def test_the_time_budget_refuses_tools(analysis: Analysis, toolbox: Toolbox) -> None:
    result, chat = run(analysis, toolbox, [call("face", start=1.0, end=2.0)],
                       max_seconds=1e-6)
    assert "Call no more tools" in chat.calls[0].messages[-1].content
    assert result.stopped and "s used" in result.stopped
    assert result.evidence == [] and [c.status for c in result.calls] == ["refused"]


# -- the answer is verified -----------------------------------------------------------------------

def test_invented_ids_and_wrong_emotions_are_flagged(analysis: Analysis,
                                                     toolbox: Toolbox) -> None:
    wrong = conclude("The face turns angry [face:0-4]",
                     ("The face is angry at 0.0-1.0 s [face:0-4]", ["face:0-4"]),
                     ("The voice sounds happy [voice:7]", ["voice:7"]),
                     ("The words read as neutral [text:0]", ["text:0"]))
    result, chat = run(analysis, toolbox, [wrong, wrong])
    assert [s.grounded for s in result.steps] == [False, False, True]
    assert "angry" in result.steps[0].check
    assert "cites unknown evidence voice:7" in result.steps[1].check
    feedback = chat.calls[1].messages[-1]
    assert isinstance(feedback, HumanMessage) and "voice:7" in feedback.content
    assert result.grounding == pytest.approx(1 / 3)
    assert result.rejected_steps == result.steps[:2]
    answer = chat_answer(result, analysis)
    assert not answer.grounded and answer.text.count("[not verified:") == 3  # + the conclusion


def test_a_revision_fixes_a_rejected_step(analysis: Analysis, toolbox: Toolbox) -> None:
    script = [conclude("It is happy [face:0-2]", ("The face is sad at 0.0-0.6 s [face:0-2]",
                                                  ["face:0-2"])),
              conclude("It is happy [face:0-2]", ("The face is happy at 0.0-0.6 s [face:0-2]",
                                                  ["face:0-2"]))]
    result, _ = run(analysis, toolbox, script)
    assert result.grounding == 1.0 and result.steps[0].claim.startswith("The face is happy")


def test_a_text_answer_is_verified_sentence_by_sentence(analysis: Analysis,
                                                        toolbox: Toolbox) -> None:
    result, _ = run(analysis, toolbox, [
        "The face is happy at 0.0-0.6 s [face:0-2]. The voice sounds angry [voice:0]."],
        revisions=0)
    assert [s.grounded for s in result.steps] == [True, False]
    assert result.conclusion.startswith("The face is happy")


def test_vote_aliases_of_the_evidence_list_are_expanded(analysis: Analysis,
                                                        toolbox: Toolbox) -> None:
    result, chat = run(analysis, toolbox, [conclude(
        "The face exemplars agree", ("9 of 10 nearest labelled face exemplars are happy "
                                     "[vote:1]", ["vote:1"]))])
    system = chat.calls[0].messages[0].content
    assert "[vote:1] the 10 labelled face exemplars nearest face:5: happy 9" in system
    assert len(result.steps[0].cites) == 10 and result.steps[0].grounded


# -- bad input and wiring -------------------------------------------------------------------------

def test_bad_input_is_named(analysis: Analysis, toolbox: Toolbox, tmp_path: Path) -> None:
    chat = ScriptedChatModel(script=[])
    with pytest.raises(InputError, match="question is empty"):
        investigate(analysis, "  ", chat, toolbox)
    with pytest.raises(MediaError):
        investigate(analysis, "why?", chat, toolbox, path=str(tmp_path / "gone.mp4"))
    with pytest.raises(ConfigError, match="cannot call tools"):
        investigate(analysis, "why?", GenericFakeChatModel(messages=iter([])), toolbox)
    with pytest.raises(ValueError, match="max_tool_calls"):
        InvestigatorOptions(max_tool_calls=0)


def test_conflicting_modalities(analysis: Analysis) -> None:
    # face happy (mean p=0.61) against words neutral (p=0.50): the analysis disagrees
    assert conflicting(None, analysis.evidence)
    assert not conflicting(None, analysis.of("face"))
    assert not conflicting(None, [*analysis.of("face"), *analysis.of("voice")])  # voice p<0.35
    assert not conflicting(None, analysis.evidence, threshold=0.7)
    verdict = aggregate(analysis.evidence, analysis.exemplars, analysis.turns,
                        analysis.media.duration, FusionModel.load(None))
    assert any(s.claim.startswith("The modalities disagree") for s in verdict.rationale)
    assert conflicting(verdict)
    agreeing = verdict.model_copy(update={"rationale": verdict.rationale[:3]})
    assert not conflicting(agreeing)
    assert not conflicting(None)
    question = conflict_question(analysis.evidence)
    assert question is not None and question.startswith("The modalities disagree: the face: "
                                                         "happy (p=0.6")
    assert "; the words: neutral (p=0.50). Look closer" in question
    assert conflict_question(analysis.of("face")) is None


def test_the_graph_wiring_matches_the_snapshot() -> None:
    drawing = build_investigator().compile().get_graph().draw_mermaid()
    if os.environ.get("AFFECTGRAPH_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(drawing)
    assert drawing == SNAPSHOT.read_text(), (
        "the investigator's wiring changed; if intended, refresh the snapshot: "
        "AFFECTGRAPH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_investigator.py")


# -- over HTTP ------------------------------------------------------------------------------------

def test_over_a_real_openai_compatible_server(analysis: Analysis, toolbox: Toolbox,
                                              openai_server: ScriptedOpenAIServer) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        found = json.loads(body["messages"][-1]["content"])
        label = found["records"][0]["label"]
        claim = f"The face is {label} at 1.50-1.75 s [face:17]"
        return Reply(content="", tool_calls=(ToolCall("conclude", {
            "conclusion": claim, "steps": [{"claim": claim, "cites": ["face:17"]}]}),))

    openai_server.push(
        Reply(content="Let me look at the face.",
              tool_calls=(ToolCall("zoom", {"factor": 2}),)),
        Reply(content="", tool_calls=(ToolCall("face", {"start": 1.5, "end": 2.0, "fps": 4}),)),
        answer)
    chat = load_chat_model("openai:scripted", options=LLMOptions(base_url=openai_server.url,
                                                                 timeout=10, max_retries=0))
    tokens: list[str] = []
    result = investigate(analysis, "What does the face show at 1.5 s?", chat, toolbox,
                         on_token=tokens.append)
    assert "".join(tokens).startswith("Let me look at the face.")
    first = openai_server.requests[0]
    assert first["stream"] is True
    assert [t["function"]["name"] for t in first["tools"]] == [
        "face", "voice", "transcript", "retrieve_exemplars", "lookup", "list_evidence",
        "conclude"]
    assert set(first["tools"][0]["function"]["parameters"]["properties"]) == {
        "start", "end", "fps"}
    unknown = openai_server.requests[1]["messages"][-1]
    assert unknown["role"] == "tool" and "there is no tool 'zoom'" in unknown["content"]
    assert [(c.name, c.status) for c in result.calls] == [("zoom", "error"), ("face", "ok")]
    assert [r.id for r in result.evidence] == ["face:17", "face:18"]
    assert result.model == "openai:scripted" and result.grounding == 1.0, result.steps


def test_callbacks_see_each_call(analysis: Analysis, toolbox: Toolbox) -> None:
    seen: list[str] = []

    def on_call(record: Any) -> None:
        seen.append(f"{record.name}:{record.status}")

    chat = ScriptedChatModel(script=[call("lookup", ids=["nope:1"]),
                                     conclude("Happy [face:0]", ("Happy [face:0]", ["face:0"]))])
    investigate(analysis, "why?", chat, toolbox, on_call=on_call)
    assert seen == ["lookup:error"]


@pytest.mark.slow  # Whisper and the text emotion model load: ~15 s on a busy 2-core machine
def test_transcript_on_a_stretch(analysis: Analysis, toolbox: Toolbox) -> None:
    def words_claim(messages: list[BaseMessage]) -> AIMessage:
        [record] = last_result(messages)["records"]
        return conclude(f'The speaker says "{record["text"].strip()}" [text:1]',
                        (f'The words "{record["text"].strip()}" read as {record["label"]} '
                         f'[text:1]', ["text:1"]))

    result, _ = run(analysis, toolbox, [call("transcript", start=0.7, end=2.9), words_claim])
    [words] = result.evidence
    assert words.id == "text:1" and "talking by the door" in words.text.lower()
    assert 0.7 <= words.span.start < words.span.end <= 2.9
    assert all(s.grounded for s in result.steps), result.steps


def test_a_clip_without_video_has_no_face_tool_to_run(analysis: Analysis,
                                                      toolbox: Toolbox) -> None:
    audio_only = analysis.model_copy(update={
        "media": analysis.media.model_copy(update={"has_video": False})})
    result, chat = run(audio_only, toolbox, [
        call("face", start=1.0, end=2.0),
        conclude("The words are neutral [text:0]", ("The words read as neutral [text:0]",
                                                    ["text:0"]))])
    assert "no video stream" in chat.calls[1].messages[-1].content
    assert "has no video" in chat.calls[0].messages[0].content
    assert result.calls[0].status == "error" and result.grounding == 1.0


def test_a_failing_server_ends_the_run_with_the_reason(analysis: Analysis, toolbox: Toolbox,
                                                       openai_server: ScriptedOpenAIServer
                                                       ) -> None:
    openai_server.push(Reply(content="", tool_calls=(ToolCall("lookup", {"ids": ["face:0"]}),)),
                       Reply(status=500, error="the GPU fell over"))
    chat = load_chat_model("openai:scripted", options=LLMOptions(base_url=openai_server.url,
                                                                 timeout=10, max_retries=0))
    result = investigate(analysis, "why?", chat, toolbox)
    assert result.stopped is not None and "the GPU fell over" in result.stopped
    assert [c.name for c in result.calls] == ["lookup"] and result.conclusion is None


def test_an_uncited_text_answer_is_asked_for_its_evidence(analysis: Analysis,
                                                          toolbox: Toolbox) -> None:
    result, chat = run(analysis, toolbox, [
        "The person is happy.",
        conclude("The person looks happy [face:0-2]",
                 ("The face is happy at 0.0-0.6 s [face:0-2]", ["face:0-2"]))])
    assert "cites no evidence" in chat.calls[1].messages[-1].content
    assert result.grounding == 1.0 and result.conclusion_check.grounded


def test_many_records_are_summarised_as_runs(analysis: Analysis, toolbox: Toolbox) -> None:
    def run_claim(messages: list[BaseMessage]) -> AIMessage:
        found = last_result(messages)
        assert "records" not in found and len(found["runs"]) <= 12
        first = found["runs"][0]
        start, end = first["span"]
        return conclude(f"The face starts {first['label']} [{first['ids']}]",
                        (f"The face is {first['label']} at {start:.2f}-{end:.2f} s "
                         f"[{first['ids']}]", [first["ids"]]))

    result, chat = run(analysis, toolbox, [call("face", start=0.0, end=3.2, fps=10), run_claim])
    found = last_result(chat.calls[1].messages)
    assert sum(found["top_labels"].values()) == 32 == len(result.evidence)
    runs = found["runs"]
    assert "more" not in found and sum(r["records"] for r in runs) == 32
    assert all(a["span"][1] <= b["span"][0] + 1e-6 for a, b in pairwise(runs))
    assert all(a["label"] != b["label"] for a, b in pairwise(runs))
    assert result.grounding == 1.0, result.steps


# -- in the analysis graph ---------------------------------------------------------------------

def test_the_graph_investigates_a_conflict_decides_again_and_verifies_the_new_steps(
        toolbox: Toolbox, ravdess_clip: Path) -> None:
    """With an LLM configured, the analysis graph's aggregate node sends the face/words conflict
    of the real clip to the investigator; the verdict is decided again with the closer look in
    place of what it re-read, and the new evidence and steps are verified with the rest."""
    from affectgraph.api import Analyzer
    from affectgraph.graphs.context import AnalyzeOptions

    bad = AIMessage('{"label": "happy", "steps": [{"claim": "x [face:99]", "cites": ["face:99"]}]}')
    script = [call("face", start=1.0, end=2.0, fps=10), face_claim,  # the investigator
              bad, bad, bad]  # the LLM aggregator's three attempts: unknown ids, fusion kept
    options = AnalyzeOptions(llm="openai:scripted", specialists=("face", "transcript"))
    analyzer = Analyzer(options)
    analyzer.toolbox._loaded.update(toolbox._loaded)  # models already loaded by this module
    analyzer.toolbox.provide(("llm", options.llm, options.llm_options),
                             ScriptedChatModel(script=script))
    result = analyzer.analyze(ravdess_clip)
    verdict = result.verdict
    assert "fusion verdict" in verdict.note and "investigator made 1 tool calls" in verdict.note
    assert "decided again with its 10 new records" in verdict.note
    ids = [int(r.id.split(":")[1]) for r in result.of("face")]
    assert ids == list(range(len(ids))) and len(ids) >= 27  # fresh ids after the first 17
    assert any(s.cites == ["face:17-26"] and s.grounded for s in verdict.rationale)
    assert verdict.grounding == 1.0

    # The kept fusion verdict is the one over the closer look: the frames sampled at 5 fps
    # between 1 and 2 s are replaced by the 10 new ones, not counted twice.
    old, new = result.evidence[:17], [r for r in result.evidence if int(r.id[5:]) >= 17]
    closer = [*(r for r in old if not 1.0 <= (r.span.start + r.span.end) / 2 <= 2.0), *new]
    assert len(closer) < len(result.evidence)
    text = result.of("text")
    expected = aggregate([*closer, *text], result.exemplars, result.turns, result.media.duration,
                         FusionModel.load())
    assert verdict.distribution == pytest.approx(expected.distribution)
    everything = aggregate(result.evidence, result.exemplars, result.turns,
                           result.media.duration, FusionModel.load())
    assert verdict.distribution != pytest.approx(everything.distribution)


def test_the_closer_look_replaces_what_a_call_re_read(analysis: Analysis,
                                                      toolbox: Toolbox) -> None:
    result, _ = run(analysis, toolbox, [call("face", start=1.0, end=2.0, fps=10), face_claim],
                    question="What does the face show between 1 and 2 s, at 10 fps?")
    closer = result.closer_look(analysis.evidence)
    kept = {r.id for r in closer}
    re_read = [r for r in analysis.of("face") if 1.0 <= (r.span.start + r.span.end) / 2 <= 2.0]
    assert re_read and not kept & {r.id for r in re_read}
    assert {r.id for r in result.evidence} <= kept
    assert {r.id for r in analysis.of("voice")} | {r.id for r in analysis.of("text")} <= kept
    assert len(closer) == len(analysis.evidence) - len(re_read) + len(result.evidence)
