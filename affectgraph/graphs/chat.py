"""Chat about one clip: a LangGraph graph whose threads persist in SQLite.

::

    START -> analyse (once per thread) -> answer -> END
          \\-----------------------------/

The state holds the conversation (``messages``, LangGraph ``add_messages``), the clip's path,
its :class:`~affectgraph.analysis.Analysis` as JSON (without face embeddings, which no answer
needs and which would swell every checkpoint) and the typed answers. ``analyse`` runs only while
the thread has no analysis, through the run context's :class:`~affectgraph.api.Analyzer`;
``answer`` answers the last question with the context's chat model when there is one
(:func:`~affectgraph.agents.chat_llm.answer_with_llm`), else offline from the evidence
(:func:`~affectgraph.agents.offline_answers.answer_offline`). Every answer cites evidence ids
and times, and its claims go through the verifier.

Threads are saved by LangGraph's ``SqliteSaver`` after every step, so a chat resumes after a
restart: :class:`ChatSession` opens the same database and thread and carries on, with its
history, without analysing the clip again. :func:`chat` is the terminal loop behind
``affectgraph chat``.

>>> with ChatSession("clip.mp4", db="chat.sqlite") as session:   # doctest: +SKIP
...     print(session.ask("what emotion is it?").text)
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from affectgraph.agents.answer import Answer
from affectgraph.analysis import Analysis
from affectgraph.errors import AffectGraphError, ConfigError, InputError, MediaError
from affectgraph.graphs.context import Progress, no_progress

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from affectgraph.api import Analyzer

COMMANDS = {"/quit": "end the chat (also /exit, Ctrl-D)", "/help": "what can be asked",
            "/history": "the questions and answers so far"}
_QUIT = {"/quit", "/exit", "/q"}


class ChatState(TypedDict, total=False):
    """A chat thread: the messages, the clip, its analysis (JSON) and the typed answers (JSON
    of :class:`~affectgraph.agents.answer.Answer`)."""

    messages: Annotated[list[AnyMessage], add_messages]
    path: str
    analysis: dict[str, Any]
    answers: Annotated[list[dict[str, Any]], operator.add]


@dataclass
class ChatContext:
    """What the chat graph's nodes get at run time: the analyzer for the clip (a default one
    when ``None``), the chat model (``None``: answer offline) and analysis progress."""

    analyzer: Analyzer | None = None
    llm: BaseChatModel | None = None
    progress: Progress = no_progress


def stored(analysis: Analysis) -> dict[str, Any]:
    """The analysis as the state keeps it: JSON without face embeddings."""
    return analysis.model_dump(mode="json", exclude={"evidence": {"__all__": {"embedding"}}})


def _question_pending(state: ChatState) -> bool:
    messages = state.get("messages", [])
    return bool(messages) and isinstance(messages[-1], HumanMessage)


def route_start(state: ChatState) -> str:
    """Analyse once per thread; then answer when a question waits."""
    if not state.get("analysis"):
        return "analyse"
    return "answer" if _question_pending(state) else END


def route_after_analyse(state: ChatState) -> str:
    return "answer" if _question_pending(state) else END


def analyse(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Run the analysis graph on the clip (the context's analyzer keeps models loaded)."""
    from affectgraph.api import Analyzer

    analyzer = runtime.context.analyzer or Analyzer()
    analysis = analyzer.analyze(state["path"], progress=runtime.context.progress)
    return {"analysis": stored(analysis)}


def answer(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Answer the last question: with the chat model if the context has one, else offline."""
    analysis = Analysis.model_validate(state["analysis"])
    *history, last = state["messages"]
    question = last.text
    update: dict[str, Any] = {}
    if (llm := runtime.context.llm) is not None:
        reply, found = _llm_reply(llm, runtime.context, question, analysis, history)
        if found is not None:  # new evidence the investigator gathered: citable from now on
            update["analysis"] = stored(found)
    else:
        from affectgraph.agents.offline_answers import answer_offline

        reply = answer_offline(question, analysis)
    return {**update, "messages": [AIMessage(content=reply.text)],
            "answers": [reply.model_dump(mode="json")]}


def _llm_reply(llm: BaseChatModel, ctx: ChatContext, question: str, analysis: Analysis,
               history: list[Any]) -> tuple[Answer, Analysis | None]:
    """A model that calls tools answers as the investigator (it can look at the clip again:
    the face between two times at a higher rate, a turn's voice, the nearest exemplars); one
    that cannot answers from the evidence alone. ``llm`` is the context's model, read once by
    the caller (the server's context makes it in a property)."""
    from affectgraph.agents.chat_llm import answer_with_llm
    from affectgraph.agents.investigator import chat_answer, investigate
    from affectgraph.api import Analyzer

    if not hasattr(llm, "bind_tools"):  # a duck-typed model that is no BaseChatModel
        return answer_with_llm(llm, question, analysis, history), None
    analyzer = ctx.analyzer or Analyzer()
    try:
        found = investigate(analysis, question, llm, analyzer.toolbox)
    except ConfigError:  # e.g. the model cannot call tools after all
        return answer_with_llm(llm, question, analysis, history), None
    return chat_answer(found, analysis), found.merged(analysis)


def build_chat_graph() -> StateGraph[ChatState, ChatContext, ChatState, ChatState]:
    """The uncompiled chat graph."""
    graph = StateGraph(ChatState, context_schema=ChatContext)
    graph.add_node("analyse", analyse)
    graph.add_node("answer", answer)
    graph.add_conditional_edges(START, route_start, ["analyse", "answer", END])
    graph.add_conditional_edges("analyse", route_after_analyse, ["answer", END])
    graph.add_edge("answer", END)
    return graph


def compile_chat_graph(**compile_kwargs: Any) -> Any:
    """The compiled chat graph (pass ``checkpointer=...`` to keep threads)."""
    return build_chat_graph().compile(**compile_kwargs)


def default_db() -> Path:
    """Where chats are kept unless told: ``$AFFECTGRAPH_HOME/chat.sqlite``."""
    from affectgraph.models import cache_home

    return cache_home() / "chat.sqlite"


class ChatSession:
    """A conversation about one clip, saved in SQLite under a thread id.

    ``db``: the SQLite file (default :func:`default_db`); ``thread``: the conversation's name
    (default: the clip's absolute path, so asking about the same clip again resumes it);
    ``llm``: a LangChain chat model (default: answer offline); ``analyzer``: the
    :class:`~affectgraph.api.Analyzer` to analyse the clip with (default options);
    ``analysis``: an analysis already made, used instead of analysing when the thread has none.
    A thread belongs to one clip: opening it with another raises :class:`ConfigError`.
    """

    def __init__(self, path: str | Path, *, db: str | Path | None = None,
                 thread: str | None = None, llm: BaseChatModel | None = None,
                 analyzer: Analyzer | None = None, analysis: Analysis | None = None,
                 progress: Progress = no_progress) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        self.path = str(Path(path).expanduser().resolve())
        self.db = Path(db) if db is not None else default_db()
        self.thread = thread or self.path
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.db), check_same_thread=False)
        self.graph = compile_chat_graph(checkpointer=SqliteSaver(self._conn))
        self.config = {"configurable": {"thread_id": self.thread}}
        self.context = ChatContext(analyzer=analyzer, llm=llm, progress=progress)
        self._seed = analysis
        try:
            self._check_thread()
        except AffectGraphError:
            self.close()
            raise

    def _check_thread(self) -> None:
        saved = self.state.get("path")
        if saved and saved != self.path:
            raise ConfigError(f"thread {self.thread!r} in {self.db} is about {saved}, not "
                              f"{self.path}; pick another --thread or ask about {saved}")
        if not self.analysed and self._seed is None and not Path(self.path).is_file():
            raise MediaError(self.path, "no such file", "check the path")

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.graph.get_state(self.config).values)

    @property
    def analysed(self) -> bool:
        """Whether the thread holds its clip's analysis (it is analysed once)."""
        return bool(self.state.get("analysis"))

    @property
    def analysis(self) -> Analysis | None:
        saved = self.state.get("analysis")
        return Analysis.model_validate(saved) if saved else None

    def prepare(self) -> Analysis:
        """Analyse the clip now (done on the first question otherwise); a no-op once done."""
        if not self.analysed:
            self._run({"path": self.path})
        assert self.analysis is not None
        return self.analysis

    def ask(self, question: str) -> Answer:
        """Answer ``question`` (saved in the thread with the answer)."""
        question = question.strip()
        if not question:
            raise InputError("the question is empty: ask e.g. 'what emotion is it?' or 'why?'")
        out = self._run({"messages": [HumanMessage(question)], "path": self.path})
        return Answer.model_validate(out["answers"][-1])

    def history(self) -> list[Answer]:
        """The thread's answers so far, oldest first (each names its question)."""
        return [Answer.model_validate(a) for a in self.state.get("answers", [])]

    def _run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if self._seed is not None and not self.analysed:
            inputs = {**inputs, "analysis": stored(self._seed)}
        return self.graph.invoke(inputs, config=self.config, context=self.context,
                                 durability="sync")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat(path: str | Path, *, db: str | Path | None = None, thread: str | None = None,
         llm: BaseChatModel | None = None, analyzer: Analyzer | None = None,
         read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> int:
    """A terminal chat about ``path``: reads questions with ``read``, prints answers with
    ``write`` until ``/quit`` or end of input; returns the exit code (0)."""
    with ChatSession(path, db=db, thread=thread, llm=llm, analyzer=analyzer) as session:
        write(f"Chat about {session.path} (thread {session.thread!r}, kept in {session.db}).")
        write("Answers cite evidence ids [face:3] and times; /help lists what to ask, "
              "/quit ends.")
        past = session.history()
        if past:
            write(f"Resuming: {len(past)} earlier question(s); the last was "
                  f"{past[-1].question!r}.")
        else:
            write("Analysing the clip (once per thread)...")
            session.prepare()
            write("Ready.")
        while True:
            try:
                line = read("> ").strip()
            except (EOFError, KeyboardInterrupt):
                write("")
                return 0
            if not line:
                continue
            if line.lower() in _QUIT:
                return 0
            write(_command(line, session) if line.startswith("/") else _ask(line, session))


def _ask(line: str, session: ChatSession) -> str:
    try:
        reply = session.ask(line)
    except AffectGraphError as exc:
        return f"error: {exc}"
    note = f"\n(note: {reply.note})" if reply.note else ""
    return reply.text + note + "\n"


def _command(line: str, session: ChatSession) -> str:
    from affectgraph.agents.offline_answers import capabilities

    name = line.split()[0].lower()
    if name == "/help":
        commands = [f"  {c}  {what}" for c, what in COMMANDS.items()]
        asked = capabilities() if session.context.llm is None else [
            "Ask anything about the clip; answers are checked against its evidence."]
        return "\n".join(["Commands:", *commands, *asked]) + "\n"
    if name == "/history":
        return "\n".join(f"Q: {a.question}\nA: {a.text}\n" for a in session.history()) or (
            "No questions yet.")
    return f"unknown command {name}; commands: {', '.join(COMMANDS)}"
