"""The investigator: an LLM agent that looks closer at a clip to answer one question.

It is used when the modalities of an analysis disagree (:func:`conflicting`) and to answer chat
questions that need evidence the analysis does not have ("what did the face show between 1 and 2
s, at 10 fps?"). The agent reads the analysis's evidence as a numbered list and may call tools
(:mod:`affectgraph.agents.investigator_tools`): the face, voice and transcript specialists on a
stretch and rate it chooses, exemplar retrieval, and evidence look-up. New evidence gets fresh
ids the agent can cite. It answers by calling ``conclude(conclusion, steps)``: a conclusion and
steps, each one claim with the ids it rests on, which the verifier
(:mod:`affectgraph.agents.verifier`) checks against the analysis's evidence plus the new
evidence. Rejected steps (or an answer citing nothing) are sent back for a revision
(:attr:`InvestigatorOptions.revisions`) and stay flagged if the revision fails too.

A budget bounds the work: :attr:`~InvestigatorOptions.max_tool_calls` and
:attr:`~InvestigatorOptions.max_seconds`. When it is spent the agent is told to conclude; if it
calls tools again, or takes more than :func:`max_turns` turns, the run stops and returns what
it has with ``stopped`` saying why. The graph::

    START -> agent -> tools -> agent ... -> review -> END
                  \\-> review (a text answer)   \\-> agent (a revision)

Tool calls run one at a time in ``tools`` (not LangGraph's ``ToolNode``, which runs them in
parallel): the budget is counted per call and the specialists' models are not thread-safe.

>>> result = investigate(analysis, "Is the face angry while the words are neutral?",
...                      chat_model, toolbox)  # doctest: +SKIP
>>> result.conclusion, [s.claim for s in result.grounded_steps]  # doctest: +SKIP
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from affectgraph.agents.investigator_tools import Casebook, Toolkit, validation_message
from affectgraph.agents.llm_prompt import AnswerStep, evidence_list, expand_aliases, parse_json
from affectgraph.agents.rationale import MIN_CONFLICT
from affectgraph.analysis import Analysis
from affectgraph.errors import InputError
from affectgraph.evidence import SCHEMA_VERSION, Evidence
from affectgraph.graphs.context import AnalyzeOptions
from affectgraph.verdict import Exemplar, RationaleStep, Verdict, compact_ids, expand_ids

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from affectgraph.agents.answer import Answer
    from affectgraph.graphs.context import Toolbox

__all__ = ["Investigation", "InvestigatorOptions", "ToolCallRecord", "build_investigator",
           "chat_answer", "conflict_question", "conflicting", "investigate"]

CONCLUDE = "conclude"


class InvestigatorOptions(BaseModel):
    """The investigator's budget and how its tools run.

    ``max_tool_calls``: tool calls in all (failed ones count; ``conclude`` does not);
    ``max_seconds``: wall time, model answers included, after which no tool runs; ``max_fps``
    and ``max_frames``: the highest face sampling rate and the most frames one face call may
    sample; ``revisions``: how often rejected steps are sent back to be corrected; ``analyze``:
    the specialists' and retrieval's options (give the analysis's own, so that new evidence is
    made the way the analysed evidence was).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tool_calls: int = Field(default=8, ge=1, le=100)
    max_seconds: float = Field(default=180.0, gt=0)
    max_fps: float = Field(default=15.0, gt=0, le=60)
    max_frames: int = Field(default=300, ge=1)
    revisions: int = Field(default=1, ge=0, le=5)
    analyze: AnalyzeOptions = Field(default_factory=AnalyzeOptions)


def max_turns(options: InvestigatorOptions) -> int:
    """Model answers allowed in one investigation: a call per tool, the revisions and a few to
    conclude, recover from a bad ``conclude`` and obey the budget message."""
    return options.max_tool_calls + options.revisions + 3


class ToolCallRecord(BaseModel):
    """One tool call of the agent: its arguments, how long it took, how it ended (``refused``:
    not run, the budget was spent) and the ids of the evidence it added."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    args: dict[str, Any]
    seconds: float
    status: Literal["ok", "error", "refused"]
    message: str | None = None
    added: list[str] = Field(default_factory=list)


class Investigation(BaseModel):
    """The investigator's answer to one question about an analysed clip.

    ``steps`` are every step of the agent's final answer, each marked ``grounded`` or not by
    the verifier with ``check`` saying why; ``conclusion_check`` is the conclusion checked
    against the ids in its brackets (else those of the grounded steps). ``evidence`` and
    ``exemplars`` are what the tools added (citable alongside the analysis's own); ``calls``
    the tool-call log. ``stopped`` says why the run ended without a conclusion (the budget, a
    failing model); ``note`` what else the reader should know (it concluded after its budget).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION
    question: str
    conclusion: str | None = None
    conclusion_check: RationaleStep | None = None
    steps: list[RationaleStep] = Field(default_factory=list)
    grounding: float | None = Field(default=None, ge=0, le=1)
    evidence: list[Evidence] = Field(default_factory=list)
    exemplars: list[Exemplar] = Field(default_factory=list)
    calls: list[ToolCallRecord] = Field(default_factory=list)
    stopped: str | None = None
    note: str | None = None
    model: str = ""
    seconds: float = 0.0

    @property
    def grounded_steps(self) -> list[RationaleStep]:
        return [s for s in self.steps if s.grounded]

    @property
    def rejected_steps(self) -> list[RationaleStep]:
        return [s for s in self.steps if not s.grounded]

    def merged(self, analysis: Analysis) -> Analysis:
        """``analysis`` with the new evidence and exemplars added, so that later questions (a
        chat's next turn) can read and cite them."""
        return analysis.model_copy(update={
            "evidence": [*analysis.evidence, *self.evidence],
            "exemplars": [*analysis.exemplars, *self.exemplars]})

    def closer_look(self, evidence: Sequence[Evidence]) -> list[Evidence]:
        """The evidence to decide from after the investigation: within each stretch a tool
        call re-read, the call's new records in place of the old records of that modality.

        A face call at 10 fps over 1-2 s replaces the five frames sampled there at 5 fps rather
        than adding to them, so the stretch is not counted twice (fusion pools a modality's
        records by their frames, seconds or words). Both stay citable in the analysis.
        """
        by_id = {r.id: r for r in self.evidence}
        stretches: list[tuple[str, float, float]] = []
        for call in self.calls:
            added = [by_id[i] for i in expand_ids(call.added) if i in by_id]
            for modality in {r.modality for r in added}:
                spans = [r.span for r in added if r.modality == modality]
                stretches.append((modality, min(s.start for s in spans),
                                  max(s.end for s in spans)))

        def replaced(record: Evidence) -> bool:
            middle = (record.span.start + record.span.end) / 2
            return any(record.modality == m and start <= middle <= end
                       for m, start, end in stretches)

        return [*(r for r in evidence if not replaced(r)), *self.evidence]


class ConcludeArgs(BaseModel):
    """The agent's answer: the ``conclude`` tool's arguments."""

    model_config = ConfigDict(extra="forbid")

    conclusion: str = Field(min_length=1, description="the answer to the question, in plain "
                                                      "language, with ids in brackets")
    steps: list[AnswerStep] = Field(min_length=1, description="the claims the conclusion rests "
                                                              "on, strongest first")


class Checked(BaseModel):
    """A reviewed answer: the conclusion and steps as the verifier marked them."""

    conclusion: str
    conclusion_check: RationaleStep
    steps: list[RationaleStep]


class InvestigationState(TypedDict, total=False):
    """The conversation, what the tools added and logged, and where the answer stands."""

    messages: Annotated[list[AnyMessage], add_messages]
    evidence: Annotated[list[Evidence], operator.add]
    exemplars: Annotated[list[Exemplar], operator.add]
    calls: Annotated[list[ToolCallRecord], operator.add]
    turns: int
    revisions: int
    warned: str | None
    draft: ConcludeArgs | None
    answer: Checked | None
    stopped: str | None


@dataclass
class InvestigatorContext:
    """The run-time context of the investigator graph: the analysis under investigation, the
    chat model with the tools bound, the toolkit and options, the vote aliases of the evidence
    list, when the run started (``time.monotonic``) and optional callbacks."""

    analysis: Analysis
    chat: Any
    toolkit: Toolkit
    options: InvestigatorOptions
    aliases: dict[str, tuple[str, ...]]
    started: float
    on_token: Callable[[str], None] | None = None
    on_call: Callable[[ToolCallRecord], None] | None = None


# -- the prompt ----------------------------------------------------------------------------------

INSTRUCTIONS = """\
You investigate one analysed clip to answer a question about the emotions in it. The clip is \
{duration:.2f} s long{streams}. Specialist models already measured the evidence listed below; \
you can look closer with tools: face(start, end, fps), voice(start, end) and \
transcript(start, end) run a specialist on a stretch of the clip (times in seconds) and add new \
evidence with new ids; retrieve_exemplars finds labelled exemplars similar to a record; lookup \
and list_evidence show records. Your budget: {calls} tool calls and {seconds:.0f} s. Use tools \
only when the listed evidence cannot answer the question.
When you know the answer, call conclude(conclusion, steps) alone, once. Each step is one \
specific claim (what, when, how much) with the ids it rests on in brackets at its end and in \
"cites", e.g. {{"claim": "The face shows anger in 6 of 10 frames at 1.40-2.00 s [face:20-29]", \
"cites": ["face:20-29"]}}. Cite only ids from the list or from tool results; give times, labels \
and numbers as the evidence states them. A verifier checks every step against the evidence it \
cites; when the modalities disagree, say so in a step that cites both."""


def system_prompt(analysis: Analysis, options: InvestigatorOptions
                  ) -> tuple[str, dict[str, tuple[str, ...]]]:
    """The instructions, the verdict and the evidence as a numbered list, and its aliases."""
    media = analysis.media
    lacking = [s for s, has in (("video", media.has_video), ("audio", media.has_audio)) if not has]
    streams = f" and has no {' or '.join(lacking)}" if lacking else ""
    listed = evidence_list(analysis.evidence, analysis.exemplars, duration=media.duration)
    text = INSTRUCTIONS.format(duration=media.duration, streams=streams,
                               calls=options.max_tool_calls, seconds=options.max_seconds)
    return "\n\n".join([text, _verdict_line(analysis.verdict), listed.text]), dict(listed.aliases)


def _verdict_line(verdict: Verdict | None) -> str:
    if verdict is None:
        return "No verdict was aggregated."
    said = (f"{verdict.label} (confidence {verdict.confidence:.2f})" if not verdict.abstained
            else f"abstains: {verdict.abstention}")
    return f"The analysis's verdict (a summary, not citable evidence): {said}."


# -- nodes ---------------------------------------------------------------------------------------

def agent(state: InvestigationState, runtime: Runtime[InvestigatorContext]) -> dict[str, Any]:
    """One model answer; the budget message first when the budget has just been spent."""
    ctx = runtime.context
    turns = state.get("turns", 0)
    if turns >= max_turns(ctx.options):
        return {"stopped": f"the model took {turns} turns without a verified conclusion"}
    update: dict[str, Any] = {"turns": turns + 1}
    told: list[AnyMessage] = []
    if not state.get("warned") and (spent := _spent(state, ctx)):
        told = [HumanMessage(f"Your budget is spent ({spent}). Call no more tools: call "
                             f"{CONCLUDE} now with what the evidence shows.")]
        update["warned"] = spent
    try:
        reply = _ask(ctx, [*state["messages"], *told])
    except Exception as exc:  # a failing server ends the run; a wrong setup is raised
        from affectgraph.agents.llm import explain_llm_error

        if (explained := explain_llm_error(exc, ctx.chat)) is not None:
            raise explained from exc
        if not _server_failure(exc):
            raise
        return {**update, "messages": told,
                "stopped": f"the model failed ({type(exc).__name__}: {exc})"}
    if reply.id and any(m.id == reply.id for m in state["messages"]):
        reply = reply.model_copy(update={"id": None})  # a reused id would replace, not append
    update["messages"] = [*told, reply]
    if not reply.tool_calls:
        update |= _text_answer(reply)
    return update


def _ask(ctx: InvestigatorContext, messages: Sequence[AnyMessage]) -> AIMessage:
    if ctx.on_token is None:
        return ctx.chat.invoke(list(messages))
    from affectgraph.agents.llm import stream_text

    return stream_text(ctx.chat, messages, ctx.on_token)


def _server_failure(exc: BaseException) -> bool:
    """A model call that failed on the way (a timeout, a dropped connection, a server error),
    not because of a bug."""
    import openai

    return isinstance(exc, openai.APIError | TimeoutError | ConnectionError)


def _text_answer(reply: AIMessage) -> dict[str, Any]:
    """A reply without tool calls: the ``conclude`` arguments as JSON, else the text itself,
    each sentence that cites ids a step."""
    text = reply.text.strip()
    if not text:
        return {"stopped": "the model answered with neither text nor tool calls"}
    try:
        return {"draft": ConcludeArgs.model_validate(parse_json(text))}
    except (ValueError, ValidationError):
        pass
    from affectgraph.agents.chat_llm import split_claims

    steps = [AnswerStep(claim=p.claim, cites=p.cites) for p in split_claims(text)
             if isinstance(p, RationaleStep) and p.cites]
    return {"draft": ConcludeArgs.model_construct(conclusion=text, steps=steps)}


def _spent(state: InvestigationState, ctx: InvestigatorContext) -> str | None:
    """Why the budget is spent, or ``None``."""
    used = sum(c.status != "refused" for c in state.get("calls", []))
    if used >= ctx.options.max_tool_calls:
        return f"{used} of {ctx.options.max_tool_calls} tool calls used"
    elapsed = time.monotonic() - ctx.started
    if elapsed >= ctx.options.max_seconds:
        return f"{elapsed:.0f} s of {ctx.options.max_seconds:.0f} s used"
    return None


def tools(state: InvestigationState, runtime: Runtime[InvestigatorContext]) -> dict[str, Any]:
    """Run the last answer's tool calls in order, within the budget; take a ``conclude``."""
    ctx = runtime.context
    calls = state["messages"][-1].tool_calls  # type: ignore[union-attr]
    if (warned := state.get("warned")) and any(c["name"] != CONCLUDE for c in calls):
        names = ", ".join(dict.fromkeys(c["name"] for c in calls if c["name"] != CONCLUDE))
        why = f"budget spent ({warned}) and the model called {names} after being told to conclude"
        return {"stopped": why, **_refuse_all(calls, why)}
    book = Casebook(ctx.analysis, state.get("evidence", []), state.get("exemplars", []))
    named = {t.name: t for t in ctx.toolkit.tools(book)}
    messages: list[ToolMessage] = []
    log: list[ToolCallRecord] = []
    draft = None
    for call in calls:
        if call["name"] == CONCLUDE:
            message, draft = _conclude(call, alone=len(calls) == 1)
            messages.append(message)
            continue
        spent = _spent({**state, "calls": [*state.get("calls", []), *log]}, ctx)
        message, record = _run(call, named, book, refused=spent)
        messages.append(message)
        log.append(record)
        if ctx.on_call is not None:
            ctx.on_call(record)
    return {"messages": messages, "calls": log, "evidence": book.added,
            "exemplars": book.found, "draft": draft}


def _run(call: ToolCall, named: dict[str, Any], book: Casebook,
         refused: str | None) -> tuple[ToolMessage, ToolCallRecord]:
    name, args, call_id = call["name"], dict(call.get("args") or {}), call["id"]
    if refused:
        why = f"not run: the budget is spent ({refused}); call {CONCLUDE} now"
        return (ToolMessage(why, tool_call_id=call_id, name=name, status="error"),
                ToolCallRecord(name=name, args=args, seconds=0.0, status="refused", message=why))
    if name not in named:
        why = f"there is no tool {name!r}; the tools are: {', '.join([*named, CONCLUDE])}"
        return (ToolMessage(why, tool_call_id=call_id, name=name, status="error"),
                ToolCallRecord(name=name, args=args, seconds=0.0, status="error", message=why))
    before = len(book.added)
    started = time.perf_counter()
    message = named[name].invoke({"args": args, "id": call_id, "name": name,
                                  "type": "tool_call"})
    seconds = time.perf_counter() - started
    failed = message.status == "error"
    added = compact_ids(r.id for r in book.added[before:])
    return message, ToolCallRecord(name=name, args=args, seconds=seconds,
                                   status="error" if failed else "ok",
                                   message=str(message.content) if failed else None, added=added)


def _conclude(call: ToolCall, alone: bool) -> tuple[ToolMessage, ConcludeArgs | None]:
    def reply(text: str, status: Literal["success", "error"] = "error") -> ToolMessage:
        return ToolMessage(text, tool_call_id=call["id"], name=CONCLUDE, status=status)

    if not alone:
        return reply(f"{CONCLUDE} must be called alone, after your other tools have returned; "
                     "their results are below: conclude again with them"), None
    try:
        draft = ConcludeArgs.model_validate(call.get("args") or {})
    except ValidationError as exc:
        return reply(validation_message(exc) + "; give a conclusion and at least one step "
                     '{"claim": "... [ids]", "cites": [ids]}'), None
    return reply("received; the verifier is checking the steps", "success"), draft


def _conclude_tool() -> Any:
    """The ``conclude`` tool as the model sees it (the ``tools`` node takes its calls)."""
    from langchain_core.tools import StructuredTool

    def conclude(conclusion: str, steps: list[AnswerStep]) -> str:
        return "received"

    return StructuredTool.from_function(
        conclude, name=CONCLUDE, args_schema=ConcludeArgs,
        description="Give your final answer: the conclusion and the steps it rests on, each one "
                    "claim with the ids it cites. Call it alone, once you know the answer.")


def _refuse_all(calls: Sequence[ToolCall], why: str) -> dict[str, Any]:
    messages = [ToolMessage(f"not run: {why}", tool_call_id=c["id"], name=c["name"],
                            status="error") for c in calls]
    log = [ToolCallRecord(name=c["name"], args=dict(c.get("args") or {}), seconds=0.0,
                          status="refused", message=why) for c in calls if c["name"] != CONCLUDE]
    return {"messages": messages, "calls": log}


def review(state: InvestigationState, runtime: Runtime[InvestigatorContext]) -> dict[str, Any]:
    """Verify the draft answer; send rejected steps back while revisions remain."""
    ctx = runtime.context
    checked = check_answer(state["draft"], ctx.analysis, state.get("evidence", []),  # type: ignore[arg-type]
                           state.get("exemplars", []), ctx.aliases)
    rejected = [(n, s) for n, s in enumerate(checked.steps, 1) if not s.grounded]
    revisions = state.get("revisions", 0)
    if (rejected or not checked.steps) and revisions < ctx.options.revisions:
        said = ("The verifier rejected these steps:\n" + "\n".join(
            f"{n}. {s.claim!r}: {s.check}" for n, s in rejected) + "\nCorrect them to state "
            "what the cited evidence shows (or drop them)") if rejected else (
            "Your answer cites no evidence: give the steps it rests on, each citing ids")
        return {"draft": None, "revisions": revisions + 1, "messages": [HumanMessage(
            f"{said} and call {CONCLUDE} again with all your steps.")]}
    return {"draft": None, "answer": checked}


def check_answer(draft: ConcludeArgs, analysis: Analysis, evidence: Sequence[Evidence],
                 exemplars: Sequence[Exemplar], aliases: dict[str, tuple[str, ...]]) -> Checked:
    """The draft's steps and conclusion checked against the analysis plus the new evidence.

    The conclusion rests on the ids in its brackets, or else on the grounded steps' ids."""
    from affectgraph.agents.verifier import Verifier

    verifier = Verifier([*analysis.evidence, *evidence], [*analysis.exemplars, *exemplars])
    steps = []
    for step in draft.steps:
        claim, cites = expand_aliases(step.claim, step.cites, aliases)
        steps.append(RationaleStep(claim=claim, cites=cites))
    steps = verifier.verify(steps)
    claim, cites = expand_aliases(draft.conclusion, [], aliases)
    if "[" not in claim:
        cites = list(dict.fromkeys(i for s in steps if s.grounded for i in s.cites))
    conclusion = verifier.verify([RationaleStep(claim=claim, cites=cites)])[0]
    return Checked(conclusion=draft.conclusion, conclusion_check=conclusion, steps=steps)


# -- routes and the graph ------------------------------------------------------------------------

def route_after_agent(state: InvestigationState) -> str:
    if state.get("stopped"):
        return END
    return "review" if state.get("draft") is not None else "tools"


def route_after_tools(state: InvestigationState) -> str:
    if state.get("stopped"):
        return END
    return "review" if state.get("draft") is not None else "agent"


def route_after_review(state: InvestigationState) -> str:
    return END if state.get("answer") is not None else "agent"


def build_investigator() -> Any:
    """The investigator graph (uncompiled): agent, tools and review."""
    graph = StateGraph(InvestigationState, context_schema=InvestigatorContext)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_node("review", review)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route_after_agent, ["tools", "review", END])
    graph.add_conditional_edges("tools", route_after_tools, ["agent", "review", END])
    graph.add_conditional_edges("review", route_after_review, ["agent", END])
    return graph


def investigate(
    analysis: Analysis,
    question: str,
    chat_model: BaseChatModel,
    toolbox: Toolbox | None = None,
    *,
    options: InvestigatorOptions | None = None,
    path: str | None = None,
    on_token: Callable[[str], None] | None = None,
    on_call: Callable[[ToolCallRecord], None] | None = None,
) -> Investigation:
    """Answer ``question`` about ``analysis`` with a tool-calling agent; see the module doc.

    ``chat_model`` must call tools (:func:`affectgraph.agents.llm.with_tools` raises a
    :class:`~affectgraph.errors.ConfigError` naming what can); ``toolbox`` holds the loaded
    models (pass the analysis's, e.g. ``Analyzer().toolbox``, so nothing loads twice); ``path``
    is the clip (default: the analysis's). ``on_token`` receives the model's text as it streams;
    ``on_call`` each tool call once it has run. Raises :class:`~affectgraph.errors.InputError`
    for an empty question and :class:`~affectgraph.errors.MediaError` for a missing clip.
    """
    from affectgraph.agents.llm import llm_name, with_tools
    from affectgraph.graphs.context import Toolbox
    from affectgraph.media import probe

    options = options or InvestigatorOptions()
    if not question.strip():
        raise InputError("the question is empty: ask what you want to know about the clip")
    clip = path or analysis.media.path
    probe(clip)  # a missing or unreadable clip fails here, with its name
    toolkit = Toolkit(clip, toolbox or Toolbox(), options.analyze, max_fps=options.max_fps,
                      max_frames=options.max_frames)
    chat = with_tools(chat_model, [*toolkit.tools(Casebook(analysis)), _conclude_tool()])
    prompt, aliases = system_prompt(analysis, options)
    started = time.monotonic()
    context = InvestigatorContext(analysis, chat, toolkit, options, aliases, started,
                                  on_token=on_token, on_call=on_call)
    final = build_investigator().compile().invoke(
        {"messages": [SystemMessage(prompt), HumanMessage(question)]}, context=context,
        config={"recursion_limit": 3 * max_turns(options) + 10})
    return _result(question, final, llm_name(chat_model), time.monotonic() - started)


def _result(question: str, state: dict[str, Any], model: str, seconds: float) -> Investigation:
    answer: Checked | None = state.get("answer")
    steps = answer.steps if answer else []
    warned = state.get("warned")
    return Investigation(
        question=question,
        conclusion=answer.conclusion if answer else None,
        conclusion_check=answer.conclusion_check if answer else None,
        steps=steps,
        grounding=sum(bool(s.grounded) for s in steps) / len(steps) if steps else None,
        evidence=state.get("evidence", []),
        exemplars=state.get("exemplars", []),
        calls=state.get("calls", []),
        stopped=state.get("stopped"),
        note=f"concluded after the budget was spent ({warned})" if answer and warned else None,
        model=model,
        seconds=seconds,
    )


# -- when to investigate, and answering a chat with it -------------------------------------------

def conflicting(verdict: Verdict | None, evidence: Sequence[Evidence] | None = None, *,
                threshold: float = MIN_CONFLICT) -> bool:
    """Whether the modalities disagree, so that an investigation may settle it.

    With ``evidence``: at least two modalities whose pooled distributions (as fusion reads them,
    :func:`affectgraph.agents.signals.pool`) each give at least ``threshold`` to a different top
    label. Without: what ``verdict`` says, a rationale step of the fusion aggregator naming a
    disagreement (kept or rejected) or an abstention because the evidence contradicts itself.
    """
    if evidence is not None:
        return len({label for label, _ in _sure(evidence, threshold).values()}) > 1
    if verdict is None:
        return False
    steps = [*verdict.rationale, *verdict.rejected]
    return (any(s.claim.startswith("The modalities disagree") for s in steps)
            or "contradicts itself" in (verdict.abstention or ""))


def conflict_question(evidence: Sequence[Evidence], *, threshold: float = MIN_CONFLICT
                      ) -> str | None:
    """The question to investigate when the modalities disagree (``None`` when they agree)."""
    sure = _sure(evidence, threshold)
    if len({label for label, _ in sure.values()}) < 2:
        return None
    names = {"face": "the face", "voice": "the voice", "text": "the words"}
    said = "; ".join(f"{names.get(m, m)}: {label} (p={p:.2f})" for m, (label, p) in sure.items())
    return (f"The modalities disagree: {said}. Look closer where they disagree and decide "
            "which emotion the person shows, and when.")


def _sure(evidence: Sequence[Evidence], threshold: float) -> dict[str, tuple[str, float]]:
    """Each modality's pooled top label and its probability, where it reaches ``threshold``."""
    from affectgraph.agents.signals import pool
    from affectgraph.evidence import top

    tops = {m: top(p.signals.model) for m, p in pool(evidence, {}).items() if p.signals.model}
    return {m: (label, p) for m, (label, p) in tops.items() if p >= threshold}


def chat_answer(investigation: Investigation, analysis: Analysis) -> Answer:
    """The investigation as a chat :class:`~affectgraph.agents.answer.Answer`: the conclusion
    and its steps, checked against ``analysis`` plus the new evidence (rejected ones marked),
    ``note`` saying why it stopped or that it ran over its budget."""
    from affectgraph.agents.answer import checked_answer

    parts: list[str | RationaleStep] = []
    if investigation.conclusion is not None and investigation.conclusion_check is not None:
        parts.append(RationaleStep(claim=investigation.conclusion,
                                   cites=investigation.conclusion_check.cites))
        parts += [RationaleStep(claim=s.claim, cites=s.cites) for s in investigation.steps]
    else:
        parts.append(f"The investigation gave no conclusion: {investigation.stopped}.")
    return checked_answer(investigation.question, parts, investigation.merged(analysis),
                          intent="investigate", answerer="llm",
                          note=investigation.stopped or investigation.note)
